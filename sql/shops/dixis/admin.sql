-- Dixis: the optional admin parts of the mapping contract (see sql/migrations/0004_admin.sql).
--
--   qbsync_map.<entity>_key_exists(key)       resync / resync_many check keys with it
--   qbsync_map.order_unsynced_count()         dashboard: completed orders without an invoice
--   qbsync_map.order_revenue(from, to)        report_comparison: the shop's side of ProfitAndLoss
--
-- Loaded after mapping.sql; safe to run again.

-- Keys ------------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION qbsync_map.order_key_exists(key text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT key ~ '^[0-9]{1,18}$'
           AND EXISTS (SELECT 1 FROM dixis.orders o WHERE o.id = key::bigint)
$$;

CREATE OR REPLACE FUNCTION qbsync_map.customer_key_exists(key text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN key ~ '^[0-9]{1,18}$'
            THEN EXISTS (SELECT 1 FROM dixis.customers c WHERE c.id = key::bigint)
        WHEN key LIKE 'guest:%'
            -- the same rows customer_keys() lists (index orders_guest_email_idx)
            THEN EXISTS (SELECT 1 FROM dixis.orders o
                         WHERE o.customer_id IS NULL AND lower(o.billing_email) = substr(key, 7)
                           AND btrim(o.billing_email) <> '')
        ELSE false
    END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.product_key_exists(key text)
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN key ~ '^[0-9]{1,18}$'
            THEN EXISTS (SELECT 1 FROM dixis.products p WHERE p.id = key::bigint)
        -- fee:refund too: product_keys() leaves it out (a catalogue sync does not create
        -- it), but refunds reference it and the daemon creates it on demand
        ELSE key IN ('fee:shipping', 'fee:cod', 'fee:discount', 'fee:refund')
    END
$$;

-- Dashboard: completed orders still without a QuickBooks invoice ----------------------------
-- An index-only count on the partial index orders_qbo_unsynced_idx (schema.sql), which holds
-- exactly these rows: it costs as much as the backlog, not as the order history.
CREATE OR REPLACE FUNCTION qbsync_map.order_unsynced_count()
RETURNS bigint
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FROM dixis.orders o
    WHERE o.status = 'completed' AND o.quickbooks_invoice_id IS NULL
$$;
COMMENT ON FUNCTION qbsync_map.order_unsynced_count() IS
    'Completed Dixis orders without a QuickBooks invoice id (the dashboard''s orders_pending).';

-- Reports: the shop's revenue for a period --------------------------------------------------
-- What QuickBooks' ProfitAndLoss "Total Income" (accrual) counts for the period, from the
-- shop's side: the invoices of orders delivered in it (TxnDate = completion day in
-- Europe/Athens; an order cancelled or refunded before any payment has its invoice voided
-- and counts 0) less the refund receipts issued in it (TxnDate = refund day).
--   gross: VAT included, what customers paid less what went back
--   net:   computed from the very lines the mappings send, the way QuickBooks computes a
--          TaxInclusive document: per VAT rate, gross - round(gross x rate / (100 + rate), 2)
-- Built on the mapping functions, so the two sides cannot disagree by construction; about a
-- millisecond per order, fine for a report.
CREATE INDEX IF NOT EXISTS orders_completed_at_idx ON dixis.orders (completed_at);
CREATE INDEX IF NOT EXISTS refunds_refunded_at_idx ON dixis.refunds (refunded_at);

CREATE OR REPLACE FUNCTION dixis.mapped_net(body jsonb) RETURNS numeric
LANGUAGE sql IMMUTABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(gross - round(gross * rate / (100 + rate), 2)), 0)
    FROM (SELECT substr(l->'SalesItemLineDetail'->'TaxCodeRef'->>'$setting',
                        length('tax_code:') + 1)::numeric AS rate,
                 sum((l->>'Amount')::numeric) AS gross
          FROM jsonb_array_elements(coalesce(body->'Line', '[]')) AS l
          WHERE l->>'DetailType' = 'SalesItemLineDetail' AND coalesce(body->>'$op', 'upsert') = 'upsert'
          GROUP BY 1) AS per_rate
$$;

CREATE OR REPLACE FUNCTION qbsync_map.order_revenue(from_date date, to_date date)
RETURNS TABLE (net numeric, gross numeric, orders bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH invoiced AS (
        SELECT o.id, o.total, qbsync_map."order"(o.id::text) AS body
        FROM dixis.orders o
        WHERE o.completed_at >= from_date::timestamp AT TIME ZONE 'Europe/Athens'
          AND o.completed_at < (to_date + 1)::timestamp AT TIME ZONE 'Europe/Athens'
    ), refunded AS (
        SELECT r.amount, qbsync_map.refund(r.id::text) AS body
        FROM dixis.refunds r
        WHERE r.refunded_at >= from_date::timestamp AT TIME ZONE 'Europe/Athens'
          AND r.refunded_at < (to_date + 1)::timestamp AT TIME ZONE 'Europe/Athens'
    ), kept AS (      -- NULL: nothing pushed; "$op": void or delete
        SELECT * FROM invoiced WHERE body IS NOT NULL AND NOT body ? '$op'
    ), given_back AS (
        SELECT * FROM refunded WHERE body IS NOT NULL AND NOT body ? '$op'
    )
    SELECT (SELECT coalesce(sum(dixis.mapped_net(body)), 0) FROM kept)
           - (SELECT coalesce(sum(dixis.mapped_net(body)), 0) FROM given_back),
           (SELECT coalesce(sum(total), 0) FROM kept)
           - (SELECT coalesce(sum(amount), 0) FROM given_back),
           (SELECT count(*) FROM kept)
$$;
COMMENT ON FUNCTION qbsync_map.order_revenue(date, date) IS
    'Completed Dixis orders completed (Athens days) from from_date to to_date: net of VAT (compare with QuickBooks ProfitAndLoss income), gross, and how many.';

-- Reconciliation: the documents the shop expects in QuickBooks for a period ----------------
-- qbsync.finish_reconcile compares them with QuickBooks' transactions dated in the period.
-- The same rules as the mappings (TxnDate = the Athens day of completion, payment, refund):
--   order   -> Invoice:       delivered orders that keep their invoice, for the order total
--   payment -> Payment:       paid orders that keep their invoice, for amount_paid
--   refund  -> RefundReceipt: refunds of orders that keep their invoice, for the amount
-- Index scans on completed_at, paid_at and refunded_at: cheap for a month or a quarter.
CREATE INDEX IF NOT EXISTS orders_paid_at_idx ON dixis.orders (paid_at);

CREATE OR REPLACE FUNCTION qbsync_map.order_ledger(from_date date, to_date date)
RETURNS TABLE (entity text, key text, doc_number text, txn_date date, amount numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT 'order', o.id::text, dixis.order_number(o.id, o.created_at),
           (o.completed_at AT TIME ZONE 'Europe/Athens')::date, o.total
    FROM dixis.orders o
    WHERE o.completed_at >= from_date::timestamp AT TIME ZONE 'Europe/Athens'
      AND o.completed_at < (to_date + 1)::timestamp AT TIME ZONE 'Europe/Athens'
      AND dixis.order_keeps_invoice(o)
    UNION ALL
    SELECT 'payment', o.id::text, NULL, (o.paid_at AT TIME ZONE 'Europe/Athens')::date,
           o.amount_paid
    FROM dixis.orders o
    WHERE o.paid_at >= from_date::timestamp AT TIME ZONE 'Europe/Athens'
      AND o.paid_at < (to_date + 1)::timestamp AT TIME ZONE 'Europe/Athens'
      AND o.amount_paid IS NOT NULL
      AND dixis.order_keeps_invoice(o)
    UNION ALL
    SELECT 'refund', r.id::text,
           CASE WHEN length(dixis.order_number(o.id, o.created_at) || '-R' || r.number) <= 21
                THEN dixis.order_number(o.id, o.created_at) || '-R' || r.number
                ELSE 'DX-' || o.id || '-R' || r.number END,
           (r.refunded_at AT TIME ZONE 'Europe/Athens')::date, r.amount
    FROM dixis.refunds r
    JOIN dixis.orders o ON o.id = r.order_id
    WHERE r.refunded_at >= from_date::timestamp AT TIME ZONE 'Europe/Athens'
      AND r.refunded_at < (to_date + 1)::timestamp AT TIME ZONE 'Europe/Athens'
      AND dixis.order_keeps_invoice(o)
$$;
COMMENT ON FUNCTION qbsync_map.order_ledger(date, date) IS
    'Dixis documents QuickBooks should have dated from_date to to_date (Athens days): invoices of delivered orders, their payments, their refunds (qbsync.request_reconcile).';
