-- Medusa -> QuickBooks Online mapping (the qbsync mapping contract, see DESIGN.md).
--
--   qbsync_map.customer(key)  -> Customer       keys: customer.id (accounts and guests alike)
--   qbsync_map.product(key)   -> Item           keys: product_variant.id | 'fee:shipping'
--                                                     | 'fee:discount' | 'fee:refund' | 'fee:custom'
--   qbsync_map."order"(key)   -> Invoice        keys: order.id
--   qbsync_map.payment(key)   -> Payment        keys: capture.id (each capture of money)
--   qbsync_map.refund(key)    -> RefundReceipt  keys: refund.id
--   + <entity>_keys(), <entity>_outcome(key, outcome) and <entity>_outcomes(keys, outcomes).
--
-- Medusa's tables are read as Medusa 2 writes them (schema.sql is produced by its own
-- migrations): soft-deleted rows (deleted_at) are ignored, an order is read at its current
-- version (order.version: order_item, order_shipping and the adjustments carry the version
-- they belong to), and amounts are Medusa's decimal major units, which are not rounded to
-- cents (a 10 % promotion on a VAT-inclusive price is stored net of VAT: 6.721008403361344).
-- The mapping never changes Medusa's tables: outcomes go to medusa_qbsync.sync_state, and the
-- few choices a merchant makes are rows of medusa_qbsync.settings.
--
-- Decisions (the README of the shop has them all):
-- * Invoices are VAT-inclusive (GlobalTaxCalculation TaxInclusive): every line carries what
--   the customer paid for it, VAT included, whether Medusa's price was VAT-inclusive (EU
--   stores) or before tax (unit_price x (1 + the sum of the item's tax-line rates)). So the
--   invoice total is Medusa's total rounded once to the cent, whatever QuickBooks' own tax
--   rounding, and QuickBooks backs the VAT out per rate. Each line's tax code is
--   {"$setting": "tax_code:<sum of its tax-line rates>"}.
-- * Medusa computes totals without rounding; QuickBooks needs cents on every line with
--   Amount = round(Qty x UnitPrice, 2). Each line gets its natural amount (quantity times
--   the gross unit price rounded to 5 decimals, then to the cent), and the cents by which
--   those fall short of (or exceed) the rounded order total are given to the lines whose
--   exact amount was furthest from their rounded one (largest remainder); a line that moves
--   by a cent gets UnitPrice = Amount / Qty (5 decimals) so that the 6070 rule still holds.
-- * Promotions (adjustments) are negative lines on the service item fee:discount right after
--   the line they reduce, with its tax code; shipping is a line on fee:shipping, its
--   promotions (free shipping) negative lines after it. Order credit lines are not invoice
--   lines: Medusa adds them when it refunds, and the refund itself is a RefundReceipt.
-- * Currencies: every invoice, payment and refund receipt carries CurrencyRef, the order's
--   currency. The QuickBooks company's currency is the one the daemon looked up
--   (qbsync.company_setting('home_currency')), else medusa_qbsync.settings home_currency,
--   else the Medusa store's default currency. Once the daemon knows it and the company has
--   multicurrency off, it refuses an order in another currency itself (QB005, naming both
--   and what to do). Until then, and in a multicurrency company, the mapping refuses such
--   an order (QB001): Medusa keeps no exchange rate for an order and every customer is
--   created in the company's currency, so a foreign-currency order cannot be booked right;
--   better dead with the reason than booked as euros.
-- * Guests are customers in Medusa 2 too (customer.has_account = false, one row per e-mail):
--   every customer is keyed by its id; DisplayName "<name> (<e-mail>)" for an account,
--   "<name> (<e-mail>, guest)" for a guest (Medusa keeps at most one of each per e-mail), the
--   name taken from the latest order's billing address when the row has none.
-- * Items are product variants: Name "<product> - <variant> (<SKU>)", NonInventory.
-- * A placed order (pending, completed, archived, requires_action) is invoiced at once; a
--   draft is not; a canceled one is voided unless money was captured, in which case the
--   invoice stays and Medusa's refund of that money is a RefundReceipt.

CREATE SCHEMA IF NOT EXISTS qbsync_map;   -- normally made by `qbsync migrate`
CREATE SCHEMA IF NOT EXISTS medusa_qbsync;
COMMENT ON SCHEMA medusa_qbsync IS
    'qbsync''s side of the Medusa shop: where outcomes are written back (Medusa''s own tables are never changed), the mapping''s settings and helpers';

-- Write-back: one row per (entity, key) the daemon reported on. Medusa's own rows stay as
-- Medusa wrote them: its application rewrites metadata jsonb whole (a write-back there
-- could be lost, or lose the merchant's edit), and its migrations own its tables.
CREATE TABLE IF NOT EXISTS medusa_qbsync.sync_state (
    entity       text NOT NULL,
    key          text NOT NULL,
    realm_id     text,
    qbo_id       text,
    doc_number   text,
    status       text CONSTRAINT sync_state_status_check
                 CHECK (status IN ('pending', 'synced', 'failed', 'skipped', 'voided', 'deleted')),
    error        text,
    attempted_at timestamptz,
    synced_at    timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (entity, key)
);
COMMENT ON TABLE medusa_qbsync.sync_state IS
    'What qbsync did with each Medusa row it maps (written by qbsync_map.<entity>_outcome): QuickBooks Id and DocNumber, status, last error';
-- The capture rules' predicates ("already in QuickBooks") run as the role that writes
-- Medusa's rows: they may see which keys have a QuickBooks Id, nothing else.
GRANT USAGE ON SCHEMA medusa_qbsync TO PUBLIC;
GRANT SELECT (entity, key, qbo_id) ON medusa_qbsync.sync_state TO PUBLIC;

CREATE TABLE IF NOT EXISTS medusa_qbsync.settings (
    name        text PRIMARY KEY,
    value       text NOT NULL,
    description text
);
COMMENT ON TABLE medusa_qbsync.settings IS
    'The Medusa mapping''s choices: home_currency, doc_number_prefix, time_zone';
INSERT INTO medusa_qbsync.settings (name, value, description) VALUES
    ('doc_number_prefix', 'MED-',
     'invoice DocNumber = prefix || order.display_id (order.custom_display_id when Medusa has one)'),
    ('time_zone', 'UTC', 'the time zone of TxnDate (the day an order, a capture, a refund happened)')
ON CONFLICT (name) DO NOTHING;

-- Helpers (schema medusa_qbsync: qbsync_map holds only what the contract names) -----------

CREATE OR REPLACE FUNCTION medusa_qbsync.setting(setting_name text)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT s.value FROM medusa_qbsync.settings s WHERE s.name = setting_name $$;

-- The QuickBooks company's currency as the daemon looked it up (Preferences, or a DBA's
-- override of setting home_currency), lower case; NULL until it is known.
CREATE OR REPLACE FUNCTION medusa_qbsync.company_currency()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT lower(nullif(btrim(CASE jsonb_typeof(v) WHEN 'object' THEN v->>'value'
                                                   WHEN 'string' THEN v #>> '{}' END), ''))
    FROM (SELECT qbsync.company_setting('home_currency') AS v) s
$$;

-- Whether the QuickBooks company takes other currencies; NULL while unknown.
CREATE OR REPLACE FUNCTION medusa_qbsync.company_multicurrency()
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE jsonb_typeof(v) WHEN 'boolean' THEN v = 'true'::jsonb
                                WHEN 'string' THEN lower(v #>> '{}') = 'true' END
    FROM (SELECT qbsync.company_setting('multicurrency') AS v) s
$$;

-- The QuickBooks company's currency as the mapping takes it: the company's own once the
-- daemon looked it up, else the home_currency setting, else the Medusa store's default
-- currency.
CREATE OR REPLACE FUNCTION medusa_qbsync.home_currency()
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT lower(coalesce(
        medusa_qbsync.company_currency(),
        medusa_qbsync.setting('home_currency'),
        (SELECT sc.currency_code FROM medusa.store_currency sc
         JOIN medusa.store s ON s.id = sc.store_id AND s.deleted_at IS NULL
         WHERE sc.is_default AND sc.deleted_at IS NULL
         ORDER BY s.created_at, s.id LIMIT 1)))
$$;

CREATE OR REPLACE FUNCTION medusa_qbsync.local_date(at timestamptz)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT to_char(at AT TIME ZONE coalesce(medusa_qbsync.setting('time_zone'), 'UTC'), 'YYYY-MM-DD')
$$;

-- QuickBooks counts string lengths in UTF-16 units: a character outside the BMP (emoji)
-- counts two.
CREATE OR REPLACE FUNCTION medusa_qbsync.qbo_length(s text)
RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN char_length(s) + char_length(s) - char_length(regexp_replace(s, '[\U00010000-\U0010FFFF]', '', 'g'));

-- Clip to at most n UTF-16 units, never splitting a character; trailing blanks dropped.
CREATE OR REPLACE FUNCTION medusa_qbsync.qbo_clip(s text, n int)
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
    WHILE medusa_qbsync.qbo_length(r) > n LOOP
        r := left(r, char_length(r) - 1);
    END LOOP;
    RETURN CASE WHEN r = s THEN r ELSE rtrim(r) END;
END
$$;

-- A QuickBooks name: no ':' / TAB / newline, blanks collapsed, trimmed, clipped to n.
CREATE OR REPLACE FUNCTION medusa_qbsync.qbo_name(s text, n int)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN nullif(medusa_qbsync.qbo_clip(btrim(regexp_replace(regexp_replace(replace(s, ':', '-'),
                                                                         '[[:cntrl:]]', ' ', 'g'),
                                                          '\s+', ' ', 'g')), n), '');

-- Plain text field (address, description): line breaks become blanks, clipped.
CREATE OR REPLACE FUNCTION medusa_qbsync.qbo_text(s text, n int)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN nullif(medusa_qbsync.qbo_clip(btrim(regexp_replace(s, '[\t\r\n]+', ' ', 'g')), n), '');

-- An address QuickBooks accepts, else NULL (left out rather than failing the row).
CREATE OR REPLACE FUNCTION medusa_qbsync.qbo_email(s text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN btrim(s) ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND char_length(btrim(s)) <= 100
            THEN btrim(s) END;

CREATE OR REPLACE FUNCTION medusa_qbsync.qbo_tax_code(rate numeric)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN jsonb_build_object('$setting', 'tax_code:' || trim_scale(coalesce(rate, 0))::text);

-- A QuickBooks address from one of Medusa's address rows (order_address, customer_address).
CREATE OR REPLACE FUNCTION medusa_qbsync.qbo_addr(address_1 text, address_2 text, city text,
                                                  province text, postal_code text,
                                                  country_code text)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN nullif(jsonb_strip_nulls(jsonb_build_object(
           'Line1', medusa_qbsync.qbo_text(address_1, 500),
           'Line2', medusa_qbsync.qbo_text(address_2, 500),
           'City', medusa_qbsync.qbo_text(city, 255),
           'CountrySubDivisionCode', medusa_qbsync.qbo_text(province, 255),
           'PostalCode', medusa_qbsync.qbo_text(postal_code, 30),
           'Country', medusa_qbsync.qbo_text(upper(country_code), 255))), '{}');

CREATE OR REPLACE FUNCTION medusa_qbsync.order_addr(address_id text)
RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT medusa_qbsync.qbo_addr(a.address_1, a.address_2, a.city, a.province, a.postal_code,
                                  a.country_code)
    FROM medusa.order_address a WHERE a.id = address_id
$$;

-- The one way the mapping reports bad data.
CREATE OR REPLACE FUNCTION medusa_qbsync.refuse(message text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'QB001', MESSAGE = message;
END
$$;

-- The provider of a payment as a setting suffix: pp_stripe_stripe, pp_system_default.
CREATE OR REPLACE FUNCTION medusa_qbsync.provider_slug(provider_id text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN trim(both '_' from regexp_replace(lower(coalesce(provider_id, 'unknown')), '[^a-z0-9]+', '_', 'g'));

-- Orders -----------------------------------------------------------------------------------

-- What messages call an order: order #12 (order_01J…).
CREATE OR REPLACE FUNCTION medusa_qbsync.order_label(o medusa."order")
RETURNS text
LANGUAGE sql IMMUTABLE
RETURN format('order #%s (%s)', coalesce(o.custom_display_id, o.display_id::text), o.id);

-- The invoice's DocNumber: custom_display_id when Medusa has one, else the prefix and
-- display_id (MED-12). NULL when it would not fit QuickBooks' 21 characters (the caller
-- refuses the order).
CREATE OR REPLACE FUNCTION medusa_qbsync.doc_number(o medusa."order")
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE WHEN medusa_qbsync.qbo_length(n) <= 21 THEN n END
    FROM (SELECT coalesce(nullif(btrim(o.custom_display_id), ''),
                          coalesce(medusa_qbsync.setting('doc_number_prefix'), '')
                          || o.display_id::text) AS n) x
$$;

-- Money captured for an order (captures of its payments, soft-deleted ones left out).
CREATE OR REPLACE FUNCTION medusa_qbsync.order_captured(order_id text)
RETURNS numeric
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(sum(c.amount), 0)
    FROM medusa.order_payment_collection opc
    JOIN medusa.payment p ON p.payment_collection_id = opc.payment_collection_id
                         AND p.deleted_at IS NULL
    JOIN medusa.capture c ON c.payment_id = p.id AND c.deleted_at IS NULL
    WHERE opc.order_id = order_captured.order_id AND opc.deleted_at IS NULL
$$;

-- Does the order have (or get) an invoice? Placed orders do; a draft does not; a canceled
-- order keeps its invoice only if money was captured (its refund is a RefundReceipt).
CREATE OR REPLACE FUNCTION medusa_qbsync.keeps_invoice(o medusa."order")
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.deleted_at IS NULL AND NOT o.is_draft_order
           AND CASE o.status
                   WHEN 'canceled' THEN medusa_qbsync.order_captured(o.id) > 0
                   WHEN 'draft' THEN false
                   ELSE true
               END
$$;

-- The order's invoice lines at its current version, as QuickBooks gets them: items, each
-- followed by its promotions, then shipping methods and theirs. `exact` is Medusa's own
-- amount of the line, VAT included and unrounded (its totals are their sum); `amount` and
-- `price` are what QuickBooks gets: amounts in cents adding up to the rounded total exactly
-- (largest remainder), Amount = round(Qty x UnitPrice, 2) on every line.
-- No division anywhere: a VAT-inclusive price is the line's gross amount as it stands, a
-- price before tax is multiplied by (1 + rate/100); an adjustment Medusa stored net of VAT
-- likewise, so exact amounts are exact.
-- A SQL-standard body (names bound when created, so no search_path is needed): the planner
-- inlines it into the caller's cached plan instead of planning it at every call.
CREATE OR REPLACE FUNCTION medusa_qbsync.invoice_lines(o medusa."order")
RETURNS TABLE (num bigint, item text, descr text, qty numeric, price numeric, amount numeric,
               rate numeric, exact numeric)
LANGUAGE sql STABLE
BEGIN ATOMIC
    WITH item AS (
        SELECT li.id, li.created_at, li.variant_id, li.title, li.product_title, li.variant_title,
               li.is_tax_inclusive, oi.quantity AS qty,
               coalesce(oi.unit_price, li.unit_price) AS unit_price,
               coalesce((SELECT sum(t.rate) FROM medusa.order_line_item_tax_line t
                         WHERE t.item_id = li.id AND t.deleted_at IS NULL), 0) AS rate
        FROM medusa.order_item oi
        JOIN medusa.order_line_item li ON li.id = oi.item_id AND li.deleted_at IS NULL
        WHERE oi.order_id = o.id AND oi.version = o.version AND oi.deleted_at IS NULL
    ),
    ship AS (
        SELECT sm.id, sm.created_at, sm.name, sm.amount, sm.is_tax_inclusive,
               coalesce((SELECT sum(t.rate) FROM medusa.order_shipping_method_tax_line t
                         WHERE t.shipping_method_id = sm.id AND t.deleted_at IS NULL), 0) AS rate
        FROM medusa.order_shipping os
        JOIN medusa.order_shipping_method sm ON sm.id = os.shipping_method_id
                                            AND sm.deleted_at IS NULL
        WHERE os.order_id = o.id AND os.version = o.version AND os.deleted_at IS NULL
          AND os.return_id IS NULL AND os.claim_id IS NULL AND os.exchange_id IS NULL
    ),
    line AS (
        -- (section, when, group, sub, tie, item key, description, quantity, gross unit
        --  price, exact gross amount, rate): an item and its promotions form a group
        SELECT 1 AS sec, i.created_at AS at, i.id AS grp, 0 AS sub, i.id AS tie,
               coalesce(i.variant_id, 'fee:custom') AS item,
               concat_ws(' - ', coalesce(nullif(btrim(i.product_title), ''), i.title),
                         CASE WHEN i.variant_title IS NOT NULL
                                   AND i.variant_title NOT IN ('Default', 'Default variant',
                                                               coalesce(i.product_title, ''))
                              THEN i.variant_title END) AS descr,
               i.qty,
               CASE WHEN i.is_tax_inclusive THEN i.unit_price
                    ELSE i.unit_price * (1 + i.rate / 100) END AS unit,
               i.qty * CASE WHEN i.is_tax_inclusive THEN i.unit_price
                            ELSE i.unit_price * (1 + i.rate / 100) END AS exact,
               i.rate
        FROM item i
        WHERE i.qty <> 0
        UNION ALL
        SELECT 1, i.created_at, i.id, 1, a.id, 'fee:discount',
               'Discount' || coalesce(' ' || nullif(btrim(a.code), ''), '') || ': '
                   || coalesce(nullif(btrim(i.product_title), ''), i.title),
               1, NULL,
               -(CASE WHEN a.is_tax_inclusive THEN a.amount ELSE a.amount * (1 + i.rate / 100) END),
               i.rate
        FROM item i
        JOIN medusa.order_line_item_adjustment a
          ON a.item_id = i.id AND a.version = o.version AND a.deleted_at IS NULL
        UNION ALL
        SELECT 2, s.created_at, s.id, 0, s.id, 'fee:shipping',
               coalesce(nullif(btrim(s.name), ''), 'Shipping'), 1, NULL,
               CASE WHEN s.is_tax_inclusive THEN s.amount ELSE s.amount * (1 + s.rate / 100) END,
               s.rate
        FROM ship s
        UNION ALL
        SELECT 2, s.created_at, s.id, 1, a.id, 'fee:discount',
               'Discount' || coalesce(' ' || nullif(btrim(a.code), ''), '') || ': '
                   || coalesce(nullif(btrim(s.name), ''), 'Shipping'),
               1, NULL,
               -- (a shipping adjustment has no is_tax_inclusive: Medusa takes it net of tax)
               -(a.amount * (1 + s.rate / 100)),
               s.rate
        FROM ship s
        -- (version + 0: the unique index on (version, shipping_method_id) would be walked by
        -- version alone, every order's adjustments of that version)
        JOIN medusa.order_shipping_method_adjustment a
          ON a.shipping_method_id = s.id AND a.version + 0 = o.version AND a.deleted_at IS NULL
    ),
    nat AS (
        SELECT l.*, row_number() OVER (ORDER BY l.sec, l.at, l.grp, l.sub, l.tie) AS n,
               -- one-piece lines (promotions, shipping) are priced at their amount
               CASE WHEN l.unit IS NULL THEN round(l.exact, 2)
                    ELSE round(l.qty * round(l.unit, 5), 2) END AS natural_amount
        FROM line l
    ),
    missing AS (       -- cents the natural amounts miss from the rounded total (+ or -)
        SELECT (round(sum(exact), 2) - sum(natural_amount)) * 100 AS cents FROM nat
    ),
    ranked AS (
        SELECT n.*, m.cents,
               row_number() OVER (ORDER BY sign(m.cents) * (n.exact - n.natural_amount) DESC, n.n)
                   AS pick
        FROM nat n CROSS JOIN missing m
    ),
    placed AS (
        SELECT r.*, r.natural_amount + CASE WHEN r.pick <= abs(r.cents) THEN sign(r.cents) * 0.01
                                            ELSE 0 END AS final_amount
        FROM ranked r
    )
    SELECT p.n, p.item, p.descr, trim_scale(p.qty),
           CASE WHEN p.unit IS NULL THEN p.final_amount
                WHEN p.final_amount = p.natural_amount THEN trim_scale(round(p.unit, 5))
                ELSE trim_scale(round(p.final_amount / p.qty, 5)) END,
           p.final_amount, p.rate, p.exact
    FROM placed p
    ORDER BY p.n;
END;

-- One SalesItemLineDetail line of an invoice or a refund receipt.
CREATE OR REPLACE FUNCTION medusa_qbsync.sales_line(num bigint, item text, descr text,
                                                    qty numeric, price numeric,
                                                    amount numeric, rate numeric)
RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN jsonb_build_object(
    'LineNum', num,
    'DetailType', 'SalesItemLineDetail',
    'Amount', amount,
    'Description', medusa_qbsync.qbo_text(descr, 4000),
    'SalesItemLineDetail', jsonb_build_object(
        'ItemRef', jsonb_build_object('$ref', jsonb_build_array('product', item)),
        'Qty', qty,
        'UnitPrice', price,
        'TaxCodeRef', medusa_qbsync.qbo_tax_code(rate)));

-- Medusa's own figure for what was sold: its order summary's current total plus the credit
-- lines it deducted (refunds), at the order's current version. NULL when there is no summary.
CREATE OR REPLACE FUNCTION medusa_qbsync.summary_total(o medusa."order")
RETURNS numeric
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce((s.totals->'raw_current_order_total'->>'value')::numeric,
                    (s.totals->>'current_order_total')::numeric)
           + coalesce((s.totals->'raw_credit_line_total'->>'value')::numeric,
                      (s.totals->>'credit_line_total')::numeric, 0)
    FROM medusa.order_summary s
    WHERE s.order_id = o.id AND s.version = o.version AND s.deleted_at IS NULL
    ORDER BY s.created_at DESC
    LIMIT 1
$$;

-- Returns, claims and exchanges change Medusa's totals (returned quantities no longer
-- count) but not the invoice: the money going back is a refund.
CREATE OR REPLACE FUNCTION medusa_qbsync.has_returns(o medusa."order")
RETURNS boolean
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT EXISTS (SELECT 1 FROM medusa.order_item oi
                   WHERE oi.order_id = o.id AND oi.version = o.version AND oi.deleted_at IS NULL
                     AND (oi.return_requested_quantity <> 0 OR oi.return_received_quantity <> 0
                          OR oi.return_dismissed_quantity <> 0 OR oi.written_off_quantity <> 0))
        OR EXISTS (SELECT 1 FROM medusa.order_change c
                   WHERE c.order_id = o.id AND c.deleted_at IS NULL
                     AND (c.return_id IS NOT NULL OR c.claim_id IS NOT NULL
                          OR c.exchange_id IS NOT NULL))
$$;

-- Why an order cannot be invoiced (the reasons shared by the invoice, its payments and its
-- refunds), or NULL.
CREATE OR REPLACE FUNCTION medusa_qbsync.order_problem(o medusa."order")
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_home text := medusa_qbsync.home_currency();
    v_company text := medusa_qbsync.company_currency();
    v_multi boolean := medusa_qbsync.company_multicurrency();
BEGIN
    IF v_home IS NULL THEN
        RETURN 'no home currency: the daemon has not looked the QuickBooks company''s up yet, the Medusa store has no default currency and medusa_qbsync.settings has no home_currency';
    END IF;
    -- In a company known to keep one currency, the daemon refuses another itself (QB005).
    IF lower(o.currency_code) IS DISTINCT FROM v_home
       AND NOT (v_company IS NOT NULL AND v_multi IS FALSE) THEN
        IF v_company IS NULL THEN
            RETURN format('the order is in %s but the QuickBooks company keeps its books in %s '
                          '(as far as the mapping knows: the daemon has not looked the '
                          'company''s currency up yet, so medusa_qbsync.settings '
                          'home_currency, else the store''s default currency): a '
                          'foreign-currency order needs a multicurrency company and an '
                          'exchange rate Medusa does not record',
                          upper(coalesce(o.currency_code, '?')), upper(v_home));
        END IF;
        IF v_multi THEN
            RETURN format('the order is in %s but the QuickBooks company keeps its books in '
                          '%s: it has multicurrency on, but Medusa records no exchange rate '
                          'for an order and this mapping creates every customer in %s, so '
                          'QuickBooks would book it wrong',
                          upper(coalesce(o.currency_code, '?')), upper(v_home), upper(v_home));
        END IF;
        RETURN format('the order is in %s but the QuickBooks company keeps its books in %s: '
                      'a foreign-currency order needs a multicurrency company and an exchange '
                      'rate Medusa does not record',
                      upper(coalesce(o.currency_code, '?')), upper(v_home));
    END IF;
    IF medusa_qbsync.doc_number(o) IS NULL THEN
        RETURN format('order number %s is longer than QuickBooks'' 21 characters',
                      coalesce(o.custom_display_id, o.display_id::text));
    END IF;
    IF o.customer_id IS NULL THEN
        RETURN 'no customer (customer_id is NULL)';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM medusa.customer c WHERE c.id = o.customer_id) THEN
        RETURN format('customer %s does not exist', o.customer_id);
    END IF;
    RETURN NULL;
END
$$;

-- Customer ------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION qbsync_map.customer(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Reads that no capture rule of customer covers, on purpose (qbsync check-mapping):
-- qbsync:uncaptured medusa.order.* medusa.order_address.* -- the latest order's billing address names a customer whose own row and addresses do not; the customer is pushed with it as its first invoice's dependency, and a later order does not rewrite it
DECLARE
    c medusa.customer;
    b medusa.order_address;          -- the latest order's billing address
    a medusa.customer_address;       -- the customer's default billing address
    v_first text;
    v_last text;
    v_name text;
    v_email text;
    v_suffix text;
BEGIN
    SELECT * INTO c FROM medusa.customer WHERE id = key;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    -- a soft-deleted customer is still mapped: its orders keep referring to it
    SELECT ad.* INTO b
    FROM medusa."order" o
    JOIN medusa.order_address ad ON ad.id = coalesce(o.billing_address_id, o.shipping_address_id)
    WHERE o.customer_id = c.id AND o.deleted_at IS NULL
    ORDER BY o.created_at DESC, o.id DESC
    LIMIT 1;
    SELECT * INTO a FROM medusa.customer_address ca
    WHERE ca.customer_id = c.id AND ca.deleted_at IS NULL
    ORDER BY ca.is_default_billing DESC, ca.created_at
    LIMIT 1;

    v_first := coalesce(nullif(btrim(c.first_name), ''), nullif(btrim(a.first_name), ''),
                        nullif(btrim(b.first_name), ''));
    v_last := coalesce(nullif(btrim(c.last_name), ''), nullif(btrim(a.last_name), ''),
                       nullif(btrim(b.last_name), ''));
    v_email := lower(btrim(c.email));
    v_name := coalesce(medusa_qbsync.qbo_name(concat_ws(' ', v_first, v_last), 500),
                       medusa_qbsync.qbo_name(coalesce(c.company_name, a.company, b.company), 500),
                       medusa_qbsync.qbo_name(v_email, 500));
    IF v_name IS NULL THEN
        PERFORM medusa_qbsync.refuse(format('customer %s: no name, company or e-mail to name it by', key));
    END IF;
    v_suffix := ' (' || coalesce(medusa_qbsync.qbo_name(v_email, 200), key)
                || CASE WHEN c.has_account THEN '' ELSE ', guest' END || ')';

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'DisplayName', medusa_qbsync.qbo_clip(v_name, 500 - medusa_qbsync.qbo_length(v_suffix)) || v_suffix,
        'GivenName', medusa_qbsync.qbo_name(v_first, 100),
        'FamilyName', medusa_qbsync.qbo_name(v_last, 100),
        'CompanyName', medusa_qbsync.qbo_text(coalesce(c.company_name, a.company, b.company), 100),
        'PrimaryEmailAddr', CASE WHEN medusa_qbsync.qbo_email(v_email) IS NOT NULL
                                 THEN jsonb_build_object('Address', medusa_qbsync.qbo_email(v_email)) END,
        'PrimaryPhone', CASE WHEN medusa_qbsync.qbo_text(coalesce(c.phone, a.phone, b.phone), 30) IS NOT NULL
                             THEN jsonb_build_object('FreeFormNumber',
                                                     medusa_qbsync.qbo_text(coalesce(c.phone, a.phone, b.phone), 30)) END,
        'BillAddr', coalesce(
            CASE WHEN a.id IS NOT NULL THEN medusa_qbsync.qbo_addr(a.address_1, a.address_2, a.city,
                                                                   a.province, a.postal_code,
                                                                   a.country_code) END,
            CASE WHEN b.id IS NOT NULL THEN medusa_qbsync.qbo_addr(b.address_1, b.address_2, b.city,
                                                                   b.province, b.postal_code,
                                                                   b.country_code) END),
        'Notes', format('Medusa customer %s%s', c.id,
                        CASE WHEN c.has_account THEN '' ELSE ' (guest checkout, no account)' END),
        'Active', true
    ));
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.customer_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT c.id FROM medusa.customer c WHERE c.deleted_at IS NULL ORDER BY c.id $$;

-- Write-back: every entity records into medusa_qbsync.sync_state the same way.
CREATE OR REPLACE FUNCTION medusa_qbsync.record(p_entity text, keys text[], outcomes jsonb[])
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO medusa_qbsync.sync_state AS s
        (entity, key, realm_id, qbo_id, doc_number, status, error, attempted_at, synced_at)
    SELECT p_entity, x.key, x.outcome->>'realm_id',
           CASE WHEN x.outcome->>'status' = 'deleted' THEN NULL ELSE x.outcome->>'qbo_id' END,
           CASE WHEN x.outcome->>'status' = 'deleted' THEN NULL ELSE x.outcome->>'doc_number' END,
           x.outcome->>'status',
           CASE WHEN x.outcome->>'status' IN ('synced', 'voided', 'skipped', 'deleted') THEN NULL
                ELSE x.outcome->>'error' END,
           (x.outcome->>'attempted_at')::timestamptz,
           CASE WHEN x.outcome->>'status' IN ('synced', 'voided', 'deleted')
                THEN coalesce((x.outcome->>'synced_at')::timestamptz, now()) END
    FROM unnest(keys, outcomes) AS x(key, outcome)
    ON CONFLICT (entity, key) DO UPDATE SET
        realm_id = coalesce(excluded.realm_id, s.realm_id),
        -- a deleted object leaves no Id behind (an invoice deleted in QuickBooks, a payment
        -- reversed in the shop)
        qbo_id = CASE WHEN excluded.status = 'deleted' THEN NULL
                      ELSE coalesce(excluded.qbo_id, s.qbo_id) END,
        doc_number = CASE WHEN excluded.status = 'deleted' THEN NULL
                          ELSE coalesce(excluded.doc_number, s.doc_number) END,
        status = coalesce(excluded.status, s.status),
        -- a success clears the last error; a failure (or a retry pending) records it
        error = CASE WHEN excluded.status IN ('synced', 'voided', 'skipped', 'deleted') THEN NULL
                     ELSE coalesce(excluded.error, s.error) END,
        attempted_at = coalesce(excluded.attempted_at, s.attempted_at),
        synced_at = coalesce(excluded.synced_at, s.synced_at),
        updated_at = now()
$$;

CREATE OR REPLACE FUNCTION qbsync_map.customer_outcomes(keys text[], outcomes jsonb[])
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT medusa_qbsync.record('customer', keys, outcomes) $$;

CREATE OR REPLACE FUNCTION qbsync_map.customer_outcome(key text, outcome jsonb)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT medusa_qbsync.record('customer', ARRAY[key], ARRAY[outcome]) $$;

-- Product variant / Item ----------------------------------------------------------------

CREATE OR REPLACE FUNCTION qbsync_map.product(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Reads that no capture rule of product covers, on purpose (qbsync check-mapping):
-- qbsync:uncaptured medusa.product_variant_price_set.* -- a variant's price set is linked when the variant is created (its prices are captured)
-- qbsync:uncaptured medusa.price_preference.* -- whether the store's prices include tax is configuration, as below
-- qbsync:uncaptured medusa.store.* medusa.store_currency.* medusa_qbsync.settings.* -- configuration (home currency, DocNumber prefix, time zone): changing it re-pushes nothing by itself; qbsync resync does, when meant
DECLARE
    v record;
    v_home text := medusa_qbsync.home_currency();
    v_suffix text;
    v_name text;
    v_body jsonb;
BEGIN
    IF key LIKE 'fee:%' THEN
        -- service items for the invoice's shipping, promotion, refund and custom lines
        SELECT jsonb_build_object(
                   'Type', 'Service', 'Name', f.name, 'Description', f.descr,
                   'Taxable', true, 'SalesTaxIncluded', true,
                   'IncomeAccountRef', jsonb_build_object('$setting', 'income_account'),
                   'Active', true)
        INTO v_body
        FROM (VALUES ('fee:shipping', 'Shipping', 'Shipping (Medusa shipping methods)'),
                     ('fee:discount', 'Discount', 'Promotions and discounts (Medusa adjustments)'),
                     ('fee:refund', 'Refund', 'Money refunded to a customer'),
                     ('fee:custom', 'Other item', 'Order lines without a product variant'))
             AS f(key, name, descr)
        WHERE f.key = product.key;
        IF v_body IS NULL THEN
            PERFORM medusa_qbsync.refuse(format(
                'product %s: unknown fee item (known: fee:shipping, fee:discount, fee:refund, fee:custom)', key));
        END IF;
        RETURN v_body;
    END IF;

    SELECT pv.id, pv.title, pv.sku, p.title AS product_title, p.description,
           (SELECT pr.amount
            FROM medusa.product_variant_price_set l
            JOIN medusa.price pr ON pr.price_set_id = l.price_set_id AND pr.deleted_at IS NULL
            WHERE l.variant_id = pv.id AND l.deleted_at IS NULL
              AND lower(pr.currency_code) = v_home AND pr.price_list_id IS NULL
              AND coalesce(pr.rules_count, 0) = 0 AND pr.min_quantity IS NULL
            ORDER BY pr.amount LIMIT 1) AS price,
           coalesce((SELECT pp.is_tax_inclusive FROM medusa.price_preference pp
                     WHERE pp.attribute = 'currency_code' AND lower(pp.value) = v_home
                       AND pp.deleted_at IS NULL LIMIT 1), false) AS tax_inclusive
    INTO v
    FROM medusa.product_variant pv
    JOIN medusa.product p ON p.id = pv.product_id
    WHERE pv.id = key;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v.price = 'NaN' OR v.price < 0 THEN
        PERFORM medusa_qbsync.refuse(format('product %s: invalid price %s', key, v.price));
    END IF;
    v_suffix := ' (' || coalesce(medusa_qbsync.qbo_name(v.sku, 60), key) || ')';
    v_name := medusa_qbsync.qbo_name(
        concat_ws(' - ', v.product_title,
                  CASE WHEN v.title NOT IN ('Default', 'Default variant', coalesce(v.product_title, ''))
                       THEN v.title END),
        100 - medusa_qbsync.qbo_length(v_suffix));
    IF v_name IS NULL THEN
        PERFORM medusa_qbsync.refuse(format('product %s: empty name (product and variant titles are blank)', key));
    END IF;

    -- Active even when deleted in Medusa: its past orders' invoices still need the item
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'Type', 'NonInventory',
        'Name', v_name || v_suffix,
        'Sku', medusa_qbsync.qbo_text(v.sku, 100),
        'Description', coalesce(medusa_qbsync.qbo_text(v.description, 4000),
                                medusa_qbsync.qbo_text(concat_ws(' - ', v.product_title, v.title), 4000)),
        'UnitPrice', v.price,
        'Taxable', true,
        'SalesTaxIncluded', v.tax_inclusive,
        'IncomeAccountRef', jsonb_build_object('$setting', 'income_account'),
        'Active', true));
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.product_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT pv.id FROM medusa.product_variant pv WHERE pv.deleted_at IS NULL
    UNION ALL
    -- fee:refund and fee:custom are created on demand, by the first order that needs them
    SELECT k FROM unnest(ARRAY['fee:shipping', 'fee:discount']) AS k
$$;

CREATE OR REPLACE FUNCTION qbsync_map.product_outcomes(keys text[], outcomes jsonb[])
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT medusa_qbsync.record('product', keys, outcomes) $$;

CREATE OR REPLACE FUNCTION qbsync_map.product_outcome(key text, outcome jsonb)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT medusa_qbsync.record('product', ARRAY[key], ARRAY[outcome]) $$;

-- Order / Invoice -----------------------------------------------------------------------

CREATE OR REPLACE FUNCTION qbsync_map."order"(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Reads that no capture rule of order covers, on purpose (qbsync check-mapping):
-- qbsync:uncaptured medusa.capture.* medusa.payment.* medusa.order_payment_collection.* -- only whether a canceled order keeps its invoice, which the money captured before the cancellation settles: Medusa captures nothing for a canceled order, and the cancellation is captured
-- qbsync:uncaptured medusa.order_summary.* medusa.order_change.* -- Medusa's own total is a cross-check of the lines (written with them, in the same order version, which is captured), and returns only lift that check; the summary is rewritten by every payment (paid_total), which changes no invoice
-- qbsync:uncaptured medusa.store.* medusa.store_currency.* medusa_qbsync.settings.* -- configuration (home currency, DocNumber prefix, time zone): changing it re-pushes nothing by itself; qbsync resync does, when meant
DECLARE
    o medusa."order";
    v_label text;
    v_doc text;
    v_bad text;
    v_lines jsonb;
    v_count bigint;
    v_total numeric;
    v_exact numeric;
    v_medusa numeric;
    v_misfit text;
    v_codes text;
BEGIN
    SELECT * INTO o FROM medusa."order" WHERE id = key;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_label := medusa_qbsync.order_label(o);
    v_doc := medusa_qbsync.doc_number(o);

    IF o.is_draft_order OR o.status = 'draft' THEN
        RETURN NULL;                           -- not a sale yet
    END IF;
    IF NOT medusa_qbsync.keeps_invoice(o) THEN
        -- canceled before any money was captured, or deleted: void the invoice if there is
        -- one (the daemon does nothing when there is none)
        RETURN jsonb_strip_nulls(jsonb_build_object('$op', 'void', 'DocNumber', v_doc));
    END IF;

    v_bad := medusa_qbsync.order_problem(o);
    IF v_bad IS NOT NULL THEN
        PERFORM medusa_qbsync.refuse(v_label || ': ' || v_bad);
    END IF;

    SELECT jsonb_agg(medusa_qbsync.sales_line(l.num, l.item, l.descr, l.qty, l.price, l.amount, l.rate)
                     ORDER BY l.num),
           count(*), sum(l.amount), sum(l.exact),
           -- every line must keep QuickBooks' Amount = round(Qty x UnitPrice, 2) (6070)
           string_agg(format('line %s: %s x %s <> %s', l.num, l.qty, l.price, l.amount), '; ')
               FILTER (WHERE round(l.qty * l.price, 2) <> l.amount),
           string_agg(DISTINCT l.descr, ', ') FILTER (WHERE l.item = 'fee:discount')
    INTO v_lines, v_count, v_total, v_exact, v_misfit, v_codes
    FROM medusa_qbsync.invoice_lines(o) l;

    v_bad := CASE
        WHEN v_count = 0 THEN 'the order has no lines'
        WHEN v_count > 750 THEN format('%s invoice lines, QuickBooks takes at most 750', v_count)
        WHEN v_misfit IS NOT NULL THEN 'the lines do not add up: ' || v_misfit
        WHEN v_total <> round(v_exact, 2)
            THEN format('the lines add up to %s, not the rounded total %s', v_total, round(v_exact, 2))
        WHEN v_total < 0 THEN format('negative total %s', v_total)
    END;
    IF v_bad IS NULL AND NOT medusa_qbsync.has_returns(o) THEN
        -- Medusa's own figure must agree (a missing line, a version mixed up: never push it)
        v_medusa := medusa_qbsync.summary_total(o);
        IF v_medusa IS NOT NULL AND abs(v_medusa - v_exact) >= 0.005 THEN
            v_bad := format('the lines add up to %s but Medusa''s order summary says %s',
                            round(v_exact, 6), round(v_medusa, 6));
        END IF;
    END IF;
    IF v_bad IS NOT NULL THEN
        PERFORM medusa_qbsync.refuse(v_label || ': ' || v_bad);
    END IF;

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array('customer', o.customer_id)),
        'CurrencyRef', jsonb_build_object('value', upper(o.currency_code)),
        'DocNumber', v_doc,
        'TxnDate', medusa_qbsync.local_date(o.created_at),
        'GlobalTaxCalculation', 'TaxInclusive',
        'Line', v_lines,
        'BillEmail', CASE WHEN medusa_qbsync.qbo_email(o.email) IS NOT NULL
                          THEN jsonb_build_object('Address', medusa_qbsync.qbo_email(o.email)) END,
        'BillAddr', medusa_qbsync.order_addr(o.billing_address_id),
        'ShipAddr', medusa_qbsync.order_addr(o.shipping_address_id),
        'PrivateNote', medusa_qbsync.qbo_text(format('Medusa order #%s (%s)',
                                                     coalesce(o.custom_display_id, o.display_id::text),
                                                     o.id), 4000)
    ));
END
$$;

-- Why the order's invoice is refused (its QB001 message without the order's name), or NULL:
-- its payments and refunds are refused for the same reason.
CREATE OR REPLACE FUNCTION medusa_qbsync.invoice_refusal(o medusa."order")
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM qbsync_map."order"(o.id);
    RETURN NULL;
EXCEPTION WHEN SQLSTATE 'QB001' THEN
    RETURN CASE WHEN starts_with(SQLERRM, medusa_qbsync.order_label(o) || ': ')
                THEN substr(SQLERRM, length(medusa_qbsync.order_label(o)) + 3)
                ELSE SQLERRM END;
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.order_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT o.id FROM medusa."order" o
    WHERE o.deleted_at IS NULL AND NOT o.is_draft_order
    ORDER BY o.display_id, o.id
$$;

CREATE OR REPLACE FUNCTION qbsync_map.order_outcomes(keys text[], outcomes jsonb[])
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT medusa_qbsync.record('order', keys, outcomes) $$;

CREATE OR REPLACE FUNCTION qbsync_map.order_outcome(key text, outcome jsonb)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT medusa_qbsync.record('order', ARRAY[key], ARRAY[outcome]) $$;

-- Payments and refunds ----------------------------------------------------------------------

-- A capture or a refund: its payment, its order, its amount and time.
CREATE OR REPLACE FUNCTION medusa_qbsync.money_movement(kind text, movement_id text)
RETURNS TABLE (payment_id text, order_id text, amount numeric, created_at timestamptz,
               deleted boolean)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT x.payment_id,
           (SELECT opc.order_id FROM medusa.order_payment_collection opc
            WHERE opc.payment_collection_id = pay.payment_collection_id AND opc.deleted_at IS NULL
            ORDER BY opc.created_at LIMIT 1),
           x.amount, x.created_at, x.deleted_at IS NOT NULL
    FROM (SELECT c.payment_id, c.amount, c.created_at, c.deleted_at
          FROM medusa.capture c WHERE kind = 'capture' AND c.id = movement_id
          UNION ALL
          SELECT r.payment_id, r.amount, r.created_at, r.deleted_at
          FROM medusa.refund r WHERE kind = 'refund' AND r.id = movement_id) x
    JOIN medusa.payment pay ON pay.id = x.payment_id
$$;

-- The amount of one capture (or refund) in cents: the order's captures (refunds) in the order
-- Medusa recorded them, each the difference of the rounded running totals, so that they add
-- up to the rounded sum of what Medusa captured (refunded) — which for a full capture is the
-- invoice total to the cent, closing its balance.
CREATE OR REPLACE FUNCTION medusa_qbsync.movement_cents(kind text, order_id text, movement_id text)
RETURNS numeric
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    WITH m AS (
        SELECT x.id, x.amount, x.created_at
        FROM medusa.order_payment_collection opc
        JOIN medusa.payment p ON p.payment_collection_id = opc.payment_collection_id
                             AND p.deleted_at IS NULL
        JOIN LATERAL (
            SELECT c.id, c.amount, c.created_at FROM medusa.capture c
            WHERE kind = 'capture' AND c.payment_id = p.id AND c.deleted_at IS NULL
            UNION ALL
            SELECT r.id, r.amount, r.created_at FROM medusa.refund r
            WHERE kind = 'refund' AND r.payment_id = p.id AND r.deleted_at IS NULL
        ) x ON true
        WHERE opc.order_id = movement_cents.order_id AND opc.deleted_at IS NULL
    ), running AS (
        SELECT m.id, sum(m.amount) OVER w AS upto, coalesce(sum(m.amount) OVER w, 0) - m.amount AS before
        FROM m
        WINDOW w AS (ORDER BY m.created_at, m.id ROWS UNBOUNDED PRECEDING)
    )
    SELECT round(r.upto, 2) - round(r.before, 2) FROM running r WHERE r.id = movement_id
$$;

CREATE OR REPLACE FUNCTION qbsync_map.payment(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Reads that no capture rule of payment covers, on purpose (qbsync check-mapping):
-- qbsync:uncaptured medusa.order.* medusa.order_address.* medusa.order_change.* medusa.order_item.* medusa.order_line_item.* medusa.order_line_item_adjustment.* medusa.order_line_item_tax_line.* medusa.order_shipping.* medusa.order_shipping_method.* medusa.order_shipping_method_adjustment.* medusa.order_shipping_method_tax_line.* medusa.order_summary.* -- the invoice a capture pays (its customer, number, total): a change of the order re-pushes the invoice, the Payment records the money as it was taken
-- qbsync:uncaptured medusa.payment.* medusa.order_payment_collection.* -- a payment's provider, reference and order are set when it is authorized, before any capture
-- qbsync:uncaptured medusa.refund.* -- read for refund keys only (money_movement, movement_cents)
-- qbsync:uncaptured medusa.store.* medusa.store_currency.* medusa_qbsync.settings.* -- configuration (home currency, DocNumber prefix, time zone): changing it re-pushes nothing by itself; qbsync resync does, when meant
DECLARE
    o medusa."order";
    p medusa.payment;
    v_moved numeric;
    v_at timestamptz;
    v_deleted boolean;
    v_ok boolean;
    v_payment_id text;
    v_order_id text;
    v_label text;
    v_bad text;
    v_amount numeric;
    v_captured numeric;
    v_invoice numeric;
    v_ref text;
    v_slug text;
    v_doc text;
BEGIN
    SELECT x.payment_id, x.order_id, x.amount, x.created_at, x.deleted
    INTO v_payment_id, v_order_id, v_moved, v_at, v_deleted
    FROM medusa_qbsync.money_movement('capture', key) x;
    SELECT * INTO p FROM medusa.payment WHERE id = v_payment_id;
    SELECT * INTO o FROM medusa."order" WHERE id = v_order_id;
    v_ok := o.id IS NOT NULL;
    IF NOT v_ok THEN
        RETURN NULL;                           -- not a capture of an order's payment
    END IF;
    IF v_deleted THEN
        -- a capture undone in Medusa: delete its Payment if it reached QuickBooks
        RETURN CASE WHEN EXISTS (SELECT 1 FROM medusa_qbsync.sync_state s
                                 WHERE s.entity = 'payment' AND s.key = payment.key
                                   AND s.qbo_id IS NOT NULL)
                    THEN jsonb_build_object('$op', 'delete') END;
    END IF;
    IF NOT medusa_qbsync.keeps_invoice(o) THEN
        RETURN NULL;                           -- no invoice to apply it to
    END IF;
    v_label := format('payment %s (capture of %s)', key, medusa_qbsync.order_label(o));
    -- the order itself must be invoiceable (the same checks, named after the payment): a
    -- payment whose invoice is refused would wait for it forever
    v_bad := medusa_qbsync.invoice_refusal(o);
    IF v_bad IS NULL THEN
        v_amount := medusa_qbsync.movement_cents('capture', o.id, key);
        SELECT round(sum(l.exact), 2) INTO v_invoice FROM medusa_qbsync.invoice_lines(o) l;
        v_captured := round(medusa_qbsync.order_captured(o.id), 2);
        v_bad := CASE
            WHEN v_moved IS NULL OR v_moved = 'NaN' THEN 'the captured amount is not a number'
            WHEN v_moved < 0 THEN format('negative captured amount %s', v_moved)
            WHEN v_captured > v_invoice
                THEN format('%s captured in all, more than the invoice total %s', v_captured, v_invoice)
        END;
    END IF;
    IF v_bad IS NOT NULL THEN
        PERFORM medusa_qbsync.refuse(v_label || ': ' || v_bad);
    END IF;
    IF v_amount <= 0 THEN
        RETURN NULL;                           -- less than half a cent: nothing to book
    END IF;

    v_doc := medusa_qbsync.doc_number(o);
    v_slug := medusa_qbsync.provider_slug(p.provider_id);
    -- the provider's own reference (a Stripe PaymentIntent id) when it fits 21 characters
    v_ref := nullif(btrim(coalesce(p.data->>'id', p.data->>'reference')), '');
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array('customer', o.customer_id)),
        'CurrencyRef', jsonb_build_object('value', upper(o.currency_code)),
        'TotalAmt', v_amount,
        'TxnDate', medusa_qbsync.local_date(v_at),
        'Line', jsonb_build_array(jsonb_build_object(
            'Amount', v_amount,
            'LinkedTxn', jsonb_build_array(jsonb_build_object(
                'TxnId', jsonb_build_object('$id', jsonb_build_array('order', o.id)),
                'TxnType', 'Invoice')))),
        'PaymentRefNum', CASE WHEN medusa_qbsync.qbo_length(v_ref) <= 21 THEN v_ref ELSE v_doc END,
        'PaymentMethodRef', jsonb_build_object('$setting', 'payment_method:' || v_slug),
        'DepositToAccountRef', jsonb_build_object('$setting', 'deposit_account:' || v_slug),
        'PrivateNote', medusa_qbsync.qbo_text(format(
            'Medusa order #%s (%s): capture %s of payment %s (%s)%s',
            coalesce(o.custom_display_id, o.display_id::text), o.id, key,
            p.id, p.provider_id, coalesce(', reference ' || v_ref, '')), 4000)
    ));
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.payment_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT c.id FROM medusa.capture c WHERE c.deleted_at IS NULL ORDER BY c.created_at, c.id $$;

CREATE OR REPLACE FUNCTION qbsync_map.payment_outcomes(keys text[], outcomes jsonb[])
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT medusa_qbsync.record('payment', keys, outcomes) $$;

CREATE OR REPLACE FUNCTION qbsync_map.payment_outcome(key text, outcome jsonb)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT medusa_qbsync.record('payment', ARRAY[key], ARRAY[outcome]) $$;

-- Refund / RefundReceipt ------------------------------------------------------------------
-- A refund of the whole invoice total repeats the invoice's lines; any other amount is split
-- over the invoice's tax rates in proportion to what each rate charged (largest remainder to
-- the cent), as lines on the service item fee:refund.

CREATE OR REPLACE FUNCTION qbsync_map.refund(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
-- Reads that no capture rule of refund covers, on purpose (qbsync check-mapping):
-- qbsync:uncaptured medusa.order.* medusa.order_address.* medusa.order_change.* medusa.order_item.* medusa.order_line_item.* medusa.order_line_item_adjustment.* medusa.order_line_item_tax_line.* medusa.order_shipping.* medusa.order_shipping_method.* medusa.order_shipping_method_adjustment.* medusa.order_shipping_method_tax_line.* medusa.order_summary.* -- the invoice refunded: a receipt records the money given back as it was given; a change of the order re-pushes the invoice
-- qbsync:uncaptured medusa.payment.* medusa.order_payment_collection.* medusa.capture.* -- a payment's provider and order are set when it is authorized; captures are read for capture keys (money_movement, movement_cents) and for whether a canceled order keeps its invoice, settled before the refund
-- qbsync:uncaptured medusa.refund_reason.* -- the reason's label as it was when the money was refunded
-- qbsync:uncaptured medusa.store.* medusa.store_currency.* medusa_qbsync.settings.* -- configuration (home currency, DocNumber prefix, time zone): changing it re-pushes nothing by itself; qbsync resync does, when meant
DECLARE
    o medusa."order";
    p medusa.payment;
    v_moved numeric;
    v_at timestamptz;
    v_deleted boolean;
    v_ok boolean;
    v_payment_id text;
    v_order_id text;
    r medusa.refund;
    v_label text;
    v_bad text;
    v_amount numeric;
    v_invoice numeric;
    v_lines jsonb;
    v_sum numeric;
    v_doc text;
    v_n bigint;
    v_slug text;
    v_reason text;
BEGIN
    SELECT x.payment_id, x.order_id, x.amount, x.created_at, x.deleted
    INTO v_payment_id, v_order_id, v_moved, v_at, v_deleted
    FROM medusa_qbsync.money_movement('refund', key) x;
    SELECT * INTO p FROM medusa.payment WHERE id = v_payment_id;
    SELECT * INTO o FROM medusa."order" WHERE id = v_order_id;
    v_ok := o.id IS NOT NULL;
    IF NOT v_ok OR v_deleted THEN
        -- gone (or never an order's): void its receipt if it reached QuickBooks
        RETURN jsonb_build_object('$op', 'void');
    END IF;
    IF NOT medusa_qbsync.keeps_invoice(o) THEN
        RETURN NULL;                           -- no sale in the books, no refund either
    END IF;
    SELECT * INTO r FROM medusa.refund WHERE id = key;
    v_label := format('refund %s (%s)', key, medusa_qbsync.order_label(o));
    -- the order itself must be invoiceable (the same checks, named after the refund)
    v_bad := medusa_qbsync.invoice_refusal(o);
    IF v_bad IS NULL THEN
        v_amount := medusa_qbsync.movement_cents('refund', o.id, key);
        SELECT round(sum(l.exact), 2) INTO v_invoice FROM medusa_qbsync.invoice_lines(o) l;
        v_bad := CASE
            WHEN v_moved IS NULL OR v_moved = 'NaN' THEN 'the refunded amount is not a number'
            WHEN v_moved < 0 THEN format('negative refunded amount %s', v_moved)
            WHEN v_amount > v_invoice
                THEN format('refund of %s, more than the invoice total %s', v_amount, v_invoice)
        END;
    END IF;
    IF v_bad IS NOT NULL THEN
        PERFORM medusa_qbsync.refuse(v_label || ': ' || v_bad);
    END IF;
    IF v_amount <= 0 THEN
        RETURN NULL;
    END IF;

    IF v_amount = v_invoice THEN
        SELECT jsonb_agg(medusa_qbsync.sales_line(l.num, l.item, l.descr, l.qty, l.price,
                                                  l.amount, l.rate) ORDER BY l.num),
               sum(l.amount)
        INTO v_lines, v_sum
        FROM medusa_qbsync.invoice_lines(o) l;
    ELSE
        WITH rate AS (
            SELECT l.rate, sum(l.amount) AS base FROM medusa_qbsync.invoice_lines(o) l
            GROUP BY l.rate
        ),
        share AS (
            SELECT rate.rate, trunc(v_amount * rate.base / v_invoice, 2) AS floor_share,
                   v_amount * rate.base / v_invoice - trunc(v_amount * rate.base / v_invoice, 2) AS frac
            FROM rate WHERE rate.base > 0
        ),
        part AS (
            SELECT s.rate,
                   s.floor_share + CASE WHEN row_number() OVER (ORDER BY s.frac DESC, s.rate DESC)
                                             <= round((v_amount - sum(s.floor_share) OVER ()) * 100)
                                        THEN 0.01 ELSE 0 END AS amount
            FROM share s
        )
        SELECT jsonb_agg(medusa_qbsync.sales_line(pt.num, 'fee:refund',
                                                  'Refund (tax ' || trim_scale(pt.rate) || '%)',
                                                  1, pt.amount, pt.amount, pt.rate) ORDER BY pt.num),
               sum(pt.amount)
        INTO v_lines, v_sum
        FROM (SELECT part.*, row_number() OVER (ORDER BY part.rate DESC) AS num
              FROM part WHERE part.amount > 0) pt;
    END IF;
    IF v_sum IS DISTINCT FROM v_amount THEN     -- a bug, not bad data: never push it
        PERFORM medusa_qbsync.refuse(format('%s: the lines add up to %s, not the refund amount %s',
                                            v_label, coalesce(v_sum::text, 'nothing'), v_amount));
    END IF;

    -- MED-12-R1: the refund's rank among its order's refunds (Medusa offers no way to delete
    -- one, so the numbers do not move); left to QuickBooks beyond 21 characters
    SELECT count(*) INTO v_n
    FROM medusa.order_payment_collection opc
    JOIN medusa.payment pay ON pay.payment_collection_id = opc.payment_collection_id
                           AND pay.deleted_at IS NULL
    JOIN medusa.refund x ON x.payment_id = pay.id AND x.deleted_at IS NULL
    WHERE opc.order_id = o.id AND opc.deleted_at IS NULL
      AND (x.created_at, x.id) <= (r.created_at, r.id);
    v_doc := medusa_qbsync.doc_number(o) || '-R' || v_n;
    v_slug := medusa_qbsync.provider_slug(p.provider_id);
    SELECT rr.label INTO v_reason FROM medusa.refund_reason rr WHERE rr.id = r.refund_reason_id;

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array('customer', o.customer_id)),
        'CurrencyRef', jsonb_build_object('value', upper(o.currency_code)),
        'DocNumber', CASE WHEN medusa_qbsync.qbo_length(v_doc) <= 21 THEN v_doc END,
        'TxnDate', medusa_qbsync.local_date(v_at),
        'GlobalTaxCalculation', 'TaxInclusive',
        'Line', v_lines,
        'PaymentMethodRef', jsonb_build_object('$setting', 'payment_method:' || v_slug),
        'DepositToAccountRef', jsonb_build_object('$setting', 'deposit_account:' || v_slug),
        'BillEmail', CASE WHEN medusa_qbsync.qbo_email(o.email) IS NOT NULL
                          THEN jsonb_build_object('Address', medusa_qbsync.qbo_email(o.email)) END,
        'PrivateNote', medusa_qbsync.qbo_text(format(
            'Refund %s of Medusa order #%s (%s)%s%s', key,
            coalesce(o.custom_display_id, o.display_id::text), o.id,
            coalesce(': ' || nullif(btrim(v_reason), ''), ''),
            coalesce(' - ' || nullif(btrim(r.note), ''), '')), 4000)
    ));
END
$$;

CREATE OR REPLACE FUNCTION qbsync_map.refund_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT r.id FROM medusa.refund r WHERE r.deleted_at IS NULL ORDER BY r.created_at, r.id $$;

CREATE OR REPLACE FUNCTION qbsync_map.refund_outcomes(keys text[], outcomes jsonb[])
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT medusa_qbsync.record('refund', keys, outcomes) $$;

CREATE OR REPLACE FUNCTION qbsync_map.refund_outcome(key text, outcome jsonb)
RETURNS void LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ SELECT medusa_qbsync.record('refund', ARRAY[key], ARRAY[outcome]) $$;
