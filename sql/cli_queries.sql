-- What operators run: the CLI commands, the demo and the sample shops, as named blocks
-- ("-- name: <name>"), parsed once (qbsync.queries.load_cli). State changes are database
-- functions (sql/migrations); these are the calls into them and the reads behind the output.
-- Each block is written for its caller's driver: psycopg (%s, %(name)s) for the synchronous
-- commands, asyncpg ($1) for connect, disconnect, rotate-key and the demo's progress. What
-- the daemon runs is in queries.sql.

-- ---- qbsync migrate (psycopg) ----------------------------------------------------------------
-- Bookkeeping of the migrations themselves: plain SQL here, not functions, because the
-- functions would be created by the very migrations this records.

-- name: migrations_lock
-- pg_advisory_lock key: any constant unique to qbsync; hashtext() keeps it readable in SQL.
SELECT pg_advisory_lock(hashtext('qbsync.migrate'));

-- name: migrations_unlock
SELECT pg_advisory_unlock(hashtext('qbsync.migrate'));

-- name: migrations_bootstrap
-- qbsync_version: the qbsync release that applied the migration, named when a database is
-- newer than the qbsync reading it (NULL for rows of qbsync 0.1.0, which did not record it).
CREATE SCHEMA IF NOT EXISTS qbsync;
CREATE TABLE IF NOT EXISTS qbsync.schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT current_user
);
ALTER TABLE qbsync.schema_migrations ADD COLUMN IF NOT EXISTS qbsync_version text;

-- name: migrations_table_exists
SELECT to_regclass('qbsync.schema_migrations') IS NOT NULL;

-- name: migrations_applied
SELECT version, name, checksum FROM qbsync.schema_migrations;

-- name: migrations_record
INSERT INTO qbsync.schema_migrations (version, name, checksum, qbsync_version)
VALUES (%s, %s, %s, %s);

-- name: workers_table_exists
SELECT to_regclass('qbsync.workers') IS NOT NULL;

-- name: migrations_live_daemons
-- Daemons with a heartbeat in the last 2 minutes (qbsync.dashboard's daemons_alive): they
-- heartbeat every 5 s and unregister when they stop, so a row this fresh is a running
-- daemon or one killed less than 2 minutes ago.
SELECT worker_id, hostname, pid,
       extract(epoch FROM now() - heartbeat_at)::int AS heartbeat_age
FROM qbsync.workers
WHERE heartbeat_at > now() - interval '2 minutes'
ORDER BY worker_id;

-- ---- the schema version every command checks first (psycopg; qbsync.schema) ----------------
-- Plain SQL over the bookkeeping table, so that it reads any schema version, the oldest
-- included (to_jsonb: qbsync 0.1.0's table has no qbsync_version column).

-- name: schema_access
SELECT to_regclass('qbsync.schema_migrations') IS NOT NULL AS present,
       coalesce(has_table_privilege(to_regclass('qbsync.schema_migrations'), 'SELECT'), false)
           AS readable,
       current_user AS role;

-- name: schema_versions
SELECT version, name, checksum, applied_at, applied_by,
       to_jsonb(m) ->> 'qbsync_version' AS qbsync_version
FROM qbsync.schema_migrations m
ORDER BY version;

-- The role that owns qbsync's objects (migrate.ensure_owner_role): NOLOGIN, no members.
-- name: owner_role_state
SELECT r.rolcanlogin, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication,
       r.rolbypassrls,
       ARRAY(SELECT m.member::regrole::text FROM pg_auth_members m
             WHERE m.roleid = r.oid AND m.member <> (SELECT oid FROM pg_roles WHERE rolname = current_user)
             ORDER BY 1) AS members,
       pg_has_role(r.oid, 'pg_read_all_stats', 'MEMBER') AS reads_stats,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS migrator_is_superuser,
       pg_has_role(current_user, r.oid, 'MEMBER') AS migrator_is_member
FROM pg_roles r WHERE r.rolname = %s;

-- name: owner_role_create
-- the role name is an identifier, composed in migrate.py
CREATE ROLE {role} NOLOGIN;

-- name: owner_role_read_stats
-- qbsync.xmin_holders (queue_health) lists every session's long transaction, as only
-- pg_read_all_stats members may see them
GRANT pg_read_all_stats TO {role};

-- name: owner_role_join
-- a migrating role that is not a superuser must be a member to hand objects to the role
GRANT {role} TO CURRENT_USER;

-- name: ownership_function_exists
SELECT to_regprocedure('qbsync.reassert_ownership()') IS NOT NULL;

-- name: ownership_reassert
SELECT count(*) FROM qbsync.reassert_ownership();

-- ---- status, logs (psycopg) ------------------------------------------------------------------

-- name: dashboard
-- (no placeholder: the demo runs it with asyncpg too)
SELECT * FROM qbsync.dashboard;

-- name: queue_health_entities
SELECT name, pending, running, dead, ready_now, expired_leases, oldest_pending_age
FROM qbsync.queue_health WHERE section = 'entity'
ORDER BY name;

-- name: sync_logs_page
-- A NULL filter matches everything (the planner folds it away: the values are known).
SELECT at, entity, key, operation, status, message, code, ms, id
FROM qbsync.sync_logs
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(operation)s::text IS NULL OR operation = %(operation)s::text)
  AND (%(entity)s::text IS NULL OR entity = %(entity)s::text)
  AND (%(key)s::text IS NULL OR key = %(key)s::text)
  AND (%(since)s::timestamptz IS NULL OR at >= %(since)s::timestamptz)
LIMIT %(limit)s OFFSET %(offset)s;

-- name: sync_logs_count
-- The rows sync_logs_page filters, counted up to a cap (how many pages).
SELECT count(*) AS n
FROM (SELECT 1 FROM qbsync.sync_logs
      WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
        AND (%(operation)s::text IS NULL OR operation = %(operation)s::text)
        AND (%(entity)s::text IS NULL OR entity = %(entity)s::text)
        AND (%(key)s::text IS NULL OR key = %(key)s::text)
        AND (%(since)s::timestamptz IS NULL OR at >= %(since)s::timestamptz)
      LIMIT %(cap)s) s;

-- name: sync_logs_after
-- logs --follow: the filtered rows after a position (at, id), oldest first.
SELECT at, entity, key, operation, status, message, code, ms, id
FROM qbsync.sync_logs
WHERE (%(status)s::text IS NULL OR status = %(status)s::text)
  AND (%(operation)s::text IS NULL OR operation = %(operation)s::text)
  AND (%(entity)s::text IS NULL OR entity = %(entity)s::text)
  AND (%(key)s::text IS NULL OR key = %(key)s::text)
  AND at >= %(after_at)s::timestamptz
  AND (at, id) > (%(after_at)s::timestamptz, %(after_id)s::bigint)
ORDER BY at, id
LIMIT %(limit)s;

-- name: failed_rows
SELECT entity, key, last_error, last_error_code, attempts, max_attempts, last_attempt_at,
       enqueued_at, origin, force, queued_again, retry_with, outbox_id
FROM qbsync.failed
WHERE (%(entity)s::text IS NULL OR entity = %(entity)s::text)
LIMIT %(limit)s;

-- ---- resync, sync, retry-dead (psycopg) ------------------------------------------------------

-- name: resync
SELECT qbsync.resync(%s, %s, %s)::int AS n;

-- name: resync_many
SELECT qbsync.resync_many(%s, %s, %s) AS n;

-- name: sync_all_customers
SELECT qbsync.sync_all_customers() AS n;

-- name: sync_catalog
SELECT qbsync.sync_catalog() AS n;

-- name: sync_progress
SELECT count(*) FILTER (WHERE o.state IN ('pending', 'running')) AS left,
       count(*) FILTER (WHERE o.state = 'dead') AS dead
FROM qbsync.outbox o JOIN qbsync.entities e USING (entity)
WHERE e.qbo_type = %s;

-- name: retry_dead
SELECT qbsync.retry_dead(%s, %s) AS n;

-- ---- requests answered by the daemon (psycopg) -----------------------------------------------

-- name: admin_request_state
SELECT state, result, error FROM qbsync.admin_requests WHERE id = %s;

-- name: request_report_period
SELECT qbsync.request_report(%s) AS id;

-- name: request_report_dates
SELECT qbsync.request_report(%s::date, %s::date) AS id;

-- name: report_comparison
SELECT * FROM qbsync.report_comparison WHERE report_id = %s;

-- name: request_connection_test
SELECT qbsync.request_connection_test() AS id;

-- name: withdraw_request
-- Ctrl-C while waiting: 'withdrawn', or the state of a request a daemon took already.
SELECT qbsync.withdraw_request(%s) AS state;

-- ---- the company's settings (psycopg) --------------------------------------------------------

-- name: request_settings_refresh
SELECT qbsync.request_settings_refresh() AS id;

-- name: realm_settings_list
SELECT s.name, s.value, s.source, s.updated_at
FROM qbsync.realm_settings s
WHERE s.realm_id = (SELECT realm_id FROM qbsync.connections WHERE active)
ORDER BY s.name;

-- name: missing_settings
SELECT setting, rows_waiting, some_keys, waiting_since, set_it FROM qbsync.missing_settings;

-- name: settings_lookup
SELECT c.realm_id, l.looked_up_at, l.refused, l.ties, l.skipped
FROM qbsync.connections c LEFT JOIN qbsync.realm_lookups l USING (realm_id)
WHERE c.active;

-- ---- notices, drift, reconciliation (psycopg) ------------------------------------------------

-- name: acknowledge
SELECT qbsync.acknowledge(%s) AS ok;

-- name: acknowledge_all
SELECT qbsync.acknowledge_all() AS n;

-- name: open_notices
SELECT id, severity, kind, message, occurrences, last_seen_at, created_at, entity, key,
       realm_id, details
FROM qbsync.open_notices;

-- name: resolve_drift
SELECT qbsync.resolve_drift(%s, %s) AS r;

-- name: open_drift
SELECT id, entity, key, qbo_type, qbo_id, change, fields, detected_at FROM qbsync.drift;

-- name: request_reconcile
SELECT qbsync.request_reconcile(%s::date, %s::date) AS id;

-- name: reconcile_run
SELECT realm_id, from_date, to_date FROM qbsync.reconcile_runs WHERE id = %s;

-- name: reconcile_totals
SELECT coalesce(entity, lower(qbo_type)) AS what, qbo_type, shop_count, shop_total,
       qbo_count, qbo_total, shop_total - qbo_total AS difference, ok,
       missing_in_quickbooks, missing_in_shop, amount_differs, date_differs
FROM qbsync.reconcile_totals WHERE run_id = %s
ORDER BY qbo_type;

-- name: reconcile_problems
SELECT status, qbo_type, entity, key, doc_number, qbo_id, shop_amount, qbo_amount,
       coalesce(shop_txn_date, qbo_txn_date) AS txn_date, note, fix
FROM qbsync.reconcile(%s) WHERE status <> 'ok';

-- name: reconcile_fix
SELECT qbsync.reconcile_fix(%s) AS n;

-- ---- connect, disconnect (asyncpg) -----------------------------------------------------------
-- The refresh lock they take is queries.sql refresh_lock / refresh_unlock (the daemon's).

-- name: connections_table_exists
SELECT to_regclass('qbsync.connections') IS NOT NULL;

-- name: save_connection
SELECT qbsync.save_connection($1, $2, $3, $4, $5::jsonb, $6, $7, $8, $9, $10);

-- name: log_connection_event
-- operation, realm, detail, actor
SELECT qbsync.log($1, 'connection', $2, 'info', $2, $3::jsonb, $4);

-- name: find_connection
-- The realm $1, or the active company when $1 is NULL.
SELECT realm_id, company_name, environment, api_base_url, status
FROM qbsync.connections
WHERE CASE WHEN $1::text IS NULL THEN active ELSE realm_id = $1 END;

-- name: connected_realms
SELECT realm_id FROM qbsync.connections WHERE status <> 'disconnected' ORDER BY realm_id;

-- name: session_lock_timeout
SET lock_timeout = '60s';

-- name: refresh_lock
-- The daemon's refresh lock (qbsync.refresh_lock): a disconnect revokes no token a daemon
-- is rotating.
SELECT qbsync.refresh_lock($1, 'session');

-- name: refresh_unlock
SELECT qbsync.refresh_lock($1, 'release');

-- name: connection_tokens
SELECT tokens, key_id, environment, api_base_url, status
FROM qbsync.connections WHERE realm_id = $1;

-- name: mark_disconnected
SELECT qbsync.mark_disconnected($1, $2, $3);

-- ---- rotate-key (asyncpg) --------------------------------------------------------------------

-- name: connection_keys
SELECT realm_id, key_id, tokens, token_generation FROM qbsync.connections ORDER BY realm_id;

-- name: live_daemons
-- key_ids NULL: a daemon that did not record its key ring (older than 0011_keys.sql)
SELECT worker_id, started_at, key_ids FROM qbsync.workers
WHERE heartbeat_at > now() - interval '2 minutes'
ORDER BY started_at;

-- name: local_lock_timeout
SET LOCAL lock_timeout = '60s';

-- name: refresh_xact_lock
-- The transaction-level twin of the daemon's refresh lock (qbsync.refresh_lock).
SELECT qbsync.refresh_lock($1, 'transaction');

-- name: lock_connection_tokens
SELECT tokens, key_id, token_generation FROM qbsync.connections
WHERE realm_id = $1 FOR UPDATE;

-- name: rekey_tokens
SELECT qbsync.rekey_tokens($1, $2, $3, $4);

-- name: connections_by_key
SELECT key_id, count(*) AS n FROM qbsync.connections GROUP BY 1 ORDER BY 1;

-- ---- demo --------------------------------------------------------------------------------
-- (psycopg) the server check and the demo database's mark; the CREATE / DROP / COMMENT ON
-- DATABASE statements are composed in qbsync.demo (a database name is an identifier).

-- name: ping
SELECT 1;

-- name: database_comment
SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s;

-- (asyncpg) progress and the final dashboard, over the Dixis sample shop

-- name: demo_completed_orders
SELECT count(*) FROM dixis.orders WHERE status = 'completed';

-- name: demo_progress
SELECT (SELECT count(*) FROM dixis.orders
        WHERE status = 'completed' AND quickbooks_sync_status = 'synced'),
       qbsync.backlog(),
       (SELECT count(*) FROM qbsync.outbox WHERE state = 'dead');

-- name: demo_stuck
SELECT entity, key, state::text AS state, last_error FROM qbsync.outbox
WHERE state <> 'dead' ORDER BY id LIMIT 3;

-- name: dashboard_exists
SELECT to_regclass('qbsync.dashboard') IS NOT NULL;

-- name: demo_entity_map_counts
SELECT entity, count(*) FROM qbsync.entity_map GROUP BY 1 ORDER BY 1;

-- name: demo_outbox_counts
SELECT state, count(*) FROM qbsync.outbox GROUP BY 1 ORDER BY 1;

-- name: demo_integration_logs_counts
SELECT operation || ' ' || status, count(*) FROM qbsync.integration_logs GROUP BY 1 ORDER BY 1;

-- name: demo_summary
SELECT (SELECT count(*) FROM dixis.orders) AS orders,
       (SELECT count(*) FROM dixis.orders WHERE status = 'completed') AS completed,
       (SELECT count(*) FROM dixis.orders
        WHERE status = 'completed' AND quickbooks_sync_status = 'synced') AS synced,
       (SELECT count(*) FROM dixis.orders WHERE quickbooks_invoice_id IS NOT NULL) AS invoiced,
       (SELECT count(*) FROM qbsync.outbox WHERE state = 'dead') AS dead,
       qbsync.backlog() AS queued;

-- name: demo_samples
SELECT dixis.order_number(id, created_at) AS order_number, quickbooks_invoice_id,
       quickbooks_invoice_number, total, concat_ws(' ', billing_first_name, billing_last_name)
FROM dixis.orders WHERE quickbooks_sync_status = 'synced'
ORDER BY id LIMIT 5;

-- ---- sample shops (psycopg) ------------------------------------------------------------------
-- A shop's generator, <shop>.generate(orders, seed), is called with a composed schema name
-- in qbsync.shop.

-- name: function_exists
SELECT to_regproc(%s) IS NOT NULL;

-- name: schema_exists
SELECT to_regnamespace(%s) IS NOT NULL;

-- ---- qbsync check-mapping (psycopg; qbsync.check_mapping, qbsync.reads) ----------------------
-- The mapping runs through the same invoker functions the daemon and the admin functions
-- use (map_many, keys_of, unknown_keys, shop_ledger), with the rights of the role running
-- the check, in one read-only snapshot; nothing is written.

-- name: check_snapshot
SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;

-- name: check_entities
SELECT entity, qbo_type FROM qbsync.entities ORDER BY entity;

-- name: check_company
SELECT realm_id, company_name, company_info->>'Country' AS country
FROM qbsync.connections WHERE active;

-- name: check_realm_settings
SELECT name, value, source FROM qbsync.realm_settings WHERE realm_id = %s;

-- name: check_aliases
SELECT name, target FROM qbsync.setting_aliases;

-- name: check_mapping_functions
-- Every function of schema qbsync_map, with what qbsync's calls depend on: the argument
-- types, the result, whether it returns a set, the columns of a RETURNS TABLE.
SELECT p.proname AS name, p.prokind::text AS kind,
       array(SELECT format_type(t, NULL) FROM unnest(p.proargtypes) AS t) AS args,
       format_type(p.prorettype, NULL) AS returns, p.proretset AS retset,
       CASE WHEN p.proargmodes IS NULL THEN '{}'::text[]
            ELSE array(SELECT u.n || ' ' || format_type(u.t, NULL)
                       FROM unnest(p.proallargtypes, p.proargmodes::text[], p.proargnames)
                            AS u(t, m, n)
                       WHERE u.m IN ('o', 't', 'b')) END AS out_columns,
       p.oid::bigint AS oid
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE n.nspname = 'qbsync_map'
ORDER BY p.proname;

-- name: check_keys
SELECT k FROM qbsync.keys_of(%s) AS k;

-- name: check_keys_sample
-- A random sample (setseed first for a repeatable one) and how many keys there are.
SELECT k, count(*) OVER () AS total FROM qbsync.keys_of(%s) AS k ORDER BY random() LIMIT %s;

-- name: check_setseed
SELECT setseed(%s);

-- name: check_unknown_keys
SELECT qbsync.unknown_keys(%s, %s);

-- name: check_map_many
SELECT key, body::text AS body, error_code, error_message FROM qbsync.map_many(%s, %s);

-- name: check_active_map
-- Keys of an entity the active company already has an object for.
SELECT key FROM qbsync.entity_map
WHERE realm_id = %s AND entity = %s AND key = ANY(%s) AND qbo_status = 'active';

-- name: check_doc_numbers_used
SELECT m.entity, m.key, m.doc_number, m.qbo_type FROM qbsync.entity_map m
WHERE m.realm_id = %s AND m.doc_number = ANY(%s) AND m.qbo_status <> 'deleted';

-- name: check_ledger
-- Every document of the period: the totals of the keys checked, the DocNumbers of all.
SELECT l.entity, l.key, l.doc_number, l.amount FROM qbsync.shop_ledger(%s, %s) AS l;

-- name: check_tracked
SELECT tbl::oid::bigint AS rel, tbl::text AS name, entity, columns FROM qbsync.tracked;

-- name: check_enqueue_triggers
-- The shop's own triggers that enqueue (a fan-out track() cannot express), appending to
-- qbsync_capture.changes_<entity> or calling qbsync.enqueue: on UPDATE OF which columns (all
-- when none is listed). The capture functions track() generates (schema qbsync) are the
-- rules of check_tracked.
SELECT t.tgrelid::bigint AS rel, t.tgname AS name, (t.tgtype & 16) <> 0 AS on_update,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = t.tgrelid AND a.attnum = ANY(t.tgattr)) AS columns,
       p.prosrc AS source
FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
WHERE NOT t.tgisinternal AND p.pronamespace <> 'qbsync'::regnamespace
  AND p.prosrc ~ '(qbsync\.enqueue|qbsync_capture\.\"?changes_)';

-- name: check_relations
SELECT c.oid::bigint AS oid, n.nspname, c.relname, c.relkind::text AS relkind,
       c.reltype::bigint AS reltype,
       array(SELECT a.attname::text FROM pg_attribute a
             WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
             ORDER BY a.attnum) AS columns,
       array(SELECT a.attname::text FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
             WHERE i.indrelid = c.oid AND i.indisprimary) AS primary_key
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_(toast|temp)';

-- name: check_functions
SELECT p.oid::bigint AS oid, n.nspname, p.proname, l.lanname, p.prosrc,
       p.prosqlbody IS NOT NULL AS sql_body,
       pg_get_function_arguments(p.oid) AS arguments, pg_get_function_result(p.oid) AS result,
       p.proargnames AS arg_names, p.proargmodes::text[] AS arg_modes,
       array(SELECT t::bigint FROM unnest(p.proargtypes) AS t) AS arg_types,
       (SELECT substr(c, length('search_path=') + 1) FROM unnest(p.proconfig) AS c
        WHERE c LIKE 'search\_path=%%') AS search_path,
       obj_description(p.oid, 'pg_proc') AS comment
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'
  AND p.prokind IN ('f', 'p');

-- name: check_search_path
SELECT current_setting('search_path') AS search_path;

-- name: check_depends
-- What functions depend on: the relations and columns they read, the functions they call.
SELECT d.refclassid::regclass::text AS kind, d.refobjid::bigint AS ref, a.attname::text
FROM pg_depend d
LEFT JOIN pg_attribute a ON d.refclassid = 'pg_class'::regclass
                        AND a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                        AND d.refobjsubid > 0
WHERE d.classid = 'pg_proc'::regclass AND d.objid = ANY(%s)
  AND d.refclassid IN ('pg_class'::regclass, 'pg_proc'::regclass);

-- name: check_view_depends
-- The same for views: what their rules read.
SELECT d.refclassid::regclass::text AS kind, d.refobjid::bigint AS ref, a.attname::text
FROM pg_rewrite r
JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
LEFT JOIN pg_attribute a ON d.refclassid = 'pg_class'::regclass
                        AND a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
                        AND d.refobjsubid > 0
WHERE r.ev_class = ANY(%s) AND d.refobjid <> r.ev_class
  AND d.refclassid IN ('pg_class'::regclass, 'pg_proc'::regclass);

-- name: check_probe_savepoint
SAVEPOINT qbsync_probe;

-- name: check_probe_rollback
ROLLBACK TO SAVEPOINT qbsync_probe;

-- name: check_set_search_path
SELECT set_config('search_path', %s, true);

-- name: check_probe_function
-- A string-bodied SQL function compiled again with an SQL-standard body, whose pg_depend
-- PostgreSQL fills (qbsync.reads); in a savepoint rolled back right after. The braces are
-- filled by psycopg.sql composition: the probe's name, the function's own arguments, result
-- and body.
CREATE FUNCTION pg_temp.{name}({arguments}) RETURNS {result} LANGUAGE sql STABLE
BEGIN ATOMIC
{body}
;
END;

-- name: check_probe_oid
SELECT p.oid::bigint FROM pg_proc p
WHERE p.proname = %s AND p.pronamespace = pg_my_temp_schema();
