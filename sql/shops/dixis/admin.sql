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
        ELSE key IN ('fee:shipping', 'fee:cod', 'fee:discount')
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
-- The sales an invoice exists for: completed orders whose completion day (Europe/Athens, the
-- invoice's TxnDate) is in [from_date, to_date]. Cancelled and refunded orders count 0, as
-- their voided invoices do in QuickBooks.
--   gross: orders.total (VAT included, what customers paid)
--   net:   what QuickBooks' ProfitAndLoss "Total Income" counts, computed the way QuickBooks
--          does for a TaxInclusive invoice: per order and VAT rate, the gross of the lines
--          (items after their discounts, minus the coupon share of the rate split exactly as
--          the mapping splits it, plus shipping and cash-on-delivery fees at 24 %) less
--          round(gross x rate / (100 + rate), 2).
CREATE INDEX IF NOT EXISTS orders_completed_at_idx ON dixis.orders (completed_at)
    WHERE status = 'completed';

CREATE OR REPLACE FUNCTION qbsync_map.order_revenue(from_date date, to_date date)
RETURNS TABLE (net numeric, gross numeric, orders bigint)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH o AS (
        SELECT id, discount, shipping_fee, payment_fee, total
        FROM dixis.orders
        WHERE status = 'completed'
          AND completed_at >= from_date::timestamp AT TIME ZONE 'Europe/Athens'
          AND completed_at < (to_date + 1)::timestamp AT TIME ZONE 'Europe/Athens'
    ),
    rate AS (
        SELECT i.order_id, coalesce(i.vat_rate, p.vat_rate, c.vat_rate) AS vat,
               sum(i.line_total) AS base
        FROM o
        JOIN dixis.order_items i ON i.order_id = o.id
        LEFT JOIN dixis.products p ON p.id = i.product_id
        LEFT JOIN dixis.categories c ON c.id = p.category_id
        GROUP BY 1, 2
    ),
    share AS (
        SELECT r.order_id, r.vat, o.discount,
               trunc(o.discount * r.base / t.base, 2) AS floor_share,
               o.discount * r.base / t.base - trunc(o.discount * r.base / t.base, 2) AS frac
        FROM rate r
        JOIN o ON o.id = r.order_id
        JOIN (SELECT order_id, sum(base) AS base FROM rate GROUP BY 1) t USING (order_id)
        WHERE o.discount > 0 AND t.base > 0
    ),
    coupon AS (
        SELECT order_id, vat,
               floor_share + CASE WHEN row_number() OVER (PARTITION BY order_id
                                                          ORDER BY frac DESC, vat DESC)
                                       <= round((discount - sum(floor_share)
                                                 OVER (PARTITION BY order_id)) * 100)
                                  THEN 0.01 ELSE 0 END AS amount
        FROM share
    ),
    per_rate AS (
        SELECT order_id, vat, sum(amount) AS gross
        FROM (SELECT order_id, vat, base AS amount FROM rate
              UNION ALL
              SELECT order_id, vat, -amount FROM coupon
              UNION ALL
              SELECT id, 24, shipping_fee + payment_fee FROM o
              WHERE shipping_fee + payment_fee > 0) lines
        WHERE vat IS NOT NULL
        GROUP BY 1, 2
    )
    SELECT (SELECT coalesce(sum(gross - round(gross * vat / (100 + vat), 2)), 0) FROM per_rate),
           (SELECT coalesce(sum(total), 0) FROM o),
           (SELECT count(*) FROM o)
$$;
COMMENT ON FUNCTION qbsync_map.order_revenue(date, date) IS
    'Completed Dixis orders completed (Athens days) from from_date to to_date: net of VAT (compare with QuickBooks ProfitAndLoss income), gross, and how many.';
