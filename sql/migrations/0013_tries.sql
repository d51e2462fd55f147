-- Tries and interruptions counted apart. A try is spent when an attempt ends in a recorded
-- failure; an attempt cut off by a daemon that stopped (killed, restarted under its name,
-- or stopped before the push finished) spends none: it is an interruption, counted on its
-- own and bounded by the setting max_interruptions, so that a row which crashes its daemon
-- cannot loop forever. The count runs until an attempt of the row ends with an outcome
-- recorded (a failure: the row did not stop its daemon then), so that the rows a daemon
-- happened to hold when it was killed now and then do not add up to the bound. An
-- interrupted attempt's outcome is unknown, like a timeout's: the row remembers that
-- QuickBooks may hold its object (outcome_unknown), the next attempt looks the object up
-- before creating it, and before such a row goes dead one more attempt only looks it up
-- and adopts what QuickBooks has (lookup_due).
--
-- attempts keeps its meaning while a row runs: the number of the try under way. The claim
-- counts it, and every way an attempt ends without a recorded failure gives it back: a
-- success removes the row, a throttle or a refused token refunds it (qbsync.fail), an
-- expired lease is taken again under the same number (qbsync.claim), a release or a
-- restart refunds it (qbsync.interrupt).

ALTER TABLE qbsync.outbox
    ADD COLUMN interruptions int NOT NULL DEFAULT 0,
    ADD COLUMN outcome_unknown boolean NOT NULL DEFAULT false,
    ADD COLUMN lookup_due boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN qbsync.outbox.attempts IS
    'tries: the number of the try under way while running, else the tries spent (attempts that ended in a recorded failure); retry_dead starts again from 0';
COMMENT ON COLUMN qbsync.outbox.interruptions IS
    'attempts cut off by a daemon that stopped (kill, restart, stop before the push finished) since the row''s last recorded outcome: no try spent; at max_interruptions the row is looked up in QuickBooks and goes dead';
COMMENT ON COLUMN qbsync.outbox.outcome_unknown IS
    'an attempt may have reached QuickBooks without qbsync learning its outcome (a lost answer, a timeout, an interruption): every later attempt looks the object up before creating it, retry_dead included';
COMMENT ON COLUMN qbsync.outbox.lookup_due IS
    'the row would have gone dead after an attempt whose outcome is unknown: the next attempt only looks QuickBooks up, adopts what is there, or else lets the row go dead';

-- Under the old accounting a try was counted at the claim, so a row past its first try may
-- have reached QuickBooks; so may a running row (its daemon stopped to be upgraded) and a
-- dead one (its history is not known).
UPDATE qbsync.outbox SET outcome_unknown = true
WHERE attempts > 1 OR state <> 'pending';

INSERT INTO qbsync.settings (name, value, description) VALUES
    ('max_interruptions', '20',
     'a row whose push was cut off this many times in a row by a stopping daemon (a row that crashes it) is looked up in QuickBooks, then goes dead: "the daemon stopped N times while pushing this row". Every row a daemon holds when it dies counts one: the bound is well above what kills and restarts cost a healthy row')
ON CONFLICT (name) DO NOTHING;

CREATE FUNCTION qbsync.max_interruptions() RETURNS int
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT coalesce((qbsync.setting('max_interruptions'))::int, 20) $$;

-- What the p_times-th interruption of a row means: NULL below the bound; 'interrupted' at
-- or past it (the row is looked up in QuickBooks, then goes dead); 'interrupted-lookup'
-- past it when the attempt cut off was that lookup (the daemon stops even there: dead
-- without another lookup). Becomes the row's last_error_code.
CREATE FUNCTION qbsync.interruption_verdict(p_times int, p_lookup_due boolean) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN p_times < qbsync.max_interruptions() THEN NULL
                WHEN p_lookup_due AND p_times > qbsync.max_interruptions() THEN 'interrupted-lookup'
                ELSE 'interrupted' END
$$;

-- The last_error of a row at its interruption bound (its dead row's message).
CREATE FUNCTION qbsync.interruption_message(p_entity text, p_key text, p_times int,
                                            p_verdict text) RETURNS text
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT format('%s %s: the daemon stopped %s times while pushing this row', p_entity, p_key,
                  p_times)
        || CASE WHEN p_verdict = 'interrupted-lookup'
                THEN ', the last time while looking it up in QuickBooks (not looked up again: '
                     'look for it there before retry_dead)'
                ELSE '' END
$$;

-- Claims up to p_limit ready rows for p_worker: pending rows whose time has come (oldest
-- first) and running rows whose lease expired (a killed daemon's). A pending row whose key
-- is running elsewhere waits: two rows of one key are never in flight together. A pending
-- row's try is counted here (attempts: the try under way; qbsync.fail gives it back when
-- the attempt ends in a throttle or a refused token). An expired lease is an interruption,
-- not a try: the row is taken again under the same try, the interruption counted apart
-- (qbsync.interruption_verdict: at the bound, the row is only looked up before going dead),
-- and its outcome is unknown.
--
-- A running row's next_attempt_at is its lease expiry (kept equal by claim and
-- extend_leases): the time from which it may be attempted again. So expired leases are a
-- range of the (state, next_attempt_at, id) index, and a claim never reads the index
-- entries of rows finished since the last VACUUM (a drain leaves one per row; read through
-- a bitmap scan on state alone, every claim paid for all of them).
-- PL/pgSQL: plans cached for the session (see collect_changes). Every read of the outbox
-- goes through an index, whatever the statistics said when the plan was made (an outbox
-- analysed while empty, then a burst): enable_seqscan is off for this function's plans,
-- the key probe stays a subplan, and the UPDATE finds its rows by ctid = ANY(ARRAY(...)),
-- not by a join (see the query; measured with auto_explain in bench/throughput.py's
-- invoices phase, after an idle daemon had cached its plans). jit off: the
-- sequential scan collect_changes cannot avoid (qbsync.changes has no index) is costed as
-- disabled, which would otherwise compile it at every claim.
CREATE OR REPLACE FUNCTION qbsync.claim(p_worker text, p_limit int, p_lease interval)
RETURNS SETOF qbsync.outbox
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
BEGIN
    PERFORM qbsync.collect_changes(greatest(p_limit * 100, 1000));
    -- a second statement: it sees the rows the first one queued
    RETURN QUERY
    WITH ready AS (
        SELECT o.ctid FROM qbsync.outbox o
        WHERE o.state = 'pending' AND o.next_attempt_at <= now()
          -- A probe of outbox_key_state on (entity, key) for each candidate. OFFSET 0 keeps
          -- it a subplan run with the candidate's values: as an anti join, a plan made
          -- while the outbox was empty (an idle daemon's) joined every candidate against a
          -- whole scan of that index, 14 of a claim's 18 ms in a burst. state::text: not
          -- an index condition either, so no plan reads all running rows through the state
          -- index (the entry of every row finished since the last VACUUM).
          AND NOT EXISTS (SELECT 1 FROM qbsync.outbox r
                          WHERE r.entity = o.entity AND r.key = o.key
                            AND r.state::text = 'running'
                          OFFSET 0)
        ORDER BY o.next_attempt_at, o.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), expired AS (
        SELECT o.ctid FROM qbsync.outbox o
        WHERE o.state = 'running' AND o.next_attempt_at < now() AND o.lease_expires_at < now()
        ORDER BY o.next_attempt_at, o.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    ), picked AS (
        SELECT ctid FROM expired UNION ALL SELECT ctid FROM ready LIMIT p_limit
    ), claimed AS (
        -- by ctid (the rows are locked above, so it cannot change): a TID scan, where
        -- id = ANY(...) was once planned as a whole scan of outbox_state_time.
        -- o.state is the row's state before this UPDATE: 'running' = an expired lease.
        UPDATE qbsync.outbox o
        SET state = 'running', lease_owner = p_worker, lease_expires_at = now() + p_lease,
            next_attempt_at = now() + p_lease,
            attempts = o.attempts + CASE WHEN o.state = 'running' THEN 0 ELSE 1 END,
            interruptions = o.interruptions + CASE WHEN o.state = 'running' THEN 1 ELSE 0 END,
            outcome_unknown = o.outcome_unknown OR o.state = 'running',
            -- the verdict is only asked of an expired lease (a CASE evaluates lazily)
            lookup_due = CASE WHEN o.state = 'running'
                              THEN o.lookup_due OR qbsync.interruption_verdict(
                                       o.interruptions + 1, o.lookup_due) IS NOT NULL
                              ELSE o.lookup_due END,
            last_error_code = CASE WHEN o.state = 'running'
                                   THEN coalesce(qbsync.interruption_verdict(
                                            o.interruptions + 1, o.lookup_due), o.last_error_code)
                                   ELSE o.last_error_code END,
            last_error = CASE WHEN o.state <> 'running' THEN o.last_error
                              WHEN qbsync.interruption_verdict(o.interruptions + 1, o.lookup_due)
                                   IS NULL THEN o.last_error
                              ELSE qbsync.interruption_message(o.entity, o.key, o.interruptions + 1,
                                       qbsync.interruption_verdict(o.interruptions + 1,
                                                                   o.lookup_due)) END,
            last_attempt_at = now(),
            request_id = coalesce(o.request_id, gen_random_uuid())
        WHERE o.ctid = ANY (ARRAY(SELECT ctid FROM picked))
        RETURNING o.*
    )
    SELECT * FROM claimed;
END
$$;

-- A running row's push was cut off by its daemon stopping (a release at shutdown, a
-- restart under the same worker name): what the claim does for an expired lease, then the
-- row goes back to pending with its try given back. It keeps its place in the queue, as an
-- expired lease is taken before anything else: put at the back, the rows a killed daemon
-- held were claimed last by its successor, into the batches still under way at the next
-- kill, and cut off again and again. Its push may have been cut off after QuickBooks
-- applied it: the next push of the key must not be skipped as unchanged.
CREATE FUNCTION qbsync.interrupt(p_row qbsync.outbox) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_verdict text := qbsync.interruption_verdict(p_row.interruptions + 1, p_row.lookup_due);
BEGIN
    UPDATE qbsync.outbox
    SET interruptions = interruptions + 1, outcome_unknown = true,
        lookup_due = lookup_due OR v_verdict IS NOT NULL,
        last_error_code = coalesce(v_verdict, last_error_code),
        last_error = CASE WHEN v_verdict IS NOT NULL
                          THEN qbsync.interruption_message(entity, key, interruptions + 1, v_verdict)
                          ELSE last_error END
    WHERE id = p_row.id;
    PERFORM qbsync.requeue(p_row, least(p_row.enqueued_at, now()), 1, NULL, NULL);
    UPDATE qbsync.entity_map SET body_hash = NULL
    WHERE entity = p_row.entity AND key = p_row.key AND body_hash IS NOT NULL;
END
$$;

-- A stopping daemon hands back what it holds: an interruption (qbsync.interrupt), no try.
CREATE OR REPLACE FUNCTION qbsync.release(p_worker text, p_ids bigint[] DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row qbsync.outbox;
    v_count int := 0;
BEGIN
    FOR v_row IN
        SELECT * FROM qbsync.outbox
        WHERE state = 'running' AND lease_owner = p_worker
          AND (p_ids IS NULL OR id = ANY (p_ids))
        FOR UPDATE
    LOOP
        PERFORM qbsync.interrupt(v_row);
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

-- Daemon registry: heartbeats, and the workers table cleaned of daemons long gone.
CREATE OR REPLACE FUNCTION qbsync.register_worker(p_worker text, p_hostname text, p_pid int)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM qbsync.workers WHERE heartbeat_at < now() - interval '1 hour';
    -- A daemon restarted under the same name: what its predecessor held is free at once,
    -- as interruptions (no try spent; the next attempt looks the object up before
    -- creating it, since the cut-off push may have reached QuickBooks).
    SELECT qbsync.interrupt(o)
    FROM qbsync.outbox o WHERE o.state = 'running' AND o.lease_owner = p_worker;
    INSERT INTO qbsync.workers (worker_id, hostname, pid) VALUES (p_worker, p_hostname, p_pid)
    ON CONFLICT (worker_id) DO UPDATE
        SET hostname = excluded.hostname, pid = excluded.pid, started_at = now(),
            heartbeat_at = now(), waiting_until = NULL;
    SELECT qbsync.publish_waiting();
$$;

-- A push failed. p_error: kind, message, code, operation, response_time_ms, retry_after,
-- and what the daemon knows of QuickBooks' side:
--   unknown: this attempt may have changed QuickBooks without learning how (a write whose
--        answer was lost): the row's outcome_unknown is set, later attempts look it up;
--   unsettled: QuickBooks may hold this row's object without qbsync knowing (this
--        attempt's outcome is unknown, or an earlier one's and this one did not look).
-- Kinds:
--   kind 'throttled' | 'auth' | 'paused' | 'waiting': not the row's fault (a throttle, a
--        token, a company to reconnect, a transaction it refers to not pushed yet); no try
--        spent (the claim's is given back), back after retry_after seconds.
--   kind 'retry': transient; the try is spent; back after the entity's backoff, or dead
--        when out of tries.
--   kind 'permanent': a retry cannot fix it (validation, unmappable data): dead at once.
-- A row that would go dead while unsettled does not, yet: it goes back (at once) with
-- lookup_due, and its next attempt only looks QuickBooks up, adopting what is there
-- (sync.py, Pusher.final_lookup); that attempt's verdict is recorded here too (dead: its
-- message after the error that made it due). Failed lookups are retried on the entity's
-- last backoff, as many as it has tries; then the row goes dead saying QuickBooks may hold
-- it. A recorded outcome ends the row's run of interruptions (it did not stop its daemon
-- this time). Dead resets lookup_due too (retry_dead starts afresh); outcome_unknown stays,
-- so that a retried row looks the object up before creating it.
-- Returns the row's new state ('pending' or 'dead'), or 'lost' if the lease was lost.
CREATE OR REPLACE FUNCTION qbsync.fail(p_id bigint, p_worker text, p_realm text, p_error jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row qbsync.outbox;
    v_entity qbsync.entities;
    v_kind text := coalesce(p_error->>'kind', 'retry');
    v_message text := coalesce(p_error->>'message', 'unknown error');
    v_code text := p_error->>'code';
    v_unknown boolean := coalesce((p_error->>'unknown')::boolean, false);
    v_unsettled boolean := coalesce((p_error->>'unsettled')::boolean, false);
    v_now timestamptz := clock_timestamp();
    v_free boolean := v_kind IN ('throttled', 'auth', 'paused', 'waiting');
    v_tries int;
    v_dead boolean;
    v_lookup boolean := false;
    v_delay interval;
BEGIN
    v_row := qbsync.held(p_id, p_worker);
    IF v_row.id IS NULL THEN
        RETURN 'lost';
    END IF;
    -- A failed try may still have changed the object (a timeout after QuickBooks applied
    -- it): the next push of this key must not be skipped as unchanged.
    UPDATE qbsync.entity_map SET body_hash = NULL
    WHERE realm_id = p_realm AND entity = v_row.entity AND key = v_row.key
      AND body_hash IS NOT NULL;
    SELECT * INTO v_entity FROM qbsync.entities WHERE entity = v_row.entity;
    v_tries := coalesce(v_entity.max_attempts, 3);
    IF v_kind = 'waiting' AND v_row.enqueued_at
            < now() - make_interval(secs => coalesce((qbsync.setting('max_wait_seconds'))::int, 86400)) THEN
        -- It has waited long enough: what it waits for is not coming by itself.
        v_kind := 'permanent';
        v_free := false;
        v_message := v_message || format(' (waited since %s; resync what it waits for, then retry_dead)',
                                         v_row.enqueued_at);
    END IF;
    v_dead := v_kind = 'permanent' OR (v_kind = 'retry' AND v_row.attempts >= v_tries);
    IF v_dead AND v_unsettled THEN
        IF v_row.attempts < 2 * v_tries THEN
            -- not before QuickBooks has been asked: the next attempt looks it up
            v_dead := false;
            v_lookup := true;
        ELSE
            v_message := format('%s; QuickBooks could not be looked up before giving up, so it '
                                'may hold %s %s already: look for it there before retry_dead',
                                v_message, v_row.entity, v_row.key);
        END IF;
    END IF;
    IF v_dead AND v_row.lookup_due THEN
        -- the final lookup's verdict, after the error that made it due
        v_message := concat_ws('; ', v_row.last_error, v_message);
        v_code := coalesce(v_row.last_error_code, v_code);
    END IF;
    IF v_free THEN
        v_delay := make_interval(secs => coalesce((p_error->>'retry_after')::float8, 60));
    ELSIF v_lookup THEN
        -- at once the first time (usually an answer lost on its way back); after a failed
        -- lookup, on the entity's last backoff
        v_delay := CASE WHEN v_row.lookup_due
                        THEN make_interval(secs => coalesce(v_entity.backoff_seconds[
                                 cardinality(v_entity.backoff_seconds)], 60))
                        ELSE interval '0' END;
    ELSIF NOT v_dead THEN
        v_delay := make_interval(secs => coalesce(
            v_entity.backoff_seconds[least(v_row.attempts, cardinality(v_entity.backoff_seconds))],
            60));
    END IF;

    IF v_dead THEN
        -- One dead row per key: this failure supersedes an older one.
        DELETE FROM qbsync.outbox
        WHERE entity = v_row.entity AND key = v_row.key AND state = 'dead';
        UPDATE qbsync.outbox
        SET state = 'dead', lease_owner = NULL, lease_expires_at = NULL,
            last_error = v_message, last_error_code = v_code,
            outcome_unknown = outcome_unknown OR v_unknown,
            interruptions = 0, lookup_due = false
        WHERE id = p_id;
    ELSE
        PERFORM qbsync.requeue(v_row, v_now + v_delay,
                               CASE WHEN v_free THEN 1 ELSE 0 END, v_message, v_code);
        IF v_unknown OR v_lookup OR v_row.interruptions > 0 THEN
            UPDATE qbsync.outbox
            SET outcome_unknown = outcome_unknown OR v_unknown OR v_lookup,
                lookup_due = lookup_due OR v_lookup, interruptions = 0
            WHERE id = p_id;
        END IF;
    END IF;

    PERFORM qbsync.log(coalesce(p_error->>'operation', 'push'), v_row.entity, v_row.key,
        -- a row waiting for another one's push has not failed: logged as information
        CASE WHEN v_dead THEN 'dead' WHEN v_kind = 'waiting' THEN 'info' ELSE 'retry' END,
        p_realm,
        (p_error - '{kind,unsettled}'::text[]) || jsonb_build_object(
            'message', v_message, 'code', v_code,
            'attempt', v_row.attempts, 'request_id', v_row.request_id, 'kind', v_kind,
            'next_attempt_at', CASE WHEN v_dead THEN NULL ELSE v_now + v_delay END)
        || CASE WHEN v_lookup THEN '{"lookup_due": true}'::jsonb ELSE '{}' END
        || CASE WHEN v_row.interruptions > 0
                THEN jsonb_build_object('interruptions', v_row.interruptions) ELSE '{}' END,
        p_worker);

    IF v_free THEN
        RETURN 'pending';  -- the shop row's state does not change for a throttle
    END IF;
    PERFORM qbsync.write_back(v_row.entity, v_row.key, jsonb_build_object(
        'realm_id', p_realm, 'status', CASE WHEN v_dead THEN 'failed' ELSE 'pending' END,
        'error', v_message, 'attempted_at', v_now));
    IF v_dead THEN
        PERFORM pg_notify('qbsync_events', jsonb_build_object(
            'event', 'sync.failed.critical', 'entity', v_row.entity, 'key', v_row.key,
            'error', left(v_message, 2000), 'code', v_code,
            'attempts', v_row.attempts, 'failed_at', v_now)::text);
        RETURN 'dead';
    END IF;
    RETURN 'pending';
END
$$;

-- A push succeeded: record it and remove the row (and any dead row of the same key,
-- which this push supersedes). False if the lease was lost. The log row names the try
-- (attempt) and, when there were any, the interruptions it took.
CREATE OR REPLACE FUNCTION qbsync.complete(p_id bigint, p_worker text, p_realm text,
                                           p_result jsonb, p_guarded boolean DEFAULT true)
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row qbsync.outbox;
BEGIN
    v_row := qbsync.held(p_id, p_worker);
    IF v_row.id IS NULL THEN
        RETURN false;
    END IF;
    PERFORM qbsync.record_success(p_realm, v_row.entity, v_row.key,
        p_result || jsonb_build_object('request_id', v_row.request_id, 'attempt', v_row.attempts)
        || CASE WHEN v_row.interruptions > 0
                THEN jsonb_build_object('interruptions', v_row.interruptions) ELSE '{}' END,
        p_worker, p_guarded);
    -- two statements, each an index lookup (an OR of the two may be planned as a scan)
    DELETE FROM qbsync.outbox WHERE id = p_id;
    DELETE FROM qbsync.outbox
    WHERE entity = v_row.entity AND key = v_row.key AND state = 'dead';
    RETURN true;
END
$$;

-- Many outcomes in one transaction (one commit instead of one per row): p_items is an
-- array of {"id": …, "result": {…}} (pushed) or {"id": …, "skip": "reason"} (skipped;
-- logged as operation 'skip', or as the item's "operation", e.g. 'skip.unchanged').
-- Returns the ids whose lease was lost (their outcome was not recorded). Set-based: the
-- lease check, the records and the deletes are a few statements for the whole group. The
-- statements on the outbox are planned for each call (EXECUTE): a plan cached while the
-- outbox was small would scan it whole once a large backlog has built up. A pushed row's
-- log names its try and its interruptions, as qbsync.complete's does.
CREATE OR REPLACE FUNCTION qbsync.complete_many(p_worker text, p_realm text, p_items jsonb)
RETURNS bigint[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ids bigint[] := ARRAY(SELECT (i->>'id')::bigint FROM jsonb_array_elements(p_items) AS i);
    v_held jsonb;      -- {"<id>": {entity, key, request_id, attempts[, interruptions]}} held
    v_pushed jsonb;
BEGIN
    EXECUTE
        'SELECT coalesce(jsonb_object_agg(h.id, jsonb_build_object(
                    ''entity'', h.entity, ''key'', h.key, ''request_id'', h.request_id,
                    ''attempts'', h.attempts)
                    || CASE WHEN h.interruptions > 0
                            THEN jsonb_build_object(''interruptions'', h.interruptions)
                            ELSE ''{}'' END), ''{}'')
         FROM (SELECT o.id, o.entity, o.key, o.request_id, o.attempts, o.interruptions
               FROM qbsync.outbox o
               WHERE o.id = ANY ($1) AND o.state = ''running'' AND o.lease_owner = $2
               ORDER BY o.id
               FOR UPDATE) AS h'
        INTO v_held USING v_ids, p_worker;

    SELECT jsonb_agg(jsonb_build_object(
               'entity', h->>'entity', 'key', h->>'key',
               'result', (i->'result') || jsonb_build_object('request_id', h->'request_id',
                                                             'attempt', h->'attempts')
                         || CASE WHEN h ? 'interruptions'
                                 THEN jsonb_build_object('interruptions', h->'interruptions')
                                 ELSE '{}' END)
               ORDER BY n)
    INTO v_pushed
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(i, n)
    CROSS JOIN LATERAL (SELECT v_held->(i->>'id')) AS x(h)
    WHERE h IS NOT NULL AND i ? 'result';
    IF v_pushed IS NOT NULL THEN
        PERFORM qbsync.record_successes(p_realm, v_pushed, p_worker, false);
    END IF;

    -- skipped rows: what qbsync.skip logs
    INSERT INTO qbsync.integration_logs
        (operation, model_type, model_id, status, error_message, request_id, realm_id,
         attempt, actor)
    SELECT coalesce(i->>'operation', 'skip'), h->>'entity', h->>'key', 'skipped', i->>'skip',
           (h->>'request_id')::uuid,
           p_realm, (h->>'attempts')::int, p_worker
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS t(i, n)
    CROSS JOIN LATERAL (SELECT v_held->(i->>'id')) AS x(h)
    WHERE h IS NOT NULL AND i ? 'skip'
    ORDER BY n;

    -- the rows done, and any dead row of a pushed key (this push supersedes it)
    EXECUTE 'DELETE FROM qbsync.outbox WHERE id = ANY ($1)'
        USING ARRAY(SELECT k::bigint FROM jsonb_object_keys(v_held) AS k);
    IF v_pushed IS NOT NULL THEN
        EXECUTE
            'DELETE FROM qbsync.outbox o
             USING jsonb_to_recordset($1) AS p(entity text, key text)
             WHERE o.entity = p.entity AND o.key = p.key AND o.state = ''dead'''
            USING v_pushed;
    END IF;

    RETURN ARRAY(SELECT id FROM unnest(v_ids) AS id WHERE NOT v_held ? id::text);
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA qbsync FROM PUBLIC;
GRANT EXECUTE ON FUNCTION
    qbsync.max_interruptions(), qbsync.interruption_verdict(int, boolean),
    qbsync.interruption_message(text, text, int, text), qbsync.interrupt(qbsync.outbox)
    TO qbsync_daemon;
