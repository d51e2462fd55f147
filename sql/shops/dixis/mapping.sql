-- Dixis -> QuickBooks Online mapping (the qbsync mapping contract, see DESIGN.md).
--
--   qbsync_map.customer(key)  -> Customer body   keys: '<customers.id>' | 'guest:<lower(email)>'
--   qbsync_map.product(key)   -> Item body       keys: '<products.id>'  | 'fee:shipping' | 'fee:cod'
--                                                      | 'fee:discount' | 'fee:refund'
--   qbsync_map."order"(key)   -> Invoice body    keys: '<orders.id>'
--   qbsync_map.payment(key)   -> Payment body    keys: '<orders.id>' (one payment per order)
--   qbsync_map.refund(key)    -> RefundReceipt   keys: '<refunds.id>'
--   + <entity>_keys() and <entity>_outcome(key, outcome) for each; customer, product and
--     order also have <entity>_outcomes(keys, outcomes), the same for many rows at once.
--
-- NULL = nothing to push (row gone, or order not completed). SQLSTATE QB001 = the row cannot
-- be mapped: QuickBooks would refuse it and no retry can fix it; the message names the
-- entity, the key and the reason. {"$ref": [entity, key]} and {"$setting": name} are
-- resolved by the daemon.
--
-- Decisions (also in the README of the shop):
-- * Customer.DisplayName must be unique across customers, vendors and employees, and Greek
--   names repeat a lot (there are many Γιώργος Παπαδόπουλος). So it carries a stable
--   suffix: "Γιώργος Παπαδόπουλος (#42)" for an account, "Γιώργος Παπαδόπουλος
--   (g.pap@example.gr)" for a guest. The suffix never changes (ids) or identifies the key
--   (guests), so a rename is a plain sparse update and collisions (6240) stay rare.
-- * Item.Name must be unique and producers sell products of the same name: Name =
--   "<product name> (<SKU>)", the name part clipped so the whole fits in 100 characters.
--   Products are NonInventory items (stock is kept by the shop; QBO Inventory items need
--   asset accounts and can never change type). Prices are gross: SalesTaxIncluded.
-- * Prices are VAT-inclusive, so invoices are GlobalTaxCalculation = TaxInclusive and every
--   line carries the TaxCode of its VAT rate: order_items.vat_rate (snapshot at order time),
--   else the product's override, else the category's rate.
-- * Discounts are separate negative lines on the service item fee:discount ("Έκπτωση"), so
--   that every line keeps Amount = round(Qty x UnitPrice, 2) exactly and the VAT of each
--   rate is right: a line discount follows its line (same tax code); the order coupon is
--   split over the VAT rates in proportion to their line totals (largest remainder to the
--   cent, so the parts add up to the coupon exactly). Zero-priced lines (samples, gifts)
--   are kept. Shipping and cash-on-delivery fees are lines on fee:shipping / fee:cod at
--   24 %. The line amounts add up to orders.total, which the mapping checks.
-- * Cancelled and refunded orders map to {"$op": "void"} only when no payment was recorded
--   or the order was never delivered; once paid and delivered the invoice stays and the
--   money going back is a RefundReceipt (qbsync_map.refund). State machine: README.md.
-- * Payments and refunds reach QuickBooks only for delivered orders (completed_at set),
--   the ones with an invoice: a card captured at checkout waits in the shop, not in the
--   outbox, and an order cancelled before delivery leaves no trace in the books.
-- * Names: ':' becomes '-', TAB/newline/other control characters a space, runs of blanks
--   collapse; then clipped to QBO's limit counted in UTF-16 units (an emoji counts 2), so
--   Greek text and emoji survive untouched when they fit.
-- * CurrencyRef is not sent: the company's home currency (EUR for a Greek company) applies;
--   sending it would break a company whose customers were created in another currency.

CREATE SCHEMA IF NOT EXISTS qbsync_map;   -- normally made by `qbsync migrate`

-- Helpers (schema dixis: qbsync_map holds only what the contract names) ------------------

-- QuickBooks counts string lengths in UTF-16 units: a character outside the BMP (emoji)
-- counts two.
CREATE OR REPLACE FUNCTION dixis.qbo_length(s text)
RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN char_length(s) + char_length(s) - char_length(regexp_replace(s, '[\U00010000-\U0010FFFF]', '', 'g'));

-- Clip to at most n UTF-16 units, never splitting a character; trailing blanks dropped.
CREATE OR REPLACE FUNCTION dixis.qbo_clip(s text, n int)
RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
AS $$
DECLARE
    r text;
BEGIN
    IF octet_length(s) <= n THEN          -- UTF-8 never has fewer bytes than UTF-16 units
        RETURN s;
    END IF;
    r := left(s, n);
    WHILE dixis.qbo_length(r) > n LOOP    -- only when emoji are in the way
        r := left(r, char_length(r) - 1);
    END LOOP;
    RETURN CASE WHEN r = s THEN r ELSE rtrim(r) END;
END
$$;

-- A QBO name: no ':' / TAB / newline, blanks collapsed, trimmed, clipped to n.
-- Empty result -> NULL (the caller decides whether that is an error).
CREATE OR REPLACE FUNCTION dixis.qbo_name(s text, n int)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN nullif(dixis.qbo_clip(btrim(regexp_replace(regexp_replace(replace(s, ':', '-'),
                                                                 '[[:cntrl:]]', ' ', 'g'),
                                                  '\s+', ' ', 'g')), n), '');

-- Plain text field (address, description): control characters kept out, clipped.
-- (The regex only runs when there is a TAB/CR/LF to replace: strpos is much cheaper.)
CREATE OR REPLACE FUNCTION dixis.qbo_text(s text, n int)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN nullif(dixis.qbo_clip(btrim(CASE WHEN pg_catalog.strpos(s, E'\n') = 0
                                         AND pg_catalog.strpos(s, E'\t') = 0
                                         AND pg_catalog.strpos(s, E'\r') = 0
                                        THEN s
                                        ELSE regexp_replace(s, '[\t\r\n]+', ' ', 'g') END), n), '');

-- An address QBO accepts (has '@' and a dot after it, <= 100), else NULL: a bad address
-- is left out of the body rather than failing the whole customer or invoice.
CREATE OR REPLACE FUNCTION dixis.qbo_email(s text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN btrim(s) ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND char_length(btrim(s)) <= 100
            THEN btrim(s) END;

-- Speed (these run per line of every invoice): the SQL helpers are inlined into their
-- callers, which needs them no more volatile than their bodies (jsonb_build_object is
-- STABLE, so they are STABLE, not IMMUTABLE), not STRICT around non-strict bodies (hence the
-- CASE instead of STRICT here), and without a SET clause. A helper that is not inlined runs
-- through the SQL-function executor, replanned on every call: that was most of the cost.
CREATE OR REPLACE FUNCTION dixis.qbo_tax_code(vat_rate numeric)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN vat_rate IS NOT NULL
            THEN jsonb_build_object('$setting', 'tax_code:' || trim_scale(vat_rate)::text) END;

CREATE OR REPLACE FUNCTION dixis.qbo_bill_addr(line1 text, city text, postcode text, country text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN nullif(jsonb_strip_nulls(jsonb_build_object(
           'Line1', dixis.qbo_text(line1, 500),
           'City', dixis.qbo_text(city, 255),
           'PostalCode', dixis.qbo_text(postcode, 30),
           'Country', CASE WHEN dixis.qbo_text(line1, 500) IS NOT NULL
                             OR dixis.qbo_text(city, 255) IS NOT NULL
                           THEN dixis.qbo_text(country, 255) END)), '{}');

-- The one way the mapping reports bad data.
CREATE OR REPLACE FUNCTION dixis.qbo_refuse(message text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'QB001', MESSAGE = message;
END
$$;

-- Customer ------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION qbsync_map.customer(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Reads that no capture rule of customer covers, on purpose (qbsync check-mapping):
-- qbsync:uncaptured dixis.orders.* -- a guest is the billing details of the order that first needs it; a later order's details do not rewrite the guest
DECLARE
    v_first text; v_last text; v_email text; v_phone text; v_company text; v_afm text;
    v_addr text; v_city text; v_postcode text; v_country text;
    v_suffix text;
    v_full text;
    v_guest boolean := key LIKE 'guest:%';
BEGIN
    IF v_guest THEN
        -- a guest exists only as billing details on orders: the latest order wins
        SELECT o.billing_first_name, o.billing_last_name, o.billing_email, o.billing_phone,
               o.billing_address, o.billing_city, o.billing_postcode, o.billing_country
        INTO v_first, v_last, v_email, v_phone, v_addr, v_city, v_postcode, v_country
        FROM dixis.orders o
        WHERE o.customer_id IS NULL AND lower(o.billing_email) = substr(key, 7)
        ORDER BY o.id DESC
        LIMIT 1;
        IF NOT FOUND THEN
            RETURN NULL;
        END IF;
        v_suffix := ' (' || coalesce(dixis.qbo_name(lower(v_email), 200), 'guest') || ')';
    ELSIF key ~ '^[0-9]{1,18}$' THEN
        SELECT c.first_name, c.last_name, c.email, c.phone, c.company_name, c.vat_number,
               c.billing_address, c.billing_city, c.billing_postcode, c.billing_country
        INTO v_first, v_last, v_email, v_phone, v_company, v_afm,
             v_addr, v_city, v_postcode, v_country
        FROM dixis.customers c
        WHERE c.id = key::bigint;
        IF NOT FOUND THEN
            RETURN NULL;                       -- deleted: nothing to push
        END IF;
        v_suffix := ' (#' || key || ')';
    ELSE
        PERFORM dixis.qbo_refuse(format('customer %s: the key is neither a customer id nor guest:<email>', key));
    END IF;

    v_full := dixis.qbo_name(concat_ws(' ', v_first, v_last), 500);
    IF v_full IS NULL THEN
        PERFORM dixis.qbo_refuse(format('customer %s: empty name (first and last name are blank)', key));
    END IF;

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'DisplayName', dixis.qbo_clip(v_full, 500 - dixis.qbo_length(v_suffix)) || v_suffix,
        'GivenName', dixis.qbo_name(v_first, 100),
        'FamilyName', dixis.qbo_name(v_last, 100),
        'CompanyName', dixis.qbo_text(v_company, 100),
        'PrimaryEmailAddr', CASE WHEN dixis.qbo_email(v_email) IS NOT NULL
                                 THEN jsonb_build_object('Address', dixis.qbo_email(v_email)) END,
        'PrimaryPhone', CASE WHEN dixis.qbo_text(v_phone, 30) IS NOT NULL
                             THEN jsonb_build_object('FreeFormNumber', dixis.qbo_text(v_phone, 30)) END,
        'BillAddr', dixis.qbo_bill_addr(v_addr, v_city, v_postcode, v_country),
        'Notes', CASE WHEN v_guest THEN 'Πελάτης χωρίς λογαριασμό (guest) στο Dixis'
                      WHEN v_afm IS NOT NULL THEN 'ΑΦΜ: ' || v_afm END,
        'Active', true
    ));
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.customer_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT c.id::text FROM dixis.customers c
    UNION ALL
    SELECT DISTINCT 'guest:' || lower(o.billing_email)
    FROM dixis.orders o
    WHERE o.customer_id IS NULL AND btrim(o.billing_email) <> ''
$$;

-- Many outcomes in one statement (the daemon records outcomes in groups and calls the
-- <entity>_outcomes form when the mapping has one); <entity>_outcome is the same for one.
CREATE OR REPLACE FUNCTION qbsync_map.customer_outcomes(keys text[], outcomes jsonb[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE dixis.customers c
    SET quickbooks_customer_id = coalesce(x.outcome->>'qbo_id', c.quickbooks_customer_id),
        quickbooks_realm_id = coalesce(x.outcome->>'realm_id', c.quickbooks_realm_id),
        quickbooks_synced_at = CASE WHEN x.outcome->>'status' = 'synced'
                                    THEN coalesce((x.outcome->>'synced_at')::timestamptz, now())
                                    ELSE c.quickbooks_synced_at END
    FROM unnest(keys, outcomes) AS x(key, outcome)
    -- guests (no shop row to write to) have no numeric key
    WHERE c.id = CASE WHEN x.key ~ '^[0-9]{1,18}$' THEN x.key::bigint END;
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.customer_outcome(key text, outcome jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT qbsync_map.customer_outcomes(ARRAY[key], ARRAY[outcome]);
$$;
-- Product / Item ------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION qbsync_map.product(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    p record;
    v_suffix text;
    v_name text;
    v_body jsonb;
BEGIN
    IF key LIKE 'fee:%' THEN
        -- synthetic service items for the invoice's fee and discount lines
        SELECT jsonb_build_object(
                   'Type', 'Service', 'Name', f.name, 'Description', f.descr,
                   'Taxable', true, 'SalesTaxIncluded', true,
                   'SalesTaxCodeRef', dixis.qbo_tax_code(24),
                   'IncomeAccountRef', jsonb_build_object('$setting', 'income_account'),
                   'Active', true)
        INTO v_body
        FROM (VALUES ('fee:shipping', 'Μεταφορικά', 'Έξοδα αποστολής'),
                     ('fee:cod', 'Αντικαταβολή', 'Έξοδα αντικαταβολής'),
                     ('fee:discount', 'Έκπτωση', 'Έκπτωση / κουπόνι'),
                     ('fee:refund', 'Επιστροφή χρημάτων', 'Επιστροφή χρημάτων σε πελάτη'))
             AS f(key, name, descr)
        WHERE f.key = product.key;
        IF v_body IS NULL THEN
            -- an unknown fee key is a bug in a mapping, not a deleted row
            PERFORM dixis.qbo_refuse(format(
                'product %s: unknown fee item (known: fee:shipping, fee:cod, fee:discount, fee:refund)', key));
        END IF;
        RETURN v_body;
    END IF;
    IF key !~ '^[0-9]{1,18}$' THEN
        PERFORM dixis.qbo_refuse(format('product %s: the key is not a product id', key));
    END IF;

    SELECT pr.*, coalesce(pr.vat_rate, c.vat_rate) AS effective_vat
    INTO p
    FROM dixis.products pr JOIN dixis.categories c ON c.id = pr.category_id
    WHERE pr.id = key::bigint;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p.price = 'NaN' OR p.price < 0 THEN
        PERFORM dixis.qbo_refuse(format('product %s: invalid price %s', key, p.price));
    END IF;
    v_suffix := ' (' || coalesce(dixis.qbo_name(p.sku, 60), '#' || key) || ')';
    v_name := dixis.qbo_name(p.name, 100 - dixis.qbo_length(v_suffix));
    IF v_name IS NULL THEN
        PERFORM dixis.qbo_refuse(format('product %s: empty name', key));
    END IF;

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'Type', 'NonInventory',
        'Name', v_name || v_suffix,
        'Sku', dixis.qbo_text(p.sku, 100),
        'Description', coalesce(dixis.qbo_text(p.description, 4000), dixis.qbo_text(p.name, 4000)),
        'UnitPrice', p.price,
        'Taxable', p.effective_vat > 0,
        'SalesTaxIncluded', true,
        'SalesTaxCodeRef', dixis.qbo_tax_code(p.effective_vat),
        'IncomeAccountRef', jsonb_build_object('$setting', 'income_account'),
        'Active', p.active));
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.product_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT p.id::text FROM dixis.products p
    UNION ALL
    -- fee:refund is left out: it is created on demand by the first partial refund, so a
    -- catalogue sync does not add an item to companies that never refund
    SELECT k FROM unnest(ARRAY['fee:shipping', 'fee:cod', 'fee:discount']) AS k
$$;

CREATE OR REPLACE FUNCTION qbsync_map.product_outcomes(keys text[], outcomes jsonb[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE dixis.products p
    SET quickbooks_item_id = coalesce(x.outcome->>'qbo_id', p.quickbooks_item_id),
        quickbooks_realm_id = coalesce(x.outcome->>'realm_id', p.quickbooks_realm_id),
        quickbooks_synced_at = CASE WHEN x.outcome->>'status' = 'synced'
                                    THEN coalesce((x.outcome->>'synced_at')::timestamptz, now())
                                    ELSE p.quickbooks_synced_at END
    FROM unnest(keys, outcomes) AS x(key, outcome)
    -- fee items (nothing in the shop) have no numeric key
    WHERE p.id = CASE WHEN x.key ~ '^[0-9]{1,18}$' THEN x.key::bigint END;
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.product_outcome(key text, outcome jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT qbsync_map.product_outcomes(ARRAY[key], ARRAY[outcome]);
$$;
-- Order helpers, shared by the invoice, its payment and its refunds ------------------------

-- Who an order bills: the account, else the guest filed under the order's e-mail. The
-- payment and the refunds of an order must name the same customer as its invoice.
CREATE OR REPLACE FUNCTION dixis.qbo_order_customer(o dixis.orders, label text)
RETURNS text
LANGUAGE plpgsql STABLE
AS $$
BEGIN
    IF o.customer_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM dixis.customers c WHERE c.id = o.customer_id) THEN
            PERFORM dixis.qbo_refuse(pg_catalog.format('%s: customer %s does not exist', label, o.customer_id));
        END IF;
        RETURN o.customer_id::text;
    ELSIF pg_catalog.btrim(o.billing_email) <> '' THEN
        IF dixis.qbo_name(pg_catalog.concat_ws(' ', o.billing_first_name, o.billing_last_name), 500) IS NULL THEN
            PERFORM dixis.qbo_refuse(pg_catalog.format('%s: the guest has an empty name', label));
        END IF;
        RETURN 'guest:' || pg_catalog.lower(o.billing_email);
    END IF;
    PERFORM dixis.qbo_refuse(pg_catalog.format(
        '%s: no customer: customer_id is NULL (account deleted?) and there is no billing e-mail to file it under a guest', label));
    RETURN NULL;
END
$$;

-- The invoice lines of an order, in order: items, a line discount right after its line,
-- the coupon split over the VAT rates, shipping, cash on delivery. Amount = round(qty x
-- price, 2) on every line. The caller validates the order first (qbsync_map."order").
-- A SQL-standard body (bound when created, so no search_path is needed) that the planner
-- inlines into the caller's cached plan.
CREATE OR REPLACE FUNCTION dixis.invoice_lines(o dixis.orders)
RETURNS TABLE (num bigint, item text, descr text, qty numeric, price numeric, amount numeric,
               vat numeric)
LANGUAGE sql STABLE
BEGIN ATOMIC
    WITH item AS (
        SELECT row_number() OVER (ORDER BY i.id) AS n, i.product_id, i.product_name, i.quantity,
               i.unit_price, i.discount, i.line_total,
               round(i.quantity * i.unit_price, 2) AS gross,
               coalesce(i.vat_rate, p.vat_rate, c.vat_rate) AS vat
        FROM dixis.order_items i
        JOIN dixis.products p ON p.id = i.product_id
        JOIN dixis.categories c ON c.id = p.category_id
        WHERE i.order_id = o.id
    ),
    -- the coupon, split over the VAT rates in proportion to their line totals; the cents
    -- lost to truncation go to the largest fractions (then the highest rate)
    share AS (
        SELECT r.vat, r.base, trunc(o.discount * r.base / t.base, 2) AS floor_share,
               o.discount * r.base / t.base - trunc(o.discount * r.base / t.base, 2) AS frac
        FROM (SELECT vat, sum(line_total) AS base FROM item GROUP BY vat) r
        CROSS JOIN (SELECT sum(line_total) AS base FROM item) t
        WHERE o.discount > 0 AND t.base > 0
    ),
    coupon AS (
        SELECT s.vat,
               s.floor_share + CASE WHEN row_number() OVER (ORDER BY s.frac DESC, s.vat DESC)
                                         <= round((o.discount - sum(s.floor_share) OVER ()) * 100)
                                    THEN 0.01 ELSE 0 END AS amount
        FROM share s
    ),
    line AS (
        -- (sort, item key, description, qty, unit price, amount, VAT rate)
        SELECT array[i.n, 0] AS sort, i.product_id::text AS item, i.product_name AS descr,
               i.quantity AS qty, i.unit_price AS price, i.gross AS amount, i.vat
        FROM item i
        UNION ALL
        SELECT array[i.n, 1], 'fee:discount', 'Έκπτωση: ' || i.product_name,
               1, -i.discount, -i.discount, i.vat
        FROM item i WHERE i.discount > 0
        UNION ALL
        SELECT array[1000000, (100 - c.vat)::int], 'fee:discount',
               'Έκπτωση κουπονιού' || coalesce(' ' || nullif(btrim(o.coupon_code), ''), '')
                   || ' (ΦΠΑ ' || trim_scale(c.vat) || '%)',
               1, -c.amount, -c.amount, c.vat
        FROM coupon c WHERE c.amount > 0
        UNION ALL
        SELECT array[2000000, 0], 'fee:shipping', 'Μεταφορικά', 1, o.shipping_fee, o.shipping_fee, 24
        WHERE o.shipping_fee > 0
        UNION ALL
        SELECT array[3000000, 0], 'fee:cod', 'Αντικαταβολή', 1, o.payment_fee, o.payment_fee, 24
        WHERE o.payment_fee > 0
    )
    SELECT row_number() OVER (ORDER BY sort), item, descr, qty, price, amount, vat
    FROM line
    ORDER BY sort;
END;

-- One SalesItemLineDetail line of an invoice or a refund receipt.
CREATE OR REPLACE FUNCTION dixis.qbo_sales_line(num bigint, item text, descr text, qty numeric,
                                                price numeric, amount numeric, vat numeric)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN jsonb_build_object(
    'LineNum', num,
    'DetailType', 'SalesItemLineDetail',
    'Amount', amount,
    'Description', dixis.qbo_text(descr, 4000),
    'SalesItemLineDetail', jsonb_build_object(
        'ItemRef', jsonb_build_object('$ref', jsonb_build_array('product', item)),
        'Qty', trim_scale(qty),
        'UnitPrice', price,
        'TaxCodeRef', dixis.qbo_tax_code(vat)));

-- An order has (or gets) an invoice once delivered; cancelled or refunded ones keep it
-- once paid (a refund receipt gives the money back), and void it otherwise.
CREATE OR REPLACE FUNCTION dixis.order_keeps_invoice(o dixis.orders)
RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN o.completed_at IS NOT NULL
       AND (o.status = 'completed'
            OR (o.status IN ('cancelled', 'refunded') AND o.paid_at IS NOT NULL));

-- The invoice's Line array, its sum and its number of lines: the same as
--   SELECT jsonb_agg(dixis.qbo_sales_line(l.*) ORDER BY l.num), sum(l.amount), count(*)
--   FROM dixis.invoice_lines(o) l
-- but without a coupon (the common case) built in one pass over the order's items, which
-- costs a fraction of planning and starting the query of invoice_lines (qbsync_map."order"
-- runs once per synced order). With label (what a message calls the order) the items are
-- checked on the way, as qbsync_map."order" requires: the first bad line, or an order
-- without lines, is refused (QB001) before any line is built.
CREATE OR REPLACE FUNCTION dixis.qbo_invoice_lines_json(o dixis.orders, label text,
                                                        OUT lines jsonb, OUT total numeric,
                                                        OUT line_count bigint)
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    r record;
    v_items bigint := 0;          -- items seen (the line number in messages)
    v_n bigint := 0;              -- invoice lines built
    v_lines jsonb[] := '{}';
    v_amount numeric;
    v_why text;
    v_coupon boolean := o.discount > 0;
BEGIN
    FOR r IN
        SELECT i.product_id, i.product_name, i.quantity, i.unit_price, i.discount, i.line_total,
               pc.p_id, pc.c_id, coalesce(i.vat_rate, pc.p_vat, pc.c_vat) AS vat
        FROM dixis.order_items i
        -- a lookup by primary key per item, whatever the planner thinks of small catalogues
        LEFT JOIN LATERAL (
            SELECT p.id AS p_id, c.id AS c_id, p.vat_rate AS p_vat, c.vat_rate AS c_vat
            FROM dixis.products p
            LEFT JOIN dixis.categories c ON c.id = p.category_id
            WHERE p.id = i.product_id
            OFFSET 0
        ) pc ON true
        WHERE i.order_id = o.id
        ORDER BY i.id
    LOOP
        v_items := v_items + 1;
        IF label IS NOT NULL THEN
            v_why := CASE
                WHEN r.product_id IS NULL THEN 'no product (deleted from the catalogue?)'
                WHEN r.p_id IS NULL THEN pg_catalog.format('product %s does not exist', r.product_id)
                WHEN r.quantity = 'NaN' OR r.unit_price = 'NaN' OR r.discount = 'NaN'
                     OR r.line_total = 'NaN' THEN 'an amount is NaN'
                WHEN r.quantity <= 0 THEN pg_catalog.format('quantity %s is not positive', r.quantity)
                WHEN r.unit_price < 0 THEN pg_catalog.format('negative unit price %s', r.unit_price)
                WHEN r.discount < 0 THEN pg_catalog.format('negative discount %s', r.discount)
                WHEN r.discount > pg_catalog.round(r.quantity * r.unit_price, 2)
                    THEN pg_catalog.format('discount %s exceeds the line amount %s', r.discount,
                                           pg_catalog.round(r.quantity * r.unit_price, 2))
                WHEN r.line_total <> pg_catalog.round(r.quantity * r.unit_price, 2) - r.discount
                    THEN pg_catalog.format('line total %s <> round(%s x %s, 2) - discount %s',
                                           r.line_total, r.quantity, r.unit_price, r.discount)
                WHEN dixis.qbo_text(r.product_name, 4000) IS NULL THEN 'empty product name'
            END;
            IF v_why IS NOT NULL THEN
                PERFORM dixis.qbo_refuse(label || ': ' || pg_catalog.format('line %s (%s): %s', v_items,
                    coalesce(nullif(pg_catalog.btrim(r.product_name), ''), '?'), v_why));
            END IF;
        END IF;
        -- invoice_lines joins the product and its category: an item without them has no line
        CONTINUE WHEN v_coupon OR r.c_id IS NULL;
        v_n := v_n + 1;
        v_amount := pg_catalog.round(r.quantity * r.unit_price, 2);
        v_lines := v_lines || dixis.qbo_sales_line(v_n, r.product_id::text, r.product_name, r.quantity,
                                                   r.unit_price, v_amount, r.vat);
        total := coalesce(total, 0) + v_amount;
        IF r.discount > 0 THEN
            v_n := v_n + 1;
            v_lines := v_lines || dixis.qbo_sales_line(v_n, 'fee:discount', 'Έκπτωση: ' || r.product_name,
                                                       1, -r.discount, -r.discount, r.vat);
            total := total + -r.discount;
        END IF;
    END LOOP;
    IF label IS NOT NULL AND v_items = 0 THEN
        PERFORM dixis.qbo_refuse(label || ': the order has no lines');
    END IF;

    IF v_coupon THEN
        -- the coupon is split over the VAT rates of the lines: invoice_lines does it
        SELECT pg_catalog.jsonb_agg(dixis.qbo_sales_line(l.num, l.item, l.descr, l.qty, l.price,
                                                         l.amount, l.vat) ORDER BY l.num),
               pg_catalog.sum(l.amount), pg_catalog.count(*)
        INTO lines, total, line_count
        FROM dixis.invoice_lines(o) l;
        RETURN;
    END IF;
    IF o.shipping_fee > 0 THEN
        v_n := v_n + 1;
        v_lines := v_lines || dixis.qbo_sales_line(v_n, 'fee:shipping', 'Μεταφορικά', 1, o.shipping_fee,
                                                   o.shipping_fee, 24);
        total := coalesce(total, 0) + o.shipping_fee;
    END IF;
    IF o.payment_fee > 0 THEN
        v_n := v_n + 1;
        v_lines := v_lines || dixis.qbo_sales_line(v_n, 'fee:cod', 'Αντικαταβολή', 1, o.payment_fee,
                                                   o.payment_fee, 24);
        total := coalesce(total, 0) + o.payment_fee;
    END IF;
    line_count := v_n;
    lines := CASE WHEN v_n > 0 THEN pg_catalog.to_jsonb(v_lines) END;   -- jsonb_agg of nothing is NULL
END
$$;

-- Order / Invoice -----------------------------------------------------------------------

CREATE OR REPLACE FUNCTION qbsync_map."order"(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Reads that no capture rule of order covers, on purpose (qbsync check-mapping):
-- qbsync:uncaptured dixis.products.vat_rate dixis.products.category_id dixis.categories.vat_rate -- an invoice keeps the VAT it was billed with (order_items.vat_rate; the catalogue's rate only for lines without one)
-- qbsync:uncaptured dixis.orders.paid_at -- paying an order enqueues its payment only (track.sql); paid_at matters here only to an order that ended cancelled or refunded, and that ending is captured
DECLARE
    o dixis.orders;
    v_number text;            -- DX-2026-000123
    v_ref text;               -- what the message calls the order: order 123 (DX-2026-000123)
    v_customer text;
    v_bad text;
    v_lines jsonb;
    v_sum numeric;
    v_count bigint;
    v_email text;
BEGIN
    IF key !~ '^[0-9]{1,18}$' THEN
        PERFORM dixis.qbo_refuse(format('order %s: the key is not an order id', key));
    END IF;
    SELECT * INTO o FROM dixis.orders WHERE id = key::bigint;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_number := dixis.order_number(o.id, o.created_at);
    v_ref := format('order %s (%s)', key, v_number);

    IF o.status IN ('cancelled', 'refunded') AND NOT dixis.order_keeps_invoice(o) THEN
        -- ended without a payment (or before delivery): void the invoice if there is one
        -- (the daemon does nothing when there is none)
        RETURN jsonb_build_object('$op', 'void', 'DocNumber', v_number);
    ELSIF NOT dixis.order_keeps_invoice(o) THEN
        RETURN NULL;                           -- not invoiced before delivery
    END IF;
    -- completed, or cancelled/refunded after payment: the invoice stays as it was billed

    -- Who is billed: the account, else the guest filed under the order's e-mail.
    v_customer := dixis.qbo_order_customer(o, v_ref);

    -- Order amounts QuickBooks would refuse or that would make the invoice differ from the
    -- order (no retry fixes them).
    v_bad := CASE
        WHEN 'NaN' IN (o.subtotal, o.shipping_fee, o.payment_fee, o.discount, o.total)
            THEN 'an amount is NaN'
        WHEN o.shipping_fee < 0 THEN format('negative shipping fee %s', o.shipping_fee)
        WHEN o.payment_fee < 0 THEN format('negative payment fee %s', o.payment_fee)
        WHEN o.discount < 0 THEN format('negative discount %s', o.discount)
        WHEN o.total < 0 THEN format('negative total %s', o.total)
        WHEN o.discount > o.subtotal THEN format('discount %s exceeds the items subtotal %s', o.discount, o.subtotal)
        WHEN o.total <> o.subtotal + o.shipping_fee + o.payment_fee - o.discount
            THEN format('total %s <> subtotal %s + shipping %s + payment fee %s - discount %s',
                        o.total, o.subtotal, o.shipping_fee, o.payment_fee, o.discount)
    END;
    IF v_bad IS NOT NULL THEN
        PERFORM dixis.qbo_refuse(v_ref || ': ' || v_bad);
    END IF;

    -- The lines, checked on the way: an order without lines or with a bad line is refused.
    SELECT j.lines, j.total, j.line_count INTO v_lines, v_sum, v_count
    FROM dixis.qbo_invoice_lines_json(o, v_ref) j;

    IF v_count > 750 THEN
        PERFORM dixis.qbo_refuse(format('%s: %s invoice lines, QuickBooks takes at most 750', v_ref, v_count));
    END IF;
    IF v_sum <> o.total THEN
        PERFORM dixis.qbo_refuse(format('%s: the lines add up to %s but the order total is %s (subtotal %s <> sum of its lines?)',
                                        v_ref, v_sum, o.total, o.subtotal));
    END IF;

    v_email := dixis.qbo_email(o.billing_email);
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array('customer', v_customer)),
        'DocNumber', v_number,
        'TxnDate', to_char(coalesce(o.completed_at, o.created_at) AT TIME ZONE 'Europe/Athens', 'YYYY-MM-DD'),
        'GlobalTaxCalculation', 'TaxInclusive',
        'Line', v_lines,
        'BillEmail', CASE WHEN v_email IS NOT NULL THEN jsonb_build_object('Address', v_email) END,
        'BillAddr', dixis.qbo_bill_addr(o.billing_address, o.billing_city, o.billing_postcode,
                                        o.billing_country),
        'PrivateNote', format('Dixis order id %s (%s), payment: %s', o.id, v_number, o.payment_method)
    ));
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.order_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id::text FROM dixis.orders o ORDER BY o.id
$$;

CREATE OR REPLACE FUNCTION qbsync_map.order_outcomes(keys text[], outcomes jsonb[])
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    UPDATE dixis.orders o
    SET quickbooks_sync_status = coalesce(x.status, o.quickbooks_sync_status),
        -- an invoice deleted in QuickBooks (a drift accepted) leaves no Id on the order
        quickbooks_invoice_id = CASE WHEN x.status = 'deleted' THEN NULL
                                     ELSE coalesce(x.outcome->>'qbo_id', o.quickbooks_invoice_id) END,
        quickbooks_invoice_number = CASE WHEN x.status = 'deleted' THEN NULL
                                         ELSE coalesce(x.outcome->>'doc_number',
                                                       o.quickbooks_invoice_number) END,
        quickbooks_realm_id = coalesce(x.outcome->>'realm_id', o.quickbooks_realm_id),
        quickbooks_synced_at = CASE WHEN x.status IN ('synced', 'voided')
                                    THEN coalesce((x.outcome->>'synced_at')::timestamptz, now())
                                    ELSE o.quickbooks_synced_at END,
        -- a success clears the last error; a failure (or a retry pending) records it
        quickbooks_sync_error = CASE WHEN x.status IN ('synced', 'voided', 'skipped') THEN NULL
                                     ELSE coalesce(x.outcome->>'error', o.quickbooks_sync_error) END,
        quickbooks_last_sync_attempt = coalesce((x.outcome->>'attempted_at')::timestamptz,
                                                o.quickbooks_last_sync_attempt)
    FROM (SELECT u.key, u.outcome, u.outcome->>'status' AS status
          FROM unnest(keys, outcomes) AS u(key, outcome)) AS x
    WHERE o.id = CASE WHEN x.key ~ '^[0-9]{1,18}$' THEN x.key::bigint END;
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.order_outcome(key text, outcome jsonb)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT qbsync_map.order_outcomes(ARRAY[key], ARRAY[outcome]);
$$;
-- Payment -------------------------------------------------------------------------------
-- One per order (Dixis customers pay the whole order at once), key = the order id. Applied
-- to the order's invoice through {"$id": ["order", key]}: the daemon never pushes an
-- invoice as a dependency, so a payment whose invoice is not in QuickBooks yet waits.
-- Per-realm settings: payment_method:<card|bank_transfer|cod>, deposit_account:<same>.

CREATE OR REPLACE FUNCTION qbsync_map.payment(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Reads that no capture rule of payment covers, on purpose (qbsync check-mapping):
-- qbsync:uncaptured dixis.orders.customer_id dixis.orders.billing_email dixis.orders.billing_first_name dixis.orders.billing_last_name dixis.orders.created_at dixis.orders.total -- billing edits enqueue the invoice only (track.sql); a paid order's customer and total do not change
DECLARE
    o dixis.orders;
    v_number text;
    v_label text;
    v_bad text;
    v_note text;
BEGIN
    IF key !~ '^[0-9]{1,18}$' THEN
        PERFORM dixis.qbo_refuse(format('payment %s: the key is not an order id', key));
    END IF;
    SELECT * INTO o FROM dixis.orders WHERE id = key::bigint;
    IF NOT FOUND THEN
        RETURN NULL;                           -- a deleted order takes its payment along
    END IF;
    v_number := dixis.order_number(o.id, o.created_at);
    v_label := format('payment %s (order %s)', key, v_number);

    IF o.paid_at IS NULL AND o.amount_paid IS NULL THEN
        -- not paid (or the payment was cleared): remove the one QuickBooks has, if any
        RETURN CASE WHEN o.quickbooks_payment_id IS NOT NULL
                    THEN jsonb_build_object('$op', 'delete') END;
    END IF;
    IF NOT dixis.order_keeps_invoice(o) THEN
        -- paid but not delivered (or cancelled before delivery): no invoice to apply it to
        RETURN NULL;
    END IF;

    v_bad := CASE
        WHEN o.paid_at IS NULL THEN format('amount paid %s but no payment date (paid_at)', o.amount_paid)
        WHEN o.amount_paid IS NULL THEN 'paid_at is set but amount_paid is NULL'
        WHEN o.amount_paid = 'NaN' THEN 'the amount paid is NaN'
        WHEN o.amount_paid <= 0 THEN format('amount paid %s is not positive', o.amount_paid)
        WHEN o.total = 'NaN' THEN 'the order total is NaN'
        WHEN o.amount_paid > o.total
            THEN format('amount paid %s exceeds the order total %s', o.amount_paid, o.total)
        WHEN o.payment_method NOT IN ('card', 'bank_transfer', 'cod') OR o.payment_method IS NULL
            THEN format('unknown payment method %s', coalesce(o.payment_method, 'NULL'))
    END;
    IF v_bad IS NOT NULL THEN
        PERFORM dixis.qbo_refuse(v_label || ': ' || v_bad);
    END IF;

    -- (a variable, so that dixis.qbo_text is inlined: its argument is used more than once)
    v_note := format('Dixis order %s (id %s), %s payment, reference %s',
                     v_number, o.id, o.payment_method,
                     coalesce(nullif(btrim(o.payment_reference), ''), '-'));
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array(
            'customer', dixis.qbo_order_customer(o, v_label))),
        'TotalAmt', o.amount_paid,
        'TxnDate', to_char(o.paid_at AT TIME ZONE 'Europe/Athens', 'YYYY-MM-DD'),
        'Line', jsonb_build_array(jsonb_build_object(
            'Amount', o.amount_paid,
            'LinkedTxn', jsonb_build_array(jsonb_build_object(
                'TxnId', jsonb_build_object('$id', jsonb_build_array('order', key)),
                'TxnType', 'Invoice')))),
        -- QBO keeps 21 characters: the reference when it fits, else the order number
        -- (the full reference is in the note either way)
        'PaymentRefNum', coalesce(CASE WHEN dixis.qbo_length(btrim(o.payment_reference)) <= 21
                                       THEN nullif(btrim(o.payment_reference), '') END,
                                  v_number),
        'PaymentMethodRef', jsonb_build_object('$setting', 'payment_method:' || o.payment_method),
        'DepositToAccountRef', jsonb_build_object('$setting', 'deposit_account:' || o.payment_method),
        'PrivateNote', dixis.qbo_text(v_note, 4000)
    ));
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.payment_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id::text FROM dixis.orders o WHERE o.paid_at IS NOT NULL ORDER BY o.id
$$;

CREATE OR REPLACE FUNCTION qbsync_map.payment_outcome(key text, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_status text := outcome->>'status';
BEGIN
    IF key !~ '^[0-9]{1,18}$' THEN
        RETURN;
    END IF;
    UPDATE dixis.orders o
    SET quickbooks_payment_status = coalesce(v_status, o.quickbooks_payment_status),
        -- a deleted payment no longer exists in QuickBooks: forget its id
        quickbooks_payment_id = CASE WHEN v_status = 'deleted' THEN NULL
                                     ELSE coalesce(outcome->>'qbo_id', o.quickbooks_payment_id) END,
        quickbooks_payment_error = CASE WHEN v_status IN ('synced', 'deleted', 'skipped') THEN NULL
                                        ELSE coalesce(outcome->>'error', o.quickbooks_payment_error) END
    WHERE o.id = key::bigint;
END
$$;

-- Refund / RefundReceipt ----------------------------------------------------------------
-- A refund of the whole order total repeats the invoice's lines (same items, VAT codes and
-- amounts); any other amount is split over the VAT rates of the invoice in proportion to
-- what each rate charged (largest remainder to the cent), as lines on the service item
-- fee:refund. Either way the lines add up to the refund amount exactly.
-- Per-realm settings: payment_method:<card|bank_transfer|cash>, deposit_account:<same>.

CREATE OR REPLACE FUNCTION qbsync_map.refund(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Reads that no capture rule of refund covers, on purpose (qbsync check-mapping):
-- qbsync:uncaptured dixis.orders.* dixis.order_items.* dixis.products.* dixis.categories.* -- a refund receipt records the money given back as it was given; its order's delivery is looked at again by the trigger order_refunds_changed
DECLARE
    r dixis.refunds;
    o dixis.orders;
    v_number text;
    v_doc text;
    v_label text;
    v_bad text;
    v_refunded numeric;
    v_lines jsonb;
    v_sum numeric;
    v_note text;
BEGIN
    IF key !~ '^[0-9]{1,18}$' THEN
        PERFORM dixis.qbo_refuse(format('refund %s: the key is not a refund id', key));
    END IF;
    SELECT * INTO r FROM dixis.refunds WHERE id = key::bigint;
    IF NOT FOUND THEN
        -- deleted (entered by mistake): void its receipt if it reached QuickBooks
        RETURN jsonb_build_object('$op', 'void');
    END IF;
    SELECT * INTO o FROM dixis.orders WHERE id = r.order_id;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('$op', 'void');
    END IF;
    v_number := dixis.order_number(o.id, o.created_at);
    v_label := format('refund %s (order %s)', key, v_number);
    IF NOT dixis.order_keeps_invoice(o) AND o.paid_at IS NOT NULL THEN
        -- refunded before delivery: the sale never reached the books, neither does this
        RETURN NULL;
    END IF;

    SELECT coalesce(sum(x.amount), 0) INTO v_refunded FROM dixis.refunds x WHERE x.order_id = o.id;
    v_bad := CASE
        WHEN o.paid_at IS NULL OR o.amount_paid IS NULL THEN 'the order is not paid'
        WHEN r.amount = 'NaN' THEN 'the amount is NaN'
        WHEN r.amount <= 0 THEN format('amount %s is not positive', r.amount)
        WHEN r.amount > o.total THEN format('amount %s exceeds the order total %s', r.amount, o.total)
        WHEN v_refunded > o.amount_paid
            THEN format('the order''s refunds add up to %s, more than the %s paid', v_refunded, o.amount_paid)
        WHEN r.method IS NULL OR r.method NOT IN ('card', 'bank_transfer', 'cash')
            THEN format('unknown refund method %s', coalesce(r.method, 'NULL'))
        WHEN r.refunded_at IS NULL THEN 'no refund date (refunded_at)'
    END;
    IF v_bad IS NOT NULL THEN
        PERFORM dixis.qbo_refuse(v_label || ': ' || v_bad);
    END IF;

    -- the order itself must be invoiceable (same checks, named after the refund)
    BEGIN
        PERFORM qbsync_map."order"(o.id::text);
    EXCEPTION WHEN SQLSTATE 'QB001' THEN
        PERFORM dixis.qbo_refuse(v_label || ': ' || SQLERRM);
    END;

    IF r.amount = o.total THEN
        SELECT j.lines, j.total INTO v_lines, v_sum
        FROM dixis.qbo_invoice_lines_json(o, NULL) j;
    ELSE
        WITH rate AS (
            SELECT l.vat, sum(l.amount) AS base FROM dixis.invoice_lines(o) l GROUP BY l.vat
        ),
        share AS (
            SELECT rate.vat, trunc(r.amount * rate.base / o.total, 2) AS floor_share,
                   r.amount * rate.base / o.total - trunc(r.amount * rate.base / o.total, 2) AS frac
            FROM rate WHERE rate.base > 0
        ),
        part AS (
            SELECT s.vat,
                   s.floor_share + CASE WHEN row_number() OVER (ORDER BY s.frac DESC, s.vat DESC)
                                             <= round((r.amount - sum(s.floor_share) OVER ()) * 100)
                                        THEN 0.01 ELSE 0 END AS amount
            FROM share s
        )
        SELECT jsonb_agg(dixis.qbo_sales_line(p.num, 'fee:refund',
                                              'Επιστροφή χρημάτων (ΦΠΑ ' || trim_scale(p.vat) || '%)',
                                              1, p.amount, p.amount, p.vat)
                         ORDER BY p.num), sum(p.amount)
        INTO v_lines, v_sum
        FROM (SELECT part.*, row_number() OVER (ORDER BY part.vat DESC) AS num
              FROM part WHERE part.amount > 0) p;
    END IF;
    IF v_sum IS DISTINCT FROM r.amount THEN     -- a bug, not bad data: never push it
        PERFORM dixis.qbo_refuse(format('%s: the lines add up to %s, not the refund amount %s',
                                        v_label, coalesce(v_sum::text, 'nothing'), r.amount));
    END IF;

    -- DX-2026-000123-R1 (17 characters) while it fits QBO's 21; beyond 9-digit order ids
    -- the year goes: DX-<id>-R<n> is at most 3 + 13 + 2 + 2 = 20.
    v_doc := v_number || '-R' || r.number;
    IF length(v_doc) > 21 THEN
        v_doc := 'DX-' || o.id || '-R' || r.number;
    END IF;
    -- (a variable, so that dixis.qbo_text is inlined: its argument is used more than once)
    v_note := format('Refund of order %s: %s%s', v_number,
                     coalesce(nullif(btrim(r.reason), ''), '-'),
                     coalesce(' (reference ' || nullif(btrim(r.reference), '') || ')', ''));

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array(
            'customer', dixis.qbo_order_customer(o, v_label))),
        'DocNumber', v_doc,
        'TxnDate', to_char(r.refunded_at AT TIME ZONE 'Europe/Athens', 'YYYY-MM-DD'),
        'GlobalTaxCalculation', 'TaxInclusive',
        'Line', v_lines,
        'PaymentRefNum', CASE WHEN dixis.qbo_length(btrim(r.reference)) <= 21
                              THEN nullif(btrim(r.reference), '') END,
        'PaymentMethodRef', jsonb_build_object('$setting', 'payment_method:' || r.method),
        'DepositToAccountRef', jsonb_build_object('$setting', 'deposit_account:' || r.method),
        'BillEmail', CASE WHEN dixis.qbo_email(o.billing_email) IS NOT NULL
                          THEN jsonb_build_object('Address', dixis.qbo_email(o.billing_email)) END,
        'PrivateNote', dixis.qbo_text(v_note, 4000)
    ));
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.refund_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT r.id::text FROM dixis.refunds r ORDER BY r.id
$$;

CREATE OR REPLACE FUNCTION qbsync_map.refund_outcome(key text, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_status text := outcome->>'status';
BEGIN
    IF key !~ '^[0-9]{1,18}$' THEN
        RETURN;
    END IF;
    UPDATE dixis.refunds r
    SET quickbooks_sync_status = coalesce(v_status, r.quickbooks_sync_status),
        quickbooks_refund_id = coalesce(outcome->>'qbo_id', r.quickbooks_refund_id),
        quickbooks_synced_at = CASE WHEN v_status IN ('synced', 'voided', 'deleted')
                                    THEN coalesce((outcome->>'synced_at')::timestamptz, now())
                                    ELSE r.quickbooks_synced_at END,
        quickbooks_sync_error = CASE WHEN v_status IN ('synced', 'voided', 'deleted', 'skipped') THEN NULL
                                     ELSE coalesce(outcome->>'error', r.quickbooks_sync_error) END
    WHERE r.id = key::bigint;
END
$$;
