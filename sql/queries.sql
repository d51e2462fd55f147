-- Every query the daemon runs, as named blocks ("-- name: <name>"), parsed once at start
-- (qbsync.queries.load; asyncpg, $1 placeholders). State changes are database functions
-- (sql/migrations); these are the calls into them and the few reads the daemon needs. Every
-- qbsync function called here is granted to qbsync_daemon. What operators run (CLI, demo,
-- sample shops) is in cli_queries.sql.

-- name: schema_access
-- The schema version, checked at start and while running (qbsync.schema): the same plain
-- SQL as cli_queries.sql's, which reads any schema version.
SELECT to_regclass('qbsync.schema_migrations') IS NOT NULL AS present,
       coalesce(has_table_privilege(to_regclass('qbsync.schema_migrations'), 'SELECT'), false)
           AS readable,
       current_user AS role;

-- name: schema_versions
SELECT version, name, checksum, applied_at, applied_by,
       to_jsonb(m) ->> 'qbsync_version' AS qbsync_version
FROM qbsync.schema_migrations m
ORDER BY version;

-- name: unlock_session_locks
-- A pooled connection that took the refresh lock, given back to the pool (qbsync.db).
SELECT pg_advisory_unlock_all();

-- name: register_worker
SELECT qbsync.register_worker($1, $2, $3);

-- name: unregister_worker
SELECT qbsync.unregister_worker($1);

-- name: register_worker_keys
SELECT qbsync.register_worker_keys($1, $2::text[]);

-- name: claim
SELECT id, entity, key, attempts, request_id, force, origin, enqueued_at, interruptions,
       outcome_unknown, lookup_due, last_error_code
FROM qbsync.claim($1, $2, make_interval(secs => $3));

-- name: extend_leases
SELECT qbsync.extend_leases($1, $2::bigint[], make_interval(secs => $3));

-- name: complete
SELECT qbsync.complete($1, $2, $3, $4::jsonb);

-- name: complete_many
SELECT qbsync.complete_many($1, $2, $3::jsonb);

-- name: fail
SELECT qbsync.fail($1, $2, $3, $4::jsonb);

-- name: skip
SELECT qbsync.skip($1, $2, $3, $4);

-- name: skip_many
SELECT qbsync.skip_many($1, $2, $3::bigint[], $4::text[]);

-- name: release
SELECT qbsync.release($1, $2::bigint[]);

-- name: record_success
SELECT qbsync.record_success($1, $2, $3, $4::jsonb, $5);

-- name: record_successes
SELECT qbsync.record_successes($1, $2::jsonb, $3);

-- name: map
SELECT qbsync.map($1, $2)::text;

-- name: map_many
SELECT key, body::text, error_code, error_message FROM qbsync.map_many($1, $2::text[]);

-- name: map_dependencies
SELECT key, qbo_id, sync_token, doc_number, qbo_status, body_hash, body::text, error_code,
       error_message
FROM qbsync.map_dependencies($1, $2, $3::text[]);

-- name: ready_backlog
SELECT qbsync.ready_backlog($1);

-- name: entities
SELECT entity, qbo_type, max_attempts, deadline_seconds FROM qbsync.entities;

-- name: mapped
SELECT entity, key, qbo_id, sync_token, doc_number, qbo_status, body_hash
FROM qbsync.mapped($1, $2::text[], $3::text[]);

-- name: realm_settings
SELECT name, value FROM qbsync.realm_settings WHERE realm_id = $1
UNION ALL
SELECT a.name, s.value
FROM qbsync.setting_aliases a
JOIN qbsync.realm_settings s ON s.realm_id = $1 AND s.name = a.target
WHERE NOT EXISTS (SELECT 1 FROM qbsync.realm_settings o
                  WHERE o.realm_id = $1 AND o.name = a.name);

-- name: store_lookup
SELECT qbsync.store_lookup($1, $2::text::jsonb, $3::text[], $4::text::jsonb)::text;

-- name: wait_for_settings
SELECT qbsync.wait_for_settings($1, $2, $3, $4::text[], $5);

-- name: release_setting_waits
SELECT qbsync.release_setting_waits($1);

-- name: active_connection
SELECT realm_id, api_base_url, status, company_name
FROM qbsync.connections
WHERE CASE WHEN $1::text IS NULL THEN active ELSE realm_id = $1 END;

-- name: announce_waiting
SELECT qbsync.announce_waiting($1, make_interval(secs => $2))::text;

-- name: stop_waiting
SELECT qbsync.stop_waiting($1);

-- name: snapshot_settled
SELECT qbsync.snapshot_settled($1::text::pg_snapshot);

-- name: queue_depth
SELECT count(*) FILTER (WHERE state = 'pending') AS pending,
       count(*) FILTER (WHERE state = 'running') AS running,
       count(*) FILTER (WHERE state = 'dead') AS dead,
       count(*) FILTER (WHERE state = 'waiting') AS waiting
FROM qbsync.outbox;

-- name: metrics_gauges
-- What /metrics says of the database, read at each scrape (qbsync.metrics): the same numbers
-- from every daemon, whichever one is asked. One row per sample: family, two label values,
-- the value. Every entity and state is listed, with 0 when it has no rows; pending counts
-- changes not collected into the outbox yet, as qbsync.queue_health does. A scan of the
-- outbox and of the captured changes, grouped; nothing else of size.
WITH per_state AS (
    SELECT entity, state::text AS state, count(*)::float8 AS n,
           min(enqueued_at) FILTER (WHERE state = 'pending') AS oldest
    FROM qbsync.outbox
    GROUP BY entity, state
), captured AS (
    SELECT entity, count(*)::float8 AS n, min(captured_at) AS oldest
    FROM qbsync.changes
    GROUP BY entity
), names AS (
    SELECT entity FROM qbsync.entities
    UNION SELECT entity FROM per_state
    UNION SELECT entity FROM captured
), states AS (
    SELECT unnest(enum_range(NULL::qbsync.outbox_state))::text AS state
)
SELECT 'outbox_rows' AS family, n.entity AS a, s.state AS b,
       coalesce(p.n, 0) + CASE WHEN s.state = 'pending' THEN coalesce(c.n, 0) ELSE 0 END
           AS value
FROM names n
CROSS JOIN states s
LEFT JOIN per_state p ON p.entity = n.entity AND p.state = s.state
LEFT JOIN captured c ON c.entity = n.entity
UNION ALL
SELECT 'oldest_pending', n.entity, '',
       coalesce(extract(epoch FROM now() - least(p.oldest, c.oldest)), 0)::float8
FROM names n
LEFT JOIN per_state p ON p.entity = n.entity AND p.state = 'pending'
LEFT JOIN captured c ON c.entity = n.entity
UNION ALL
SELECT 'open_notices', '', '', count(*)::float8
FROM qbsync.notices WHERE acknowledged_at IS NULL
UNION ALL
SELECT 'open_drift', '', '', count(*)::float8
FROM qbsync.drift_log WHERE resolved_at IS NULL
UNION ALL
SELECT 'connection', c.realm_id, s.status, (c.status = s.status)::int::float8
FROM qbsync.connections c
CROSS JOIN unnest(ARRAY['connected', 'needs_reconnect', 'disconnected']) AS s(status)
UNION ALL
-- permits per real minute (the windows are scaled against a faster emulator clock)
SELECT 'budget', c.realm_id, k.kind,
       k.per_window * 60 / extract(epoch FROM l.minute_window)::float8
FROM qbsync.connections c
CROSS JOIN LATERAL (
    SELECT * FROM qbsync.rate_limits r
    WHERE r.realm_id IN (c.realm_id, '*')
    ORDER BY r.realm_id = '*'
    LIMIT 1) l
CROSS JOIN LATERAL (VALUES ('request', l.per_minute), ('batch', l.batch_per_minute))
    AS k(kind, per_window)
WHERE k.per_window IS NOT NULL;

-- name: maintain_log_partitions
-- with the settings' retention only (the daemon may not pass its own)
SELECT action, partition_name FROM qbsync.rotate_logs();

-- name: heartbeat
SELECT qbsync.heartbeat($1);

-- name: cdc_cursor
SELECT changed_since FROM qbsync.cdc_cursors WHERE realm_id = $1;

-- name: save_cdc_cursor
SELECT qbsync.save_cdc_cursor($1, $2, $3);

-- name: connected_at
SELECT connected_at FROM qbsync.connections WHERE realm_id = $1;

-- name: fold_stats
SELECT qbsync.fold_stats();

-- name: record_drift
SELECT qbsync.record_drift($1, $2, $3::jsonb);

-- name: managed_types
SELECT DISTINCT qbo_type FROM qbsync.entities ORDER BY 1;

-- name: reconcile_start
SELECT qbsync.start_reconcile($1, $2, $3::text::date, $4::text::date, $5::text[]);

-- name: reconcile_store_items
SELECT qbsync.store_reconcile_items($1, $2, $3::text::jsonb, $4);

-- name: reconcile_unseen
SELECT qbo_type, qbo_id FROM qbsync.reconcile_unseen($1, $2);

-- name: reconcile_finish
SELECT qbsync.finish_reconcile($1)::text;

-- Admin requests (qbsync.admin_requests). json goes in as text and comes out as text, so these work
-- with or without the daemon pool's jsonb codec.

-- name: claim_admin_requests
SELECT id, kind, params::text AS params
FROM qbsync.claim_admin_requests($1, $2)
ORDER BY id;

-- name: finish_admin_request
SELECT qbsync.finish_admin_request($1, $2, $3::text::jsonb);

-- name: fail_admin_request
SELECT qbsync.fail_admin_request($1, $2, $3, $4::text::jsonb);

-- name: store_report
SELECT id, qbo_income::text, shop_revenue_net::text, shop_revenue_gross::text, shop_orders,
       (qbo_income - shop_revenue_net)::text AS difference
FROM qbsync.store_report($1, $2, $3, $4::text::date, $5::text::date, $6, $7::text::jsonb);

-- Tokens (qbsync.tokens). The refresh lock (qbsync.refresh_lock) is a session lock per
-- realm, taken with no transaction open during the HTTP call; `qbsync disconnect` takes the
-- same one, and `qbsync rotate-key` its transaction-level twin.

-- name: refresh_lock
SELECT qbsync.refresh_lock($1, 'session');

-- name: refresh_unlock
SELECT qbsync.refresh_lock($1, 'release');

-- name: read_tokens
SELECT tokens, key_id, token_generation, status, api_base_url, environment
FROM qbsync.connections WHERE realm_id = $1;

-- name: store_refreshed_tokens
SELECT qbsync.store_refreshed_tokens($1, $2, $3, $4, $5);

-- name: mark_needs_reconnect
SELECT qbsync.mark_needs_reconnect($1, $2);

-- name: mark_forbidden
SELECT qbsync.mark_forbidden($1, $2, $3);

-- name: tokens_unreadable
SELECT qbsync.tokens_unreadable($1, $2, $3, $4::text[], $5);

-- name: tokens_readable
SELECT qbsync.tokens_readable($1, $2);

-- Rate limits (qbo.ratelimit through store.PgPermits): permits per realm, shared by every
-- process.

-- name: take_permit
SELECT permit_id, wait, starts_at FROM qbsync.take_permit($1, $2, $3, $4);

-- name: return_permit
SELECT qbsync.return_permit($1);

-- name: throttled
SELECT qbsync.throttled($1, $2);

-- name: set_rate_limits
SELECT qbsync.set_rate_limits($1, $2, $3, $4, $5, $6, $7, $8, $9);

-- name: free_abandoned_permits
SELECT qbsync.free_abandoned_permits($1, $2);

-- name: rate_limit_status
SELECT * FROM qbsync.rate_limit_status WHERE realm_id = $1;
