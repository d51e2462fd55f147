-- announce_waiting's snapshot lists only transactions that started before the announcing one.
--
-- The snapshot it returns ends at the announcing transaction's own id (xmax); its list of
-- open transactions was taken from pg_current_snapshot(), which also names transactions that
-- got their id after ours and were still running. An id at or past xmax is not valid in a
-- pg_snapshot's list, so on a busy server the announcement failed ("invalid input syntax for
-- type pg_snapshot") and the daemon fell back to polling. Those later transactions need no
-- listing: xmax already counts everything from our id on as not yet visible.

CREATE OR REPLACE FUNCTION qbsync.announce_waiting(p_worker_id text, p_for interval)
RETURNS pg_snapshot
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_snap pg_snapshot;
    v_self xid8;
    v_open text;
BEGIN
    UPDATE qbsync.workers
    SET waiting_until = CASE WHEN (qbsync.setting('wakeup_notify'))::boolean
                             THEN clock_timestamp() + p_for END,
        heartbeat_at = clock_timestamp()
    WHERE worker_id = p_worker_id;
    PERFORM qbsync.publish_waiting();   -- seen by every transaction from here on
    v_self := pg_current_xact_id();
    v_snap := pg_current_snapshot();
    -- Every transaction that may still be open and started before this one: the
    -- snapshot's in-progress list below our own id, plus ids assigned between its xmax and
    -- our own id.
    SELECT string_agg(x::text, ',' ORDER BY x::text::bigint) INTO v_open
    FROM (SELECT x FROM pg_snapshot_xip(v_snap) AS x WHERE x < v_self
          UNION
          SELECT s::text::xid8
          FROM generate_series(pg_snapshot_xmax(v_snap)::text::bigint,
                               v_self::text::bigint - 1) AS s) AS open_xids;
    RETURN format('%s:%s:%s', least(pg_snapshot_xmin(v_snap), v_self), v_self,
                  coalesce(v_open, ''))::pg_snapshot;
END
$$;
