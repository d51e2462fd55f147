-- qbsync core schema: the outbox, the map of shop keys to QuickBooks ids, the audit log,
-- connections, per-realm settings and the capture machinery.
-- Applied by `qbsync migrate`, which creates schema qbsync and qbsync.schema_migrations first.

CREATE SCHEMA IF NOT EXISTS qbsync_map;
COMMENT ON SCHEMA qbsync_map IS
    'Mapping functions written by the DBA for a shop: <entity>(key) -> jsonb, <entity>_keys(), <entity>_outcome(key, outcome). See README "Mapping a shop".';

-- The only part of qbsync a shop's writes touch: per entity, a view a capture trigger
-- inserts a changed key into (qbsync.install_capture creates them), and whether a daemon
-- waits for a NOTIFY. Open to every role, so the shop's role needs no grant: it can append
-- a key of a known entity and read one number, nothing else.
CREATE SCHEMA IF NOT EXISTS qbsync_capture;
GRANT USAGE ON SCHEMA qbsync_capture TO PUBLIC;
COMMENT ON SCHEMA qbsync_capture IS
    'What capture triggers use: changes_<entity> (insert-only views on qbsync.changes; qbsync.install_capture creates them) and daemon_waiting().';

-- Global settings, read by the daemon and the SQL functions. Values are jsonb so that one
-- table holds numbers, booleans and strings without casts at every call site.
CREATE TABLE qbsync.settings (
    name        text PRIMARY KEY,
    value       jsonb NOT NULL,
    description text NOT NULL
);
INSERT INTO qbsync.settings (name, value, description) VALUES
    ('log_retention_months', '12', 'integration_logs partitions older than this many months are dropped'),
    ('log_partitions_ahead', '3', 'monthly integration_logs partitions created ahead of time'),
    ('wakeup_notify', 'true', 'capture triggers NOTIFY a waiting daemon; false = daemons rely on polling alone'),
    ('max_wait_seconds', '86400', 'a row waiting for another row to reach QuickBooks (a payment for its invoice) goes dead after this long');

CREATE FUNCTION qbsync.setting(p_name text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT value FROM qbsync.settings WHERE name = p_name $$;

-- Shop entities that qbsync knows how to push, with their retry schedule.
CREATE TABLE qbsync.entities (
    entity           text PRIMARY KEY CHECK (entity ~ '^[a-z][a-z0-9_]*$'),
    qbo_type         text NOT NULL CHECK (qbo_type IN
                         ('Customer', 'Item', 'Invoice', 'CreditMemo', 'Payment', 'RefundReceipt')),
    max_attempts     int NOT NULL DEFAULT 3 CHECK (max_attempts > 0),
    backoff_seconds  int[] NOT NULL DEFAULT '{30,120,300}'
                         CHECK (cardinality(backoff_seconds) > 0 AND 0 <= ALL (backoff_seconds)),
    deadline_seconds int NOT NULL DEFAULT 120 CHECK (deadline_seconds > 0)
);
COMMENT ON TABLE qbsync.entities IS
    'Shop entities pushed to QuickBooks: the QuickBooks type and the retry schedule (tries, backoff after each failed try, per-try deadline).';

CREATE FUNCTION qbsync.define_entity(
    entity text, qbo_type text, max_attempts int DEFAULT 3,
    backoff_seconds int[] DEFAULT '{30,120,300}', deadline_seconds int DEFAULT 120
) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO qbsync.entities AS e VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (entity) DO UPDATE
        SET qbo_type = excluded.qbo_type, max_attempts = excluded.max_attempts,
            backoff_seconds = excluded.backoff_seconds, deadline_seconds = excluded.deadline_seconds;
$$;

-- Captured changes, appended by the capture triggers in the shop's own transaction. Bare
-- on purpose (no identity, no index, no constraint beyond NOT NULL): the cheapest insert
-- PostgreSQL has, because every tracked shop transaction pays for it. The daemon moves
-- committed changes into the outbox (qbsync.collect_changes, called by every claim), where
-- repeated changes of a key coalesce; so a change is never pushed before it is visible,
-- and capture takes no lock a daemon could wait on.
CREATE TABLE qbsync.changes (
    entity      text NOT NULL,
    key         text NOT NULL,
    -- the clock, not the transaction's start: the claim takes keys in capture order
    captured_at timestamptz NOT NULL DEFAULT clock_timestamp()
) WITH (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
        autovacuum_vacuum_insert_scale_factor = 0.01, autovacuum_vacuum_insert_threshold = 1000);
COMMENT ON TABLE qbsync.changes IS
    'Changes captured by the triggers and not yet moved into the outbox (the daemon moves them at every claim; qbsync.collect_changes() does it by hand).';

-- The outbox: what is left to push. One pending row per (entity, key): repeated changes
-- coalesce. A change while a row is running queues one pending row behind it; the claim
-- never takes a key that is already running. Finished rows are deleted (the log keeps the
-- history), so this table stays small at any backlog; a dead row stays until retried or
-- superseded by a successful push of the same key (at most one per key).
--
-- No CHECK constraints and no partial indexes (each costs every insert a predicate
-- evaluation), an enum for the state, three indexes in all. Invariants the constraints
-- would state are kept by the functions that change rows (0002_daemon.sql).
CREATE TYPE qbsync.outbox_state AS ENUM ('pending', 'running', 'dead');

CREATE TABLE qbsync.outbox (
    id               bigint GENERATED ALWAYS AS IDENTITY (CACHE 32) PRIMARY KEY,
    entity           text NOT NULL,
    key              text NOT NULL,
    state            qbsync.outbox_state NOT NULL DEFAULT 'pending',
    attempts         int NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,            -- set exactly while running
    lease_expires_at timestamptz,     -- set exactly while running
    -- QuickBooks requestid, fixed for the logical push across retries; set at first claim
    -- so that capture stays cheap.
    request_id       uuid,
    force            boolean NOT NULL DEFAULT false,
    origin           text NOT NULL DEFAULT 'capture',
    enqueued_at      timestamptz NOT NULL DEFAULT now(),
    last_attempt_at  timestamptz,
    last_error       text,
    last_error_code  text
) WITH (fillfactor = 70, autovacuum_vacuum_scale_factor = 0.01,
        autovacuum_vacuum_threshold = 1000, autovacuum_analyze_scale_factor = 0.02);
COMMENT ON TABLE qbsync.outbox IS
    'Changes still to push. pending = waiting (next_attempt_at), running = leased by a daemon, dead = out of tries or unfixable (see last_error).';

-- At most one row per key in each state: the arbiter of capture's ON CONFLICT (pending),
-- the "is this key in flight?" check of the claim (running), the dead row a success
-- supersedes (dead).
CREATE UNIQUE INDEX outbox_key_state ON qbsync.outbox (entity, key, state);
-- The claim's order (pending by time), expired leases (running) and the dead list.
CREATE INDEX outbox_state_time ON qbsync.outbox (state, next_attempt_at, id);

-- Shop key <-> QuickBooks object, per realm.
CREATE TABLE qbsync.entity_map (
    realm_id    text NOT NULL,
    entity      text NOT NULL,
    key         text NOT NULL,
    qbo_type    text NOT NULL,
    qbo_id      text NOT NULL,
    sync_token  text,
    doc_number  text,
    qbo_status  text NOT NULL DEFAULT 'active' CHECK (qbo_status IN ('active', 'voided', 'deleted', 'inactive')),
    -- The business fields of the object as qbsync last wrote or accepted it
    -- (qbsync.qbo_digest): drift detection compares QuickBooks' current object to it.
    digest      jsonb,
    -- Hash of the body (references resolved) of qbsync's last successful push: a push
    -- whose body hashes the same is skipped as unchanged (no QuickBooks request). Computed
    -- by the daemon (sync.body_hash); NULL = unknown, push. Cleared whenever QuickBooks may
    -- hold something else: a failed push, a change made outside qbsync (drift), a void.
    body_hash   text,
    request_id  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    synced_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (realm_id, entity, key),
    UNIQUE (realm_id, qbo_type, qbo_id)
);
COMMENT ON TABLE qbsync.entity_map IS
    'Which QuickBooks object (Id, SyncToken, DocNumber) each shop row became, per QuickBooks company (realm).';

-- Append-only audit trail of every outcome, partitioned by month.
CREATE TABLE qbsync.integration_logs (
    id               bigint GENERATED ALWAYS AS IDENTITY,
    created_at       timestamptz NOT NULL DEFAULT now(),
    service_name     text NOT NULL DEFAULT 'quickbooks',
    operation        text NOT NULL,
    model_type       text NOT NULL,
    model_id         text,
    status           text NOT NULL CHECK (status IN ('success', 'failed', 'retry', 'dead', 'skipped', 'info')),
    error_message    text,
    error_code       text,
    response_time_ms int,
    request_id       uuid,
    qbo_id           text,
    realm_id         text,
    attempt          int,
    actor            text NOT NULL DEFAULT 'daemon',
    details          jsonb,
    PRIMARY KEY (created_at, id)
) PARTITION BY RANGE (created_at);
COMMENT ON TABLE qbsync.integration_logs IS
    'Every outcome: one row per push attempt, skip, admin action or token event, with QuickBooks fault code and message on failure. Monthly partitions; see setting log_retention_months.';
CREATE INDEX integration_logs_model ON qbsync.integration_logs (model_type, model_id, created_at);
CREATE INDEX integration_logs_status ON qbsync.integration_logs (status, created_at);

-- Catches rows outside every monthly partition (clock jumps), so an insert never fails.
CREATE TABLE qbsync.integration_logs_overflow PARTITION OF qbsync.integration_logs DEFAULT;

-- Creates the monthly partitions from this month to `ahead` months ahead (moving any rows
-- the overflow partition holds for them) and drops partitions older than the retention.
-- Idempotent; the daemon calls it at start and daily, migrations once.
CREATE FUNCTION qbsync.maintain_log_partitions(
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
    v_moved int;
BEGIN
    FOR i IN 0..v_ahead LOOP
        v_month := (date_trunc('month', now()) + make_interval(months => i))::date;
        v_name := 'integration_logs_' || to_char(v_month, 'YYYY_MM');
        CONTINUE WHEN to_regclass('qbsync.' || v_name) IS NOT NULL;
        CREATE TEMP TABLE IF NOT EXISTS qbsync_moved_logs
            (LIKE qbsync.integration_logs) ON COMMIT DROP;
        WITH moved AS (
            DELETE FROM qbsync.integration_logs_overflow
            WHERE created_at >= v_month AND created_at < v_month + interval '1 month'
            RETURNING *)
        INSERT INTO qbsync_moved_logs SELECT * FROM moved;
        GET DIAGNOSTICS v_moved = ROW_COUNT;
        EXECUTE format('CREATE TABLE qbsync.%I PARTITION OF qbsync.integration_logs '
                       'FOR VALUES FROM (%L) TO (%L)',
                       v_name, v_month, (v_month + interval '1 month')::date);
        IF v_moved > 0 THEN
            INSERT INTO qbsync.integration_logs OVERRIDING SYSTEM VALUE
                SELECT * FROM qbsync_moved_logs;
            TRUNCATE qbsync_moved_logs;
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
SELECT count(*) FROM qbsync.maintain_log_partitions();

-- QuickBooks companies. Tokens live only inside `tokens`, a ciphertext made by the daemon
-- (cryptography, key chosen by key_id); no column ever holds a token in plain text.
CREATE TABLE qbsync.connections (
    realm_id            text PRIMARY KEY,
    environment         text NOT NULL DEFAULT 'production',
    api_base_url        text NOT NULL,
    company_name        text,
    company_info        jsonb,
    tokens              bytea NOT NULL,
    key_id              text NOT NULL,
    token_generation    bigint NOT NULL DEFAULT 1,
    access_expires_at   timestamptz,
    refresh_expires_at  timestamptz,
    status              text NOT NULL DEFAULT 'connected'
                            CHECK (status IN ('connected', 'needs_reconnect', 'disconnected')),
    active              boolean NOT NULL DEFAULT true,
    last_error          text,
    connected_at        timestamptz NOT NULL DEFAULT now(),
    refreshed_at        timestamptz,
    updated_at          timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE qbsync.connections IS
    'Connected QuickBooks companies. tokens is ciphertext (never plain text); token_generation increases with every refresh so that refreshes are single-flight across daemons.';
COMMENT ON COLUMN qbsync.connections.tokens IS 'encrypted access + refresh token (see key_id); never plain text';
-- One company is the sync target at a time; others may stay connected (e.g. a sandbox).
CREATE UNIQUE INDEX connections_one_active ON qbsync.connections ((true)) WHERE active;

-- Per-realm configuration references used by mappings as {"$setting": name}: tax codes by
-- VAT rate, the income account... Looked up in QuickBooks at connect time; a DBA override
-- (source = 'override') is kept across look-ups.
CREATE TABLE qbsync.realm_settings (
    realm_id   text NOT NULL REFERENCES qbsync.connections ON DELETE CASCADE,
    name       text NOT NULL,
    value      jsonb NOT NULL,
    source     text NOT NULL DEFAULT 'lookup' CHECK (source IN ('lookup', 'override')),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (realm_id, name)
);
COMMENT ON TABLE qbsync.realm_settings IS
    'Configuration references ({"$setting": name} in mappings) per QuickBooks company, e.g. tax_code:24 -> {"value": "7"}.';

-- Shop vocabulary for configuration references, shared by every company: a mapping may
-- say {"$setting": "payment_method:cod"} and the DBA point that at what the daemon looks up
-- in each company ("payment_method:cash"). A realm_settings row of the alias's own name
-- (an override) wins.
CREATE TABLE qbsync.setting_aliases (
    name        text PRIMARY KEY,
    target      text NOT NULL,
    description text
);
COMMENT ON TABLE qbsync.setting_aliases IS
    'Mapping-level setting names resolved through another setting of each company, e.g. payment_method:cod -> payment_method:cash.';

-- Running daemons. waiting_until is set while a daemon sleeps on LISTEN: capture triggers
-- NOTIFY only then, so busy shops pay no commit-time NOTIFY lock. It expires by itself,
-- so a killed daemon cannot leave every shop transaction notifying.
CREATE TABLE qbsync.workers (
    worker_id     text PRIMARY KEY,
    hostname      text NOT NULL,
    pid           int NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    heartbeat_at  timestamptz NOT NULL DEFAULT now(),
    waiting_until timestamptz
);
COMMENT ON TABLE qbsync.workers IS 'Running daemons, their heartbeat, and whether one sleeps waiting for a wake-up NOTIFY.';

-- What every capturing transaction reads: the latest waiting_until of all daemons, in
-- epoch milliseconds (0: none waits). A sequence because reading one is a function call
-- that scans nothing and takes no snapshot (the EXISTS over qbsync.workers it replaces
-- cost a captured row ~9,000 instructions), and setval is seen by every transaction at
-- once, committed or not. qbsync.publish_waiting() keeps it equal to the table.
CREATE SEQUENCE qbsync_capture.wakeup MINVALUE 0 START 0;
GRANT SELECT ON SEQUENCE qbsync_capture.wakeup TO PUBLIC;

-- Whether a daemon waits for a wake-up NOTIFY. Plain SQL, VOLATILE and without SET, so
-- the planner inlines it into the capture functions' expressions (no call at run time);
-- so every name in it is schema-qualified.
CREATE FUNCTION qbsync_capture.daemon_waiting() RETURNS boolean
LANGUAGE sql VOLATILE
AS $$
    SELECT pg_catalog.pg_sequence_last_value('qbsync_capture.wakeup'::pg_catalog.regclass)
           OPERATOR(pg_catalog.>)
           (pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.*) 1000)
$$;
GRANT EXECUTE ON FUNCTION qbsync_capture.daemon_waiting() TO PUBLIC;

-- Publish qbsync.workers' waiting_until to the sequence; called after every change of it.
-- The lock orders two daemons' calls, and the max is read after it (a new snapshot), so
-- the last call to commit publishes what both wrote.
CREATE FUNCTION qbsync.publish_waiting() RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pg_advisory_xact_lock(hashtext('qbsync.wakeup'));
    SELECT setval('qbsync_capture.wakeup',
                  coalesce((SELECT ceil(max(extract(epoch FROM w.waiting_until)) * 1000)::bigint
                            FROM qbsync.workers w WHERE w.waiting_until > clock_timestamp()), 0));
$$;

-- Called by a daemon that found nothing to do and is about to sleep. After it returns,
-- the daemon checks the queue once more (a change committed before this call is visible
-- then), and once more when every transaction still open at this call has ended: those may
-- have read waiting_until before it was set, and will not notify.
CREATE FUNCTION qbsync.announce_waiting(p_worker_id text, p_for interval)
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
    -- snapshot's in-progress list, plus ids assigned between its xmax and our own id.
    SELECT string_agg(x::text, ',' ORDER BY x::text::bigint) INTO v_open
    FROM (SELECT x FROM pg_snapshot_xip(v_snap) AS x
          UNION
          SELECT s::text::xid8
          FROM generate_series(pg_snapshot_xmax(v_snap)::text::bigint,
                               v_self::text::bigint - 1) AS s) AS open_xids;
    RETURN format('%s:%s:%s', least(pg_snapshot_xmin(v_snap), v_self), v_self,
                  coalesce(v_open, ''))::pg_snapshot;
END
$$;

CREATE FUNCTION qbsync.stop_waiting(p_worker_id text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE qbsync.workers SET waiting_until = NULL, heartbeat_at = clock_timestamp()
    WHERE worker_id = p_worker_id AND waiting_until IS NOT NULL;
    IF FOUND THEN
        PERFORM qbsync.publish_waiting();
    END IF;
END
$$;

-- True once every transaction of this database that was running when `snap` was taken
-- has ended (other databases' transactions cannot write to this outbox). SECURITY DEFINER:
-- pg_stat_activity shows other roles' transaction ids only to privileged roles.
CREATE FUNCTION qbsync.snapshot_settled(snap pg_snapshot) RETURNS boolean
LANGUAGE sql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT NOT EXISTS (
        SELECT 1
        FROM pg_snapshot_xip(snap) AS x
        JOIN pg_stat_activity AS a
          ON a.backend_xid::text = (x::text::bigint & 4294967295)::text
        WHERE a.datname = current_database());
$$;

-- Capture ----------------------------------------------------------------------------

-- What qbsync.track() installed: the source of truth from which each tracked table's one
-- capture function is generated (qbsync.install_capture).
CREATE TABLE qbsync.tracked (
    tbl           regclass NOT NULL,
    entity        text NOT NULL REFERENCES qbsync.entities ON UPDATE CASCADE,
    key_expr      text NOT NULL,   -- as the DBA wrote them
    columns       text[],
    when_expr     text,
    key_sql       text NOT NULL,   -- compiled: schema-qualified, over the row "r"
    when_sql      text,
    function_name text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tbl, entity)
);
COMMENT ON TABLE qbsync.tracked IS 'Capture rules installed by qbsync.track(table, entity, key, columns, when); each tracked table gets one trigger function generated from its rules.';

-- Enqueue by hand (admin functions, tests): straight into the outbox, where p_force can
-- mark the row (capture appends to qbsync.changes instead).
CREATE FUNCTION qbsync.enqueue(p_entity text, p_key text, p_force boolean DEFAULT false,
                               p_origin text DEFAULT 'manual')
RETURNS boolean
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_inserted int;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM qbsync.entities WHERE entity = p_entity) THEN
        RAISE EXCEPTION 'qbsync: unknown entity "%"', p_entity
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Known entities are in qbsync.entities; add one with qbsync.define_entity().';
    END IF;
    INSERT INTO qbsync.outbox (entity, key, force, origin)
    VALUES (p_entity, p_key, p_force, p_origin)
    ON CONFLICT (entity, key, state)
    DO UPDATE SET force = true WHERE excluded.force AND NOT qbsync.outbox.force;
    GET DIAGNOSTICS v_inserted = ROW_COUNT;
    IF qbsync_capture.daemon_waiting() THEN
        PERFORM pg_notify('qbsync_wakeup', '');
    END IF;
    RETURN v_inserted > 0;
END
$$;

-- An expression over a row of p_rel, written with bare column names and resolved with the
-- caller's search_path, as PostgreSQL's own deparser prints it over a row variable named
-- r (as the DBA may write it too) with every name outside pg_catalog schema-qualified. The capture function
-- then evaluates it as a plain PL/pgSQL expression (no query per row when it has no
-- subquery), and no search_path can change what it means.
CREATE FUNCTION qbsync.compile_row_expr(p_rel regclass, p_expr text)
RETURNS text
LANGUAGE plpgsql
-- no SET search_path: the expression resolves as the caller sees it
AS $$
DECLARE
    v_def text;
    v_at int;
BEGIN
    EXECUTE format('CREATE TEMP VIEW qbsync_compiled_expr AS '
                   'SELECT %s AS qbsync_expr_result FROM %s AS r', p_expr, p_rel);
    v_def := qbsync.deparse_view('pg_temp.qbsync_compiled_expr'::regclass);
    DROP VIEW pg_temp.qbsync_compiled_expr;
    -- " SELECT <expr> AS qbsync_expr_result\n   FROM <table> <row>;"
    v_at := length(v_def) - strpos(reverse(v_def), reverse(' AS qbsync_expr_result')) - 20;
    IF ltrim(v_def) NOT LIKE 'SELECT %' OR v_at <= 0 THEN
        RAISE EXCEPTION 'qbsync: cannot compile % (deparsed as %)', p_expr, v_def;
    END IF;
    RETURN btrim(substr(ltrim(v_def), 8, v_at - (length(v_def) - length(ltrim(v_def))) - 7));
END
$$;

CREATE FUNCTION qbsync.deparse_view(p_view regclass) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog   -- so that the deparser qualifies every other name
AS $$ SELECT pg_get_viewdef(p_view, false) $$;

-- (Re)generates the capture function and triggers of one table from its qbsync.tracked
-- rules, or removes them when it has none. One function per table, whatever the number of
-- entities tracked on it: every trigger call costs the shop's transaction, not only the
-- work inside it.
--
-- The shape follows from what a call costs, measured with callgrind (server instructions
-- per transaction: bench/capture_cost.py, BENCHMARKS.md):
-- * No WHEN clause on the triggers: PostgreSQL reads and compiles a trigger's WHEN clause
--   again at every statement, which cost more than calling the function.
-- * One function per event (no TG_OP test), running as the writing role (see
--   create_capture_function).
-- * PL/pgSQL sets up every expression it evaluates once per transaction and runs every
--   SQL statement through the executor, so each rule is one IF (a key this transaction
--   has not captured yet, not the daemon's write, the predicate) and, for a new key, one
--   INSERT into the view qbsync_capture.changes_<entity> and one IF daemon_waiting().
--   An order's lines stop at the IF's first test: the order's key is their memo.
-- * A predicate with a query is tested after the memo, in an IF of its own.
-- The rules' expressions are compiled over a row named r, bound to NEW or OLD by ALIAS in
-- an inner block, so no row is copied.
CREATE FUNCTION qbsync.install_capture(p_rel regclass) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_fn text;
    v_old_fn text;
    v_n int := 0;
    v_decl text := '';
    v_insert text := '';
    v_update text := '';
    v_delete text := '';
    v_changed text[] := '{}';
    v_change text;
    v_memo text;
    v_first boolean;   -- the rule's predicate is tested before the memo
    v_key text;        -- the key as the INSERT code names it
    v_fresh text;      -- a key not captured yet, not the daemon's write, not NULL
    v_of text[] := '{}';
    v_all_columns boolean := false;
    v_origin CONSTANT text :=
        $$pg_catalog.current_setting('qbsync.origin', true) IS DISTINCT FROM 'daemon'$$;
    r record;
BEGIN
    SELECT format('capture_%s_%s', left(c.relname, 40), left(md5(p_rel::oid::text), 8))
    INTO v_fn FROM pg_class c WHERE c.oid = p_rel;
    FOR v_old_fn IN
        SELECT DISTINCT p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
        WHERE t.tgrelid = p_rel
          AND t.tgname IN ('qbsync_capture_insert', 'qbsync_capture_delete', 'qbsync_capture_update')
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS qbsync_capture_insert ON %s', p_rel);
        EXECUTE format('DROP TRIGGER IF EXISTS qbsync_capture_delete ON %s', p_rel);
        EXECUTE format('DROP TRIGGER IF EXISTS qbsync_capture_update ON %s', p_rel);
        EXECUTE format('DROP FUNCTION IF EXISTS qbsync.%I()', v_old_fn);
    END LOOP;

    FOR r IN SELECT * FROM qbsync.tracked t WHERE t.tbl = p_rel ORDER BY t.entity LOOP
        v_n := v_n + 1;
        PERFORM qbsync.create_change_view(r.entity);
        v_memo := format('pg_catalog.current_setting(%L, true)', 'qbsync.held_' || r.entity);
        IF r.columns IS NULL THEN
            v_change := 'OLD.* IS DISTINCT FROM NEW.*';
            v_all_columns := true;
        ELSE
            SELECT format('(%s) IS DISTINCT FROM (%s)', string_agg(format('OLD.%I', c), ', '),
                          string_agg(format('NEW.%I', c), ', '))
            INTO v_change FROM unnest(r.columns) AS c;
            v_of := v_of || r.columns;
        END IF;
        v_changed := v_changed || format('(%s)', v_change);
        v_decl := v_decl || format(E'    _new%1$s text;\n    _old%1$s text;\n', v_n);
        -- INSERT: a key this transaction has not captured, not the daemon's write, not
        -- NULL; and the predicate. A predicate that is only column tests and operators is
        -- tested first: it stops the rules that do not apply (an unpaid order's payment
        -- rule) for less than the memo test, and the key is computed once into _newN (a
        -- cast costs PL/pgSQL a catalog lookup per transaction). One that calls a function
        -- or runs a query is tested after the memo, in an IF of its own: an order's lines
        -- stop at the memo without asking whether their order is complete.
        v_first := r.when_sql IS NOT NULL AND r.when_sql !~* '\mselect\M'
                   AND r.when_sql !~ '[[:alnum:]_"]\(';
        v_key := CASE WHEN v_first THEN format('_new%s', v_n) ELSE r.key_sql END;
        v_fresh := format('%1$s IS DISTINCT FROM %2$s AND %3$s AND %1$s IS NOT NULL',
                          v_key, v_memo, v_origin);
        -- predicate first: IF when THEN _newN := key; IF fresh THEN append
        -- else:            IF fresh THEN IF when THEN append
        v_insert := v_insert || format($i$
        IF %s THEN%s
            IF %s THEN
                %s
            END IF;
        END IF;
$i$, CASE WHEN v_first THEN r.when_sql ELSE v_fresh END,
            CASE WHEN v_first THEN format(E'\n            %s := %s;', v_key, r.key_sql) ELSE '' END,
            CASE WHEN v_first THEN v_fresh ELSE coalesce(r.when_sql, 'true') END,
            qbsync.capture_append(r.entity, v_key));
        -- UPDATE: the new and the old row's keys where the rule's columns changed and the
        -- predicate holds (an order leaving the predicate is a change too).
        v_update := v_update || format($u$
            IF %2$s THEN
                DECLARE r ALIAS FOR NEW; BEGIN _new%1$s := %3$s; END;
                DECLARE r ALIAS FOR OLD; BEGIN _old%1$s := %3$s; END;
                IF _old%1$s IS NOT NULL AND _old%1$s IS DISTINCT FROM _new%1$s
                   AND _old%1$s IS DISTINCT FROM %4$s THEN
                    %5$s
                END IF;
                IF _new%1$s IS NOT NULL AND _new%1$s IS DISTINCT FROM %4$s THEN
                    %6$s
                END IF;
            END IF;
$u$, v_n, v_change, qbsync.capture_key_when(r.key_sql, r.when_sql), v_memo,
            qbsync.capture_append(r.entity, format('_old%s', v_n)),
            qbsync.capture_append(r.entity, format('_new%s', v_n)));
        -- DELETE
        v_delete := v_delete || format($d$
                _old%1$s := %2$s;
                IF _old%1$s IS NOT NULL AND _old%1$s IS DISTINCT FROM %3$s THEN
                    %4$s
                END IF;
$d$, v_n, qbsync.capture_key_when(r.key_sql, r.when_sql), v_memo,
            qbsync.capture_append(r.entity, format('_old%s', v_n)));
    END LOOP;
    IF v_n = 0 THEN
        RETURN NULL;
    END IF;

    -- One function per trigger: no TG_OP test to pay for.
    PERFORM qbsync.create_capture_function(v_fn || '_insert', v_decl, format(
        E'    DECLARE r ALIAS FOR NEW; BEGIN%s    END;', v_insert));
    PERFORM qbsync.create_capture_function(v_fn || '_update', v_decl, format(
        E'    IF %s\n       AND (%s) THEN%s    END IF;',
        v_origin, array_to_string(v_changed, E'\n            OR '), v_update));
    PERFORM qbsync.create_capture_function(v_fn || '_delete', v_decl, format(
        E'    IF %s THEN\n        DECLARE r ALIAS FOR OLD; BEGIN%s        END;\n    END IF;',
        v_origin, v_delete));
    EXECUTE format('CREATE TRIGGER qbsync_capture_insert AFTER INSERT ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION qbsync.%I()', p_rel, v_fn || '_insert');
    EXECUTE format('CREATE TRIGGER qbsync_capture_delete AFTER DELETE ON %s '
                   'FOR EACH ROW EXECUTE FUNCTION qbsync.%I()', p_rel, v_fn || '_delete');
    -- UPDATE OF is checked against the statement's SET list before any row: free.
    EXECUTE format(
        'CREATE TRIGGER qbsync_capture_update AFTER UPDATE %s ON %s '
        'FOR EACH ROW EXECUTE FUNCTION qbsync.%I()',
        CASE WHEN v_all_columns THEN ''
             ELSE 'OF ' || (SELECT string_agg(DISTINCT format('%I', c), ', ') FROM unnest(v_of) c)
        END,
        p_rel, v_fn || '_update');
    UPDATE qbsync.tracked t SET function_name = v_fn WHERE t.tbl = p_rel;
    RETURN v_fn;
END
$fn$;

-- One generated capture function (p_body after DECLARE p_decl ... BEGIN). It runs as the
-- role that writes the row (no SECURITY DEFINER, so no search_path to pin): it evaluates
-- the rules with that role's rights and appends through qbsync_capture.changes_<entity>,
-- a view whose owner's rights write qbsync.changes. A SECURITY DEFINER function with its
-- `SET search_path` cost every call ~16,000 instructions (callgrind), as much as the call
-- itself, and most calls (an order's lines) append nothing. Every name the generator
-- writes is schema-qualified (the rules' own expressions are compiled so), so a writer's
-- search_path cannot redirect the append or the wake-up.
CREATE FUNCTION qbsync.create_capture_function(p_name text, p_decl text, p_body text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    EXECUTE format($body$
CREATE FUNCTION qbsync.%I() RETURNS trigger
LANGUAGE plpgsql
AS $f$
#variable_conflict use_column
-- generated by qbsync.install_capture() from qbsync.tracked; do not edit
DECLARE
%sBEGIN
%s
    RETURN NULL;
END
$f$
    $body$, p_name, p_decl, p_body);
    EXECUTE format('REVOKE ALL ON FUNCTION qbsync.%I() FROM PUBLIC', p_name);
END
$fn$;

-- qbsync_capture.changes_<entity>: where a capture function appends a key. An
-- auto-updatable view of qbsync.changes: the writing role may insert a key (the entity
-- comes from the view's default) and nothing else, and the insert runs with the view
-- owner's rights, so no function call stands between the trigger and the table
-- (a SECURITY DEFINER appender cost ~6,000 instructions more per captured row).
CREATE FUNCTION qbsync.create_change_view(p_entity text) RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_name text := 'changes_' || p_entity;
BEGIN
    EXECUTE format('CREATE OR REPLACE VIEW qbsync_capture.%I AS '
                   'SELECT entity, key FROM qbsync.changes', v_name);
    EXECUTE format('ALTER VIEW qbsync_capture.%I ALTER COLUMN entity SET DEFAULT %L',
                   v_name, p_entity);
    EXECUTE format('REVOKE ALL ON qbsync_capture.%I FROM PUBLIC', v_name);
    EXECUTE format('GRANT INSERT (key) ON qbsync_capture.%I TO PUBLIC', v_name);
    RETURN v_name;
END
$fn$;

-- A rule's key where its predicate holds, else NULL (one SQL expression).
CREATE FUNCTION qbsync.capture_key_when(p_key text, p_when text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT CASE WHEN p_when IS NULL THEN p_key
                ELSE format('CASE WHEN %s THEN %s END', p_when, p_key) END
$$;

-- The statements that append one change, make its key the entity's memo, and wake a
-- waiting daemon (nobody waits while the daemon is busy: no NOTIFY tax then).
CREATE FUNCTION qbsync.capture_append(p_entity text, p_key text) RETURNS text
LANGUAGE sql IMMUTABLE
AS $$
    SELECT format('INSERT INTO qbsync_capture.%I (key) VALUES (pg_catalog.set_config(%L, %s, true));
                IF qbsync_capture.daemon_waiting() THEN
                    PERFORM pg_catalog.pg_notify(''qbsync_wakeup'', '''');
                END IF;',
                  'changes_' || p_entity, 'qbsync.held_' || p_entity, p_key)
$$;

CREATE FUNCTION qbsync.track(
    tbl text, entity text, key text, columns text[] DEFAULT NULL, "when" text DEFAULT NULL
) RETURNS text
LANGUAGE plpgsql
-- no SET search_path: table names and expressions resolve as the caller (a DBA) sees them
AS $fn$
DECLARE
    v_rel regclass := to_regclass(tbl);
    v_missing text;
    v_key_sql text;
    v_when_sql text;
BEGIN
    IF v_rel IS NULL THEN
        RAISE EXCEPTION 'qbsync.track: table "%" does not exist', tbl
            USING ERRCODE = 'undefined_table';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM qbsync.entities e WHERE e.entity = track.entity) THEN
        RAISE EXCEPTION 'qbsync.track: unknown entity "%"', entity
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Register it first: SELECT qbsync.define_entity(entity, qbo_type, ...).';
    END IF;
    IF coalesce(btrim(key), '') = '' THEN
        RAISE EXCEPTION 'qbsync.track: key expression for "%" is empty', tbl
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT string_agg(format('%I', col), ', ') INTO v_missing
    FROM unnest(columns) AS col
    WHERE NOT EXISTS (SELECT 1 FROM pg_attribute a
                      WHERE a.attrelid = v_rel AND a.attname = col
                        AND a.attnum > 0 AND NOT a.attisdropped);
    IF v_missing IS NOT NULL THEN
        RAISE EXCEPTION 'qbsync.track: table % has no column(s) %', v_rel, v_missing
            USING ERRCODE = 'undefined_column';
    END IF;
    IF columns IS NOT NULL AND cardinality(columns) = 0 THEN
        RAISE EXCEPTION 'qbsync.track: columns is empty; pass NULL to track every column'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- Compile the expressions once against the table so that a typo fails here, with the
    -- table named, rather than in a shop transaction.
    BEGIN
        v_key_sql := qbsync.compile_row_expr(v_rel, format('(%s)::text', key));
    EXCEPTION WHEN OTHERS THEN
        RAISE EXCEPTION 'qbsync.track: key expression % is not valid for table %: %',
            quote_literal(key), v_rel, SQLERRM USING ERRCODE = SQLSTATE;
    END;
    IF "when" IS NOT NULL THEN
        BEGIN
            v_when_sql := qbsync.compile_row_expr(v_rel, format('(%s)::boolean', "when"));
        EXCEPTION WHEN OTHERS THEN
            RAISE EXCEPTION 'qbsync.track: "when" predicate % is not valid for table %: %',
                quote_literal("when"), v_rel, SQLERRM USING ERRCODE = SQLSTATE;
        END;
    END IF;

    INSERT INTO qbsync.tracked AS t
        (tbl, entity, key_expr, columns, when_expr, key_sql, when_sql, function_name)
    VALUES (v_rel, track.entity, key, columns, "when", v_key_sql, v_when_sql, '')
    ON CONFLICT ON CONSTRAINT tracked_pkey DO UPDATE
        SET key_expr = excluded.key_expr, columns = excluded.columns,
            when_expr = excluded.when_expr, key_sql = excluded.key_sql,
            when_sql = excluded.when_sql, created_at = now();
    RETURN qbsync.install_capture(v_rel);
END
$fn$;
COMMENT ON FUNCTION qbsync.track(text, text, text, text[], text) IS
    'Capture changes of a shop table (into qbsync.changes, then the outbox): key = SQL expression over the row (bare column names, or r.column) giving the outbox key; columns = the columns whose change matters on UPDATE (NULL = any); when = row predicate (on UPDATE the NEW or the OLD row must satisfy it). Key and predicate run with the writing role''s rights. Returns the base name of the table''s capture functions (<name>_insert, _update, _delete).';

CREATE FUNCTION qbsync.untrack(tbl text, entity text) RETURNS boolean
LANGUAGE plpgsql
AS $$
DECLARE
    v_rel regclass := to_regclass(tbl);
BEGIN
    IF v_rel IS NULL THEN
        RAISE EXCEPTION 'qbsync.untrack: table "%" does not exist', tbl
            USING ERRCODE = 'undefined_table';
    END IF;
    DELETE FROM qbsync.tracked t WHERE t.tbl = v_rel AND t.entity = untrack.entity;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM qbsync.install_capture(v_rel);
    RETURN true;
END
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA qbsync FROM PUBLIC;
