-- @@ mapping
-- {{shop}}: payments (entity "payment" -> QuickBooks Payment), written by `qbsync shop new`.
--
-- key: whatever names a payment in your shop (a payment row's id, or the order id when an
-- order is paid at once). A payment is applied to its order's invoice: {"$id": ["order",
-- key]} becomes the invoice's Id. The daemon never pushes an invoice for a payment: the
-- payment waits (burning no try) until its invoice is in QuickBooks.
--
-- To fill: payment_source, payment_keys, optionally payment_outcome; and in track.sql the
-- shop's payment method names (qbsync.setting_aliases).

-- FILL: one row for the payment `key`, none when there is none.
--   state   'paid' (push it), 'deleted' (remove the one qbsync pushed), NULL (nothing)
--   method  the shop's word for how it was paid: the setting payment_method:<method> (an
--           alias in track.sql points it at a payment method of the company)
CREATE OR REPLACE FUNCTION {{shop}}_qbo.payment_source(key text)
RETURNS TABLE (order_key text, customer_key text, amount numeric, paid_on date,
               method text, reference text, state text)
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(payment_source)
    SELECT p.order_id::text,
           CASE WHEN o.customer_id IS NOT NULL THEN o.customer_id::text
                ELSE 'guest:' || lower(o.email) END,
           p.amount::numeric, (p.paid_at AT TIME ZONE 'UTC')::date, p.method::text,
           p.reference::text, CASE WHEN o.status = 'completed' THEN 'paid' END
    FROM fill_me.payments p JOIN fill_me.orders o ON o.id = p.order_id
    WHERE p.id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END;
    -- END FILL
END;

-- The QuickBooks Payment: CustomerRef (the invoice's customer) and TotalAmt (required),
-- one Line applying the amount to the invoice (LinkedTxn with the invoice's bare Id), the
-- payment method and the account the money goes to (settings of the company).
CREATE OR REPLACE FUNCTION qbsync_map.payment(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    p record;
BEGIN
    SELECT * INTO p FROM {{shop}}_qbo.payment_source(key);
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p.state = 'deleted' THEN
        RETURN jsonb_build_object('$op', 'delete');
    ELSIF p.state IS DISTINCT FROM 'paid' THEN
        RETURN NULL;
    END IF;
    IF p.amount IS NULL OR p.amount = 'NaN' OR p.amount <= 0 THEN
        PERFORM {{shop}}_qbo.refuse(format('payment %s: amount %s is not positive', key, p.amount));
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array('customer', p.customer_key)),
        'TotalAmt', round(p.amount, 2),
        'TxnDate', to_char(p.paid_on, 'YYYY-MM-DD'),
        'Line', jsonb_build_array(jsonb_build_object(
            'Amount', round(p.amount, 2),
            'LinkedTxn', jsonb_build_array(jsonb_build_object(
                'TxnId', jsonb_build_object('$id', jsonb_build_array('order', p.order_key)),
                'TxnType', 'Invoice')))),
        'PaymentRefNum', CASE WHEN {{shop}}_qbo.qbo_length(p.reference) <= 21 THEN nullif(btrim(p.reference), '') END,
        'PaymentMethodRef', CASE WHEN p.method IS NOT NULL
                                 THEN jsonb_build_object('$setting', 'payment_method:' || p.method) END,
        'DepositToAccountRef', jsonb_build_object('$setting', 'deposit_account:undeposited_funds')));
END
$$;

-- FILL: every payment key.
CREATE OR REPLACE FUNCTION qbsync_map.payment_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(payment_keys)
    SELECT p.id::text FROM fill_me.payments p;
    -- END FILL
END;

CREATE OR REPLACE FUNCTION qbsync_map.payment_key_exists(key text)
RETURNS boolean
LANGUAGE sql STABLE
RETURN EXISTS (SELECT 1 FROM {{shop}}_qbo.payment_source(key));

-- FILL (optional): write the outcome back (see customer_outcome).
CREATE OR REPLACE FUNCTION qbsync_map.payment_outcome(key text, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- FILL(payment_outcome)
    NULL;
    -- END FILL
END
$$;

-- @@ track
SELECT qbsync.define_entity('payment', 'Payment', 3, '{60,300,900}', 120);
-- FILL(track_payment): the payment's tables and columns, with the key; and the shop's
-- payment methods, in the words the daemon looks up in every company
-- (payment_method:<the QuickBooks payment method's name, lower case, _ for blanks>).
SELECT qbsync.track('fill_me.payments', 'payment', 'id',
    columns => ARRAY['order_id', 'amount', 'paid_at', 'method', 'reference']);
INSERT INTO qbsync.setting_aliases (name, target, description) VALUES
    ('payment_method:card', 'payment_method:credit_card', '{{shop}} card payments')
ON CONFLICT (name) DO UPDATE SET target = excluded.target, description = excluded.description;
-- END FILL

-- @@ test
DO $$
DECLARE
    k text;
    b jsonb;
    n int := 0;
BEGIN
    IF to_regprocedure('qbsync_map.payment(text)') IS NULL
       OR to_regprocedure('qbsync_map.payment_keys()') IS NULL
       OR to_regprocedure('qbsync_map.payment_outcome(text,jsonb)') IS NULL THEN
        RAISE EXCEPTION 'payment: qbsync_map.payment(text), payment_keys() or payment_outcome(text, jsonb) is missing';
    END IF;
    FOR k IN SELECT x FROM qbsync_map.payment_keys() AS x LIMIT 5 LOOP
        b := qbsync_map.payment(k);
        CONTINUE WHEN b IS NULL OR b ? '$op';
        IF NOT b ? 'CustomerRef' OR NOT b ? 'TotalAmt'
           OR b->'Line'->0->'LinkedTxn'->0->'TxnId'->'$id'->>0 IS DISTINCT FROM 'order'
           OR NOT qbsync_map.order_key_exists(b->'Line'->0->'LinkedTxn'->0->'TxnId'->'$id'->>1) THEN
            RAISE EXCEPTION 'payment %: CustomerRef, TotalAmt or the invoice it pays is wrong: %', k, b;
        END IF;
        n := n + 1;
        RAISE NOTICE 'payment %: %', k, b;
    END LOOP;
    RAISE NOTICE 'payment: % bodies look right', n;
END
$$;
