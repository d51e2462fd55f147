-- The admin surface (what DBAs and operators touch): views that explain the sync at a
-- glance, functions that change its state, admin requests the daemon answers (QuickBooks
-- reports, connection tests), notices for what needs a human, and the three group roles.
--
--   views      dashboard, recent_activity, sync_logs, failed, recent_failures, queue_health,
--              connection_status, open_notices, report_comparison
--   functions  resync, resync_many, sync_all_customers, sync_catalog, retry_dead,
--              request_report, request_connection_test, acknowledge, acknowledge_all,
--              rebuild_stats; daemon side: claim_admin_requests, finish_admin_request,
--              fail_admin_request, store_report, store_refreshed_tokens,
--              mark_needs_reconnect; CLI side: save_connection, mark_disconnected, rekey_tokens
--   roles      qbsync_reader (views), qbsync_admin (views + functions),
--              qbsync_daemon (what `qbsync run` needs, nothing more)
--
-- Mapping contract additions (all optional, in schema qbsync_map, for an entity E):
--   E_key_exists(key text) -> boolean        cheap "does the shop know this key?" (resync
--                                           checks keys with it; else with E_keys())
--   E_unsynced_count() -> bigint             for the Invoice entity: finished sales that
--                                           have no QuickBooks invoice yet (dashboard)
--   E_revenue(from_date date, to_date date)  for the Invoice entity: one row (net numeric,
--       -> TABLE (net, gross, orders)       gross numeric, orders bigint) of the sales whose
--                                           invoice date is in [from, to]; net of VAT is what
--                                           QuickBooks' ProfitAndLoss income counts.
-- "Orders" are the rows of the entity whose qbo_type is 'Invoice' (Dixis: entity 'order').

INSERT INTO qbsync.settings (name, value, description) VALUES
    ('dashboard_time_zone', to_jsonb(current_setting('TimeZone')),
     'time zone of the dashboard''s "today" and "this month"; after a change run SELECT qbsync.rebuild_stats()'),
    ('long_transaction_seconds', '60',
     'queue_health lists transactions older than this (they hold back the xmin horizon: dead outbox tuples cannot be vacuumed)'),
    ('report_tolerance', '0.05',
     'report_comparison flags a difference between QuickBooks income and the shop''s net revenue larger than this amount')
ON CONFLICT (name) DO NOTHING;

-- Who called: the role in effect when a SECURITY DEFINER function was entered (current_user
-- inside such a function is its owner), with the login role when it differs.
CREATE FUNCTION qbsync.caller() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN current_setting('role') IN ('none', '') OR current_setting('role') = session_user
                THEN session_user::text
                ELSE current_setting('role') || ' (' || session_user || ')' END;
$$;

-- The entity whose rows become invoices ("orders" in the dashboard), NULL if none.
CREATE FUNCTION qbsync.invoice_entity() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT entity FROM qbsync.entities WHERE qbo_type = 'Invoice' ORDER BY entity LIMIT 1 $$;

CREATE FUNCTION qbsync.active_realm() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT realm_id FROM qbsync.connections WHERE active $$;

-- A mapping function qbsync_map.<entity><suffix>(<args>) if the DBA wrote one.
CREATE FUNCTION qbsync.mapping_function(p_entity text, p_suffix text, p_args text DEFAULT '')
RETURNS regprocedure
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT to_regprocedure(format('qbsync_map.%I(%s)', p_entity || p_suffix, p_args)) $$;

-- Stats counters ---------------------------------------------------------------------------
-- The dashboard must answer in milliseconds with tens of millions of log rows, so the
-- numbers it shows per day are counted as rows are written, not by scanning the log:
-- per (day, entity, status) for the log and per (day of first sync, entity) for the map.
-- Days are in the setting dashboard_time_zone. Writers only ever INSERT a +1/-1 delta
-- (no row to lock: a push's transaction never waits behind another's counter), and
-- qbsync.fold_stats() (the daemon calls it every few seconds) folds the deltas into the
-- totals. The views log_counts and map_counts add both. Maintained by triggers
-- (SECURITY DEFINER: writers need no grant); rebuilt from scratch by qbsync.rebuild_stats().
CREATE TABLE qbsync.log_count_totals (
    model_type text NOT NULL,
    day        date NOT NULL,
    status     text NOT NULL,
    realm_id   text NOT NULL DEFAULT '',
    n          bigint NOT NULL,
    PRIMARY KEY (model_type, day, status, realm_id)
);
CREATE TABLE qbsync.log_count_deltas (
    model_type text NOT NULL,
    day        date NOT NULL,
    status     text NOT NULL,
    realm_id   text NOT NULL DEFAULT '',
    n          int NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.01);
CREATE VIEW qbsync.log_counts AS
    SELECT model_type, day, status, realm_id, n FROM qbsync.log_count_totals
    UNION ALL
    SELECT model_type, day, status, realm_id, n FROM qbsync.log_count_deltas;
COMMENT ON VIEW qbsync.log_counts IS
    'integration_logs rows per entity, day (in dashboard_time_zone) and status (sum n per group), kept by triggers; read by the dashboard. Rebuild: SELECT qbsync.rebuild_stats().';

CREATE TABLE qbsync.map_count_totals (
    entity   text NOT NULL,
    realm_id text NOT NULL,
    day      date NOT NULL,
    n        bigint NOT NULL,
    PRIMARY KEY (entity, realm_id, day)
);
CREATE TABLE qbsync.map_count_deltas (
    entity   text NOT NULL,
    realm_id text NOT NULL,
    day      date NOT NULL,
    n        int NOT NULL
) WITH (autovacuum_vacuum_scale_factor = 0.01);
CREATE VIEW qbsync.map_counts AS
    SELECT entity, realm_id, day, n FROM qbsync.map_count_totals
    UNION ALL
    SELECT entity, realm_id, day, n FROM qbsync.map_count_deltas;
COMMENT ON VIEW qbsync.map_counts IS
    'entity_map rows per entity, realm and day of first sync (created_at in dashboard_time_zone), sum n per group; kept by triggers; read by the dashboard.';

-- The day of a timestamp in dashboard_time_zone. The triggers inline the same lookup (a
-- plain cached query, no nested function call: they run on every log row).
CREATE FUNCTION qbsync.stats_tz() RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((SELECT value #>> '{}' FROM qbsync.settings WHERE name = 'dashboard_time_zone'),
                    'UTC')
$$;

-- The counter triggers are statement-level, reading the statement's transition table: one
-- grouped insert of deltas per statement (the daemon logs a group of outcomes in one), not
-- one trigger call and one insert per row. A transition table can only serve one event per
-- trigger, hence one trigger per event; TG_OP gives the sign.
CREATE FUNCTION qbsync.count_log_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tz text := coalesce((SELECT value #>> '{}' FROM qbsync.settings
                           WHERE name = 'dashboard_time_zone'), 'UTC');
BEGIN
    INSERT INTO qbsync.log_count_deltas (model_type, day, status, realm_id, n)
    SELECT r.model_type, (r.created_at AT TIME ZONE v_tz)::date, r.status,
           coalesce(r.realm_id, ''), count(*)   -- inserts only: deletes count row by row
    FROM changed_rows r
    GROUP BY 1, 2, 3, 4;
    RETURN NULL;
END
$$;
-- Inserts: on the partitioned table, whose statement triggers see the rows of every
-- partition an INSERT into qbsync.integration_logs routes to (everything writes the log
-- through the parent). Deletes: maintain_log_partitions moves rows out of the overflow
-- partition by deleting from that partition directly, which the parent's statement triggers
-- do not see, so the delete trigger stays a row trigger (cloned onto every partition, also
-- the ones created later; deletes are that rare move). Dropping an old partition does not
-- touch the counters (old days are not shown).
CREATE TRIGGER integration_logs_count AFTER INSERT ON qbsync.integration_logs
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION qbsync.count_log_rows();

CREATE FUNCTION qbsync.count_log_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tz text := coalesce((SELECT value #>> '{}' FROM qbsync.settings
                           WHERE name = 'dashboard_time_zone'), 'UTC');
BEGIN
    INSERT INTO qbsync.log_count_deltas (model_type, day, status, realm_id, n)
    VALUES (OLD.model_type, (OLD.created_at AT TIME ZONE v_tz)::date, OLD.status,
            coalesce(OLD.realm_id, ''), -1);
    RETURN NULL;
END
$$;
CREATE TRIGGER integration_logs_uncount AFTER DELETE ON qbsync.integration_logs
    FOR EACH ROW EXECUTE FUNCTION qbsync.count_log_row();

CREATE FUNCTION qbsync.count_map_rows() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tz text := coalesce((SELECT value #>> '{}' FROM qbsync.settings
                           WHERE name = 'dashboard_time_zone'), 'UTC');
BEGIN
    INSERT INTO qbsync.map_count_deltas (entity, realm_id, day, n)
    SELECT r.entity, r.realm_id, (r.created_at AT TIME ZONE v_tz)::date,
           CASE WHEN TG_OP = 'DELETE' THEN -count(*) ELSE count(*) END
    FROM changed_rows r
    GROUP BY 1, 2, 3;
    RETURN NULL;
END
$$;
-- (an upsert's statement: its insert trigger sees only the rows it inserted)
CREATE TRIGGER entity_map_count AFTER INSERT ON qbsync.entity_map
    REFERENCING NEW TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION qbsync.count_map_rows();
CREATE TRIGGER entity_map_uncount AFTER DELETE ON qbsync.entity_map
    REFERENCING OLD TABLE AS changed_rows
    FOR EACH STATEMENT EXECUTE FUNCTION qbsync.count_map_rows();

CREATE FUNCTION qbsync.count_map_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tz text := coalesce((SELECT value #>> '{}' FROM qbsync.settings
                           WHERE name = 'dashboard_time_zone'), 'UTC');
BEGIN
    INSERT INTO qbsync.map_count_deltas (entity, realm_id, day, n)
    VALUES (OLD.entity, OLD.realm_id, (OLD.created_at AT TIME ZONE v_tz)::date, -1),
           (NEW.entity, NEW.realm_id, (NEW.created_at AT TIME ZONE v_tz)::date, 1);
    RETURN NULL;
END
$$;
-- record_success's upsert never sets these columns, so this fires only on a hand edit
CREATE TRIGGER entity_map_count_moved AFTER UPDATE OF realm_id, entity, created_at ON qbsync.entity_map
    FOR EACH ROW
    WHEN ((OLD.realm_id, OLD.entity, OLD.created_at) IS DISTINCT FROM (NEW.realm_id, NEW.entity, NEW.created_at))
    EXECUTE FUNCTION qbsync.count_map_row();

-- Folds the deltas into the totals (the daemon calls it every few seconds; the dashboard
-- reads totals + deltas, so it is exact whenever it runs). Returns the deltas folded.
CREATE FUNCTION qbsync.fold_stats() RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_log int;
    v_map int;
BEGIN
    WITH taken AS (DELETE FROM qbsync.log_count_deltas RETURNING *),
         summed AS (SELECT model_type, day, status, realm_id, sum(n) AS n, count(*) AS rows
                    FROM taken GROUP BY 1, 2, 3, 4),
         folded AS (
             INSERT INTO qbsync.log_count_totals AS t (model_type, day, status, realm_id, n)
             SELECT model_type, day, status, realm_id, n FROM summed
             ON CONFLICT (model_type, day, status, realm_id) DO UPDATE SET n = t.n + excluded.n)
    SELECT coalesce(sum(rows), 0) INTO v_log FROM summed;
    WITH taken AS (DELETE FROM qbsync.map_count_deltas RETURNING *),
         summed AS (SELECT entity, realm_id, day, sum(n) AS n, count(*) AS rows
                    FROM taken GROUP BY 1, 2, 3),
         folded AS (
             INSERT INTO qbsync.map_count_totals AS t (entity, realm_id, day, n)
             SELECT entity, realm_id, day, n FROM summed
             ON CONFLICT (entity, realm_id, day) DO UPDATE SET n = t.n + excluded.n)
    SELECT coalesce(sum(rows), 0) INTO v_map FROM summed;
    RETURN v_log + v_map;
END
$$;

-- Recounts both counter tables from the log and the map (after a change of
-- dashboard_time_zone, a bulk load with triggers disabled, or to compact them). Blocks
-- writes to both tables while it runs (seconds per ten million log rows).
CREATE FUNCTION qbsync.rebuild_stats() RETURNS TABLE (log_rows bigint, map_rows bigint)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_tz text := qbsync.stats_tz();
BEGIN
    LOCK TABLE qbsync.integration_logs, qbsync.entity_map IN SHARE MODE;
    DELETE FROM qbsync.log_count_deltas;
    DELETE FROM qbsync.log_count_totals;
    INSERT INTO qbsync.log_count_totals (model_type, day, status, realm_id, n)
    SELECT model_type, (created_at AT TIME ZONE v_tz)::date, status, coalesce(realm_id, ''), count(*)
    FROM qbsync.integration_logs GROUP BY 1, 2, 3, 4;
    DELETE FROM qbsync.map_count_deltas;
    DELETE FROM qbsync.map_count_totals;
    INSERT INTO qbsync.map_count_totals (entity, realm_id, day, n)
    SELECT entity, realm_id, (created_at AT TIME ZONE v_tz)::date, count(*)
    FROM qbsync.entity_map GROUP BY 1, 2, 3;
    RETURN QUERY SELECT (SELECT coalesce(sum(n), 0)::bigint FROM qbsync.log_count_totals),
                        (SELECT coalesce(sum(n), 0)::bigint FROM qbsync.map_count_totals);
END
$$;
COMMENT ON FUNCTION qbsync.rebuild_stats() IS
    'Recounts the dashboard counters (log_counts, map_counts) from integration_logs and entity_map.';
SELECT qbsync.rebuild_stats();

-- Notices ----------------------------------------------------------------------------------
CREATE TABLE qbsync.notices (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    severity        text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
    kind            text NOT NULL,
    message         text NOT NULL,
    details         jsonb,
    realm_id        text,
    entity          text,
    key             text,
    occurrences     int NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    last_seen_at    timestamptz NOT NULL DEFAULT now(),
    acknowledged_at timestamptz,
    acknowledged_by text
);
COMMENT ON TABLE qbsync.notices IS
    'Things that need a human: a row out of tries (kind dead_row), a company to reconnect (needs_reconnect), QuickBooks income differing from the shop (report_difference). One open notice per kind and subject; a repeat bumps occurrences.';
CREATE UNIQUE INDEX notices_one_open ON qbsync.notices
    (kind, coalesce(realm_id, ''), coalesce(entity, ''), coalesce(key, ''))
    WHERE acknowledged_at IS NULL;

CREATE FUNCTION qbsync.raise_notice(
    p_severity text, p_kind text, p_message text, p_details jsonb DEFAULT NULL,
    p_realm text DEFAULT NULL, p_entity text DEFAULT NULL, p_key text DEFAULT NULL
) RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO qbsync.notices AS n (severity, kind, message, details, realm_id, entity, key)
    VALUES (p_severity, p_kind, p_message, p_details, p_realm, p_entity, p_key)
    ON CONFLICT (kind, coalesce(realm_id, ''), coalesce(entity, ''), coalesce(key, ''))
        WHERE acknowledged_at IS NULL
    DO UPDATE SET occurrences = n.occurrences + 1, last_seen_at = now(),
                  severity = excluded.severity, message = excluded.message,
                  details = excluded.details
    RETURNING id;
$$;

CREATE FUNCTION qbsync.close_notices(p_kind text, p_realm text, p_entity text, p_key text,
                                     p_by text)
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count int;
BEGIN
    UPDATE qbsync.notices SET acknowledged_at = now(), acknowledged_by = p_by
    WHERE acknowledged_at IS NULL AND kind = p_kind
      AND (p_realm IS NULL OR realm_id = p_realm)
      AND (p_entity IS NULL OR entity = p_entity) AND (p_key IS NULL OR key = p_key);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- A row ran out of tries or could not be pushed at all (fires only on that transition).
CREATE FUNCTION qbsync.notice_dead_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM qbsync.raise_notice('critical', 'dead_row',
        format('%s %s will not be pushed again (%s attempt(s)): %s', NEW.entity, NEW.key,
               NEW.attempts, coalesce(NEW.last_error, 'no error message')),
        jsonb_build_object('outbox_id', NEW.id, 'attempts', NEW.attempts,
                           'code', NEW.last_error_code, 'error', left(NEW.last_error, 2000),
                           'retry', format('SELECT qbsync.retry_dead(%L, %L);', NEW.entity, NEW.key)),
        qbsync.active_realm(), NEW.entity, NEW.key);
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_dead_notice AFTER UPDATE OF state ON qbsync.outbox
    FOR EACH ROW WHEN (NEW.state = 'dead' AND OLD.state <> 'dead')
    EXECUTE FUNCTION qbsync.notice_dead_row();

-- A dead row removed because a later push of its key succeeded (qbsync.complete): its
-- notice is settled.
CREATE FUNCTION qbsync.settle_dead_row() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM qbsync.close_notices('dead_row', NULL, OLD.entity, OLD.key, 'qbsync: pushed since');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_dead_settled AFTER DELETE ON qbsync.outbox
    FOR EACH ROW WHEN (OLD.state = 'dead')
    EXECUTE FUNCTION qbsync.settle_dead_row();

CREATE FUNCTION qbsync.notice_connection() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF NEW.status = 'needs_reconnect' THEN
        PERFORM qbsync.raise_notice('critical', 'needs_reconnect',
            format('QuickBooks company %s (%s) must be connected again (qbsync connect): %s',
                   NEW.realm_id, coalesce(NEW.company_name, 'unnamed'),
                   coalesce(NEW.last_error, 'the refresh token was refused')),
            jsonb_build_object('refresh_expires_at', NEW.refresh_expires_at,
                               'last_error', NEW.last_error),
            NEW.realm_id, NULL, NULL);
    ELSIF NEW.status = 'connected' THEN
        PERFORM qbsync.close_notices('needs_reconnect', NEW.realm_id, NULL, NULL,
                                     'qbsync: reconnected');
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER connections_notice AFTER INSERT OR UPDATE OF status ON qbsync.connections
    FOR EACH ROW EXECUTE FUNCTION qbsync.notice_connection();

CREATE FUNCTION qbsync.acknowledge(notice_id bigint) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_acked timestamptz;
BEGIN
    SELECT acknowledged_at INTO v_acked FROM qbsync.notices WHERE id = notice_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'qbsync.acknowledge: there is no notice %', notice_id
            USING ERRCODE = 'no_data_found', HINT = 'Open notices: SELECT * FROM qbsync.open_notices;';
    END IF;
    IF v_acked IS NOT NULL THEN
        RETURN false;
    END IF;
    UPDATE qbsync.notices SET acknowledged_at = now(), acknowledged_by = qbsync.caller()
    WHERE id = notice_id;
    RETURN true;
END
$$;
COMMENT ON FUNCTION qbsync.acknowledge(bigint) IS
    'Marks an open notice as seen (by the caller); false if it was acknowledged already.';

CREATE FUNCTION qbsync.acknowledge_all() RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count int;
BEGIN
    UPDATE qbsync.notices SET acknowledged_at = now(), acknowledged_by = qbsync.caller()
    WHERE acknowledged_at IS NULL;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION qbsync.acknowledge_all() IS 'Acknowledges every open notice; returns how many.';

CREATE VIEW qbsync.open_notices AS
SELECT id, severity, kind, message, entity, key, realm_id, occurrences, created_at,
       last_seen_at, details
FROM qbsync.notices
WHERE acknowledged_at IS NULL
ORDER BY CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, last_seen_at DESC;
COMMENT ON VIEW qbsync.open_notices IS
    'Notices nobody acknowledged yet, most severe and most recent first. Acknowledge with qbsync.acknowledge(id) or qbsync.acknowledge_all().';
COMMENT ON COLUMN qbsync.open_notices.kind IS 'dead_row | needs_reconnect | report_difference';
COMMENT ON COLUMN qbsync.open_notices.occurrences IS 'how often it happened again while open';
COMMENT ON COLUMN qbsync.open_notices.details IS 'what a DBA needs to act (for dead_row: the retry_dead call)';

-- Admin requests (answered by the daemon) and reports ---------------------------------------
CREATE TABLE qbsync.admin_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind         text NOT NULL CHECK (kind IN ('report', 'connection_test')),
    params       jsonb NOT NULL DEFAULT '{}',
    state        text NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'running', 'done', 'failed')),
    result       jsonb,
    error        text,
    requested_by text NOT NULL DEFAULT session_user,
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    worker       text,
    CHECK ((state IN ('done', 'failed')) = (finished_at IS NOT NULL))
);
COMMENT ON TABLE qbsync.admin_requests IS
    'Requests the daemon answers by calling QuickBooks (report: ProfitAndLoss into qbsync.reports; connection_test: company info + round trip). Made by qbsync.request_report() / request_connection_test(); NOTIFY qbsync_wakeup wakes the daemon.';
CREATE INDEX admin_requests_open ON qbsync.admin_requests (id) WHERE state IN ('pending', 'running');

CREATE TABLE qbsync.reports (
    id                 bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id         bigint REFERENCES qbsync.admin_requests ON DELETE SET NULL,
    realm_id           text NOT NULL,
    report_name        text NOT NULL DEFAULT 'ProfitAndLoss',
    period             text NOT NULL,
    start_date         date NOT NULL,
    end_date           date NOT NULL,
    accounting_method  text NOT NULL DEFAULT 'Accrual',
    report             jsonb NOT NULL,
    qbo_income         numeric(14,2),
    qbo_net_income     numeric(14,2),
    shop_revenue_net   numeric(14,2),
    shop_revenue_gross numeric(14,2),
    shop_orders        bigint,
    fetched_at         timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE qbsync.reports IS
    'QuickBooks reports fetched by the daemon, with the shop''s own revenue for the same dates (qbsync_map.<invoice entity>_revenue); see qbsync.report_comparison.';
COMMENT ON COLUMN qbsync.reports.qbo_income IS 'ProfitAndLoss "Total Income": net of VAT';
COMMENT ON COLUMN qbsync.reports.shop_revenue_net IS 'the shop''s sales for the dates, net of VAT: compared with qbo_income';
COMMENT ON COLUMN qbsync.reports.shop_revenue_gross IS 'the same sales including VAT (what customers paid), for reference';
CREATE INDEX reports_recent ON qbsync.reports (realm_id, fetched_at DESC);

CREATE FUNCTION qbsync.request(p_kind text, p_params jsonb) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_id bigint;
BEGIN
    INSERT INTO qbsync.admin_requests (kind, params, requested_by)
    VALUES (p_kind, p_params, qbsync.caller())
    RETURNING id INTO v_id;
    -- Admin requests are rare: always wake a daemon (no per-commit NOTIFY cost to speak of).
    PERFORM pg_notify('qbsync_wakeup', '');
    RETURN v_id;
END
$$;

CREATE FUNCTION qbsync.request_report(from_date date, to_date date,
                                      accounting_method text DEFAULT 'Accrual')
RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF from_date IS NULL OR to_date IS NULL OR from_date > to_date THEN
        RAISE EXCEPTION 'qbsync.request_report: need from_date <= to_date (got % .. %)',
            from_date, to_date USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF accounting_method NOT IN ('Accrual', 'Cash') THEN
        RAISE EXCEPTION 'qbsync.request_report: accounting_method must be Accrual or Cash, not %',
            accounting_method USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN qbsync.request('report', jsonb_build_object(
        'report', 'ProfitAndLoss', 'period', 'custom', 'start_date', from_date,
        'end_date', to_date, 'accounting_method', accounting_method));
END
$$;

CREATE FUNCTION qbsync.request_report(period text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_today date := (now() AT TIME ZONE qbsync.stats_tz())::date;
    v_start date;
    v_id bigint;
BEGIN
    IF period IS NULL OR period NOT IN ('week', 'month', 'quarter', 'year') THEN
        RAISE EXCEPTION 'qbsync.request_report: period must be week, month, quarter or year, not %',
            coalesce(quote_literal(period), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For other dates: qbsync.request_report(from_date, to_date).';
    END IF;
    v_start := date_trunc(period, v_today::timestamp)::date;
    v_id := qbsync.request_report(v_start, (v_start + CASE period
        WHEN 'week' THEN interval '1 week' WHEN 'month' THEN interval '1 month'
        WHEN 'quarter' THEN interval '3 months' ELSE interval '1 year' END)::date - 1);
    UPDATE qbsync.admin_requests SET params = params || jsonb_build_object('period', period)
    WHERE id = v_id;
    RETURN v_id;
END
$$;
COMMENT ON FUNCTION qbsync.request_report(text) IS
    'Asks the daemon for QuickBooks'' ProfitAndLoss of the current week (Monday to Sunday), month, quarter or year (days in dashboard_time_zone); returns the admin_requests id. Result: qbsync.report_comparison.';
COMMENT ON FUNCTION qbsync.request_report(date, date, text) IS
    'Asks the daemon for QuickBooks'' ProfitAndLoss from from_date to to_date (inclusive); returns the admin_requests id.';

CREATE FUNCTION qbsync.request_connection_test() RETURNS bigint
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT qbsync.request('connection_test', '{}') $$;
COMMENT ON FUNCTION qbsync.request_connection_test() IS
    'Asks the daemon to call QuickBooks (CompanyInfo, Preferences) and record company name, realm and round trip in admin_requests.result; returns the request id.';

-- Daemon side. A request stuck in running (its daemon died) is claimed again after 10 min.
CREATE FUNCTION qbsync.claim_admin_requests(p_worker text, p_limit int DEFAULT 5)
RETURNS SETOF qbsync.admin_requests
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH c AS (
        SELECT id FROM qbsync.admin_requests
        WHERE state = 'pending'
           OR (state = 'running' AND started_at < now() - interval '10 minutes')
        ORDER BY id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    )
    UPDATE qbsync.admin_requests r
    SET state = 'running', started_at = now(), worker = p_worker
    FROM c WHERE r.id = c.id
    RETURNING r.*;
$$;

CREATE FUNCTION qbsync.finish_admin_request(p_id bigint, p_worker text, p_result jsonb)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH done AS (
        UPDATE qbsync.admin_requests
        SET state = 'done', result = p_result, error = NULL, finished_at = now()
        WHERE id = p_id AND state = 'running' AND worker = p_worker
        RETURNING 1)
    SELECT count(*) > 0 FROM done;
$$;

CREATE FUNCTION qbsync.fail_admin_request(p_id bigint, p_worker text, p_error text,
                                          p_result jsonb DEFAULT NULL)
RETURNS boolean
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH done AS (
        UPDATE qbsync.admin_requests
        SET state = 'failed', error = coalesce(p_error, 'failed'), result = p_result,
            finished_at = now()
        WHERE id = p_id AND state = 'running' AND worker = p_worker
        RETURNING 1)
    SELECT count(*) > 0 FROM done;
$$;

-- A ProfitAndLoss document's Total Income / Net Income (0 when the section is absent).
CREATE FUNCTION qbsync.report_total(p_report jsonb, p_group text) RETURNS numeric
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(nullif(jsonb_path_query_first(
        p_report, '$.Rows.Row[*] ? (@.group == $g).Summary.ColData[1].value',
        jsonb_build_object('g', p_group)) #>> '{}', '')::numeric, 0)
$$;

-- Stores a fetched report with the shop's revenue for the same dates; raises a
-- report_difference notice when QuickBooks' income and the shop's net revenue differ by
-- more than the setting report_tolerance. Returns the qbsync.reports row.
CREATE FUNCTION qbsync.store_report(p_request_id bigint, p_realm text, p_period text,
                                    p_start date, p_end date, p_method text, p_report jsonb)
RETURNS qbsync.reports
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_entity text := qbsync.invoice_entity();
    v_fn regprocedure;
    v_row qbsync.reports;
    v_net numeric;
    v_gross numeric;
    v_orders bigint;
    v_tolerance numeric := coalesce((qbsync.setting('report_tolerance'))::numeric, 0.05);
BEGIN
    IF v_entity IS NOT NULL THEN
        v_fn := qbsync.mapping_function(v_entity, '_revenue', 'date, date');
    END IF;
    IF v_fn IS NOT NULL THEN
        EXECUTE format('SELECT net, gross, orders FROM qbsync_map.%I($1, $2)', v_entity || '_revenue')
            INTO v_net, v_gross, v_orders USING p_start, p_end;
    END IF;
    INSERT INTO qbsync.reports (request_id, realm_id, period, start_date, end_date,
                                accounting_method, report, qbo_income, qbo_net_income,
                                shop_revenue_net, shop_revenue_gross, shop_orders)
    VALUES (p_request_id, p_realm, p_period, p_start, p_end, coalesce(p_method, 'Accrual'),
            p_report, qbsync.report_total(p_report, 'Income'),
            qbsync.report_total(p_report, 'NetIncome'), round(v_net, 2), round(v_gross, 2),
            v_orders)
    RETURNING * INTO v_row;
    IF v_row.shop_revenue_net IS NOT NULL
       AND abs(v_row.qbo_income - v_row.shop_revenue_net) > v_tolerance THEN
        PERFORM qbsync.raise_notice('warning', 'report_difference',
            format('QuickBooks income %s to %s is %s, the shop''s net revenue is %s (difference %s)',
                   p_start, p_end, v_row.qbo_income, v_row.shop_revenue_net,
                   v_row.qbo_income - v_row.shop_revenue_net),
            jsonb_build_object('report_id', v_row.id, 'period', p_period),
            p_realm, NULL, format('%s..%s', p_start, p_end));
    END IF;
    RETURN v_row;
END
$$;

CREATE VIEW qbsync.report_comparison AS
SELECT r.id AS report_id,
       r.realm_id,
       r.period,
       r.start_date,
       r.end_date,
       r.qbo_income,
       r.shop_revenue_net,
       r.qbo_income - r.shop_revenue_net AS difference,
       round(100 * (r.qbo_income - r.shop_revenue_net) / nullif(r.shop_revenue_net, 0), 2)
           AS difference_pct,
       CASE WHEN r.shop_revenue_net IS NULL THEN 'no shop figure'
            WHEN abs(r.qbo_income - r.shop_revenue_net)
                 <= coalesce((SELECT value::text::numeric FROM qbsync.settings
                              WHERE name = 'report_tolerance'), 0.05) THEN 'match'
            ELSE 'DIFFERENT' END AS verdict,
       r.shop_revenue_gross,
       r.shop_orders,
       r.qbo_net_income,
       r.accounting_method,
       r.fetched_at
FROM qbsync.reports r
ORDER BY r.fetched_at DESC, r.id DESC;
COMMENT ON VIEW qbsync.report_comparison IS
    'QuickBooks ProfitAndLoss income next to the shop''s own revenue for the same dates, newest first. Both net of VAT; a difference is usually orders not (yet) invoiced or invoices edited in QuickBooks.';
COMMENT ON COLUMN qbsync.report_comparison.qbo_income IS 'QuickBooks "Total Income" (net of VAT)';
COMMENT ON COLUMN qbsync.report_comparison.shop_revenue_net IS 'the shop''s sales for the dates, net of VAT (qbsync_map.<entity>_revenue)';
COMMENT ON COLUMN qbsync.report_comparison.difference IS 'qbo_income - shop_revenue_net';
COMMENT ON COLUMN qbsync.report_comparison.verdict IS 'match when |difference| <= setting report_tolerance, else DIFFERENT';
COMMENT ON COLUMN qbsync.report_comparison.shop_revenue_gross IS 'the same sales including VAT (reference only: QuickBooks income excludes VAT)';

-- State-changing admin functions ----------------------------------------------------------
CREATE FUNCTION qbsync.check_entity(p_entity text, p_what text) RETURNS qbsync.entities
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row qbsync.entities;
BEGIN
    SELECT * INTO v_row FROM qbsync.entities WHERE entity = p_entity;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'qbsync.%: unknown entity %', p_what, coalesce(quote_literal(p_entity), 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Known entities: %s.', coalesce(
                      (SELECT string_agg(entity, ', ' ORDER BY entity) FROM qbsync.entities), 'none'));
    END IF;
    RETURN v_row;
END
$$;

-- The keys of p_keys the shop does not know (NULL included), in input order, without
-- duplicates. Uses qbsync_map.<entity>_key_exists(key) when the mapping has it, else one
-- pass over <entity>_keys(); with neither, every key is accepted.
CREATE FUNCTION qbsync.unknown_keys(p_entity text, p_keys text[]) RETURNS text[]
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_unknown text[];
BEGIN
    IF qbsync.mapping_function(p_entity, '_key_exists', 'text') IS NOT NULL THEN
        EXECUTE format(
            'SELECT array_agg(k ORDER BY n) FROM (SELECT k, min(n) AS n FROM unnest($1) WITH ORDINALITY AS u(k, n) GROUP BY k) u '
            'WHERE k IS NULL OR NOT coalesce(qbsync_map.%I(k), false)', p_entity || '_key_exists')
            INTO v_unknown USING p_keys;
    ELSIF qbsync.mapping_function(p_entity, '_keys') IS NOT NULL THEN
        EXECUTE format(
            'SELECT array_agg(k ORDER BY n) FROM (SELECT k, min(n) AS n FROM unnest($1) WITH ORDINALITY AS u(k, n) GROUP BY k) u '
            'WHERE k IS NULL OR NOT EXISTS (SELECT 1 FROM qbsync_map.%I() AS known(key) WHERE known.key = u.k)',
            p_entity || '_keys')
            INTO v_unknown USING p_keys;
    ELSE
        SELECT array_agg(k ORDER BY n) INTO v_unknown
        FROM unnest(p_keys) WITH ORDINALITY AS u(k, n) WHERE k IS NULL;
    END IF;
    RETURN coalesce(v_unknown, '{}');
END
$$;

CREATE FUNCTION qbsync.resync_many(entity text, keys text[], force boolean DEFAULT false)
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_unknown text[];
    v_count int := 0;
    v_key text;
    v_realm text := qbsync.active_realm();
    v_actor text := qbsync.caller();
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
    FOR v_key IN SELECT DISTINCT k FROM unnest(keys) AS k LOOP
        IF qbsync.enqueue(entity, v_key, coalesce(force, false), 'resync') THEN
            v_count := v_count + 1;
        END IF;
        PERFORM qbsync.log('resync', entity, v_key, 'info', v_realm,
            jsonb_build_object('message', format('resync requested by %s%s', v_actor,
                                                 CASE WHEN force THEN ' (forced)' ELSE '' END)),
            v_actor);
    END LOOP;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION qbsync.resync_many(text, text[], boolean) IS
    'Queues keys of an entity for a new push (origin resync; force = push even if already synced, e.g. an order that has an invoice). Every key must be known to the mapping: if any is not, nothing is queued and the error names them all. Returns how many rows were added or upgraded to forced (a key already pending counts 0).';

CREATE FUNCTION qbsync.resync(entity text, key text, force boolean DEFAULT false)
RETURNS boolean
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT qbsync.resync_many(entity, ARRAY[key], force) > 0 $$;
COMMENT ON FUNCTION qbsync.resync(text, text, boolean) IS
    'Queues one key for a new push (see resync_many); true if a row was added (false: it was pending already).';

-- Set-based enqueue of many keys (the bulk syncs): one statement, one wake-up.
CREATE FUNCTION qbsync.enqueue_all(p_entity text, p_keys text[], p_origin text) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count int;
BEGIN
    INSERT INTO qbsync.outbox (entity, key, origin)
    SELECT DISTINCT p_entity, k, p_origin FROM unnest(p_keys) AS k WHERE k IS NOT NULL
    ON CONFLICT DO NOTHING;   -- the key's pending row (the outbox's unique key per state)
    GET DIAGNOSTICS v_count = ROW_COUNT;
    IF v_count > 0 AND qbsync_capture.daemon_waiting() THEN
        PERFORM pg_notify('qbsync_wakeup', '');
    END IF;
    RETURN v_count;
END
$$;

CREATE FUNCTION qbsync.keys_of(p_entity text) RETURNS SETOF text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF qbsync.mapping_function(p_entity, '_keys') IS NULL THEN
        RAISE EXCEPTION 'qbsync: the mapping has no qbsync_map.%() listing the keys of entity %',
            p_entity || '_keys', p_entity USING ERRCODE = 'undefined_function';
    END IF;
    RETURN QUERY EXECUTE format('SELECT k::text FROM qbsync_map.%I() AS k', p_entity || '_keys');
END
$$;

-- Queues the keys of every entity of one QuickBooks type (all of them, or only those the
-- active company has no object for yet), logging a line per entity as p_operation.
CREATE FUNCTION qbsync.sync_type(p_qbo_type text, p_unsynced_only boolean, p_operation text,
                                 p_example text)
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_entity text;
    v_realm text := qbsync.active_realm();
    v_keys text[];
    v_count int := 0;
    v_added int;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM qbsync.entities WHERE qbo_type = p_qbo_type) THEN
        RAISE EXCEPTION 'qbsync.%: no entity has qbo_type %', p_operation, p_qbo_type
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Register one: SELECT qbsync.define_entity(%L, %L);',
                                p_example, p_qbo_type);
    END IF;
    FOR v_entity IN SELECT entity FROM qbsync.entities WHERE qbo_type = p_qbo_type ORDER BY entity
    LOOP
        SELECT array_agg(k) INTO v_keys
        FROM qbsync.keys_of(v_entity) AS k
        WHERE NOT p_unsynced_only
           OR NOT EXISTS (SELECT 1 FROM qbsync.entity_map m
                          WHERE m.realm_id = v_realm AND m.entity = v_entity AND m.key = k);
        v_added := qbsync.enqueue_all(v_entity, coalesce(v_keys, '{}'), p_operation);
        v_count := v_count + v_added;
        PERFORM qbsync.log(p_operation, v_entity, NULL, 'info', v_realm,
            jsonb_build_object('message', format('%s %s%s key(s), %s queued, by %s',
                                                 coalesce(cardinality(v_keys), 0),
                                                 CASE WHEN p_unsynced_only THEN 'unsynced ' END,
                                                 v_entity, v_added, qbsync.caller())),
            qbsync.caller());
    END LOOP;
    RETURN v_count;
END
$$;

CREATE FUNCTION qbsync.sync_all_customers() RETURNS int
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT qbsync.sync_type('Customer', true, 'sync_all_customers', 'customer') $$;
COMMENT ON FUNCTION qbsync.sync_all_customers() IS
    'Queues every customer key (qbsync_map.<entity>_keys() of the Customer entities) that has no QuickBooks customer in the active company yet; returns how many were queued.';

CREATE FUNCTION qbsync.sync_catalog() RETURNS int
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT qbsync.sync_type('Item', false, 'sync_catalog', 'product') $$;
COMMENT ON FUNCTION qbsync.sync_catalog() IS
    'Queues every key of the Item entities (the whole catalogue, synced or not: a refresh); returns how many were queued (keys already pending count 0).';

CREATE FUNCTION qbsync.retry_dead(entity text DEFAULT NULL, key text DEFAULT NULL)
RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p_entity text := retry_dead.entity;
    p_key text := retry_dead.key;
    v_actor text := qbsync.caller();
    v_realm text := qbsync.active_realm();
    v_ids bigint[];
BEGIN
    IF p_entity IS NOT NULL THEN
        PERFORM qbsync.check_entity(p_entity, 'retry_dead');
    END IF;
    SELECT array_agg(d.id) INTO v_ids
    FROM (SELECT o.id FROM qbsync.outbox o
          WHERE o.state = 'dead' AND (p_entity IS NULL OR o.entity = p_entity)
            AND (p_key IS NULL OR o.key = p_key)
          FOR UPDATE) d;
    IF v_ids IS NULL THEN
        RETURN 0;
    END IF;

    INSERT INTO qbsync.integration_logs (operation, model_type, model_id, status, error_message,
                                         realm_id, attempt, actor, details)
    SELECT 'retry_dead', o.entity, o.key, 'info',
           format('dead row queued again by %s (was: %s)', v_actor, left(o.last_error, 500)),
           v_realm, o.attempts, v_actor, jsonb_build_object('outbox_id', o.id)
    FROM qbsync.outbox o WHERE o.id = ANY (v_ids);
    UPDATE qbsync.notices n
    SET acknowledged_at = now(), acknowledged_by = v_actor || ': retry_dead'
    FROM (SELECT DISTINCT o.entity, o.key FROM qbsync.outbox o WHERE o.id = ANY (v_ids)) r
    WHERE n.acknowledged_at IS NULL AND n.kind = 'dead_row' AND n.entity = r.entity
      AND n.key = r.key;

    -- A key that is pending already keeps that row (forced if a dead one was); of several
    -- dead rows of one key only the newest goes back. The others are merged away.
    UPDATE qbsync.outbox p SET force = true
    WHERE p.state = 'pending' AND NOT p.force
      AND EXISTS (SELECT 1 FROM qbsync.outbox d
                  WHERE d.id = ANY (v_ids) AND d.force AND d.entity = p.entity AND d.key = p.key);
    DELETE FROM qbsync.outbox d
    WHERE d.id = ANY (v_ids)
      AND (EXISTS (SELECT 1 FROM qbsync.outbox p
                   WHERE p.state = 'pending' AND p.entity = d.entity AND p.key = d.key)
           OR EXISTS (SELECT 1 FROM qbsync.outbox d2
                      WHERE d2.id = ANY (v_ids) AND d2.entity = d.entity AND d2.key = d.key
                        AND d2.id > d.id));
    -- request_id is kept: QuickBooks remembers only successful writes, so replaying it is
    -- safe and keeps "exactly one object" across the retry.
    UPDATE qbsync.outbox o
    SET state = 'pending', attempts = 0, next_attempt_at = now(), origin = 'retry_dead',
        last_error = NULL, last_error_code = NULL
    WHERE o.id = ANY (v_ids) AND o.state = 'dead';
    IF qbsync_capture.daemon_waiting() THEN
        PERFORM pg_notify('qbsync_wakeup', '');
    END IF;
    RETURN cardinality(v_ids);
END
$$;
COMMENT ON FUNCTION qbsync.retry_dead(text, text) IS
    'Puts dead rows (all, one entity''s, or one key''s) back to pending with attempts 0, logged with the caller as actor; a dead row whose key is pending already is merged into that row. Acknowledges their dead_row notices. Returns how many dead rows were taken.';

-- The dashboard ------------------------------------------------------------------------------
CREATE FUNCTION qbsync.dashboard_row()
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

    IF order_entity IS NOT NULL
       AND qbsync.mapping_function(order_entity, '_unsynced_count') IS NOT NULL THEN
        BEGIN
            EXECUTE format('SELECT qbsync_map.%I()', order_entity || '_unsynced_count')
                INTO orders_pending;
        EXCEPTION WHEN OTHERS THEN
            orders_pending := NULL;   -- a broken mapping function must not take the dashboard down
            RAISE WARNING 'qbsync.dashboard: qbsync_map.%_unsynced_count() failed: %',
                order_entity, SQLERRM;
        END;
    END IF;
    RETURN NEXT;
END
$$;

CREATE VIEW qbsync.dashboard AS SELECT * FROM qbsync.dashboard_row();
COMMENT ON VIEW qbsync.dashboard IS
    'One row: the QuickBooks connection, orders synced (today / this month / ever), orders still to invoice, errors and error rate today, the queue. Days are in the setting dashboard_time_zone. Cheap at any log size (counters, not log scans).';
COMMENT ON COLUMN qbsync.dashboard.realm_id IS 'the active QuickBooks company (realm); NULL when none is connected';
COMMENT ON COLUMN qbsync.dashboard.company_name IS 'its name in QuickBooks';
COMMENT ON COLUMN qbsync.dashboard.connection_status IS 'connected | needs_reconnect (run qbsync connect) | disconnected | not connected';
COMMENT ON COLUMN qbsync.dashboard.orders_synced_today IS 'orders (rows of the Invoice entity) that got their QuickBooks invoice today (first sync)';
COMMENT ON COLUMN qbsync.dashboard.orders_synced_this_month IS 'the same since the 1st of this month';
COMMENT ON COLUMN qbsync.dashboard.orders_synced_total IS 'orders with a QuickBooks invoice in this company (entity_map)';
COMMENT ON COLUMN qbsync.dashboard.orders_pending IS 'finished orders without an invoice yet (qbsync_map.<order entity>_unsynced_count(); NULL if the mapping has none)';
COMMENT ON COLUMN qbsync.dashboard.pushes_today IS 'successful pushes today, every entity (updates and voids included)';
COMMENT ON COLUMN qbsync.dashboard.errors_today IS 'failed push attempts today, every entity (retry, failed and dead log rows)';
COMMENT ON COLUMN qbsync.dashboard.error_rate_today IS 'percent of today''s push attempts that failed: errors_today / (pushes_today + errors_today)';
COMMENT ON COLUMN qbsync.dashboard.queue_depth IS 'outbox rows waiting (pending)';
COMMENT ON COLUMN qbsync.dashboard.queue_running IS 'outbox rows a daemon is pushing now';
COMMENT ON COLUMN qbsync.dashboard.oldest_pending_age IS 'how long the oldest waiting row has waited';
COMMENT ON COLUMN qbsync.dashboard.dead IS 'rows out of tries (see qbsync.failed; qbsync.retry_dead())';
COMMENT ON COLUMN qbsync.dashboard.open_notices IS 'notices nobody acknowledged (qbsync.open_notices)';
COMMENT ON COLUMN qbsync.dashboard.daemons_alive IS 'daemons with a heartbeat in the last 2 minutes';
COMMENT ON COLUMN qbsync.dashboard.order_entity IS 'the entity counted as orders (qbo_type Invoice)';

-- Log views -----------------------------------------------------------------------------------
CREATE VIEW qbsync.sync_logs AS
SELECT l.created_at AS at,
       l.model_type AS entity,
       l.model_id AS key,
       l.operation,
       l.status,
       coalesce(l.error_message,
                CASE WHEN l.status = 'success' AND l.qbo_id IS NOT NULL
                     THEN format('QuickBooks id %s', l.qbo_id) END) AS message,
       l.error_code AS code,
       l.attempt,
       l.response_time_ms AS ms,
       l.qbo_id,
       l.actor,
       l.realm_id,
       l.request_id,
       l.details,
       l.id
FROM qbsync.integration_logs l
ORDER BY l.created_at DESC, l.id DESC;
COMMENT ON VIEW qbsync.sync_logs IS
    'The audit log, newest first, readable. Filter on at (partition pruning), entity, key, status, operation; add LIMIT.';
COMMENT ON COLUMN qbsync.sync_logs.status IS 'success | retry (will try again) | dead (out of tries) | failed | skipped (nothing to push) | info (admin action, token event)';
COMMENT ON COLUMN qbsync.sync_logs.message IS 'QuickBooks'' or the mapping''s error message; for a success the QuickBooks id';
COMMENT ON COLUMN qbsync.sync_logs.code IS 'QuickBooks fault code or SQLSTATE';
COMMENT ON COLUMN qbsync.sync_logs.ms IS 'QuickBooks response time';
COMMENT ON COLUMN qbsync.sync_logs.actor IS 'daemon, or the role that ran an admin function';

CREATE VIEW qbsync.recent_activity AS
SELECT at, entity, key, operation, status,
       left(coalesce(message, ''), 200) AS message, code, ms, actor
FROM (SELECT * FROM qbsync.sync_logs LIMIT 10) recent;
COMMENT ON VIEW qbsync.recent_activity IS 'The last 10 log rows, newest first.';

CREATE VIEW qbsync.recent_failures AS
SELECT at, entity, key, operation, status, message, code, attempt, ms, request_id
FROM qbsync.sync_logs
WHERE at > now() - interval '7 days' AND status IN ('failed', 'retry', 'dead');
COMMENT ON VIEW qbsync.recent_failures IS 'Failed push attempts of the last 7 days (retry, dead, failed), newest first.';

CREATE VIEW qbsync.failed AS
SELECT o.entity,
       o.key,
       o.last_error,
       o.last_error_code,
       o.attempts,
       e.max_attempts,
       o.last_attempt_at,
       o.enqueued_at,
       o.origin,
       o.force,
       EXISTS (SELECT 1 FROM qbsync.outbox p
               WHERE p.entity = o.entity AND p.key = o.key AND p.state IN ('pending', 'running'))
           AS queued_again,
       format('SELECT qbsync.retry_dead(%L, %L);', o.entity, o.key) AS retry_with,
       o.request_id,
       o.id AS outbox_id
FROM qbsync.outbox o
LEFT JOIN qbsync.entities e ON e.entity = o.entity
WHERE o.state = 'dead'
ORDER BY o.last_attempt_at DESC NULLS LAST, o.id DESC;
COMMENT ON VIEW qbsync.failed IS
    'Rows out of tries or refused for good (outbox state dead), most recent first: the error, how to retry. A later successful push of the key removes its dead row.';
COMMENT ON COLUMN qbsync.failed.last_error IS 'QuickBooks'' or the mapping''s message from the last attempt';
COMMENT ON COLUMN qbsync.failed.last_error_code IS 'QuickBooks fault code (e.g. 6240) or SQLSTATE (QB001 = the mapping refused the row)';
COMMENT ON COLUMN qbsync.failed.queued_again IS 'a newer change of the key is already queued';
COMMENT ON COLUMN qbsync.failed.retry_with IS 'the call that queues it again';

-- Queue health ------------------------------------------------------------------------------
-- Transactions (and replication slots, prepared transactions) that hold back the xmin
-- horizon: while they last, VACUUM cannot remove the outbox's dead tuples. SECURITY
-- DEFINER so that readers see every session (as the owner sees pg_stat_activity); the
-- query text only for callers allowed to read it anyway (pg_read_all_stats or same role).
CREATE FUNCTION qbsync.xmin_holders()
RETURNS TABLE (kind text, name text, usename text, application_name text, state text,
               xact_age interval, xmin_age int, query text)
LANGUAGE plpgsql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_min interval := make_interval(secs => coalesce(
        (qbsync.setting('long_transaction_seconds'))::float8, 60));
    v_caller name := CASE WHEN current_setting('role') IN ('none', '') THEN session_user
                          ELSE current_setting('role')::name END;
    v_all boolean;
BEGIN
    v_all := pg_has_role(v_caller, 'pg_read_all_stats', 'USAGE');
    RETURN QUERY
    SELECT 'transaction'::text, format('pid %s', a.pid), a.usename::text, a.application_name,
           a.state, now() - a.xact_start, age(a.backend_xmin),
           CASE WHEN v_all OR pg_has_role(v_caller, a.usesysid, 'MEMBER')
                THEN left(a.query, 300) END
    FROM pg_stat_activity a
    WHERE a.pid <> pg_backend_pid() AND a.xact_start < now() - v_min
    UNION ALL
    SELECT 'prepared', p.gid, p.owner::text, NULL, 'prepared', now() - p.prepared,
           age(p.transaction), NULL
    FROM pg_prepared_xacts p
    WHERE p.prepared < now() - v_min
    UNION ALL
    SELECT 'replication slot', s.slot_name::text, NULL, NULL,
           CASE WHEN s.active THEN 'active' ELSE 'inactive' END, NULL,
           greatest(age(s.xmin), age(s.catalog_xmin)), NULL
    FROM pg_replication_slots s
    WHERE s.xmin IS NOT NULL OR s.catalog_xmin IS NOT NULL
    ORDER BY 7 DESC NULLS LAST, 6 DESC NULLS LAST;
END
$$;
COMMENT ON FUNCTION qbsync.xmin_holders() IS
    'Transactions older than setting long_transaction_seconds, old prepared transactions and replication slots with an xmin: what keeps VACUUM from cleaning the outbox.';

CREATE VIEW qbsync.queue_health AS
WITH per_entity AS (
    SELECT e.entity, e.qbo_type, e.max_attempts AS attempt_limit,
           count(o.id) FILTER (WHERE o.state = 'pending') AS pending,
           count(o.id) FILTER (WHERE o.state = 'running') AS running,
           count(o.id) FILTER (WHERE o.state = 'dead') AS dead,
           count(o.id) FILTER (WHERE o.state = 'pending' AND o.next_attempt_at <= now()) AS ready_now,
           count(o.id) FILTER (WHERE o.state = 'running' AND o.lease_expires_at < now())
               AS expired_leases,
           max(o.attempts) FILTER (WHERE o.state <> 'dead') AS max_attempts,
           now() - min(o.enqueued_at) FILTER (WHERE o.state = 'pending') AS oldest_pending_age
    FROM qbsync.entities e
    LEFT JOIN qbsync.outbox o ON o.entity = e.entity
    GROUP BY e.entity, e.qbo_type, e.max_attempts
), captured AS (
    -- changes not yet collected into the outbox: pending, ready now
    SELECT c.entity, count(*) AS n, now() - min(c.captured_at) AS age
    FROM qbsync.changes c GROUP BY c.entity
)
SELECT 'entity'::text AS section, p.entity AS name, p.pending + coalesce(c.n, 0) AS pending,
       p.running, p.dead, p.ready_now + coalesce(c.n, 0) AS ready_now, p.expired_leases,
       p.max_attempts, p.attempt_limit,
       greatest(p.oldest_pending_age, c.age) AS oldest_pending_age,
       NULL::interval AS age, NULL::boolean AS waiting, NULL::int AS xmin_age,
       format('-> QuickBooks %s', p.qbo_type) AS detail
FROM per_entity p LEFT JOIN captured c USING (entity)
UNION ALL
SELECT 'worker', w.worker_id, NULL, (SELECT count(*) FROM qbsync.outbox o
                                     WHERE o.state = 'running' AND o.lease_owner = w.worker_id),
       NULL, NULL, NULL, NULL, NULL, NULL, now() - w.heartbeat_at,
       coalesce(w.waiting_until > now(), false), NULL,
       format('%s pid %s, up %s', w.hostname, w.pid, date_trunc('second', now() - w.started_at))
FROM qbsync.workers w
UNION ALL
SELECT 'xmin', x.kind || ' ' || x.name, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
       x.xact_age, NULL, x.xmin_age,
       concat_ws(' ', x.usename, nullif(x.application_name, ''), x.state, left(x.query, 120))
FROM qbsync.xmin_holders() x;
COMMENT ON VIEW qbsync.queue_health IS
    'The queue at a glance. section entity: per entity, rows pending / running / dead, ready now, expired leases (a daemon died), highest attempts, oldest wait. section worker: each daemon, rows it holds (running), heartbeat age (age), sleeping on LISTEN (waiting). section xmin: transactions older than setting long_transaction_seconds, prepared transactions, replication slots (age, xmin_age): they hold back the xmin horizon, so VACUUM cannot clean the outbox behind them.';
COMMENT ON COLUMN qbsync.queue_health.section IS 'entity | worker | xmin';
COMMENT ON COLUMN qbsync.queue_health.ready_now IS 'entity: pending rows whose time has come (a daemon should claim them now)';
COMMENT ON COLUMN qbsync.queue_health.expired_leases IS 'entity: running rows whose lease ran out (their daemon died or hangs; they are claimed again)';
COMMENT ON COLUMN qbsync.queue_health.max_attempts IS 'entity: most tries spent by a live (pending/running) row';
COMMENT ON COLUMN qbsync.queue_health.attempt_limit IS 'entity: tries before a row goes dead';
COMMENT ON COLUMN qbsync.queue_health.age IS 'worker: time since its last heartbeat; xmin: transaction age';
COMMENT ON COLUMN qbsync.queue_health.waiting IS 'worker: sleeping on LISTEN qbsync_wakeup (capture NOTIFYs only then)';
COMMENT ON COLUMN qbsync.queue_health.xmin_age IS 'xmin: transactions since its snapshot (age(backend_xmin))';

-- Connections, without token material ------------------------------------------------------
CREATE VIEW qbsync.connection_status AS
SELECT c.realm_id,
       c.company_name,
       c.environment,
       c.status,
       c.active,
       c.access_expires_at,
       c.refresh_expires_at,
       c.refresh_expires_at - now() AS refresh_expires_in,
       c.refreshed_at AS last_refresh,
       c.last_error,
       c.connected_at,
       c.api_base_url,
       c.updated_at
FROM qbsync.connections c
ORDER BY c.active DESC, c.realm_id;
COMMENT ON VIEW qbsync.connection_status IS
    'QuickBooks companies: status, token expiry times, last refresh and error. Never token material (the tokens column is not reachable through any qbsync view).';
COMMENT ON COLUMN qbsync.connection_status.status IS 'connected | needs_reconnect (refresh token refused: run qbsync connect) | disconnected';
COMMENT ON COLUMN qbsync.connection_status.active IS 'the company the daemon syncs to';
COMMENT ON COLUMN qbsync.connection_status.access_expires_at IS 'the access token (1 hour) is refreshed by the daemon before this';
COMMENT ON COLUMN qbsync.connection_status.refresh_expires_at IS 'after this the company must be connected again; each refresh moves it';

-- Connections: the writes of token ciphertext (made by qbsync's vault, so psql users do not
-- call these by hand; they are here so that every state change is a function). They run with
-- the caller's rights: the daemon role has UPDATE on connections and INSERT on the logs.

-- The daemon stored a refreshed pair (token_generation + 1) and logged it; NULL when the
-- connection row is gone (disconnected meanwhile).
CREATE FUNCTION qbsync.store_refreshed_tokens(
    p_realm text, p_tokens bytea, p_key_id text, p_access_expires_at timestamptz,
    p_refresh_expires_at timestamptz
) RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH upd AS (
        UPDATE qbsync.connections
        SET tokens = p_tokens, key_id = p_key_id, token_generation = token_generation + 1,
            access_expires_at = p_access_expires_at, refresh_expires_at = p_refresh_expires_at,
            refreshed_at = now(), updated_at = now(), last_error = NULL
        WHERE realm_id = p_realm
        RETURNING token_generation)
    , log AS (
        INSERT INTO qbsync.integration_logs
            (operation, model_type, model_id, status, realm_id, actor)
        SELECT 'token.refresh', 'connection', p_realm, 'info', p_realm, 'daemon'
        FROM upd)
    SELECT token_generation FROM upd
$$;

-- Intuit refused the refresh token: the company must be connected again (tokens kept).
CREATE FUNCTION qbsync.mark_needs_reconnect(p_realm text, p_message text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    WITH upd AS (
        UPDATE qbsync.connections
        SET status = 'needs_reconnect', last_error = p_message, updated_at = now()
        WHERE realm_id = p_realm RETURNING realm_id)
    INSERT INTO qbsync.integration_logs
        (operation, model_type, model_id, status, realm_id, error_message, error_code, actor)
    SELECT 'token.refresh', 'connection', p_realm, 'failed', p_realm, p_message, 'invalid_grant',
           'daemon'
    FROM upd
$$;

-- `qbsync connect`: store (or replace) a company and its tokens; returns the token
-- generation. p_active makes it the sync target (any other active company is deactivated).
-- Reconnecting resets the status to connected and bumps token_generation.
CREATE FUNCTION qbsync.save_connection(
    p_realm text, p_environment text, p_api_base_url text, p_company_name text,
    p_company_info jsonb, p_tokens bytea, p_key_id text, p_access_expires_at timestamptz,
    p_refresh_expires_at timestamptz, p_active boolean
) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_generation bigint;
BEGIN
    IF p_active THEN
        UPDATE qbsync.connections SET active = false, updated_at = now()
        WHERE active AND realm_id <> p_realm;
    END IF;
    INSERT INTO qbsync.connections AS c
        (realm_id, environment, api_base_url, company_name, company_info, tokens, key_id,
         access_expires_at, refresh_expires_at, status, active, connected_at, refreshed_at)
    VALUES (p_realm, p_environment, p_api_base_url, p_company_name, p_company_info, p_tokens,
            p_key_id, p_access_expires_at, p_refresh_expires_at, 'connected', p_active, now(),
            now())
    ON CONFLICT (realm_id) DO UPDATE
        SET environment = excluded.environment, api_base_url = excluded.api_base_url,
            company_name = excluded.company_name, company_info = excluded.company_info,
            tokens = excluded.tokens, key_id = excluded.key_id,
            token_generation = c.token_generation + 1,
            access_expires_at = excluded.access_expires_at,
            refresh_expires_at = excluded.refresh_expires_at,
            status = 'connected', active = excluded.active, last_error = NULL,
            connected_at = now(), refreshed_at = now(), updated_at = now()
    RETURNING token_generation INTO v_generation;
    RETURN v_generation;
END
$$;

-- `qbsync disconnect`: inactive, disconnected, tokens replaced by an encrypted empty payload
-- (the row stays for history); the generation moves so daemons drop what they hold.
CREATE FUNCTION qbsync.mark_disconnected(p_realm text, p_tokens bytea, p_key_id text)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE qbsync.connections
    SET status = 'disconnected', active = false, tokens = p_tokens, key_id = p_key_id,
        token_generation = token_generation + 1, access_expires_at = NULL,
        refresh_expires_at = NULL, last_error = NULL, updated_at = now()
    WHERE realm_id = p_realm
$$;

-- `qbsync rotate-key`: the same tokens re-encrypted under another key, only if nobody
-- refreshed since they were read (token_generation unchanged, and NOT bumped: the tokens did
-- not change). False when the generation moved or the row is gone.
CREATE FUNCTION qbsync.rekey_tokens(p_realm text, p_tokens bytea, p_key_id text,
                                    p_generation bigint) RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE qbsync.connections SET tokens = p_tokens, key_id = p_key_id, updated_at = now()
    WHERE realm_id = p_realm AND token_generation = p_generation;
    RETURN FOUND;
END
$$;

-- maintain_log_partitions creates and drops partitions: only the owner of integration_logs
-- may, so the daemon role calls it with the owner's rights.
ALTER FUNCTION qbsync.maintain_log_partitions(int, int) SECURITY DEFINER;

-- Roles ---------------------------------------------------------------------------------------
-- Cluster-wide NOLOGIN group roles; a DBA grants them to login roles:
--   GRANT qbsync_reader TO grafana;  GRANT qbsync_admin TO alice;  GRANT qbsync_daemon TO qbsync;
DO $$
DECLARE
    v_role text;
BEGIN
    FOREACH v_role IN ARRAY ARRAY['qbsync_reader', 'qbsync_admin', 'qbsync_daemon'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = v_role) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', v_role);
            EXCEPTION
                WHEN duplicate_object OR unique_violation THEN NULL;  -- created concurrently
                WHEN insufficient_privilege THEN
                    RAISE EXCEPTION 'qbsync: cannot create role %: the migrating user lacks CREATEROLE', v_role
                        USING HINT = format('A superuser can run: CREATE ROLE %I NOLOGIN; then migrate again.', v_role);
            END;
        END IF;
    END LOOP;
END
$$;

-- (No COMMENT ON ROLE / GRANT role TO role: those write cluster-wide catalog rows, which
-- migrations of two databases running at once would race on. Privileges below are per
-- database, so admin gets the reader's grants directly.)

-- Everything in qbsync is closed to PUBLIC (0001/0002 did it for their functions).
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA qbsync FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA qbsync FROM PUBLIC;

GRANT USAGE ON SCHEMA qbsync TO qbsync_reader, qbsync_admin, qbsync_daemon;

-- reader (and admin): the views, and the functions behind them
GRANT SELECT ON qbsync.dashboard, qbsync.recent_activity, qbsync.sync_logs, qbsync.failed,
                qbsync.recent_failures, qbsync.queue_health, qbsync.connection_status,
                qbsync.open_notices, qbsync.report_comparison, qbsync.rate_limit_status
    TO qbsync_reader, qbsync_admin;
GRANT EXECUTE ON FUNCTION qbsync.dashboard_row(), qbsync.xmin_holders(), qbsync.backlog()
    TO qbsync_reader, qbsync_admin;

-- admin: the admin functions, and the request/report tables
GRANT EXECUTE ON FUNCTION
    qbsync.resync(text, text, boolean), qbsync.resync_many(text, text[], boolean),
    qbsync.sync_all_customers(), qbsync.sync_catalog(), qbsync.retry_dead(text, text),
    qbsync.request_report(text), qbsync.request_report(date, date, text),
    qbsync.request_connection_test(), qbsync.acknowledge(bigint), qbsync.acknowledge_all(),
    qbsync.rebuild_stats(), qbsync.collect_changes(int)
    TO qbsync_admin;
GRANT SELECT ON qbsync.admin_requests, qbsync.reports, qbsync.notices, qbsync.entities,
                qbsync.settings
    TO qbsync_admin;

-- daemon: the functions it calls (they run with its rights, hence the table grants below)
DO $$
DECLARE
    v_fn regprocedure;
BEGIN
    FOR v_fn IN
        SELECT p.oid::regprocedure FROM pg_proc p
        WHERE p.pronamespace = 'qbsync'::regnamespace
          AND p.proname IN ('claim', 'extend_leases', 'complete', 'fail', 'skip', 'release',
                            'held', 'requeue', 'record_success', 'write_back', 'log', 'map',
                            'map_many', 'ready_backlog', 'collect_changes', 'backlog',
                            'announce_waiting', 'stop_waiting', 'snapshot_settled',
                            'register_worker', 'unregister_worker', 'publish_waiting',
                            'maintain_log_partitions',
                            'setting', 'take_permit', 'return_permit', 'throttled',
                            'set_rate_limits', 'claim_admin_requests', 'finish_admin_request',
                            'fail_admin_request', 'store_report', 'report_total',
                            'invoice_entity', 'mapping_function', 'raise_notice',
                            'fold_stats', 'qbo_digest', 'complete_many', 'mapped',
                            'record_successes', 'success_outcome', 'skip_many',
                            'map_dependencies')
    LOOP
        EXECUTE format('GRANT EXECUTE ON FUNCTION %s TO qbsync_daemon', v_fn);
    END LOOP;
END
$$;
GRANT EXECUTE ON FUNCTION
    qbsync.store_refreshed_tokens(text, bytea, text, timestamptz, timestamptz),
    qbsync.mark_needs_reconnect(text, text)
    TO qbsync_daemon;
GRANT SELECT, UPDATE, DELETE ON qbsync.outbox TO qbsync_daemon;
GRANT SELECT ON qbsync.changes TO qbsync_daemon;
GRANT SELECT, INSERT, UPDATE ON qbsync.entity_map TO qbsync_daemon;
GRANT INSERT ON qbsync.integration_logs TO qbsync_daemon;
GRANT SELECT, UPDATE ON qbsync.connections TO qbsync_daemon;
GRANT SELECT, INSERT, UPDATE ON qbsync.realm_settings TO qbsync_daemon;
GRANT SELECT, INSERT, UPDATE, DELETE ON qbsync.workers TO qbsync_daemon;
GRANT UPDATE ON SEQUENCE qbsync_capture.wakeup TO qbsync_daemon;  -- publish_waiting
GRANT SELECT ON qbsync.entities, qbsync.settings TO qbsync_daemon;
GRANT SELECT, INSERT, UPDATE ON qbsync.rate_limits, qbsync.rate_state TO qbsync_daemon;
GRANT SELECT, INSERT, DELETE ON qbsync.rate_permits TO qbsync_daemon;
GRANT SELECT ON qbsync.rate_limit_status TO qbsync_daemon;
GRANT SELECT, UPDATE ON qbsync.admin_requests TO qbsync_daemon;
GRANT SELECT, INSERT ON qbsync.reports TO qbsync_daemon;
-- the mapping functions (write_back runs <entity>_outcome, which updates shop tables: the
-- shop's own grants for those are the DBA's to give, see README "Roles")
GRANT USAGE ON SCHEMA qbsync_map TO qbsync_daemon;
GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA qbsync_map TO qbsync_daemon;
ALTER DEFAULT PRIVILEGES IN SCHEMA qbsync_map GRANT EXECUTE ON FUNCTIONS TO qbsync_daemon;
