-- Every function that locks several outbox rows locks them in id order.
--
-- A daemon extends the leases of all the rows it works on (qbsync.extend_leases) while its
-- outcome groups are being recorded on other connections; qbsync.complete_many locks a
-- group's rows in id order (ORDER BY id FOR UPDATE). extend_leases was a plain UPDATE,
-- which locks rows in the order its scan meets them: a bitmap or sequential scan meets them
-- in their physical order, and every claim and every extension writes a row's new version
-- elsewhere in the table. An extension holding a later id and waiting for an earlier one
-- that a group held, while the group waited for the later one, was a deadlock: PostgreSQL
-- aborted one of the two (a missed extension, or a group recorded again row by row).
-- skip_many deleted its rows in the order of its ids argument (the order the outcomes came
-- in), and release locked them in scan order: both lock in id order now too.
--
-- Shop rows: qbsync.record_successes writes back an entity at a time, and an entity's
-- write-back may update another entity's shop row (a Dixis payment's outcome goes onto its
-- order's row, under the order's key). Two groups, one with the invoice of order x and the
-- payment of order y, the other with the invoice of y and the payment of x, locked rows x
-- and y in opposite orders. The write-backs of a key now wait for any other group writing
-- back the same key (a transaction advisory lock per key, taken in one order before any
-- write-back).

CREATE OR REPLACE FUNCTION qbsync.extend_leases(p_worker text, p_ids bigint[], p_lease interval)
RETURNS SETOF bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE qbsync.outbox o
    SET lease_expires_at = now() + p_lease, next_attempt_at = now() + p_lease
    FROM (SELECT id FROM qbsync.outbox
          WHERE id = ANY (p_ids) AND state::text = 'running' AND lease_owner = p_worker
          ORDER BY id
          FOR UPDATE) AS held
    WHERE o.id = held.id
    RETURNING o.id;
$$;

CREATE OR REPLACE FUNCTION qbsync.skip_many(p_worker text, p_realm text, p_ids bigint[],
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
    -- the rows first, in id order; the delete below then waits for no one
    PERFORM 1 FROM (SELECT o.id FROM qbsync.outbox o
                    WHERE o.id = ANY (p_ids) AND o.lease_owner = p_worker
                      AND o.state::text = 'running'
                    ORDER BY o.id
                    FOR UPDATE) AS l;
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
        ORDER BY id
        FOR UPDATE
    LOOP
        PERFORM qbsync.interrupt(v_row);
        v_count := v_count + 1;
    END LOOP;
    RETURN v_count;
END
$$;

CREATE OR REPLACE FUNCTION qbsync.record_successes(p_realm text, p_rows jsonb,
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
    v_lock int;
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

    -- The write-backs of one key, whatever its entity, one group at a time, each group
    -- taking its keys in one order: an entity's write-back may update another's shop row
    -- (a Dixis payment's is its order's row, under the same key), and two groups writing
    -- back the invoice of one order and the payment of another, and the other way round,
    -- locked the two rows in opposite orders.
    FOR v_lock IN
        SELECT DISTINCT hashtext(r.key) FROM jsonb_to_recordset(p_rows) AS r(key text)
        ORDER BY 1
    LOOP
        PERFORM pg_advisory_xact_lock(hashtext('qbsync.write_back'), v_lock);
    END LOOP;

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
