-- No escalation through qbsync's functions.
--
-- qbsync's objects belong to qbsync_owner, a NOLOGIN role without members that
-- `qbsync migrate` creates (a superuser owned them, so every SECURITY DEFINER function ran as
-- a superuser). migrate hands every object of schemas qbsync and qbsync_capture, and the
-- schemas qbsync, qbsync_capture and qbsync_map themselves, to qbsync_owner after each
-- migration and at the end of each run (qbsync.reassert_ownership(), below), so objects that
-- later migrations, track() or maintain_log_partitions create end up there too.
--
-- A SECURITY DEFINER function runs with its owner's rights, so it must not run code, or read
-- relations, that a role other than its owner can change. The mapping functions
-- (qbsync_map) are written by the shop's DBA and read the shop's tables, which the shop's
-- roles own: whoever owns such a table can put a view in its place whose WHERE calls their
-- own function, or a trigger on it, and that code runs as whoever reads the table. So the
-- mapping functions now run only with the rights of the role that calls qbsync: the
-- daemon's login role (push, write-back, reports, reconciliation: as before), a qbsync_admin
-- member (resync, resync_many, sync_all_customers, sync_catalog, resolve_drift) or a
-- qbsync_reader member (the dashboard's orders without an invoice). Each admin function
-- that called mapping code is split in two: the part that calls the mapping runs as the
-- caller, and a SECURITY DEFINER part that reads and writes only qbsync's own tables does
-- the queueing, the logging and the state change.
--
-- Audit of 0001-0006 (every SECURITY DEFINER function; every function that EXECUTEs SQL
-- naming a qbsync_map function; every view):
--   SECURITY DEFINER, own tables and catalogs only (kept): snapshot_settled, collect_changes,
--     backlog, count_log_rows, count_log_row, count_map_rows, count_map_row, fold_stats,
--     rebuild_stats, raise_notice, close_notices, notice_dead_row, settle_dead_row,
--     notice_connection, acknowledge, acknowledge_all, request, request_report (both),
--     request_connection_test, retry_dead, xmin_holders, request_reconcile, reconcile_fix
--   SECURITY DEFINER and calling mapping code (split): dashboard_row (_unsynced_count),
--     resync/resync_many (_key_exists, _keys), sync_all_customers/sync_catalog (_keys),
--     resolve_drift (_outcome)
--   SECURITY DEFINER with a temporary table the caller could create first, with a trigger
--     on it (run as the owner): maintain_log_partitions. It holds moved rows in a variable
--     now, runs as its caller, and the daemon calls qbsync.rotate_logs() (settings only: a
--     daemon could pass retention_months => 0 and drop the audit log)
--   SECURITY DEFINER without needing it: reconcile(run_id) (admins read the table anyway)
--   invoker, mapping code run as the daemon (unchanged): map, map_many, map_dependencies,
--     write_back, record_successes, store_report (_revenue), shop_ledger (_ledger)
--   views: only qbsync's tables and the functions above; qbsync.dashboard becomes
--     security_invoker (it reads no table itself: dashboard_row and unsynced_orders do)

DO $$
BEGIN
    IF to_regrole('qbsync_owner') IS NULL THEN
        RAISE EXCEPTION 'qbsync: role qbsync_owner does not exist'
            USING HINT = 'Apply migrations with `qbsync migrate`, which creates it.';
    END IF;
END
$$;

-- Ownership ----------------------------------------------------------------------------------

-- What qbsync's ownership covers, with each object's owner: the schemas qbsync,
-- qbsync_capture and qbsync_map, and every object of the first two (found through its
-- dependency on its schema, so every kind is covered: tables and their partitions, views,
-- sequences, functions, types...). qbsync_map's functions are the DBA's.
CREATE FUNCTION qbsync.owned_objects()
RETURNS TABLE (kind text, identity text, owner oid, is_sequence boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'SCHEMA', quote_ident(n.nspname), n.nspowner, false
    FROM pg_namespace n WHERE n.nspname IN ('qbsync', 'qbsync_capture', 'qbsync_map')
    UNION ALL
    SELECT CASE o.type WHEN 'composite type' THEN 'TYPE' ELSE upper(o.type) END, o.identity,
           coalesce((SELECT s.refobjid FROM pg_shdepend s
                     WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                       AND s.classid = d.classid AND s.objid = d.objid AND s.objsubid = 0
                       AND s.deptype = 'o'),
                    10),   -- the bootstrap superuser's objects have no owner entry
           o.type = 'sequence'
    FROM pg_depend d
    CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, 0) AS o
    WHERE d.refclassid = 'pg_namespace'::regclass AND d.deptype = 'n'
      AND d.refobjid IN (SELECT oid FROM pg_namespace WHERE nspname IN ('qbsync', 'qbsync_capture'))
$$;

-- Hands everything qbsync.owned_objects() lists to qbsync_owner; returns what it changed. An
-- object owned by a role that is neither a superuser nor the role running this (the one that
-- installs qbsync) is refused, not adopted: adopting a stranger's SECURITY DEFINER function
-- would give it qbsync_owner's rights. `qbsync migrate` calls it after every migration and
-- at the end of every run; track() may call it after generating functions. Needs a
-- superuser, or a member of qbsync_owner that owns the objects (ALTER ... OWNER's rules).
CREATE FUNCTION qbsync.reassert_ownership() RETURNS SETOF text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_owner oid := to_regrole('qbsync_owner');
    v_me oid := (SELECT oid FROM pg_roles WHERE rolname = current_user);
    v_strangers text;
    r record;
BEGIN
    IF v_owner IS NULL THEN
        RAISE EXCEPTION 'qbsync: role qbsync_owner does not exist'
            USING HINT = 'Run `qbsync migrate`, which creates it.';
    END IF;
    SELECT string_agg(format('%s %s (owned by %s)', x.kind, x.identity, x.owner::regrole), ', ')
    INTO v_strangers
    FROM qbsync.owned_objects() x
    WHERE x.owner NOT IN (v_owner, v_me)
      AND NOT (SELECT a.rolsuper FROM pg_roles a WHERE a.oid = x.owner);
    IF v_strangers IS NOT NULL THEN
        RAISE EXCEPTION 'qbsync: objects in qbsync''s schemas belong to roles that did not install qbsync: %', v_strangers
            USING HINT = 'Inspect them: drop them, or give them to qbsync_owner yourself (ALTER ... OWNER TO qbsync_owner), then migrate again.';
    END IF;
    -- schemas first; tables before sequences: an identity sequence follows its table
    FOR r IN SELECT * FROM qbsync.owned_objects() x
             WHERE x.owner <> v_owner ORDER BY x.kind <> 'SCHEMA', x.is_sequence, x.kind, x.identity
    LOOP
        CONTINUE WHEN r.is_sequence AND EXISTS (
            SELECT 1 FROM pg_class c WHERE c.oid = r.identity::regclass AND c.relowner = v_owner);
        EXECUTE format('ALTER %s %s OWNER TO qbsync_owner', r.kind, r.identity);
        RETURN NEXT r.kind || ' ' || r.identity;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION qbsync.reassert_ownership() IS
    'Gives every object of schemas qbsync and qbsync_capture (and the schemas qbsync, qbsync_capture, qbsync_map) to role qbsync_owner; refuses objects of roles that did not install qbsync. Returns what changed. qbsync migrate runs it.';

-- Log partitions -----------------------------------------------------------------------------
-- As 0001's, but the rows moved out of the overflow partition wait in a variable rather than
-- in a temporary table: a caller could create that table first, with a trigger of its own,
-- and the trigger ran with the function owner's rights. Runs as its caller now (a DBA:
-- creating and dropping partitions needs integration_logs' owner).
CREATE OR REPLACE FUNCTION qbsync.maintain_log_partitions(
    ahead int DEFAULT NULL, retention_months int DEFAULT NULL
) RETURNS TABLE (action text, partition_name text)
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ahead int := coalesce(ahead, (qbsync.setting('log_partitions_ahead'))::int, 3);
    v_keep int := coalesce(retention_months, (qbsync.setting('log_retention_months'))::int, 12);
    v_month date;
    v_name text;
    v_moved jsonb;
BEGIN
    FOR i IN 0..v_ahead LOOP
        v_month := (date_trunc('month', now()) + make_interval(months => i))::date;
        v_name := 'integration_logs_' || to_char(v_month, 'YYYY_MM');
        CONTINUE WHEN to_regclass('qbsync.' || v_name) IS NOT NULL;
        -- rows the overflow partition holds for this month (a clock jump): they must leave
        -- it before the month's partition can exist
        WITH moved AS (
            DELETE FROM qbsync.integration_logs_overflow
            WHERE created_at >= v_month AND created_at < v_month + interval '1 month'
            RETURNING *)
        SELECT jsonb_agg(to_jsonb(moved)) INTO v_moved FROM moved;
        EXECUTE format('CREATE TABLE qbsync.%I PARTITION OF qbsync.integration_logs '
                       'FOR VALUES FROM (%L) TO (%L)',
                       v_name, v_month, (v_month + interval '1 month')::date);
        IF current_user <> 'qbsync_owner' THEN
            -- made by a DBA: the daemon's rotate_logs must be able to drop it one day
            EXECUTE format('ALTER TABLE qbsync.%I OWNER TO qbsync_owner', v_name);
        END IF;
        IF v_moved IS NOT NULL THEN
            INSERT INTO qbsync.integration_logs OVERRIDING SYSTEM VALUE
            SELECT * FROM jsonb_populate_recordset(NULL::qbsync.integration_logs, v_moved);
        END IF;
        action := 'created'; partition_name := v_name; RETURN NEXT;
    END LOOP;
    FOR v_name IN
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'qbsync.integration_logs'::regclass
          AND c.relname ~ '^integration_logs_\d{4}_\d{2}$'
          AND to_date(substr(c.relname, 18), 'YYYY_MM')
              < date_trunc('month', now()) - make_interval(months => v_keep)
    LOOP
        EXECUTE format('DROP TABLE qbsync.%I', v_name);
        action := 'dropped'; partition_name := v_name; RETURN NEXT;
    END LOOP;
END
$$;
ALTER FUNCTION qbsync.maintain_log_partitions(int, int) SECURITY INVOKER;

-- What the daemon calls at start and daily: the partitions the settings ask for, with the
-- owner's rights (only integration_logs' owner may create and drop them).
CREATE FUNCTION qbsync.rotate_logs() RETURNS TABLE (action text, partition_name text)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT m.action, m.partition_name FROM qbsync.maintain_log_partitions() AS m $$;
COMMENT ON FUNCTION qbsync.rotate_logs() IS
    'Creates the integration_logs partitions of this month and the next log_partitions_ahead months, drops those older than log_retention_months (settings). The daemon calls it at start and daily.';

-- The dashboard ------------------------------------------------------------------------------
-- dashboard_row keeps its rights (readers see qbsync's counters without table grants) and
-- calls no mapping code; the orders still without an invoice come from the mapping through
-- qbsync.unsynced_orders, with the reader's own rights.
CREATE OR REPLACE FUNCTION qbsync.dashboard_row()
RETURNS TABLE (
    realm_id text, company_name text, connection_status text,
    orders_synced_today bigint, orders_synced_this_month bigint, orders_synced_total bigint,
    orders_pending bigint, pushes_today bigint, errors_today bigint, error_rate_today numeric,
    queue_depth bigint, queue_running bigint, oldest_pending_age interval, dead bigint,
    open_notices bigint, daemons_alive bigint, order_entity text, as_of timestamptz)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    v_today date := (now() AT TIME ZONE qbsync.stats_tz())::date;
    v_month date := date_trunc('month', v_today)::date;
    v_ok bigint;
    v_bad bigint;
BEGIN
    order_entity := qbsync.invoice_entity();
    as_of := now();
    SELECT c.realm_id, c.company_name, c.status INTO realm_id, company_name, connection_status
    FROM qbsync.connections c WHERE c.active;
    connection_status := coalesce(connection_status, 'not connected');

    SELECT coalesce(sum(m.n) FILTER (WHERE m.day = v_today), 0),
           coalesce(sum(m.n) FILTER (WHERE m.day >= v_month), 0),
           coalesce(sum(m.n), 0)
    INTO orders_synced_today, orders_synced_this_month, orders_synced_total
    FROM qbsync.map_counts m
    WHERE m.entity = order_entity AND (dashboard_row.realm_id IS NULL OR m.realm_id = dashboard_row.realm_id);

    -- push attempts of every entity today: success vs retry/failed/dead
    SELECT coalesce(sum(c.n) FILTER (WHERE c.status = 'success'), 0),
           coalesce(sum(c.n) FILTER (WHERE c.status IN ('failed', 'retry', 'dead')), 0)
    INTO v_ok, v_bad
    FROM qbsync.entities e
    JOIN qbsync.log_counts c ON c.model_type = e.entity AND c.day = v_today
    WHERE dashboard_row.realm_id IS NULL OR c.realm_id IN (dashboard_row.realm_id, '');
    pushes_today := v_ok;
    errors_today := v_bad;
    error_rate_today := round(100.0 * v_bad / nullif(v_ok + v_bad, 0), 1);

    SELECT count(*) FILTER (WHERE o.state = 'pending'),
           count(*) FILTER (WHERE o.state = 'running'),
           count(*) FILTER (WHERE o.state = 'dead'),
           now() - min(o.enqueued_at) FILTER (WHERE o.state = 'pending')
    INTO queue_depth, queue_running, dead, oldest_pending_age
    FROM qbsync.outbox o;
    -- captured changes not yet collected into the outbox are pending too
    SELECT queue_depth + count(*), least(oldest_pending_age, now() - min(c.captured_at))
    INTO queue_depth, oldest_pending_age
    FROM qbsync.changes c;

    SELECT count(*) INTO open_notices FROM qbsync.notices n WHERE n.acknowledged_at IS NULL;
    SELECT count(*) INTO daemons_alive FROM qbsync.workers w
    WHERE w.heartbeat_at > now() - interval '2 minutes';
    RETURN NEXT;   -- orders_pending: the view qbsync.dashboard asks the mapping
END
$$;
COMMENT ON FUNCTION qbsync.dashboard_row() IS
    'The dashboard''s numbers from qbsync''s own tables (orders_pending stays NULL here: qbsync.dashboard fills it from the mapping, with the reader''s rights).';

-- The mapping's count of finished sales without a QuickBooks invoice, run with the caller's
-- rights, or why there is none: the mapping has no such function, or it failed (e.g. the
-- caller may not read the shop's table: the message says which).
CREATE FUNCTION qbsync.unsynced_orders(p_entity text, OUT orders bigint, OUT note text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_fn text;
BEGIN
    IF p_entity IS NULL THEN
        note := 'unknown (no entity has qbo_type Invoice: SELECT qbsync.define_entity(''order'', ''Invoice''))';
        RETURN;
    END IF;
    v_fn := format('qbsync_map.%I', p_entity || '_unsynced_count');
    BEGIN
        IF to_regprocedure(v_fn || '()') IS NULL THEN
            note := format('unknown (define %s())', v_fn);
            RETURN;
        END IF;
        EXECUTE format('SELECT %s()', v_fn) INTO orders;
    EXCEPTION WHEN OTHERS THEN
        -- a broken or unreadable mapping function must not take the dashboard down
        orders := NULL;
        note := format('unknown (%s() failed: %s)', v_fn, SQLERRM);
        RAISE WARNING 'qbsync.dashboard: %() failed: %', v_fn, SQLERRM;
    END;
END
$$;
COMMENT ON FUNCTION qbsync.unsynced_orders(text) IS
    'qbsync_map.<entity>_unsynced_count() run with the caller''s rights, or a note saying why the number is unknown.';

CREATE OR REPLACE VIEW qbsync.dashboard WITH (security_invoker = true) AS
SELECT d.realm_id, d.company_name, d.connection_status, d.orders_synced_today,
       d.orders_synced_this_month, d.orders_synced_total, u.orders AS orders_pending,
       d.pushes_today, d.errors_today, d.error_rate_today, d.queue_depth, d.queue_running,
       d.oldest_pending_age, d.dead, d.open_notices, d.daemons_alive, d.order_entity,
       d.as_of, u.note AS orders_pending_note
FROM qbsync.dashboard_row() AS d
CROSS JOIN LATERAL qbsync.unsynced_orders(d.order_entity) AS u;
COMMENT ON COLUMN qbsync.dashboard.orders_pending IS
    'finished orders without an invoice yet (qbsync_map.<order entity>_unsynced_count(), run with the reader''s rights); NULL when unknown, see orders_pending_note';
COMMENT ON COLUMN qbsync.dashboard.orders_pending_note IS
    'why orders_pending is unknown: "unknown (define qbsync_map.order_unsynced_count())", or the mapping function''s error (often a missing grant); NULL when it is known';

-- resync, resync_many ------------------------------------------------------------------------
-- The keys are checked with the mapping (_key_exists / _keys) as the caller; the queueing and
-- the log lines are qbsync.enqueue_resync's.
CREATE OR REPLACE FUNCTION qbsync.resync_many(entity text, keys text[], force boolean DEFAULT false)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_unknown text[];
BEGIN
    PERFORM qbsync.check_entity(entity, 'resync');
    v_unknown := qbsync.unknown_keys(entity, keys);
    IF cardinality(v_unknown) > 0 THEN
        RAISE EXCEPTION 'qbsync.resync: % unknown % key(s): %; nothing was enqueued',
            cardinality(v_unknown), entity,
            array_to_string(v_unknown, ', ', '(null)')
            USING ERRCODE = 'no_data_found',
                  DETAIL = format('unknown keys: %s', to_jsonb(v_unknown)),
                  HINT = format('The keys qbsync_map.%I knows: SELECT * FROM qbsync_map.%I();',
                                entity, entity || '_keys');
    END IF;
    RETURN qbsync.enqueue_resync(entity, keys, force);
END
$$;
ALTER FUNCTION qbsync.resync_many(text, text[], boolean) SECURITY INVOKER;
ALTER FUNCTION qbsync.resync(text, text, boolean) SECURITY INVOKER;

CREATE FUNCTION qbsync.enqueue_resync(p_entity text, p_keys text[], p_force boolean)
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count int := 0;
    v_key text;
    v_realm text := qbsync.active_realm();
    v_actor text := qbsync.caller();
BEGIN
    PERFORM qbsync.check_entity(p_entity, 'resync');
    FOR v_key IN SELECT DISTINCT k FROM unnest(p_keys) AS k WHERE k IS NOT NULL LOOP
        IF qbsync.enqueue(p_entity, v_key, coalesce(p_force, false), 'resync') THEN
            v_count := v_count + 1;
        END IF;
        PERFORM qbsync.log('resync', p_entity, v_key, 'info', v_realm,
            jsonb_build_object('message', format('resync requested by %s%s', v_actor,
                                                 CASE WHEN p_force THEN ' (forced)' ELSE '' END)),
            v_actor);
    END LOOP;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION qbsync.enqueue_resync(text, text[], boolean) IS
    'The queueing half of resync_many (which checks the keys with the mapping first): queues the keys, logs each with the caller as actor; returns how many rows were added or made forced.';

-- sync_all_customers, sync_catalog -----------------------------------------------------------
-- The keys come from the mapping (_keys) as the caller; qbsync.enqueue_sync filters, queues
-- and logs them.
CREATE OR REPLACE FUNCTION qbsync.sync_type(p_qbo_type text, p_unsynced_only boolean,
                                            p_operation text, p_example text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_entity text;
    v_count int := 0;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM qbsync.entities WHERE qbo_type = p_qbo_type) THEN
        RAISE EXCEPTION 'qbsync.%: no entity has qbo_type %', p_operation, p_qbo_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Register one: SELECT qbsync.define_entity(%L, %L);',
                                p_example, p_qbo_type);
    END IF;
    FOR v_entity IN SELECT entity FROM qbsync.entities WHERE qbo_type = p_qbo_type ORDER BY entity
    LOOP
        v_count := v_count + qbsync.enqueue_sync(p_operation, v_entity,
                                                 ARRAY(SELECT qbsync.keys_of(v_entity)),
                                                 p_unsynced_only);
    END LOOP;
    RETURN v_count;
END
$$;
ALTER FUNCTION qbsync.sync_all_customers() SECURITY INVOKER;
ALTER FUNCTION qbsync.sync_catalog() SECURITY INVOKER;

CREATE FUNCTION qbsync.enqueue_sync(p_operation text, p_entity text, p_keys text[],
                                    p_unsynced_only boolean)
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_realm text := qbsync.active_realm();
    v_keys text[];
    v_added int;
BEGIN
    IF p_operation IS NULL OR p_operation NOT IN ('sync_all_customers', 'sync_catalog') THEN
        RAISE EXCEPTION 'qbsync.enqueue_sync: operation must be sync_all_customers or sync_catalog, not %',
            coalesce(quote_literal(p_operation), 'NULL') USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM qbsync.check_entity(p_entity, p_operation);
    SELECT array_agg(k) INTO v_keys
    FROM unnest(p_keys) AS k
    WHERE NOT p_unsynced_only
       OR NOT EXISTS (SELECT 1 FROM qbsync.entity_map m
                      WHERE m.realm_id = v_realm AND m.entity = p_entity AND m.key = k);
    v_added := qbsync.enqueue_all(p_entity, coalesce(v_keys, '{}'), p_operation);
    PERFORM qbsync.log(p_operation, p_entity, NULL, 'info', v_realm,
        jsonb_build_object('message', format('%s %s%s key(s), %s queued, by %s',
                                             coalesce(cardinality(v_keys), 0),
                                             CASE WHEN p_unsynced_only THEN 'unsynced ' END,
                                             p_entity, v_added, qbsync.caller())),
        qbsync.caller());
    RETURN v_added;
END
$$;
COMMENT ON FUNCTION qbsync.enqueue_sync(text, text, text[], boolean) IS
    'The queueing half of sync_all_customers / sync_catalog (which list the keys with the mapping first): queues the keys (with p_unsynced_only, those without a QuickBooks object in the active company) and logs the count.';

-- resolve_drift ------------------------------------------------------------------------------
-- qbsync.settle_drift changes qbsync's state and says what to write back onto the shop row;
-- the write-back (qbsync_map.<entity>_outcome) runs as the caller.
CREATE FUNCTION qbsync.settle_drift(p_id bigint, p_action text,
                                    OUT resolution text, OUT write_entity text,
                                    OUT write_key text, OUT write_realm text,
                                    OUT write_outcome jsonb)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_drift qbsync.drift_log;
BEGIN
    SELECT * INTO v_drift FROM qbsync.drift_log WHERE id = p_id FOR UPDATE;
    IF v_drift.id IS NULL THEN
        RAISE EXCEPTION 'qbsync.resolve_drift: no drift %', p_id USING ERRCODE = 'no_data_found';
    END IF;
    IF v_drift.resolved_at IS NOT NULL THEN
        RAISE EXCEPTION 'qbsync.resolve_drift: drift % was already resolved (%, by % at %)',
            p_id, v_drift.resolution, v_drift.resolved_by, v_drift.resolved_at
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_action = 'push' THEN
        IF v_drift.change = 'voided' THEN
            RAISE EXCEPTION 'qbsync.resolve_drift: % % was voided in QuickBooks, which cannot be undone; accept it (and cancel or re-create the order in the shop)',
                v_drift.qbo_type, v_drift.qbo_id USING ERRCODE = 'invalid_parameter_value';
        END IF;
        IF v_drift.change = 'deleted' THEN
            -- Kept, marked deleted: the push creates the object anew, and a dependency
            -- create derives its requestid from the deleted Id, so QuickBooks cannot answer
            -- it with the deleted object's original create.
            UPDATE qbsync.entity_map SET qbo_status = 'deleted', body_hash = NULL
            WHERE realm_id = v_drift.realm_id AND entity = v_drift.entity AND key = v_drift.key;
        ELSE
            UPDATE qbsync.entity_map SET sync_token = v_drift.qbo_sync_token, body_hash = NULL
            WHERE realm_id = v_drift.realm_id AND entity = v_drift.entity AND key = v_drift.key;
        END IF;
        PERFORM qbsync.enqueue(v_drift.entity, v_drift.key, true, 'drift');
    ELSIF p_action = 'accept' THEN
        -- QuickBooks' version is not the shop's body: body_hash cleared (no skip as unchanged)
        UPDATE qbsync.entity_map
        SET sync_token = v_drift.qbo_sync_token, body_hash = NULL,
            digest = CASE WHEN v_drift.change = 'deleted' THEN digest
                          ELSE qbsync.qbo_digest(v_drift.qbo_type, v_drift.qbo_object) END,
            qbo_status = CASE v_drift.change WHEN 'deleted' THEN 'deleted'
                                             WHEN 'voided' THEN 'voided' ELSE qbo_status END
        WHERE realm_id = v_drift.realm_id AND entity = v_drift.entity AND key = v_drift.key;
        write_entity := v_drift.entity;
        write_key := v_drift.key;
        write_realm := v_drift.realm_id;
        IF v_drift.change IN ('deleted', 'voided') THEN
            write_outcome := jsonb_build_object(
                'realm_id', v_drift.realm_id, 'status', v_drift.change,
                'qbo_id', v_drift.qbo_id, 'attempted_at', now(),
                'error', format('%s %s %s in QuickBooks (accepted by %s)', v_drift.qbo_type,
                                v_drift.qbo_id, v_drift.change, qbsync.caller()));
        ELSE
            -- the shop row learns QuickBooks' version: its number, and when it was taken in
            write_outcome := jsonb_build_object(
                'realm_id', v_drift.realm_id, 'status', 'synced', 'qbo_id', v_drift.qbo_id,
                'doc_number', v_drift.qbo_object->>'DocNumber', 'synced_at', now(),
                'attempted_at', now(), 'error', NULL);
        END IF;
    ELSE
        RAISE EXCEPTION 'qbsync.resolve_drift: action must be ''push'' or ''accept'', not %',
            quote_literal(p_action) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE qbsync.drift_log
    SET resolved_at = now(), resolution = CASE p_action WHEN 'push' THEN 'pushed' ELSE 'accepted' END,
        resolved_by = qbsync.caller()
    WHERE id = p_id;
    PERFORM qbsync.log('drift.' || p_action, v_drift.entity, v_drift.key, 'info',
        v_drift.realm_id, jsonb_build_object(
            'message', format('drift %s (%s %s %s) resolved: %s', p_id, v_drift.qbo_type,
                              v_drift.qbo_id, v_drift.change, p_action),
            'qbo_id', v_drift.qbo_id), qbsync.caller());
    resolution := CASE p_action WHEN 'push' THEN 'pushed' ELSE 'accepted' END;
END
$$;
COMMENT ON FUNCTION qbsync.settle_drift(bigint, text) IS
    'The state half of resolve_drift: entity_map, drift_log, the forced push, the log; returns the outcome resolve_drift writes back onto the shop row.';

-- A write-back that failed for a caller other than the daemon (who logs with its own
-- rights): logged, with the caller as actor. The push or resolution itself stands.
CREATE FUNCTION qbsync.log_write_back_failure(p_entity text, p_key text, p_realm text,
                                              p_message text, p_code text)
RETURNS void
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT qbsync.log('write_back', p_entity, p_key, 'failed', p_realm,
                      jsonb_build_object('message', left(p_message, 2000), 'code', p_code),
                      qbsync.caller());
$$;

CREATE OR REPLACE FUNCTION qbsync.resolve_drift(p_id bigint, p_action text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
BEGIN
    SELECT * INTO r FROM qbsync.settle_drift(p_id, p_action);
    IF r.write_outcome IS NOT NULL THEN
        BEGIN
            PERFORM qbsync.write_back(r.write_entity, r.write_key, r.write_outcome, false);
        EXCEPTION WHEN OTHERS THEN
            -- only the courtesy copy onto the shop row failed (often a grant the caller
            -- lacks); the log says why
            PERFORM qbsync.log_write_back_failure(r.write_entity, r.write_key, r.write_realm,
                format('qbsync_map.%s_outcome failed: %s', r.write_entity, SQLERRM), SQLSTATE);
        END;
    END IF;
    RETURN r.resolution;
END
$$;
ALTER FUNCTION qbsync.resolve_drift(bigint, text) SECURITY INVOKER;

-- Admins may read reconcile_results themselves: no owner's rights needed.
ALTER FUNCTION qbsync.reconcile(bigint) SECURITY INVOKER;

-- Grants ---------------------------------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA qbsync FROM PUBLIC;

-- The daemon rotates the log partitions through rotate_logs, with the settings' values only.
REVOKE EXECUTE ON FUNCTION qbsync.maintain_log_partitions(int, int) FROM qbsync_daemon;
GRANT EXECUTE ON FUNCTION qbsync.rotate_logs() TO qbsync_daemon;

-- Readers and admins now call the mapping themselves: the schema, and the function that
-- asks it (the shop's own grants for what the mapping reads are the DBA's to give: see
-- README "Roles" and SECURITY.md).
GRANT USAGE ON SCHEMA qbsync_map TO qbsync_reader, qbsync_admin;
GRANT EXECUTE ON FUNCTION qbsync.unsynced_orders(text) TO qbsync_reader, qbsync_admin;
GRANT EXECUTE ON FUNCTION
    qbsync.check_entity(text, text), qbsync.mapping_function(text, text, text),
    qbsync.unknown_keys(text, text[]), qbsync.keys_of(text),
    qbsync.enqueue_resync(text, text[], boolean),
    qbsync.sync_type(text, boolean, text, text),
    qbsync.enqueue_sync(text, text, text[], boolean),
    qbsync.settle_drift(bigint, text), qbsync.write_back(text, text, jsonb, boolean),
    qbsync.log_write_back_failure(text, text, text, text, text)
    TO qbsync_admin;

SELECT count(*) FROM qbsync.reassert_ownership();
