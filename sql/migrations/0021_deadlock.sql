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
