-- Every state change the daemon makes is a function call: the writes it still made as plain
-- statements become functions, and the token refresh lock, spelled by the daemon, by
-- `qbsync disconnect` and by `qbsync rotate-key`, is one function with one key.
--
--   qbsync.refresh_lock(realm, mode)           the refresh lock of a realm's tokens: 'session'
--                                              (the daemon's refresh, disconnect), 'transaction'
--                                              (rotate-key) or 'release' (of a session lock)
--   qbsync.heartbeat(worker)                   a daemon is alive
--   qbsync.save_cdc_cursor(realm, since, error) how far drift detection has read
--   qbsync.free_abandoned_permits(realm, holder) a restarted daemon frees the rate-limit
--                                              permits its killed predecessor held
--
-- The lock's key is the one earlier releases spelled in their queries, unchanged.

CREATE FUNCTION qbsync.refresh_lock(p_realm_id text, p_mode text DEFAULT 'session')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key bigint := hashtext('qbsync.refresh:' || p_realm_id);
BEGIN
    CASE p_mode
        WHEN 'session' THEN
            PERFORM pg_advisory_lock(v_key);
        WHEN 'transaction' THEN
            PERFORM pg_advisory_xact_lock(v_key);
        WHEN 'release' THEN
            RETURN pg_advisory_unlock(v_key);
        ELSE
            RAISE EXCEPTION 'qbsync.refresh_lock: mode % is none of session, transaction, release',
                quote_literal(p_mode);
    END CASE;
    RETURN true;
END
$$;
COMMENT ON FUNCTION qbsync.refresh_lock(text, text) IS
    'The lock under which a realm''s tokens are refreshed, revoked or re-encrypted: ''session'' takes it until released (no transaction stays open during the HTTP call), ''transaction'' until the transaction ends, ''release'' gives a session lock back (false when it was not held). Waits; lock_timeout applies.';

CREATE FUNCTION qbsync.heartbeat(p_worker_id text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE qbsync.workers SET heartbeat_at = now() WHERE worker_id = p_worker_id;
$$;
COMMENT ON FUNCTION qbsync.heartbeat(text) IS
    'A running daemon says it is alive (every few seconds; qbsync migrate and rotate-key look at it).';

CREATE FUNCTION qbsync.save_cdc_cursor(p_realm_id text, p_changed_since timestamptz,
                                       p_last_error text DEFAULT NULL) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO qbsync.cdc_cursors AS c (realm_id, changed_since, polled_at, last_error)
    VALUES (p_realm_id, p_changed_since, now(), p_last_error)
    ON CONFLICT (realm_id) DO UPDATE
        SET changed_since = excluded.changed_since, polled_at = excluded.polled_at,
            last_error = excluded.last_error;
$$;
COMMENT ON FUNCTION qbsync.save_cdc_cursor(text, timestamptz, text) IS
    'Drift detection has compared QuickBooks'' changes up to p_changed_since for the realm.';

CREATE FUNCTION qbsync.free_abandoned_permits(p_realm_id text, p_holder text) RETURNS int
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH gone AS (
        DELETE FROM qbsync.rate_permits p
        WHERE p.realm_id = p_realm_id AND p.holder = p_holder
        RETURNING 1)
    SELECT count(*)::int FROM gone;
$$;
COMMENT ON FUNCTION qbsync.free_abandoned_permits(text, text) IS
    'At a daemon''s start: frees the rate-limit permits still held under its name (a killed process of that name left them; until their hold ran out they would count as in flight for every process of the realm). Returns how many.';

REVOKE ALL ON FUNCTION qbsync.refresh_lock(text, text), qbsync.heartbeat(text),
    qbsync.save_cdc_cursor(text, timestamptz, text),
    qbsync.free_abandoned_permits(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION qbsync.refresh_lock(text, text), qbsync.heartbeat(text),
    qbsync.save_cdc_cursor(text, timestamptz, text),
    qbsync.free_abandoned_permits(text, text) TO qbsync_daemon;
