-- Medusa: the optional admin parts of the mapping contract (see sql/migrations/0004_admin.sql
-- and 0006_reconcile.sql).
--
--   qbsync_map.<entity>_key_exists(key)   resync / resync_many check keys with it
--   qbsync_map.order_unsynced_count()     dashboard: orders that should have an invoice and
--                                         have none in QuickBooks yet
--   qbsync_map.order_revenue(from, to)    report_comparison: the shop's side of ProfitAndLoss
--   qbsync_map.order_ledger(from, to)     reconciliation: the documents QuickBooks should hold
--
-- Loaded after mapping.sql; safe to run again.

CREATE OR REPLACE FUNCTION qbsync_map.order_key_exists(key text)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM medusa."order" o WHERE o.id = key) $$;

CREATE OR REPLACE FUNCTION qbsync_map.customer_key_exists(key text)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM medusa.customer c WHERE c.id = key) $$;

CREATE OR REPLACE FUNCTION qbsync_map.product_key_exists(key text)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT key IN ('fee:shipping', 'fee:discount', 'fee:refund', 'fee:custom')
        OR EXISTS (SELECT 1 FROM medusa.product_variant v WHERE v.id = key)
$$;

CREATE OR REPLACE FUNCTION qbsync_map.payment_key_exists(key text)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM medusa.capture c WHERE c.id = key) $$;

CREATE OR REPLACE FUNCTION qbsync_map.refund_key_exists(key text)
RETURNS boolean LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM medusa.refund r WHERE r.id = key) $$;

-- Dashboard: placed orders without a QuickBooks invoice. Medusa has no column for it (the
-- write-back is in medusa_qbsync.sync_state), so this is an anti-join over the orders: a scan
-- of the order table, fine for a dashboard refreshed by a human (~50 ms per 100,000 orders).
CREATE OR REPLACE FUNCTION qbsync_map.order_unsynced_count()
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FROM medusa."order" o
    WHERE o.deleted_at IS NULL AND NOT o.is_draft_order AND o.status NOT IN ('draft', 'canceled')
      AND NOT EXISTS (SELECT 1 FROM medusa_qbsync.sync_state s
                      WHERE s.entity = 'order' AND s.key = o.id AND s.qbo_id IS NOT NULL)
$$;
COMMENT ON FUNCTION qbsync_map.order_unsynced_count() IS
    'Placed Medusa orders without a QuickBooks invoice id (the dashboard''s orders_pending).';

-- The days a period covers, as the mapping dates documents (setting time_zone).
CREATE OR REPLACE FUNCTION medusa_qbsync.period(from_date date, to_date date,
                                                OUT starts timestamptz, OUT ends timestamptz)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT from_date::timestamp AT TIME ZONE coalesce(medusa_qbsync.setting('time_zone'), 'UTC'),
           (to_date + 1)::timestamp AT TIME ZONE coalesce(medusa_qbsync.setting('time_zone'), 'UTC')
$$;

-- Reports: the shop's revenue for a period, from the very lines the mappings send, as
-- QuickBooks computes a TaxInclusive document: per rate, gross - round(gross x rate /
-- (100 + rate), 2); invoices dated in the period less refund receipts dated in it. About a
-- millisecond per order, fine for a report.
CREATE OR REPLACE FUNCTION medusa_qbsync.mapped_net(body jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(gross - round(gross * rate / (100 + rate), 2)), 0)
    FROM (SELECT substr(l->'SalesItemLineDetail'->'TaxCodeRef'->>'$setting',
                        length('tax_code:') + 1)::numeric AS rate,
                 sum((l->>'Amount')::numeric) AS gross
          FROM jsonb_array_elements(coalesce(body->'Line', '[]')) AS l
          WHERE l->>'DetailType' = 'SalesItemLineDetail' AND NOT body ? '$op'
          GROUP BY 1) AS per_rate
$$;

-- A mapping's body, or NULL when it refuses the row (it will not be in QuickBooks either).
CREATE OR REPLACE FUNCTION medusa_qbsync.mapped(entity text, key text) RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RETURN CASE entity WHEN 'order' THEN qbsync_map."order"(key)
                       WHEN 'payment' THEN qbsync_map.payment(key)
                       WHEN 'refund' THEN qbsync_map.refund(key) END;
EXCEPTION WHEN SQLSTATE 'QB001' THEN
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.order_revenue(from_date date, to_date date)
RETURNS TABLE (net numeric, gross numeric, orders bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH p AS (SELECT * FROM medusa_qbsync.period(from_date, to_date)),
    -- MATERIALIZED: each document mapped once, and only those of the period (inlined, the
    -- planner would copy the mapping call into every use of body, filters on other rows first)
    invoiced AS MATERIALIZED (
        SELECT medusa_qbsync.mapped('order', o.id) AS body
        FROM medusa."order" o, p
        WHERE o.created_at >= p.starts AND o.created_at < p.ends
    ), refunded AS MATERIALIZED (
        SELECT medusa_qbsync.mapped('refund', r.id) AS body
        FROM medusa.refund r, p
        WHERE r.created_at >= p.starts AND r.created_at < p.ends AND r.deleted_at IS NULL
    ), kept AS (SELECT body FROM invoiced WHERE body ? 'Line'),
    given_back AS (SELECT body FROM refunded WHERE body ? 'Line'),
    lines AS (
        SELECT 1 AS sign, k.body FROM kept k UNION ALL SELECT -1, g.body FROM given_back g
    )
    SELECT coalesce(sum(l.sign * medusa_qbsync.mapped_net(l.body)), 0),
           coalesce(sum(l.sign * (SELECT sum((x->>'Amount')::numeric)
                                  FROM jsonb_array_elements(l.body->'Line') x)), 0),
           (SELECT count(*) FROM kept)
    FROM lines l
$$;
COMMENT ON FUNCTION qbsync_map.order_revenue(date, date) IS
    'Medusa orders placed from from_date to to_date (setting time_zone) less refunds made then: net of VAT (compare with QuickBooks ProfitAndLoss income), gross, and how many invoices.';

-- Reconciliation: every document the shop expects in QuickBooks dated in the period, with
-- the total the mapping sends.
CREATE OR REPLACE FUNCTION qbsync_map.order_ledger(from_date date, to_date date)
RETURNS TABLE (entity text, key text, doc_number text, txn_date date, amount numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH p AS (SELECT * FROM medusa_qbsync.period(from_date, to_date)),
    -- MATERIALIZED: each document mapped once, and only those of the period (inlined, the
    -- planner would copy the mapping call into every use of body, and filter the whole
    -- table on it before the dates)
    docs AS MATERIALIZED (
        SELECT 'order' AS entity, o.id AS key, medusa_qbsync.mapped('order', o.id) AS body
        FROM medusa."order" o, p WHERE o.created_at >= p.starts AND o.created_at < p.ends
        UNION ALL
        SELECT 'payment', c.id, medusa_qbsync.mapped('payment', c.id)
        FROM medusa.capture c, p WHERE c.created_at >= p.starts AND c.created_at < p.ends
                                   AND c.deleted_at IS NULL
        UNION ALL
        SELECT 'refund', r.id, medusa_qbsync.mapped('refund', r.id)
        FROM medusa.refund r, p WHERE r.created_at >= p.starts AND r.created_at < p.ends
                                  AND r.deleted_at IS NULL
    )
    SELECT d.entity, d.key,
           CASE WHEN d.entity <> 'payment' THEN d.body->>'DocNumber' END,
           (d.body->>'TxnDate')::date,
           coalesce((d.body->>'TotalAmt')::numeric,
                    (SELECT sum((x->>'Amount')::numeric) FROM jsonb_array_elements(d.body->'Line') x))
    FROM docs d
    WHERE d.body ? 'Line'
$$;
COMMENT ON FUNCTION qbsync_map.order_ledger(date, date) IS
    'Medusa documents QuickBooks should have dated from_date to to_date: invoices of placed orders, payments (captures), refund receipts (qbsync.request_reconcile).';
