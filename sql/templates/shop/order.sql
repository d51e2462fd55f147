-- @@ mapping
-- {{shop}}: orders (entity "order" -> QuickBooks Invoice), written by `qbsync shop new`.
--
-- key: an order's id as text. An order becomes an invoice when order_source says 'invoice'
-- (usually: completed / delivered); 'void' voids the invoice qbsync made (a cancellation);
-- anything else pushes nothing (not yet invoiced, or soft-deleted before it was).
--
-- To fill: order_source, order_lines, order_keys, optionally order_outcome.

-- FILL: one row for the order `key`, none when there is none.
--   customer_key   the key qbsync_map.customer(key) knows: the account's id, or the guest key
--   doc_number     the invoice number (DocNumber: at most 21 characters, unique)
--   txn_date       the invoice date, in the shop's time zone
--   state          'invoice', 'void', or NULL (nothing)
--   total          what the lines must add up to when prices include the tax (NULL: unchecked)
--   prices_include_tax   VAT-inclusive prices (TaxInclusive) or net ones (TaxExcluded)
CREATE OR REPLACE FUNCTION {{shop}}_qbo.order_source(key text)
RETURNS TABLE (customer_key text, doc_number text, txn_date date, state text, email text,
               total numeric, prices_include_tax boolean, note text, address text,
               city text, postal_code text, country text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(order_source)
    SELECT CASE WHEN o.customer_id IS NOT NULL THEN o.customer_id::text
                ELSE 'guest:' || lower(o.email) END,
           coalesce(o.number, o.id::text),
           (o.created_at AT TIME ZONE 'UTC')::date,
           CASE o.status WHEN 'completed' THEN 'invoice' WHEN 'cancelled' THEN 'void' END,
           o.email::text, o.total::numeric, true, NULL::text,
           o.address::text, o.city::text, o.postcode::text, o.country::text
    FROM fill_me.orders o
    WHERE o.id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END;
    -- END FILL
END;

-- FILL: the order's invoice lines, in order: its items, then shipping, fees and discounts
-- as lines on the fee items of {{shop}}_qbo.fee_items() (a discount: quantity 1, negative
-- price). item_key: a key qbsync_map.product knows. tax_rate: the line's VAT rate in percent
-- (a VAT company needs one on every line); taxable: for US companies.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.order_lines(key text)
RETURNS TABLE (item_key text, description text, qty numeric, unit_price numeric,
               tax_rate numeric, taxable boolean)
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(order_lines)
    SELECT i.product_id::text, i.name::text, i.quantity::numeric, i.unit_price::numeric,
           i.tax_rate::numeric, true
    FROM fill_me.order_items i
    WHERE i.order_id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END
    UNION ALL
    SELECT 'fee:shipping', 'Shipping', 1, o.shipping::numeric, 24, true
    FROM fill_me.orders o
    WHERE o.id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END AND o.shipping > 0;
    -- END FILL
END;

-- The QuickBooks Invoice: CustomerRef and at least one Line (required), DocNumber, TxnDate,
-- the tax treatment, the lines (Amount = round(Qty x UnitPrice, 2) on each), e-mail and
-- address. Lines whose prices include VAT must add up to the order's total, checked here:
-- an invoice that differs from the order is never pushed.
CREATE OR REPLACE FUNCTION qbsync_map."order"(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    o record;
    v_lines jsonb;
    v_sum numeric;
    v_count bigint;
BEGIN
    SELECT * INTO o FROM {{shop}}_qbo.order_source(key);
    IF NOT FOUND THEN
        RETURN NULL;                          -- gone: nothing to push
    END IF;
    IF o.state = 'void' THEN
        -- voids the invoice qbsync made, if any (nothing happens otherwise)
        RETURN jsonb_build_object('$op', 'void', 'DocNumber', o.doc_number);
    ELSIF o.state IS DISTINCT FROM 'invoice' THEN
        RETURN NULL;                          -- not invoiced (yet)
    END IF;
    IF o.customer_key IS NULL THEN
        PERFORM {{shop}}_qbo.refuse(format('order %s: no customer (no account, and no e-mail to file a guest under)', key));
    END IF;
    IF {{shop}}_qbo.qbo_length(o.doc_number) > 21 THEN
        PERFORM {{shop}}_qbo.refuse(format('order %s: invoice number %s is longer than the 21 characters QuickBooks keeps', key, o.doc_number));
    END IF;
    SELECT jsonb_agg({{shop}}_qbo.sales_line(l.item_key, l.description, l.qty, l.unit_price,
                                             l.tax_rate, l.taxable) ORDER BY l.n),
           sum(round(l.qty * l.unit_price, 2)), count(*)
    INTO v_lines, v_sum, v_count
    FROM {{shop}}_qbo.order_lines(key) WITH ORDINALITY
         AS l(item_key, description, qty, unit_price, tax_rate, taxable, n);
    IF v_count = 0 THEN
        PERFORM {{shop}}_qbo.refuse(format('order %s: no lines', key));
    ELSIF v_count > 750 THEN
        PERFORM {{shop}}_qbo.refuse(format('order %s: %s lines, QuickBooks takes at most 750', key, v_count));
    END IF;
    IF o.prices_include_tax AND o.total IS NOT NULL AND v_sum IS DISTINCT FROM o.total THEN
        PERFORM {{shop}}_qbo.refuse(format('order %s: the lines add up to %s, the order total is %s', key, v_sum, o.total));
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array('customer', o.customer_key)),
        'DocNumber', o.doc_number,
        'TxnDate', to_char(o.txn_date, 'YYYY-MM-DD'),
        'GlobalTaxCalculation', CASE WHEN o.prices_include_tax THEN 'TaxInclusive' ELSE 'TaxExcluded' END,  --@vat
        'Line', v_lines,
        'BillEmail', CASE WHEN {{shop}}_qbo.qbo_email(o.email) IS NOT NULL
                          THEN jsonb_build_object('Address', {{shop}}_qbo.qbo_email(o.email)) END,
        'BillAddr', {{shop}}_qbo.qbo_address(o.address, o.city, o.postal_code, o.country),
        'PrivateNote', {{shop}}_qbo.qbo_text(o.note, 4000)));
END
$$;

-- FILL: every order key.
CREATE OR REPLACE FUNCTION qbsync_map.order_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(order_keys)
    SELECT o.id::text FROM fill_me.orders o;
    -- END FILL
END;

CREATE OR REPLACE FUNCTION qbsync_map.order_key_exists(key text)
RETURNS boolean
LANGUAGE sql STABLE
RETURN EXISTS (SELECT 1 FROM {{shop}}_qbo.order_source(key));

-- FILL (optional): write the outcome back (see customer_outcome); for an order, outcome's
-- doc_number is the invoice's number and status 'voided' / 'deleted' say what became of it.
CREATE OR REPLACE FUNCTION qbsync_map.order_outcome(key text, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- FILL(order_outcome)
    NULL;  -- e.g. UPDATE fill_me.orders SET quickbooks_invoice_id = outcome->>'qbo_id', quickbooks_status = outcome->>'status' WHERE id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END;
    -- END FILL
END
$$;

-- @@ track
-- Orders: their own columns, and their lines (an order line's change re-pushes its order).
SELECT qbsync.define_entity('order', 'Invoice', 3, '{60,300,900}', 120);
-- FILL(track_order): the tables and columns order_source and order_lines read, with the
-- key that names the order (an order line: its order_id). "when": only orders that are
-- (or were: the OLD row counts too) invoiced.
SELECT qbsync.track('fill_me.orders', 'order', 'id',
    columns => ARRAY['customer_id', 'number', 'status', 'created_at', 'email', 'total',
                     'shipping', 'address', 'city', 'postcode', 'country'],
    "when" => $$status IN ('completed', 'cancelled')$$);
SELECT qbsync.track('fill_me.order_items', 'order', 'order_id',
    columns => ARRAY['order_id', 'product_id', 'name', 'quantity', 'unit_price', 'tax_rate']);
-- END FILL

-- @@ test
DO $$
DECLARE
    k text;
    b jsonb;
    l jsonb;
    n int := 0;
BEGIN
    IF to_regprocedure('qbsync_map."order"(text)') IS NULL
       OR to_regprocedure('qbsync_map.order_keys()') IS NULL
       OR to_regprocedure('qbsync_map.order_outcome(text,jsonb)') IS NULL THEN
        RAISE EXCEPTION 'order: qbsync_map."order"(text), order_keys() or order_outcome(text, jsonb) is missing';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM qbsync.entities WHERE entity = 'order' AND qbo_type = 'Invoice') THEN
        RAISE EXCEPTION 'order: not registered (track.sql: qbsync.define_entity)';
    END IF;
    FOR k IN SELECT x FROM qbsync_map.order_keys() AS x LIMIT 5 LOOP
        BEGIN
            b := qbsync_map."order"(k);
        EXCEPTION WHEN SQLSTATE 'QB001' THEN
            RAISE NOTICE 'order %: refused: %', k, SQLERRM;
            CONTINUE;
        END;
        CONTINUE WHEN b IS NULL OR b ? '$op';
        IF b->'CustomerRef'->'$ref'->>0 IS DISTINCT FROM 'customer'
           OR NOT qbsync_map.customer_key_exists(b->'CustomerRef'->'$ref'->>1) THEN
            RAISE EXCEPTION 'order %: CustomerRef names no customer the shop knows: %', k, b->'CustomerRef';
        END IF;
        IF jsonb_typeof(b->'Line') IS DISTINCT FROM 'array' OR jsonb_array_length(b->'Line') = 0
           OR {{shop}}_qbo.qbo_length(b->>'DocNumber') > 21 THEN
            RAISE EXCEPTION 'order %: no lines, or DocNumber longer than 21: %', k, b;
        END IF;
        FOR l IN SELECT * FROM jsonb_array_elements(b->'Line') LOOP
            IF (l->>'Amount')::numeric
               <> round((l->'SalesItemLineDetail'->>'Qty')::numeric * (l->'SalesItemLineDetail'->>'UnitPrice')::numeric, 2) THEN
                RAISE EXCEPTION 'order %: Amount <> round(Qty x UnitPrice, 2) (QuickBooks error 6070): %', k, l;
            END IF;
            IF NOT qbsync_map.product_key_exists(l->'SalesItemLineDetail'->'ItemRef'->'$ref'->>1) THEN
                RAISE EXCEPTION 'order %: the line''s item is no product the shop knows: %', k, l;
            END IF;
            IF NOT l->'SalesItemLineDetail' ? 'TaxCodeRef' THEN  --@vat
                RAISE EXCEPTION 'order %: a line without a tax code (a VAT company needs one on every line): %', k, l;  --@vat
            END IF;  --@vat
        END LOOP;
        n := n + 1;
        RAISE NOTICE 'order %: %', k, b;
    END LOOP;
    RAISE NOTICE 'order: % bodies look right', n;
END
$$;
