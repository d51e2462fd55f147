-- @@ mapping
-- {{shop}}: refunds (entity "refund" -> QuickBooks RefundReceipt), written by `qbsync shop new`.
--
-- key: a refund's id as text. A RefundReceipt records money given back: its lines are what
-- was refunded (for a partial refund, e.g. one line on the fee item fee:refund per VAT rate),
-- paid out of a deposit account (a setting of the company).
--
-- To fill: refund_source, refund_lines, refund_keys, optionally refund_outcome.

-- FILL: one row for the refund `key`, none when there is none.
--   state   'refund' (push it), 'deleted' (remove the one qbsync pushed), NULL (nothing)
--   amount  what the lines must add up to when prices include the tax (NULL: unchecked)
CREATE OR REPLACE FUNCTION {{shop}}_qbo.refund_source(key text)
RETURNS TABLE (customer_key text, doc_number text, refunded_on date, method text,
               reference text, amount numeric, prices_include_tax boolean, note text,
               state text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(refund_source)
    SELECT CASE WHEN o.customer_id IS NOT NULL THEN o.customer_id::text
                ELSE 'guest:' || lower(o.email) END,
           'R-' || r.id, (r.refunded_at AT TIME ZONE 'UTC')::date, r.method::text,
           r.reference::text, r.amount::numeric, true, r.reason::text, 'refund'
    FROM fill_me.refunds r JOIN fill_me.orders o ON o.id = r.order_id
    WHERE r.id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END;
    -- END FILL
END;

-- FILL: the refund's lines (as order_lines: item_key a key qbsync_map.product knows).
CREATE OR REPLACE FUNCTION {{shop}}_qbo.refund_lines(key text)
RETURNS TABLE (item_key text, description text, qty numeric, unit_price numeric,
               tax_rate numeric, taxable boolean)
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(refund_lines)
    SELECT 'fee:refund', coalesce(r.reason, 'Refund')::text, 1, r.amount::numeric,
           24, true
    FROM fill_me.refunds r
    WHERE r.id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END;
    -- END FILL
END;

-- The QuickBooks RefundReceipt: at least one Line and DepositToAccountRef (required), the
-- customer, DocNumber, date, tax treatment, payment method.
CREATE OR REPLACE FUNCTION qbsync_map.refund(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r record;
    v_lines jsonb;
    v_sum numeric;
    v_count bigint;
BEGIN
    SELECT * INTO r FROM {{shop}}_qbo.refund_source(key);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF r.state = 'deleted' THEN
        RETURN jsonb_build_object('$op', 'delete');
    ELSIF r.state IS DISTINCT FROM 'refund' THEN
        RETURN NULL;
    END IF;
    IF {{shop}}_qbo.qbo_length(r.doc_number) > 21 THEN
        PERFORM {{shop}}_qbo.refuse(format('refund %s: number %s is longer than 21 characters', key, r.doc_number));
    END IF;
    SELECT jsonb_agg({{shop}}_qbo.sales_line(l.item_key, l.description, l.qty, l.unit_price,
                                             l.tax_rate, l.taxable) ORDER BY l.n),
           sum(round(l.qty * l.unit_price, 2)), count(*)
    INTO v_lines, v_sum, v_count
    FROM {{shop}}_qbo.refund_lines(key) WITH ORDINALITY
         AS l(item_key, description, qty, unit_price, tax_rate, taxable, n);
    IF v_count = 0 THEN
        PERFORM {{shop}}_qbo.refuse(format('refund %s: no lines', key));
    END IF;
    IF r.prices_include_tax AND r.amount IS NOT NULL AND v_sum IS DISTINCT FROM r.amount THEN
        PERFORM {{shop}}_qbo.refuse(format('refund %s: the lines add up to %s, the refund is %s', key, v_sum, r.amount));
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', CASE WHEN r.customer_key IS NOT NULL
                            THEN jsonb_build_object('$ref', jsonb_build_array('customer', r.customer_key)) END,
        'DocNumber', r.doc_number,
        'TxnDate', to_char(r.refunded_on, 'YYYY-MM-DD'),
        'GlobalTaxCalculation', CASE WHEN r.prices_include_tax THEN 'TaxInclusive' ELSE 'TaxExcluded' END,  --@vat
        'Line', v_lines,
        'PaymentRefNum', CASE WHEN {{shop}}_qbo.qbo_length(r.reference) <= 21 THEN nullif(btrim(r.reference), '') END,
        'PaymentMethodRef', CASE WHEN r.method IS NOT NULL
                                 THEN jsonb_build_object('$setting', 'payment_method:' || r.method) END,
        'DepositToAccountRef', jsonb_build_object('$setting', 'deposit_account:undeposited_funds'),
        'PrivateNote', {{shop}}_qbo.qbo_text(r.note, 4000)));
END
$$;

-- FILL: every refund key.
CREATE OR REPLACE FUNCTION qbsync_map.refund_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(refund_keys)
    SELECT r.id::text FROM fill_me.refunds r;
    -- END FILL
END;

CREATE OR REPLACE FUNCTION qbsync_map.refund_key_exists(key text)
RETURNS boolean
LANGUAGE sql STABLE
RETURN EXISTS (SELECT 1 FROM {{shop}}_qbo.refund_source(key));

-- FILL (optional): write the outcome back (see customer_outcome).
CREATE OR REPLACE FUNCTION qbsync_map.refund_outcome(key text, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- FILL(refund_outcome)
    NULL;
    -- END FILL
END
$$;

-- @@ track
SELECT qbsync.define_entity('refund', 'RefundReceipt', 3, '{60,300,900}', 120);
-- FILL(track_refund): the refund's tables and columns, with the key.
SELECT qbsync.track('fill_me.refunds', 'refund', 'id',
    columns => ARRAY['order_id', 'amount', 'refunded_at', 'method', 'reference', 'reason']);
-- END FILL

-- @@ test
DO $$
DECLARE
    k text;
    b jsonb;
    n int := 0;
BEGIN
    IF to_regprocedure('qbsync_map.refund(text)') IS NULL
       OR to_regprocedure('qbsync_map.refund_keys()') IS NULL
       OR to_regprocedure('qbsync_map.refund_outcome(text,jsonb)') IS NULL THEN
        RAISE EXCEPTION 'refund: qbsync_map.refund(text), refund_keys() or refund_outcome(text, jsonb) is missing';
    END IF;
    FOR k IN SELECT x FROM qbsync_map.refund_keys() AS x LIMIT 5 LOOP
        b := qbsync_map.refund(k);
        CONTINUE WHEN b IS NULL OR b ? '$op';
        IF jsonb_typeof(b->'Line') IS DISTINCT FROM 'array' OR NOT b ? 'DepositToAccountRef'
           OR {{shop}}_qbo.qbo_length(b->>'DocNumber') > 21 THEN
            RAISE EXCEPTION 'refund %: Line, DepositToAccountRef or DocNumber (<= 21) wrong: %', k, b;
        END IF;
        n := n + 1;
        RAISE NOTICE 'refund %: %', k, b;
    END LOOP;
    RAISE NOTICE 'refund: % bodies look right', n;
END
$$;
