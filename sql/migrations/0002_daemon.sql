-- The daemon's state changes, as database functions: claim, lease, complete, fail, skip,
-- release. psql users get exactly the behaviour the daemon has, and every outcome lands
-- in integration_logs in the same transaction as the state change.

-- Moves up to p_limit (NULL = all) committed captured changes into the outbox: a key already pending
-- coalesces into its row (a change of a running key queues one pending row behind it).
-- SKIP LOCKED: concurrent daemons take disjoint changes and never wait on each other; keys
-- are inserted in one order so that two of them cannot deadlock on the unique index.
-- next_attempt_at = when the change was captured, so the claim takes keys in that order.
-- PL/pgSQL, not LANGUAGE sql: its plan is cached for the session (a LANGUAGE sql function
-- is parsed and planned again at every call, which cost more than the work at every claim).
CREATE FUNCTION qbsync.collect_changes(p_limit int DEFAULT 10000) RETURNS int
LANGUAGE plpgsql
SECURITY DEFINER  -- readers of the queue need no grant on qbsync.changes
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_taken int;
BEGIN
    WITH taken AS (
        DELETE FROM qbsync.changes c
        WHERE c.ctid = ANY (ARRAY(SELECT ctid FROM qbsync.changes LIMIT p_limit
                                  FOR UPDATE SKIP LOCKED))
        RETURNING c.entity, c.key, c.captured_at
    ), queued AS (
        INSERT INTO qbsync.outbox (entity, key, enqueued_at, next_attempt_at)
        SELECT entity, key, min(captured_at), min(captured_at)
        FROM taken GROUP BY entity, key ORDER BY entity, key
        ON CONFLICT (entity, key, state) DO NOTHING
        RETURNING 1
    )
    SELECT count(*)::int INTO v_taken FROM taken;
    RETURN v_taken;
END
$$;
COMMENT ON FUNCTION qbsync.collect_changes(int) IS
    'Moves captured changes (qbsync.changes) into the outbox, coalescing per key; returns how many changes it took. Every claim calls it; call it by hand to inspect the outbox without a daemon.';

-- Claims up to p_limit ready rows for p_worker: pending rows whose time has come (oldest
-- first) and running rows whose lease expired (a killed daemon's). A pending row whose key
-- is running elsewhere waits: two rows of one key are never in flight together. The try
-- is counted here, inside the UPDATE, so a row that crashes its daemon still runs out.
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
CREATE FUNCTION qbsync.claim(p_worker text, p_limit int, p_lease interval)
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
        -- id = ANY(...) was once planned as a whole scan of outbox_state_time
        UPDATE qbsync.outbox o
        SET state = 'running', lease_owner = p_worker, lease_expires_at = now() + p_lease,
            next_attempt_at = now() + p_lease,
            attempts = o.attempts + 1, last_attempt_at = now(),
            request_id = coalesce(o.request_id, gen_random_uuid())
        WHERE o.ctid = ANY (ARRAY(SELECT ctid FROM picked))
        RETURNING o.*
    )
    SELECT * FROM claimed;
END
$$;

-- Extends the leases p_worker still holds; returns the ids it still holds (a row missing
-- from the answer was reclaimed by someone else: stop working on it).
CREATE FUNCTION qbsync.extend_leases(p_worker text, p_ids bigint[], p_lease interval)
RETURNS SETOF bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE qbsync.outbox SET lease_expires_at = now() + p_lease, next_attempt_at = now() + p_lease
    WHERE id = ANY (p_ids) AND state::text = 'running' AND lease_owner = p_worker  -- by id
    RETURNING id;
$$;

CREATE FUNCTION qbsync.log(
    p_operation text, p_entity text, p_key text, p_status text, p_realm text,
    p_detail jsonb DEFAULT '{}', p_actor text DEFAULT 'daemon'
) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO qbsync.integration_logs
        (operation, model_type, model_id, status, error_message, error_code, response_time_ms,
         request_id, qbo_id, realm_id, attempt, actor, details)
    VALUES (p_operation, p_entity, p_key, p_status, p_detail->>'message', p_detail->>'code',
            (p_detail->>'response_time_ms')::numeric::int, (p_detail->>'request_id')::uuid,
            p_detail->>'qbo_id', p_realm, (p_detail->>'attempt')::int, p_actor,
            nullif(p_detail - '{message,code,response_time_ms,request_id,qbo_id,attempt}'::text[],
                   '{}'::jsonb));
$$;

-- Calls qbsync_map.<entity>_outcome(key, outcome) when the mapping defines one. The
-- write-back is marked as the daemon's own write, so capture ignores it.
CREATE FUNCTION qbsync.write_back(p_entity text, p_key text, p_outcome jsonb,
                                  p_guarded boolean DEFAULT true) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF to_regprocedure(format('qbsync_map.%I(text, jsonb)', p_entity || '_outcome')) IS NULL THEN
        RETURN;
    END IF;
    PERFORM set_config('qbsync.origin', 'daemon', true);
    IF NOT p_guarded THEN
        -- Grouped completions (complete_many) call it unguarded: a subtransaction per row
        -- would overflow the per-backend subtransaction cache past 64 rows and slow every
        -- snapshot in the cluster. Should it fail, the daemon records the group row by row.
        EXECUTE format('SELECT qbsync_map.%I($1, $2)', p_entity || '_outcome')
            USING p_key, p_outcome;
    ELSE
        BEGIN
            EXECUTE format('SELECT qbsync_map.%I($1, $2)', p_entity || '_outcome')
                USING p_key, p_outcome;
        EXCEPTION WHEN OTHERS THEN
            -- The push itself stands (entity_map is what prevents a second invoice); only
            -- the courtesy copy onto the shop row failed, and the log says why.
            PERFORM qbsync.log('write_back', p_entity, p_key, 'failed', p_outcome->>'realm_id',
                jsonb_build_object('message', format('qbsync_map.%s_outcome failed: %s',
                                                     p_entity, SQLERRM), 'code', SQLSTATE));
        END;
    END IF;
    PERFORM set_config('qbsync.origin', '', true);
END
$$;

-- The fields of a QuickBooks object that matter to the books: what drift detection
-- compares. Balances (moved by payments), SyncTokens, memos and timestamps are left out.
CREATE FUNCTION qbsync.qbo_digest(p_type text, p_obj jsonb) RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN p_obj IS NULL THEN NULL
        WHEN p_type IN ('Invoice', 'CreditMemo', 'RefundReceipt', 'Payment') THEN
            jsonb_strip_nulls(jsonb_build_object(
                'TotalAmt', (p_obj->>'TotalAmt')::numeric,
                'CustomerRef', p_obj->'CustomerRef'->>'value',
                'DocNumber', p_obj->>'DocNumber',
                'TxnDate', p_obj->>'TxnDate',
                'Voided', CASE WHEN (p_obj->>'Voided')::boolean THEN true END,
                'Lines', (SELECT jsonb_agg(jsonb_strip_nulls(jsonb_build_object(
                              'Amount', (l->>'Amount')::numeric,
                              'Item', l->'SalesItemLineDetail'->'ItemRef'->>'value',
                              'Qty', (l->'SalesItemLineDetail'->>'Qty')::numeric,
                              'TaxCode', l->'SalesItemLineDetail'->'TaxCodeRef'->>'value',
                              'Linked', l->'LinkedTxn'->0->>'TxnId')) ORDER BY ord)
                          FROM jsonb_array_elements(p_obj->'Line') WITH ORDINALITY AS t(l, ord)
                          WHERE l->>'DetailType' IS DISTINCT FROM 'SubTotalLineDetail')))
        WHEN p_type = 'Customer' THEN jsonb_strip_nulls(jsonb_build_object(
                'DisplayName', p_obj->>'DisplayName',
                'Email', p_obj->'PrimaryEmailAddr'->>'Address',
                'Active', (p_obj->>'Active')::boolean))
        WHEN p_type = 'Item' THEN jsonb_strip_nulls(jsonb_build_object(
                'Name', p_obj->>'Name', 'Sku', p_obj->>'Sku',
                'UnitPrice', (p_obj->>'UnitPrice')::numeric,
                'Active', (p_obj->>'Active')::boolean))
        ELSE jsonb_build_object('SyncToken', p_obj->>'SyncToken')
    END;
$$;

-- What a successful push writes back onto the shop row (qbsync_map.<entity>_outcome).
CREATE FUNCTION qbsync.success_outcome(p_realm text, p_result jsonb, p_at timestamptz)
RETURNS jsonb
LANGUAGE sql STABLE     -- a timestamptz in JSON depends on TimeZone
RETURN jsonb_build_object(
    'realm_id', p_realm,
    'status', CASE WHEN p_result->>'qbo_status' IN ('voided', 'deleted')
                   THEN p_result->>'qbo_status' ELSE 'synced' END,
    'qbo_id', p_result->>'qbo_id', 'doc_number', p_result->>'doc_number',
    'synced_at', p_at, 'attempted_at', p_at, 'error', NULL);

-- Records successful pushes: entity_map, write-back, log, event, each one statement for all
-- the rows (per-row statements cost more than the work itself: a group of outcomes is
-- recorded in one call). p_rows: [{"entity": …, "key": …, "result": {…}}], a key at most
-- once; result: qbo_type, qbo_id, sync_token, doc_number, total_amount, operation,
-- qbo_status, sent_doc_number, response_time_ms, request_id, attempt, message, digest
-- (what qbsync.qbo_digest makes of the QuickBooks object) or the object itself, and
-- body_hash (of the body sent; none for a void or delete: entity_map's is then cleared).
-- p_guarded: a failing write-back is logged and the rest stands (a subtransaction per row);
-- unguarded it raises, and the caller records the rows one by one, guarded.
CREATE FUNCTION qbsync.record_successes(p_realm text, p_rows jsonb,
                                        p_actor text DEFAULT 'daemon',
                                        p_guarded boolean DEFAULT true)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_now timestamptz := clock_timestamp();
    v_entity text;
    v_fn text;
    v_many text;
    v_done boolean;
    v_back record;
BEGIN
    INSERT INTO qbsync.entity_map AS m
        (realm_id, entity, key, qbo_type, qbo_id, sync_token, doc_number, qbo_status,
         digest, body_hash, request_id, synced_at)
    SELECT p_realm, r.entity, r.key, r.result->>'qbo_type', r.result->>'qbo_id',
           r.result->>'sync_token', r.result->>'doc_number',
           coalesce(r.result->>'qbo_status', 'active'),
           -- the daemon sends the digest (qbsync/digest.py), or the object when unsure
           coalesce(r.result->'digest', qbsync.qbo_digest(r.result->>'qbo_type', r.result->'object')),
           r.result->>'body_hash', (r.result->>'request_id')::uuid, v_now
    FROM jsonb_to_recordset(p_rows) AS r(entity text, key text, result jsonb)
    ON CONFLICT (realm_id, entity, key) DO UPDATE
        SET qbo_type = excluded.qbo_type, qbo_id = excluded.qbo_id,
            sync_token = excluded.sync_token,
            doc_number = coalesce(excluded.doc_number, m.doc_number),
            qbo_status = excluded.qbo_status,
            digest = coalesce(excluded.digest, m.digest),
            body_hash = excluded.body_hash,  -- not kept: no hash (a void) means unknown
            request_id = excluded.request_id, synced_at = excluded.synced_at;

    -- Write-back through qbsync_map.<entity>_outcome(key, outcome), marked as the daemon's
    -- own write so that capture ignores it: through <entity>_outcomes(keys, outcomes), one
    -- statement for the entity's rows, when the mapping has that form too.
    FOR v_entity IN SELECT DISTINCT r.entity FROM jsonb_to_recordset(p_rows) AS r(entity text)
    LOOP
        v_fn := format('qbsync_map.%I', v_entity || '_outcome');
        CONTINUE WHEN to_regprocedure(v_fn || '(text, jsonb)') IS NULL;
        PERFORM set_config('qbsync.origin', 'daemon', true);
        v_done := false;
        IF to_regprocedure(format('qbsync_map.%I(text[], jsonb[])', v_entity || '_outcomes'))
           IS NOT NULL THEN
            v_many := format(
                'SELECT qbsync_map.%I(array_agg(r.key ORDER BY r.n),
                                      array_agg(qbsync.success_outcome($2, r.result, $3) ORDER BY r.n))
                 FROM ROWS FROM (jsonb_to_recordset($1) AS (entity text, key text, result jsonb))
                      WITH ORDINALITY AS r(entity, key, result, n)
                 WHERE r.entity = $4', v_entity || '_outcomes');
            IF p_guarded THEN
                BEGIN
                    EXECUTE v_many USING p_rows, p_realm, v_now, v_entity;
                    v_done := true;
                EXCEPTION WHEN OTHERS THEN
                    NULL;   -- one row's write-back failed: row by row below, to say which
                END;
            ELSE
                EXECUTE v_many USING p_rows, p_realm, v_now, v_entity;
                v_done := true;
            END IF;
        END IF;
        IF v_done THEN
            NULL;
        ELSIF p_guarded THEN
            FOR v_back IN
                SELECT r.key, qbsync.success_outcome(p_realm, r.result, v_now) AS outcome
                FROM jsonb_to_recordset(p_rows) AS r(entity text, key text, result jsonb)
                WHERE r.entity = v_entity
            LOOP
                BEGIN
                    EXECUTE format('SELECT %s($1, $2)', v_fn) USING v_back.key, v_back.outcome;
                EXCEPTION WHEN OTHERS THEN
                    -- The push itself stands (entity_map is what prevents a second
                    -- invoice); only the courtesy copy onto the shop row failed, and the log
                    -- says why.
                    PERFORM qbsync.log('write_back', v_entity, v_back.key, 'failed', p_realm,
                        jsonb_build_object('message', format('%s failed: %s', v_fn, SQLERRM),
                                           'code', SQLSTATE));
                    -- the shop row did not learn this push: the next one must not be
                    -- skipped as unchanged (its write-back is the repair)
                    UPDATE qbsync.entity_map SET body_hash = NULL
                    WHERE realm_id = p_realm AND entity = v_entity AND key = v_back.key;
                END;
            END LOOP;
        ELSE
            -- One statement, no subtransaction per row: past 64 of them in one transaction
            -- the per-backend subtransaction cache overflows and every snapshot in the
            -- cluster slows down.
            EXECUTE format('SELECT %s(r.key, qbsync.success_outcome($2, r.result, $3))
                            FROM jsonb_to_recordset($1) AS r(entity text, key text, result jsonb)
                            WHERE r.entity = $4', v_fn)
                USING p_rows, p_realm, v_now, v_entity;
        END IF;
        PERFORM set_config('qbsync.origin', '', true);
    END LOOP;

    -- what qbsync.log(operation, entity, key, 'success', realm, the result without the
    -- map's own fields, actor) writes, for every row at once
    INSERT INTO qbsync.integration_logs
        (operation, model_type, model_id, status, error_message, error_code, response_time_ms,
         request_id, qbo_id, realm_id, attempt, actor, details)
    SELECT coalesce(d->>'operation', 'push'), r.entity, r.key, 'success', d->>'message',
           d->>'code', (d->>'response_time_ms')::numeric::int, (d->>'request_id')::uuid,
           d->>'qbo_id', p_realm, (d->>'attempt')::int, p_actor,
           nullif(d - '{message,code,response_time_ms,request_id,qbo_id,attempt}'::text[],
                  '{}'::jsonb)
    FROM ROWS FROM (jsonb_to_recordset(p_rows) AS (entity text, key text, result jsonb))
         WITH ORDINALITY AS r(entity, key, result, n)
    CROSS JOIN LATERAL (SELECT r.result - '{qbo_type,sync_token,qbo_status,object,digest,body_hash}'::text[]) AS x(d)
    ORDER BY r.n;

    PERFORM pg_notify('qbsync_events', (
        jsonb_build_object(
            'event', r.entity || '.synced.quickbooks',
            'entity', r.entity, r.entity || '_id', r.key,
            'quickbooks_' || lower(r.result->>'qbo_type') || '_id', r.result->>'qbo_id',
            'synced_at', v_now,
            'message', coalesce(r.result->>'message',
                                format('%s %s synced to QuickBooks %s %s', r.entity, r.key,
                                       r.result->>'qbo_type', r.result->>'qbo_id')))
        || CASE WHEN r.result->>'qbo_type' = 'Invoice' THEN jsonb_build_object(
               'order_number', coalesce(r.result->>'sent_doc_number', r.result->>'doc_number'),
               'invoice_number', r.result->>'doc_number',
               'total_amount', (r.result->>'total_amount')::numeric)
           ELSE '{}'::jsonb END)::text)
    FROM ROWS FROM (jsonb_to_recordset(p_rows) AS (entity text, key text, result jsonb))
         WITH ORDINALITY AS r(entity, key, result, n)
    ORDER BY r.n;
END
$$;

-- Records a successful push of (entity, key): qbsync.record_successes of one row.
CREATE FUNCTION qbsync.record_success(p_realm text, p_entity text, p_key text, p_result jsonb,
                                      p_actor text DEFAULT 'daemon',
                                      p_guarded boolean DEFAULT true)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT qbsync.record_successes(p_realm, jsonb_build_array(jsonb_build_object(
        'entity', p_entity, 'key', p_key, 'result', p_result)), p_actor, p_guarded);
$$;

-- The lease check every finishing function starts with: the row, locked, if p_worker
-- still holds it; NULL if it was reclaimed (the caller's result is then discarded).
CREATE FUNCTION qbsync.held(p_id bigint, p_worker text) RETURNS qbsync.outbox
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM qbsync.outbox
    WHERE id = p_id AND state = 'running' AND lease_owner = p_worker
    FOR UPDATE;
$$;

-- A push succeeded: record it and remove the row (and any dead row of the same key,
-- which this push supersedes). False if the lease was lost.
CREATE FUNCTION qbsync.complete(p_id bigint, p_worker text, p_realm text, p_result jsonb,
                                p_guarded boolean DEFAULT true)
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
        p_result || jsonb_build_object('request_id', v_row.request_id, 'attempt', v_row.attempts),
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
-- outbox was small would scan it whole once a large backlog has built up.
CREATE FUNCTION qbsync.complete_many(p_worker text, p_realm text, p_items jsonb)
RETURNS bigint[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_ids bigint[] := ARRAY(SELECT (i->>'id')::bigint FROM jsonb_array_elements(p_items) AS i);
    v_held jsonb;      -- {"<id>": {entity, key, request_id, attempts}} of the rows still held
    v_pushed jsonb;
BEGIN
    EXECUTE
        'SELECT coalesce(jsonb_object_agg(h.id, jsonb_build_object(
                    ''entity'', h.entity, ''key'', h.key, ''request_id'', h.request_id,
                    ''attempts'', h.attempts)), ''{}'')
         FROM (SELECT o.id, o.entity, o.key, o.request_id, o.attempts FROM qbsync.outbox o
               WHERE o.id = ANY ($1) AND o.state = ''running'' AND o.lease_owner = $2
               ORDER BY o.id
               FOR UPDATE) AS h'
        INTO v_held USING v_ids, p_worker;

    SELECT jsonb_agg(jsonb_build_object(
               'entity', h->>'entity', 'key', h->>'key',
               'result', (i->'result') || jsonb_build_object('request_id', h->'request_id',
                                                             'attempt', h->'attempts'))
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

-- The mapping said there is nothing to push (NULL), or the row is already done.
CREATE FUNCTION qbsync.skip(p_id bigint, p_worker text, p_realm text, p_reason text)
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
    PERFORM qbsync.log('skip', v_row.entity, v_row.key, 'skipped', p_realm,
        jsonb_build_object('message', p_reason, 'attempt', v_row.attempts,
                           'request_id', v_row.request_id), p_worker);
    DELETE FROM qbsync.outbox WHERE id = p_id;
    RETURN true;
END
$$;

-- Many skips in one transaction: what qbsync.skip does for each of p_ids (p_reasons[i] the
-- reason of p_ids[i]), as two statements for the whole group. Returns the ids whose lease
-- was lost (nothing recorded for them). The lease check is the DELETE's own WHERE clause:
-- a row reclaimed by another daemon in the meantime no longer matches it. The skipped
-- rows are located through the primary key, whatever the statistics say about the outbox
-- when the plan is cached: no sequential scan (enable_seqscan off for this function's
-- plans; jit off, see qbsync.claim), and state::text is not an index condition (a plan
-- through the state index would read the entry of every row finished since the last
-- VACUUM).
CREATE FUNCTION qbsync.skip_many(p_worker text, p_realm text, p_ids bigint[],
                                 p_reasons text[])
RETURNS bigint[]
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_done bigint[];
BEGIN
    IF cardinality(p_ids) IS DISTINCT FROM cardinality(p_reasons) THEN
        RAISE EXCEPTION 'qbsync.skip_many: % ids but % reasons',
            cardinality(p_ids), cardinality(p_reasons) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    WITH item AS (
        SELECT i.id, i.reason, i.n FROM unnest(p_ids, p_reasons) WITH ORDINALITY AS i(id, reason, n)
    ), gone AS (
        DELETE FROM qbsync.outbox o
        USING item
        WHERE o.id = item.id AND o.lease_owner = p_worker AND o.state::text = 'running'
        RETURNING o.id, o.entity, o.key, o.request_id, o.attempts, item.reason, item.n
    ), logged AS (
        -- what qbsync.skip logs, in the order of p_ids
        INSERT INTO qbsync.integration_logs
            (operation, model_type, model_id, status, error_message, request_id, realm_id,
             attempt, actor)
        SELECT 'skip', g.entity, g.key, 'skipped', g.reason, g.request_id, p_realm, g.attempts,
               p_worker
        FROM gone g ORDER BY g.n
    )
    SELECT array_agg(g.id) INTO v_done FROM gone g;
    RETURN ARRAY(SELECT id FROM unnest(p_ids) AS id
                 WHERE v_done IS NULL OR id <> ALL (v_done));
END
$$;

-- Puts a running row back to pending. A change captured while it ran queued a pending row
-- of the same key: the two merge into this one, which keeps its request id (its earlier
-- tries may have reached QuickBooks) and takes the other's force flag. The push maps the
-- shop row afresh, so the queued change is not lost.
CREATE FUNCTION qbsync.requeue(p_row qbsync.outbox, p_at timestamptz, p_refund int,
                               p_error text, p_code text)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_force boolean;
BEGIN
    DELETE FROM qbsync.outbox
    WHERE entity = p_row.entity AND key = p_row.key AND state = 'pending'
    RETURNING force INTO v_force;
    UPDATE qbsync.outbox
    SET state = 'pending', attempts = greatest(attempts - p_refund, 0),
        next_attempt_at = p_at, lease_owner = NULL, lease_expires_at = NULL,
        force = force OR coalesce(v_force, false),
        last_error = coalesce(p_error, last_error), last_error_code = coalesce(p_code, last_error_code)
    WHERE id = p_row.id;
END
$$;

-- A push failed. p_error: kind, message, code, operation, response_time_ms, retry_after.
--   kind 'throttled' | 'auth' | 'paused' | 'waiting': not the row's fault (a throttle, a
--        token, a company to reconnect, a transaction it refers to not pushed yet); no try
--        burnt, back after retry_after seconds.
--   kind 'retry': transient; back after the entity's backoff, or dead when out of tries.
--   kind 'permanent': a retry cannot fix it (validation, unmappable data): dead at once.
-- Returns the row's new state ('pending' or 'dead'), or 'lost' if the lease was lost.
CREATE FUNCTION qbsync.fail(p_id bigint, p_worker text, p_realm text, p_error jsonb)
RETURNS text
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_row qbsync.outbox;
    v_entity qbsync.entities;
    v_kind text := coalesce(p_error->>'kind', 'retry');
    v_message text := coalesce(p_error->>'message', 'unknown error');
    v_now timestamptz := clock_timestamp();
    v_free boolean := v_kind IN ('throttled', 'auth', 'paused', 'waiting');
    v_dead boolean;
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
    IF v_kind = 'waiting' AND v_row.enqueued_at
            < now() - make_interval(secs => coalesce((qbsync.setting('max_wait_seconds'))::int, 86400)) THEN
        -- It has waited long enough: what it waits for is not coming by itself.
        v_kind := 'permanent';
        v_free := false;
        v_message := v_message || format(' (waited since %s; resync what it waits for, then retry_dead)',
                                         v_row.enqueued_at);
    END IF;
    v_dead := v_kind = 'permanent'
              OR (v_kind = 'retry' AND v_row.attempts >= coalesce(v_entity.max_attempts, 3));
    IF v_free THEN
        v_delay := make_interval(secs => coalesce((p_error->>'retry_after')::float8, 60));
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
            last_error = v_message, last_error_code = p_error->>'code'
        WHERE id = p_id;
    ELSE
        PERFORM qbsync.requeue(v_row, v_now + v_delay,
                               CASE WHEN v_free THEN 1 ELSE 0 END, v_message, p_error->>'code');
    END IF;

    PERFORM qbsync.log(coalesce(p_error->>'operation', 'push'), v_row.entity, v_row.key,
        -- a row waiting for another one's push has not failed: logged as information
        CASE WHEN v_dead THEN 'dead' WHEN v_kind = 'waiting' THEN 'info' ELSE 'retry' END,
        p_realm,
        (p_error - 'kind') || jsonb_build_object(
            'attempt', v_row.attempts, 'request_id', v_row.request_id, 'kind', v_kind,
            'next_attempt_at', CASE WHEN v_dead THEN NULL ELSE v_now + v_delay END),
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
            'error', left(v_message, 2000), 'code', p_error->>'code',
            'attempts', v_row.attempts, 'failed_at', v_now)::text);
        RETURN 'dead';
    END IF;
    RETURN 'pending';
END
$$;

-- A stopping daemon hands back what it holds, burning no try.
CREATE FUNCTION qbsync.release(p_worker text, p_ids bigint[] DEFAULT NULL)
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
        PERFORM qbsync.requeue(v_row, now(), 1, NULL, NULL);
        -- its push may have been cut off after QuickBooks applied it, and the try is given
        -- back: the next push of the key must not be skipped as unchanged
        UPDATE qbsync.entity_map SET body_hash = NULL
        WHERE entity = v_row.entity AND key = v_row.key AND body_hash IS NOT NULL;
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

-- Calls the mapping function: the QuickBooks body for (entity, key), or NULL.
CREATE FUNCTION qbsync.map(p_entity text, p_key text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_body jsonb;
BEGIN
    IF to_regprocedure(format('qbsync_map.%I(text)', p_entity)) IS NULL THEN
        RAISE EXCEPTION 'qbsync: no mapping function qbsync_map.%(key text) for entity "%"',
            p_entity, p_entity USING ERRCODE = 'QB002';
    END IF;
    EXECUTE format('SELECT qbsync_map.%I($1)', p_entity) INTO v_body USING p_key;
    RETURN v_body;
END
$$;

-- Maps many keys of one entity in one round trip, catching each key's error on its own
-- (one bad row must not fail its neighbours). Used for batches. All keys go through one
-- statement first (planned once, no subtransaction per key); only when a mapping raises
-- does the group go key by key, to tell which key failed and why.
CREATE FUNCTION qbsync.map_many(p_entity text, p_keys text[])
RETURNS TABLE (key text, body jsonb, error_code text, error_message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_key text;
    v_bodies jsonb[];
BEGIN
    IF to_regprocedure(format('qbsync_map.%I(text)', p_entity)) IS NOT NULL THEN
        BEGIN
            -- into a variable, not RETURN QUERY: rows returned before an error would stay
            EXECUTE format('SELECT array_agg(qbsync_map.%I(k) ORDER BY n)
                            FROM unnest($1) WITH ORDINALITY AS u(k, n)', p_entity)
                INTO v_bodies USING p_keys;
        EXCEPTION WHEN OTHERS THEN
            v_bodies := NULL;
        END;
        IF v_bodies IS NOT NULL THEN
            RETURN QUERY SELECT u.k, u.b, NULL::text, NULL::text
                         FROM unnest(p_keys, v_bodies) AS u(k, b);
            RETURN;
        END IF;
    END IF;
    FOREACH v_key IN ARRAY p_keys LOOP
        key := v_key;
        body := NULL;
        error_code := NULL;
        error_message := NULL;
        BEGIN
            body := qbsync.map(p_entity, v_key);
        EXCEPTION WHEN OTHERS THEN
            error_code := SQLSTATE;
            error_message := SQLERRM;
        END;
        RETURN NEXT;
    END LOOP;
END
$$;

-- The entity_map rows of many (entity, key) pairs of one realm: the daemon's lookup before
-- each push and of every reference. Planned afresh on each call (EXECUTE) and joined on the
-- whole primary key. A cached generic plan, made while the map was small and without
-- statistics (autovacuum off or not run yet), read the realm's whole map on every call:
-- the daemon slowed down as the map grew.
CREATE FUNCTION qbsync.mapped(p_realm text, p_entities text[], p_keys text[])
RETURNS TABLE (entity text, key text, qbo_id text, sync_token text, doc_number text,
               qbo_status text, body_hash text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN QUERY EXECUTE
        'SELECT m.entity, m.key, m.qbo_id, m.sync_token, m.doc_number, m.qbo_status,
                m.body_hash
         FROM unnest(array_fill($1, ARRAY[cardinality($2)]), $2, $3) AS w(realm, entity, key)
         CROSS JOIN LATERAL (
             SELECT * FROM qbsync.entity_map m
             WHERE m.realm_id = w.realm AND m.entity = w.entity AND m.key = w.key
             OFFSET 0) m'
        USING p_realm, p_entities, p_keys;
END
$$;

-- The daemon's step before creating dependencies in a batch, one round trip instead of
-- two: the entity_map rows of these keys of one entity (looked up again under the daemon's
-- dependency locks: another task may just have created them), then the mapped bodies
-- (qbsync.map_many) of the keys that have no entity_map row, in p_keys' order. A key mapped
-- but not active comes back with its qbo_status and no body.
CREATE FUNCTION qbsync.map_dependencies(p_realm text, p_entity text, p_keys text[])
RETURNS TABLE (key text, qbo_id text, sync_token text, doc_number text, qbo_status text,
               body_hash text, body jsonb, error_code text, error_message text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r record;
    v_found text[] := '{}';
    v_todo text[];
BEGIN
    FOR r IN SELECT * FROM qbsync.mapped(p_realm, array_fill(p_entity, ARRAY[cardinality(p_keys)]),
                                         p_keys) LOOP
        key := r.key;
        qbo_id := r.qbo_id;
        sync_token := r.sync_token;
        doc_number := r.doc_number;
        qbo_status := r.qbo_status;
        body_hash := r.body_hash;
        v_found := v_found || r.key;
        RETURN NEXT;
    END LOOP;
    v_todo := ARRAY(SELECT u.k FROM unnest(p_keys) WITH ORDINALITY AS u(k, n)
                    WHERE u.k <> ALL (v_found) ORDER BY u.n);
    IF cardinality(v_todo) > 0 THEN
        RETURN QUERY
            SELECT mm.key, NULL::text, NULL::text, NULL::text, NULL::text, NULL::text,
                   mm.body, mm.error_code, mm.error_message
            FROM qbsync.map_many(p_entity, v_todo) mm;
    END IF;
END
$$;

-- A bounded count of rows ready now: the worker switches to the batch endpoint when the
-- backlog reaches p_limit, without counting a million rows to find out. Collects first
-- (several changes may coalesce into one row), as the claim that follows would. PL/pgSQL:
-- plans cached (see collect_changes); by index whatever the statistics (see qbsync.claim).
CREATE FUNCTION qbsync.ready_backlog(p_limit int) RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off
SET jit = off
AS $$
DECLARE
    v_ready int;
BEGIN
    PERFORM qbsync.collect_changes(greatest(p_limit * 10, 1000));
    SELECT count(*)::int INTO v_ready FROM (
        SELECT 1 FROM qbsync.outbox
        WHERE state = 'pending' AND next_attempt_at <= now()
        LIMIT p_limit) AS ready;
    RETURN v_ready;
END
$$;

-- What is left to do: captured changes not yet collected, plus pending and running rows
-- (dead rows wait for a person, not for a daemon). 0 = drained.
CREATE FUNCTION qbsync.backlog() RETURNS bigint
LANGUAGE sql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT (SELECT count(*) FROM qbsync.changes)
         + (SELECT count(*) FROM qbsync.outbox WHERE state <> 'dead');
$$;
COMMENT ON FUNCTION qbsync.backlog() IS
    'Changes still to push: captured but not yet collected, pending, running (dead rows excluded). 0 = everything captured has been dealt with.';

-- Daemon registry: heartbeats, and the workers table cleaned of daemons long gone.
CREATE FUNCTION qbsync.register_worker(p_worker text, p_hostname text, p_pid int)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM qbsync.workers WHERE heartbeat_at < now() - interval '1 hour';
    -- A daemon restarted under the same name: what its predecessor held is free at once
    -- (its tries stay counted: they may have reached QuickBooks, so the next one looks
    -- the object up before creating it).
    SELECT qbsync.requeue(o, now(), 0, NULL, NULL)
    FROM qbsync.outbox o WHERE o.state = 'running' AND o.lease_owner = p_worker;
    INSERT INTO qbsync.workers (worker_id, hostname, pid) VALUES (p_worker, p_hostname, p_pid)
    ON CONFLICT (worker_id) DO UPDATE
        SET hostname = excluded.hostname, pid = excluded.pid, started_at = now(),
            heartbeat_at = now(), waiting_until = NULL;
    SELECT qbsync.publish_waiting();
$$;

CREATE FUNCTION qbsync.unregister_worker(p_worker text) RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    DELETE FROM qbsync.workers WHERE worker_id = p_worker;
    SELECT qbsync.publish_waiting();
$$;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA qbsync FROM PUBLIC;
