-- Reconciliation: the shop's books for a period next to QuickBooks' for the same dates.
--
--   qbsync.request_reconcile(from, to)   (admin) asks the daemon; an admin request 'reconcile'
--   daemon: reads QuickBooks' transactions with TxnDate in the period (one query per type,
--           paginated), stores them in qbsync.reconcile_items, reads by Id the mapped objects
--           the query did not return (deleted? dated elsewhere?), then qbsync.finish_reconcile
--           compares them with the shop's ledger (qbsync_map.<invoice entity>_ledger) through
--           qbsync.entity_map and stores one qbsync.reconcile_results row per document
--   qbsync.reconcile(run_id)             (admin) the results: ok / missing_in_quickbooks /
--                                        missing_in_shop / amount_differs / date_differs
--   qbsync.reconcile_fix(run_id)         (admin) queues the fixes (forced resyncs)
--   qbsync.reconcile_totals, qbsync.reconcile_problems   (reader) views
--
-- The mapping contract gains one optional function, named after the invoice entity:
--   qbsync_map.<entity>_ledger(from_date date, to_date date)
--       RETURNS TABLE (entity text, key text, doc_number text, txn_date date, amount numeric)
-- every document the shop expects in QuickBooks with its TxnDate in the period (invoices,
-- payments, refund receipts...): entity and key as in the outbox, the DocNumber it carries
-- (NULL if none), the TxnDate the mapping sends and the document's total.

ALTER TABLE qbsync.admin_requests DROP CONSTRAINT admin_requests_kind_check;
ALTER TABLE qbsync.admin_requests ADD CONSTRAINT admin_requests_kind_check
    CHECK (kind IN ('report', 'connection_test', 'reconcile'));

CREATE TABLE qbsync.reconcile_runs (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    request_id   bigint REFERENCES qbsync.admin_requests ON DELETE SET NULL,
    realm_id     text NOT NULL,
    from_date    date NOT NULL,
    to_date      date NOT NULL,
    qbo_types    text[] NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    fixed_at     timestamptz,
    fixed_by     text,
    fixes        int,
    CHECK (from_date <= to_date)
);
COMMENT ON TABLE qbsync.reconcile_runs IS
    'One reconciliation of a period: the QuickBooks side in reconcile_items, the comparison in reconcile_results.';

CREATE TABLE qbsync.reconcile_items (
    run_id      bigint NOT NULL REFERENCES qbsync.reconcile_runs ON DELETE CASCADE,
    qbo_type    text NOT NULL,
    qbo_id      text NOT NULL,
    doc_number  text,
    txn_date    date,
    total       numeric(14,2),
    customer    text,             -- CustomerRef value
    linked_txn  text[],           -- the transactions a payment is applied to
    state       text NOT NULL CHECK (state IN ('active', 'voided', 'deleted')),
    found_by    text NOT NULL CHECK (found_by IN ('query', 'read')),
    PRIMARY KEY (run_id, qbo_type, qbo_id)
);
COMMENT ON TABLE qbsync.reconcile_items IS
    'QuickBooks'' side of a reconciliation: found_by query = TxnDate in the period; read = a mapped object the query did not return, read by Id (state deleted: QuickBooks no longer has it).';

CREATE TABLE qbsync.reconcile_results (
    run_id         bigint NOT NULL REFERENCES qbsync.reconcile_runs ON DELETE CASCADE,
    qbo_type       text NOT NULL,
    entity         text,
    key            text,
    qbo_id         text,
    doc_number     text,
    shop_txn_date  date,
    qbo_txn_date   date,
    shop_amount    numeric(14,2),
    qbo_amount     numeric(14,2),
    status         text NOT NULL CHECK (status IN ('ok', 'missing_in_quickbooks',
                                                   'missing_in_shop', 'amount_differs',
                                                   'date_differs')),
    note           text,
    qbo_deleted    boolean NOT NULL DEFAULT false,   -- the mapped object is gone from QuickBooks
    fix            text                              -- what reconcile_fix did
);
CREATE INDEX reconcile_results_run ON qbsync.reconcile_results (run_id, status);
COMMENT ON TABLE qbsync.reconcile_results IS
    'One row per document of a reconciliation, shop and QuickBooks side by side, with its verdict.';

-- The shop's ledger for a period, through the mapping contract (empty without the function).
CREATE FUNCTION qbsync.shop_ledger(p_from date, p_to date)
RETURNS TABLE (entity text, key text, doc_number text, txn_date date, amount numeric)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_entity text := qbsync.invoice_entity();
BEGIN
    IF v_entity IS NULL OR qbsync.mapping_function(v_entity, '_ledger', 'date, date') IS NULL THEN
        RAISE EXCEPTION 'qbsync: the mapping has no qbsync_map.%_ledger(from_date date, to_date date) to reconcile with',
            coalesce(v_entity, '<invoice entity>') USING ERRCODE = 'undefined_function';
    END IF;
    RETURN QUERY EXECUTE format(
        'SELECT l.entity::text, l.key::text, l.doc_number::text, l.txn_date::date, l.amount::numeric'
        ' FROM qbsync_map.%I($1, $2) AS l', v_entity || '_ledger') USING p_from, p_to;
END
$$;

-- Admin: ask the daemon. The QuickBooks types read are the transaction types qbsync manages.
CREATE FUNCTION qbsync.request_reconcile(from_date date, to_date date) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_types text[];
BEGIN
    IF from_date IS NULL OR to_date IS NULL OR from_date > to_date THEN
        RAISE EXCEPTION 'qbsync.request_reconcile: need from_date <= to_date (got % .. %)',
            from_date, to_date USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT array_agg(DISTINCT qbo_type ORDER BY qbo_type) INTO v_types
    FROM qbsync.entities
    WHERE qbo_type IN ('Invoice', 'Payment', 'RefundReceipt', 'CreditMemo', 'SalesReceipt');
    IF v_types IS NULL THEN
        RAISE EXCEPTION 'qbsync.request_reconcile: no entity syncs to a QuickBooks transaction'
            USING ERRCODE = 'no_data_found';
    END IF;
    RETURN qbsync.request('reconcile', jsonb_build_object(
        'from_date', from_date, 'to_date', to_date, 'types', to_jsonb(v_types)));
END
$$;
COMMENT ON FUNCTION qbsync.request_reconcile(date, date) IS
    'Asks the daemon to compare QuickBooks'' transactions dated from_date to to_date with the shop''s (qbsync_map.<entity>_ledger); returns the admin_requests id. Result: admin_requests.result->''run_id'', then qbsync.reconcile(run_id).';

-- Daemon: a run for a claimed request.
CREATE FUNCTION qbsync.start_reconcile(p_request_id bigint, p_realm text, p_from date,
                                       p_to date, p_types text[])
RETURNS bigint
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO qbsync.reconcile_runs (request_id, realm_id, from_date, to_date, qbo_types)
    VALUES (p_request_id, p_realm, p_from, p_to, p_types)
    RETURNING id;
$$;

-- Daemon: QuickBooks objects of one type (a query page, or objects read by Id; a deleted one
-- is {"Id": …, "status": "Deleted"}). Returns how many were stored.
CREATE FUNCTION qbsync.store_reconcile_items(p_run bigint, p_type text, p_objects jsonb,
                                             p_found_by text DEFAULT 'query')
RETURNS int
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_count int;
BEGIN
    INSERT INTO qbsync.reconcile_items AS i
        (run_id, qbo_type, qbo_id, doc_number, txn_date, total, customer, linked_txn, state,
         found_by)
    SELECT p_run, p_type, o->>'Id', o->>'DocNumber', (o->>'TxnDate')::date,
           (o->>'TotalAmt')::numeric, o->'CustomerRef'->>'value',
           (SELECT array_agg(DISTINCT t->>'TxnId' ORDER BY t->>'TxnId')
            FROM jsonb_array_elements(coalesce(o->'Line', '[]')) AS l,
                 jsonb_array_elements(coalesce(l->'LinkedTxn', '[]')) AS t),
           CASE WHEN o->>'status' = 'Deleted' THEN 'deleted'
                WHEN (o->>'Voided')::boolean
                     OR coalesce(o->>'PrivateNote', '') LIKE 'Voided%' AND (o->>'TotalAmt')::numeric = 0
                     THEN 'voided'
                ELSE 'active' END,
           p_found_by
    FROM jsonb_array_elements(p_objects) AS o
    WHERE o->>'Id' IS NOT NULL
    ON CONFLICT (run_id, qbo_type, qbo_id) DO UPDATE
        SET doc_number = excluded.doc_number, txn_date = excluded.txn_date,
            total = excluded.total, customer = excluded.customer,
            linked_txn = excluded.linked_txn, state = excluded.state;
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- Daemon: the QuickBooks objects the shop's ledger rows are mapped to that the period's
-- query did not return (deleted behind qbsync's back, or dated outside the period): the
-- daemon reads them by Id, at most p_limit.
CREATE FUNCTION qbsync.reconcile_unseen(p_run bigint, p_limit int DEFAULT 100)
RETURNS TABLE (qbo_type text, qbo_id text)
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_run qbsync.reconcile_runs;
BEGIN
    SELECT * INTO v_run FROM qbsync.reconcile_runs WHERE id = p_run;
    RETURN QUERY
    SELECT DISTINCT m.qbo_type, m.qbo_id
    FROM qbsync.shop_ledger(v_run.from_date, v_run.to_date) AS l
    JOIN qbsync.entity_map m ON m.realm_id = v_run.realm_id AND m.entity = l.entity
                            AND m.key = l.key
    WHERE m.qbo_status = 'active' AND m.qbo_type = ANY (v_run.qbo_types)
      AND NOT EXISTS (SELECT 1 FROM qbsync.reconcile_items i
                      WHERE i.run_id = p_run AND i.qbo_type = m.qbo_type AND i.qbo_id = m.qbo_id)
    ORDER BY 1, 2
    LIMIT p_limit;
END
$$;

-- Daemon: compare, store the results, close the run; a notice when something differs.
-- Matching: a shop document goes with the QuickBooks object entity_map names; failing that
-- (entity_map lost) with the unclaimed object of its type carrying its DocNumber.
CREATE FUNCTION qbsync.finish_reconcile(p_run bigint) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_run qbsync.reconcile_runs;
    v_problems int;
    v_summary jsonb;
BEGIN
    SELECT * INTO v_run FROM qbsync.reconcile_runs WHERE id = p_run FOR UPDATE;
    IF v_run.id IS NULL THEN
        RAISE EXCEPTION 'qbsync.finish_reconcile: no run %', p_run USING ERRCODE = 'no_data_found';
    END IF;
    DELETE FROM qbsync.reconcile_results WHERE run_id = p_run;

    CREATE TEMP TABLE IF NOT EXISTS qbsync_reconcile_shop (
        entity text, key text, doc_number text, txn_date date, amount numeric,
        qbo_type text, map_id text, matched_id text, by_doc boolean) ON COMMIT DROP;
    TRUNCATE qbsync_reconcile_shop;
    INSERT INTO qbsync_reconcile_shop
    SELECT l.entity, l.key, l.doc_number, l.txn_date, round(l.amount, 2), e.qbo_type, m.qbo_id,
           i.qbo_id, false
    FROM qbsync.shop_ledger(v_run.from_date, v_run.to_date) AS l
    JOIN qbsync.entities e ON e.entity = l.entity
    LEFT JOIN qbsync.entity_map m ON m.realm_id = v_run.realm_id AND m.entity = l.entity
                                 AND m.key = l.key
    LEFT JOIN qbsync.reconcile_items i ON i.run_id = p_run AND i.qbo_type = e.qbo_type
                                      AND i.qbo_id = m.qbo_id;
    -- entity_map lost (or never written): the object with the document's number, if unclaimed
    UPDATE qbsync_reconcile_shop s
    SET matched_id = (SELECT i.qbo_id FROM qbsync.reconcile_items i
                      WHERE i.run_id = p_run AND i.qbo_type = s.qbo_type
                        AND i.doc_number = s.doc_number AND i.state <> 'deleted'
                        AND NOT EXISTS (SELECT 1 FROM qbsync_reconcile_shop c
                                        WHERE c.qbo_type = i.qbo_type AND c.matched_id = i.qbo_id)
                      ORDER BY i.qbo_id LIMIT 1),
        by_doc = true
    WHERE s.doc_number IS NOT NULL
      AND (s.matched_id IS NULL
           OR EXISTS (SELECT 1 FROM qbsync.reconcile_items d
                      WHERE d.run_id = p_run AND d.qbo_type = s.qbo_type
                        AND d.qbo_id = s.matched_id AND d.state = 'deleted'));
    UPDATE qbsync_reconcile_shop s SET matched_id = s.map_id, by_doc = false
    WHERE s.by_doc AND s.matched_id IS NULL;

    INSERT INTO qbsync.reconcile_results
        (run_id, qbo_type, entity, key, qbo_id, doc_number, shop_txn_date, qbo_txn_date,
         shop_amount, qbo_amount, status, note, qbo_deleted)
    SELECT p_run, s.qbo_type, s.entity, s.key, coalesce(i.qbo_id, s.map_id), s.doc_number,
           s.txn_date, i.txn_date, s.amount,
           CASE WHEN i.state = 'active' THEN i.total END,
           CASE WHEN i.qbo_id IS NULL OR i.state <> 'active' THEN 'missing_in_quickbooks'
                WHEN i.total IS DISTINCT FROM s.amount THEN 'amount_differs'
                WHEN i.txn_date IS DISTINCT FROM s.txn_date THEN 'date_differs'
                ELSE 'ok' END,
           CASE WHEN s.map_id IS NULL AND i.qbo_id IS NULL THEN 'never pushed to QuickBooks'
                WHEN i.qbo_id IS NULL THEN format('%s %s not found in QuickBooks', s.qbo_type, s.map_id)
                WHEN i.state = 'deleted' THEN format('%s %s was deleted in QuickBooks', s.qbo_type, i.qbo_id)
                WHEN i.state = 'voided' THEN format('%s %s is voided in QuickBooks', s.qbo_type, i.qbo_id)
                WHEN s.by_doc THEN format('matched by DocNumber: qbsync.entity_map %s',
                                          CASE WHEN s.map_id IS NULL THEN 'has no row for it'
                                               ELSE 'names ' || s.qbo_type || ' ' || s.map_id END)
                WHEN i.total IS DISTINCT FROM s.amount THEN
                    format('QuickBooks %s, shop %s (difference %s)', i.total, s.amount, i.total - s.amount)
                WHEN i.txn_date IS DISTINCT FROM s.txn_date THEN
                    format('dated %s in QuickBooks, %s in the shop', i.txn_date, s.txn_date)
           END,
           coalesce(i.state = 'deleted', false)
    FROM qbsync_reconcile_shop s
    LEFT JOIN qbsync.reconcile_items i ON i.run_id = p_run AND i.qbo_type = s.qbo_type
                                      AND i.qbo_id = s.matched_id;

    -- QuickBooks documents of the period the shop does not count (voided ones are settled)
    INSERT INTO qbsync.reconcile_results
        (run_id, qbo_type, entity, key, qbo_id, doc_number, qbo_txn_date, qbo_amount, status,
         note)
    SELECT p_run, i.qbo_type, m.entity, m.key, i.qbo_id, i.doc_number, i.txn_date, i.total,
           'missing_in_shop',
           CASE WHEN m.key IS NULL THEN 'not created by qbsync (no qbsync.entity_map row)'
                ELSE format('qbsync pushed it for %s %s, which the shop does not count in the period',
                            m.entity, m.key) END
    FROM qbsync.reconcile_items i
    LEFT JOIN qbsync.entity_map m ON m.realm_id = v_run.realm_id AND m.qbo_type = i.qbo_type
                                 AND m.qbo_id = i.qbo_id
    WHERE i.run_id = p_run AND i.found_by = 'query' AND i.state = 'active'
      AND NOT EXISTS (SELECT 1 FROM qbsync_reconcile_shop s
                      WHERE s.qbo_type = i.qbo_type AND s.matched_id = i.qbo_id);

    UPDATE qbsync.reconcile_runs SET finished_at = now() WHERE id = p_run;
    SELECT count(*) INTO v_problems FROM qbsync.reconcile_results
    WHERE run_id = p_run AND status <> 'ok';
    SELECT jsonb_build_object(
               'run_id', p_run, 'from_date', v_run.from_date, 'to_date', v_run.to_date,
               'problems', v_problems,
               'totals', coalesce(jsonb_agg(to_jsonb(t) - 'run_id' ORDER BY t.qbo_type), '[]'))
    INTO v_summary
    FROM qbsync.reconcile_totals t WHERE t.run_id = p_run;
    IF v_problems > 0 THEN
        PERFORM qbsync.raise_notice('warning', 'reconcile_difference',
            format('reconciliation %s..%s: %s document(s) differ between the shop and QuickBooks (SELECT * FROM qbsync.reconcile(%s) WHERE status <> ''ok'')',
                   v_run.from_date, v_run.to_date, v_problems, p_run),
            jsonb_build_object('run_id', p_run), v_run.realm_id, NULL,
            format('%s..%s', v_run.from_date, v_run.to_date));
    END IF;
    RETURN v_summary;
END
$$;

CREATE VIEW qbsync.reconcile_totals AS
SELECT r.run_id, r.qbo_type,
       (SELECT min(x.entity) FROM qbsync.reconcile_results x
        WHERE x.run_id = r.run_id AND x.qbo_type = r.qbo_type AND x.shop_amount IS NOT NULL)
           AS entity,
       count(*) FILTER (WHERE r.shop_amount IS NOT NULL) AS shop_count,
       coalesce(sum(r.shop_amount), 0) AS shop_total,
       count(*) FILTER (WHERE r.qbo_amount IS NOT NULL AND r.qbo_txn_date BETWEEN u.from_date AND u.to_date)
           AS qbo_count,
       coalesce(sum(r.qbo_amount) FILTER (WHERE r.qbo_txn_date BETWEEN u.from_date AND u.to_date), 0)
           AS qbo_total,
       count(*) FILTER (WHERE r.status = 'ok') AS ok,
       count(*) FILTER (WHERE r.status = 'missing_in_quickbooks') AS missing_in_quickbooks,
       count(*) FILTER (WHERE r.status = 'missing_in_shop') AS missing_in_shop,
       count(*) FILTER (WHERE r.status = 'amount_differs') AS amount_differs,
       count(*) FILTER (WHERE r.status = 'date_differs') AS date_differs
FROM qbsync.reconcile_results r
JOIN qbsync.reconcile_runs u ON u.id = r.run_id
GROUP BY r.run_id, r.qbo_type;
COMMENT ON VIEW qbsync.reconcile_totals IS
    'Per reconciliation and QuickBooks type: how many documents and what total each side has for the period, and how many of each verdict.';

CREATE VIEW qbsync.reconcile_problems AS
SELECT u.id AS run_id, u.realm_id, u.from_date, u.to_date, r.status, r.qbo_type, r.entity,
       r.key, r.qbo_id, r.doc_number, r.shop_txn_date, r.qbo_txn_date, r.shop_amount,
       r.qbo_amount, r.note, r.fix
FROM qbsync.reconcile_runs u
JOIN qbsync.reconcile_results r ON r.run_id = u.id
WHERE r.status <> 'ok'
  AND u.id = (SELECT max(v.id) FROM qbsync.reconcile_runs v
              WHERE v.realm_id = u.realm_id AND v.finished_at IS NOT NULL)
ORDER BY r.status, r.qbo_type, r.doc_number;
COMMENT ON VIEW qbsync.reconcile_problems IS
    'What the latest finished reconciliation of each company found different (qbsync.reconcile_fix(run_id) queues the fixes).';

CREATE FUNCTION qbsync.reconcile(run_id bigint) RETURNS SETOF qbsync.reconcile_results
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT * FROM qbsync.reconcile_results r WHERE r.run_id = reconcile.run_id
    ORDER BY r.status = 'ok', r.status, r.qbo_type, r.doc_number, r.key;
$$;
COMMENT ON FUNCTION qbsync.reconcile(bigint) IS
    'The results of a reconciliation, problems first: status ok / missing_in_quickbooks / missing_in_shop / amount_differs / date_differs.';

-- Admin: queue the fixes. A document missing in QuickBooks or different there is pushed
-- again with force; when its QuickBooks object was deleted, entity_map forgets it first so
-- that the push creates it anew. A voided one is left to a DBA (a void cannot be undone), and
-- so is a document QuickBooks has and the shop does not (the accountant's, or a shop row
-- changed since: see its note). Returns how many pushes were queued.
CREATE FUNCTION qbsync.reconcile_fix(run_id bigint) RETURNS int
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_run qbsync.reconcile_runs;
    v_row record;
    v_count int := 0;
    v_actor text := qbsync.caller();
BEGIN
    SELECT * INTO v_run FROM qbsync.reconcile_runs WHERE id = reconcile_fix.run_id FOR UPDATE;
    IF v_run.id IS NULL THEN
        RAISE EXCEPTION 'qbsync.reconcile_fix: no reconciliation %', reconcile_fix.run_id
            USING ERRCODE = 'no_data_found';
    END IF;
    IF v_run.finished_at IS NULL THEN
        RAISE EXCEPTION 'qbsync.reconcile_fix: reconciliation % is not finished yet', v_run.id
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    FOR v_row IN
        SELECT r.ctid AS rid, r.* FROM qbsync.reconcile_results r
        WHERE r.run_id = v_run.id AND r.fix IS NULL AND r.key IS NOT NULL
          AND r.status IN ('missing_in_quickbooks', 'amount_differs', 'date_differs')
        ORDER BY r.qbo_type = 'Invoice' DESC, r.entity, r.key
    LOOP
        IF v_row.status = 'missing_in_quickbooks' AND v_row.note LIKE '%voided in QuickBooks' THEN
            UPDATE qbsync.reconcile_results SET fix = 'none: voided in QuickBooks, see the drift'
            WHERE ctid = v_row.rid;
            CONTINUE;
        END IF;
        IF v_row.qbo_deleted THEN  -- marked, not removed: see qbsync.resolve_drift
            UPDATE qbsync.entity_map SET qbo_status = 'deleted'
            WHERE realm_id = v_run.realm_id AND entity = v_row.entity AND key = v_row.key
              AND qbo_id = v_row.qbo_id;
        END IF;
        PERFORM qbsync.enqueue(v_row.entity, v_row.key, true, 'reconcile');
        v_count := v_count + 1;
        UPDATE qbsync.reconcile_results
        SET fix = CASE WHEN v_row.qbo_deleted THEN 'queued: re-create' ELSE 'queued: push again' END
        WHERE ctid = v_row.rid;
        PERFORM qbsync.log('reconcile.fix', v_row.entity, v_row.key, 'info', v_run.realm_id,
            jsonb_build_object('message', format('reconciliation %s (%s..%s): %s%s; pushed again by %s',
                                                 v_run.id, v_run.from_date, v_run.to_date,
                                                 v_row.status, coalesce(': ' || v_row.note, ''),
                                                 v_actor),
                               'qbo_id', v_row.qbo_id), v_actor);
    END LOOP;
    UPDATE qbsync.reconcile_runs
    SET fixed_at = now(), fixed_by = v_actor, fixes = coalesce(fixes, 0) + v_count
    WHERE id = v_run.id;
    RETURN v_count;
END
$$;
COMMENT ON FUNCTION qbsync.reconcile_fix(bigint) IS
    'Queues forced pushes of the documents a reconciliation found missing or different in QuickBooks (re-creating deleted ones); returns how many.';

-- Grants (the pattern of 0004) ------------------------------------------------------------
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA qbsync FROM PUBLIC;
REVOKE ALL ON qbsync.reconcile_runs, qbsync.reconcile_items, qbsync.reconcile_results,
              qbsync.reconcile_totals, qbsync.reconcile_problems FROM PUBLIC;
-- reader (and admin): the views
GRANT SELECT ON qbsync.reconcile_totals, qbsync.reconcile_problems TO qbsync_reader, qbsync_admin;
-- admin: ask, look, fix
GRANT EXECUTE ON FUNCTION qbsync.request_reconcile(date, date), qbsync.reconcile(bigint),
                          qbsync.reconcile_fix(bigint)
    TO qbsync_admin;
GRANT SELECT ON qbsync.reconcile_runs, qbsync.reconcile_items, qbsync.reconcile_results
    TO qbsync_admin;
-- daemon: what admin.py calls, and what those functions touch with its rights
GRANT EXECUTE ON FUNCTION
    qbsync.start_reconcile(bigint, text, date, date, text[]),
    qbsync.store_reconcile_items(bigint, text, jsonb, text),
    qbsync.reconcile_unseen(bigint, int), qbsync.finish_reconcile(bigint),
    qbsync.shop_ledger(date, date)
    TO qbsync_daemon;
GRANT SELECT, INSERT, UPDATE ON qbsync.reconcile_runs, qbsync.reconcile_items TO qbsync_daemon;
GRANT SELECT, INSERT, DELETE ON qbsync.reconcile_results TO qbsync_daemon;
GRANT SELECT ON qbsync.reconcile_totals TO qbsync_daemon;
