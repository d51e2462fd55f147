-- QuickBooks request limits per realm, shared by every daemon process through the database
-- (fact sheet section 5): 500 requests/minute, 10/second, 10 in flight, 40 batch requests/
-- minute (a batch also counts as a request). QuickBooks counts in sliding windows and answers
-- 429 past a limit, so qbsync paces requests evenly instead of spending the budget in bursts:
-- consecutive permits of a realm are at least `spacing` apart, where for each limit of N per
-- window W the spacing is (W + slack) / N and slack = greatest(W * safety, jitter): any N + 1
-- consecutive requests span more than W even if some reach QuickBooks a little late.
-- (GCRA with no burst tolerance; the state is one row per realm, locked for the microseconds
-- of a decision.) A permit may be granted for a slot a little in the future: the caller
-- sleeps until then, so waiters queue in order instead of polling.
--
-- Batches have a lane of their own: a batch carries 30 operations, a plain request one, so a
-- batch slot must never wait behind plain requests queued ahead of it. While batches are in
-- use (one was granted within the last minute window) plain requests are paced for the
-- budget minus the batches' share (500 - 40 a minute, 10 - 1 a second), and batches are
-- paced on their own at 40 a minute; the two lanes add up to the same totals as plain
-- requests alone, so switching between them keeps every window within its limit. A batch
-- may reserve its slot a little ahead (the smaller of half a batch interval and one second
-- window), so that its waiter sleeps until the exact slot instead of polling for it.
--
-- Slack that learns. A 429 says nothing about which limit it hit (QuickBooks answers 3001
-- "ThrottleExceeded" for all of them, and asks for a 60 s pause either way), and with even
-- pacing at 495 a minute the minute limit cannot be the one: it is requests bunching on
-- their way (a stalled process, the network) that fill a one-second window. So every 429
-- adds a tenth of the second window to that window's slack (at most half of it in all),
-- which spaces requests further apart for as long as it lasts; the addition fades out
-- linearly over the next ten minute windows without a 429.

-- Limits. realm_id '*' holds the defaults for realms without a row of their own.
-- NULL = no limit of that kind. The windows are intervals so that an emulator running its
-- clock faster (time scale) can be matched: minute_window = 1 minute / scale.
CREATE TABLE qbsync.rate_limits (
    realm_id         text PRIMARY KEY,
    per_minute       int CHECK (per_minute > 0),
    per_second       int CHECK (per_second > 0),
    in_flight        int CHECK (in_flight > 0),
    batch_per_minute int CHECK (batch_per_minute > 0),
    minute_window    interval NOT NULL DEFAULT '1 minute' CHECK (minute_window > '0'),
    second_window    interval NOT NULL DEFAULT '1 second' CHECK (second_window > '0'),
    -- Head-room below each rate limit, so that jitter between the permit and the request
    -- reaching QuickBooks never turns into a 429: a fraction of the window (safety) but at
    -- least an absolute time (jitter; it matters when the windows are scaled down).
    safety           float8 NOT NULL DEFAULT 0.01 CHECK (safety >= 0 AND safety < 0.5),
    jitter           interval NOT NULL DEFAULT '25 ms' CHECK (jitter >= '0'),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE qbsync.rate_limits IS
    'QuickBooks request limits per realm (''*'' = default for every realm); NULL = unlimited. Change with qbsync.set_rate_limits().';
INSERT INTO qbsync.rate_limits (realm_id, per_minute, per_second, in_flight, batch_per_minute)
VALUES ('*', 500, 10, 10, 40);

-- Pacing state: UNLOGGED because it is worthless after a crash (an empty row means "no
-- request recently"), and it changes on every request.
CREATE UNLOGGED TABLE qbsync.rate_state (
    realm_id          text PRIMARY KEY,
    next_request      timestamptz NOT NULL DEFAULT '-infinity',  -- earliest next permit
    next_batch        timestamptz NOT NULL DEFAULT '-infinity',  -- earliest next batch permit
    paused_until      timestamptz NOT NULL DEFAULT '-infinity',  -- after a 429
    granted           bigint NOT NULL DEFAULT 0,
    throttles         bigint NOT NULL DEFAULT 0,
    last_throttled_at timestamptz,
    -- extra slack of the second window after 429s, as a fraction of that window, as it
    -- stood at last_throttled_at (it fades out from there over ten minute windows)
    extra_slack       float8 NOT NULL DEFAULT 0
) WITH (fillfactor = 50);
COMMENT ON TABLE qbsync.rate_state IS
    'Request pacing per realm (next free slot, 429 pause); maintained by qbsync.take_permit() and qbsync.throttled().';

-- Permits in flight. A permit expires by itself after its hold, so the permits of a killed
-- daemon free themselves.
CREATE UNLOGGED TABLE qbsync.rate_permits (
    permit_id  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    realm_id   text NOT NULL,
    kind       text NOT NULL CHECK (kind IN ('request', 'batch')),
    holder     text,
    starts_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE INDEX rate_permits_realm ON qbsync.rate_permits (realm_id, expires_at);
COMMENT ON TABLE qbsync.rate_permits IS
    'QuickBooks requests in flight (or about to start at starts_at), per realm; rows expire at expires_at.';

CREATE FUNCTION qbsync.set_rate_limits(
    p_realm_id text,
    p_per_minute int DEFAULT 500,
    p_per_second int DEFAULT 10,
    p_in_flight int DEFAULT 10,
    p_batch_per_minute int DEFAULT 40,
    p_minute_window interval DEFAULT '1 minute',
    p_second_window interval DEFAULT '1 second',
    p_safety float8 DEFAULT 0.01,
    p_jitter interval DEFAULT '25 ms'
) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO qbsync.rate_limits AS r
        (realm_id, per_minute, per_second, in_flight, batch_per_minute,
         minute_window, second_window, safety, jitter)
    VALUES (p_realm_id, p_per_minute, p_per_second, p_in_flight, p_batch_per_minute,
            p_minute_window, p_second_window, p_safety, p_jitter)
    ON CONFLICT (realm_id) DO UPDATE
        SET per_minute = excluded.per_minute, per_second = excluded.per_second,
            in_flight = excluded.in_flight, batch_per_minute = excluded.batch_per_minute,
            minute_window = excluded.minute_window, second_window = excluded.second_window,
            safety = excluded.safety, jitter = excluded.jitter, updated_at = now();
$$;
COMMENT ON FUNCTION qbsync.set_rate_limits IS
    'Sets the QuickBooks request limits of a realm (''*'' = default); NULL = unlimited.';

-- Grants a permit, possibly for a slot a little ahead (wait > 0: sleep, then send), or
-- refuses (permit_id NULL: try again after wait) while the realm is paused after a 429, its
-- in-flight limit is reached, or (a batch) its next batch slot is further ahead than a
-- reservation may reach.
CREATE FUNCTION qbsync.take_permit(
    p_realm_id text,
    p_kind text DEFAULT 'request',
    p_holder text DEFAULT NULL,
    p_hold interval DEFAULT '3 minutes'
) RETURNS TABLE (permit_id uuid, wait interval, starts_at timestamptz)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_cfg qbsync.rate_limits;
    v_state qbsync.rate_state;
    v_now timestamptz;
    v_busy int;
    v_minute interval;         -- each window plus its slack
    v_second interval;
    v_spacing interval;        -- between two plain requests
    v_batch_spacing interval;  -- between two batches (NULL: batches are plain requests)
    v_batching boolean;        -- a batch was granted within the last minute window
    v_lane boolean;            -- this permit is for a batch, in the batch lane
    v_lookahead interval;
    v_slot timestamptz;
    v_id uuid;
BEGIN
    IF p_kind IS NULL OR p_kind NOT IN ('request', 'batch') THEN
        RAISE EXCEPTION 'qbsync.take_permit: kind must be request or batch, not %', p_kind
            USING ERRCODE = '22023';
    END IF;
    SELECT * INTO v_cfg FROM qbsync.rate_limits r WHERE r.realm_id = p_realm_id;
    IF NOT FOUND THEN
        SELECT * INTO v_cfg FROM qbsync.rate_limits r WHERE r.realm_id = '*';
    END IF;

    SELECT * INTO v_state FROM qbsync.rate_state s WHERE s.realm_id = p_realm_id FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO qbsync.rate_state (realm_id) VALUES (p_realm_id) ON CONFLICT DO NOTHING;
        SELECT * INTO v_state FROM qbsync.rate_state s WHERE s.realm_id = p_realm_id FOR UPDATE;
    END IF;
    -- Read the clock after the row lock: time spent waiting for it must not count as spacing.
    v_now := clock_timestamp();

    v_minute := v_cfg.minute_window + GREATEST(v_cfg.minute_window * v_cfg.safety, v_cfg.jitter);
    v_second := v_cfg.second_window + GREATEST(v_cfg.second_window * v_cfg.safety, v_cfg.jitter)
        -- what the last 429s added, fading out over ten minute windows
        + v_cfg.second_window * CASE WHEN v_state.last_throttled_at IS NULL THEN 0::float8 ELSE v_state.extra_slack
            * GREATEST(0, 1 - extract(epoch FROM v_now - v_state.last_throttled_at)
                          / extract(epoch FROM v_cfg.minute_window * 10)) END;
    v_batch_spacing := v_minute / v_cfg.batch_per_minute;
    -- next_batch is the last batch slot + one batch interval
    v_batching := v_batch_spacing IS NOT NULL
        AND v_state.next_batch - v_batch_spacing > v_now - v_cfg.minute_window;
    v_lane := p_kind = 'batch' AND v_batch_spacing IS NOT NULL;
    -- GREATEST ignores NULLs: an unset limit simply does not constrain. While batches run,
    -- plain requests leave them their share of the minute; they always leave the batches
    -- their share of the second window (one batch when batches are over a second apart),
    -- which at 500 a minute costs nothing: a batch may start at any moment without a
    -- second window overflowing.
    -- (an unset limit stays NULL through the subtraction; a share never leaves below 1)
    v_spacing := GREATEST(
        v_minute / (v_cfg.per_minute - CASE WHEN v_batching
            THEN LEAST(v_cfg.batch_per_minute, v_cfg.per_minute - 1) ELSE 0 END),
        v_second / (v_cfg.per_second - CASE WHEN v_batch_spacing IS NOT NULL
            THEN LEAST(ceil(extract(epoch FROM v_cfg.second_window)
                            / extract(epoch FROM v_batch_spacing))::int,
                       v_cfg.per_second - 1) ELSE 0 END));

    IF v_state.paused_until > v_now THEN
        RETURN QUERY SELECT NULL::uuid, v_state.paused_until - v_now, v_state.paused_until;
        RETURN;
    END IF;
    IF v_lane THEN
        v_slot := GREATEST(v_now, v_state.next_batch);
        v_lookahead := LEAST(v_batch_spacing / 2, v_cfg.second_window);
        IF v_slot - v_now > v_lookahead THEN
            -- come back just before the slot (a reservation far ahead would hold an
            -- in-flight place all that time)
            RETURN QUERY SELECT NULL::uuid, v_slot - v_now - v_lookahead, v_slot;
            RETURN;
        END IF;
    END IF;
    IF v_cfg.in_flight IS NOT NULL THEN
        DELETE FROM qbsync.rate_permits p
        WHERE p.realm_id = p_realm_id AND p.expires_at <= v_now;
        SELECT count(*) INTO v_busy FROM qbsync.rate_permits p WHERE p.realm_id = p_realm_id;
        IF v_busy >= v_cfg.in_flight THEN
            -- Nothing tells us when a permit comes back: poll at the pacing interval.
            RETURN QUERY SELECT NULL::uuid,
                GREATEST(coalesce(v_spacing, interval '20 ms'), interval '5 ms'), NULL::timestamptz;
            RETURN;
        END IF;
    END IF;

    IF v_lane THEN
        UPDATE qbsync.rate_state s
        SET next_batch = v_slot + v_batch_spacing,
            granted = s.granted + 1
        WHERE s.realm_id = p_realm_id;
    ELSE
        v_slot := GREATEST(v_now, v_state.next_request);
        UPDATE qbsync.rate_state s
        SET next_request = v_slot + coalesce(v_spacing, interval '0'),
            granted = s.granted + 1
        WHERE s.realm_id = p_realm_id;
    END IF;
    INSERT INTO qbsync.rate_permits AS p (realm_id, kind, holder, starts_at, expires_at)
    VALUES (p_realm_id, p_kind, p_holder, v_slot, v_slot + p_hold)
    RETURNING p.permit_id INTO v_id;
    RETURN QUERY SELECT v_id, v_slot - v_now, v_slot;
END
$$;
COMMENT ON FUNCTION qbsync.take_permit IS
    'Permit for one QuickBooks request of a realm: (permit_id, wait): sleep wait, send, then qbsync.return_permit(permit_id). permit_id NULL = refused, try again after wait.';

CREATE FUNCTION qbsync.return_permit(p_permit_id uuid) RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (DELETE FROM qbsync.rate_permits p WHERE p.permit_id = p_permit_id RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$$;

-- QuickBooks answered 429: every process of the realm stops taking permits until the pause
-- is over (Intuit asks for 60 s), and the second window's slack grows (see the top of this
-- file). Returns the end of the pause.
CREATE FUNCTION qbsync.throttled(p_realm_id text, p_for interval DEFAULT '60 seconds')
RETURNS timestamptz
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_minute_window interval;
    v_now timestamptz := clock_timestamp();
    v_until timestamptz;
BEGIN
    SELECT r.minute_window INTO v_minute_window FROM qbsync.rate_limits r
    WHERE r.realm_id IN (p_realm_id, '*') ORDER BY r.realm_id = '*' LIMIT 1;
    INSERT INTO qbsync.rate_state AS s (realm_id) VALUES (p_realm_id) ON CONFLICT DO NOTHING;
    UPDATE qbsync.rate_state s
    SET paused_until = GREATEST(s.paused_until, v_now + GREATEST(p_for, interval '0')),
        throttles = s.throttles + 1,
        -- several 429s of one burst (requests already on their way) count once
        extra_slack = CASE WHEN s.last_throttled_at > v_now - coalesce(v_minute_window, '1 minute') / 60
                           THEN s.extra_slack
                           ELSE LEAST(0.5, 0.1 + CASE WHEN s.last_throttled_at IS NULL THEN 0::float8 ELSE s.extra_slack
            * GREATEST(0, 1 - extract(epoch FROM v_now - s.last_throttled_at)
                          / extract(epoch FROM coalesce(v_minute_window, '1 minute') * 10)) END)
                      END,
        last_throttled_at = v_now
    WHERE s.realm_id = p_realm_id
    RETURNING s.paused_until INTO v_until;
    RETURN v_until;
END
$$;

CREATE VIEW qbsync.rate_limit_status AS
SELECT s.realm_id,
       l.per_minute,
       l.per_second,
       l.in_flight AS in_flight_limit,
       l.batch_per_minute,
       (SELECT count(*) FROM qbsync.rate_permits p
        WHERE p.realm_id = s.realm_id AND p.expires_at > now()) AS in_flight,
       nullif(s.paused_until, '-infinity') AS paused_until,
       s.paused_until > now() AS paused,
       s.granted,
       s.throttles,
       s.last_throttled_at,
       CASE WHEN s.last_throttled_at IS NULL THEN 0::float8 ELSE s.extra_slack
            * GREATEST(0, 1 - extract(epoch FROM now() - s.last_throttled_at)
                          / extract(epoch FROM l.minute_window * 10)) END AS extra_second_slack
FROM qbsync.rate_state s
LEFT JOIN LATERAL (
    -- the realm's own row, else the defaults (as qbsync.take_permit reads them)
    SELECT * FROM qbsync.rate_limits r
    WHERE r.realm_id IN (s.realm_id, '*')
    ORDER BY r.realm_id = '*'
    LIMIT 1) l ON true;
COMMENT ON VIEW qbsync.rate_limit_status IS
    'QuickBooks request pacing per realm: limits, requests in flight, 429 pause, permits granted and 429s seen since the last restart of PostgreSQL, and the extra slack (fraction of the second window) the last 429s left.';
