-- @@ mapping
-- {{shop}}: products (entity "product" -> QuickBooks Item), written by `qbsync shop new`.
--
-- key: a product's id as text ('17'), or a fee item: 'fee:shipping', 'fee:discount' ...
-- (service items for the invoice lines that are no product; listed in qbsync_map.product).
-- Items are NonInventory (stock stays in the shop; QuickBooks Inventory items need asset
-- accounts and can never change type) or Service.
--
-- To fill: product_source, product_keys, optionally product_outcome.

-- FILL: one row for the product `key` (a product id), none when there is none. tax_rate:
-- the VAT rate in percent (24, 6.5; NULL: no tax code on the item); taxable: for US
-- companies. prices_include_tax: whether unit_price includes the tax.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.product_source(key text)
RETURNS TABLE (name text, sku text, description text, unit_price numeric, tax_rate numeric,
               taxable boolean, prices_include_tax boolean, active boolean)
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(product_source)
    SELECT p.name::text, p.sku::text, p.description::text, p.price::numeric,
           p.tax_rate::numeric, true, true, p.active
    FROM fill_me.products p
    WHERE p.id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END;
    -- END FILL
END;

-- The service items behind invoice lines that are no product (key, name, description,
-- tax rate). Add yours; the order's lines name them by key.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.fee_items()
RETURNS TABLE (key text, name text, description text, tax_rate numeric)
LANGUAGE sql IMMUTABLE
BEGIN ATOMIC
    SELECT f.key, f.name, f.description, f.tax_rate
    FROM (VALUES ('fee:shipping', 'Shipping', 'Shipping and handling', NULL::numeric),
                 ('fee:discount', 'Discount', 'Discounts and coupons', NULL::numeric),
                 ('fee:refund', 'Refund', 'Money given back', NULL::numeric)) AS f(key, name, description, tax_rate);
END;

-- The QuickBooks Item: Name (required, at most 100 characters, unique, no ':' / TAB /
-- newline), Type, IncomeAccountRef (the company's income account: a setting the daemon
-- looks up), the price and the tax defaults.
CREATE OR REPLACE FUNCTION qbsync_map.product(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    p record;
    v_name text;
BEGIN
    IF key LIKE 'fee:%' THEN
        SELECT * INTO p FROM {{shop}}_qbo.fee_items() f WHERE f.key = product.key;
        IF NOT FOUND THEN
            PERFORM {{shop}}_qbo.refuse(format('product %s: no such fee item ({{shop}}_qbo.fee_items())', key));
        END IF;
        RETURN jsonb_strip_nulls(jsonb_build_object(
            'Type', 'Service', 'Name', p.name, 'Description', p.description,
            'SalesTaxCodeRef', {{shop}}_qbo.tax_code(p.tax_rate, p.tax_rate > 0),
            'IncomeAccountRef', jsonb_build_object('$setting', 'income_account'),
            'Active', true));
    END IF;
    SELECT * INTO p FROM {{shop}}_qbo.product_source(key);
    IF NOT FOUND THEN
        RETURN NULL;                          -- nothing to push
    END IF;
    -- unique names: the SKU in brackets when there is one
    v_name := {{shop}}_qbo.qbo_name(p.name, 100 - coalesce({{shop}}_qbo.qbo_length(' (' || p.sku || ')'), 0))
              || coalesce(' (' || {{shop}}_qbo.qbo_name(p.sku, 60) || ')', '');
    IF v_name IS NULL THEN
        PERFORM {{shop}}_qbo.refuse(format('product %s: empty name', key));
    END IF;
    IF p.unit_price IS NULL OR p.unit_price = 'NaN' OR p.unit_price < 0 THEN
        PERFORM {{shop}}_qbo.refuse(format('product %s: invalid price %s', key, p.unit_price));
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'Type', 'NonInventory',
        'Name', v_name,
        'Sku', {{shop}}_qbo.qbo_text(p.sku, 100),
        'Description', {{shop}}_qbo.qbo_text(coalesce(p.description, p.name), 4000),
        'UnitPrice', p.unit_price,
        'Taxable', coalesce(p.taxable, p.tax_rate > 0),
        'SalesTaxIncluded', p.prices_include_tax,  --@vat
        'SalesTaxCodeRef', {{shop}}_qbo.tax_code(p.tax_rate, p.taxable),
        'IncomeAccountRef', jsonb_build_object('$setting', 'income_account'),
        'Active', coalesce(p.active, true)));
END
$$;

-- FILL: every product key (sync_catalog, resync and check-mapping list them here). The fee
-- items are created with the first invoice that needs them.
CREATE OR REPLACE FUNCTION qbsync_map.product_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(product_keys)
    SELECT p.id::text FROM fill_me.products p;
    -- END FILL
END;

CREATE OR REPLACE FUNCTION qbsync_map.product_key_exists(key text)
RETURNS boolean
LANGUAGE sql STABLE
RETURN EXISTS (SELECT 1 FROM {{shop}}_qbo.fee_items() f WHERE f.key = product_key_exists.key)
    OR EXISTS (SELECT 1 FROM {{shop}}_qbo.product_source(key));

-- FILL (optional): write the outcome back (see customer_outcome).
CREATE OR REPLACE FUNCTION qbsync_map.product_outcome(key text, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- FILL(product_outcome)
    NULL;  -- e.g. UPDATE fill_me.products SET quickbooks_id = coalesce(outcome->>'qbo_id', quickbooks_id) WHERE id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END;
    -- END FILL
END
$$;

-- @@ track
SELECT qbsync.define_entity('product', 'Item', 3, '{30,120,300}', 120);
-- FILL(track_product): the tables and columns product_source reads, with the key. (A VAT
-- rate kept on a category needs a trigger of its own, not SECURITY DEFINER, that appends
-- the category's products to qbsync_capture.changes_product, and
-- qbsync.allow_enqueue('<the categories table>', 'product'): one category row maps to many
-- product keys. README "Fan-out triggers".)
SELECT qbsync.track('fill_me.products', 'product', 'id',
    columns => ARRAY['name', 'sku', 'description', 'price', 'tax_rate', 'active']);
-- END FILL

-- @@ test
DO $$
DECLARE
    k text;
    b jsonb;
    n int := 0;
BEGIN
    IF to_regprocedure('qbsync_map.product(text)') IS NULL
       OR to_regprocedure('qbsync_map.product_keys()') IS NULL
       OR to_regprocedure('qbsync_map.product_outcome(text,jsonb)') IS NULL THEN
        RAISE EXCEPTION 'product: qbsync_map.product(text), product_keys() or product_outcome(text, jsonb) is missing';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM qbsync.entities WHERE entity = 'product' AND qbo_type = 'Item') THEN
        RAISE EXCEPTION 'product: not registered (track.sql: qbsync.define_entity)';
    END IF;
    FOR k IN (SELECT x FROM qbsync_map.product_keys() AS x LIMIT 5)
             UNION ALL SELECT f.key FROM {{shop}}_qbo.fee_items() f LOOP
        b := qbsync_map.product(k);
        CONTINUE WHEN b IS NULL;
        IF coalesce(b->>'Name', '') = '' OR b->>'Name' ~ '[:\t\n\r]'
           OR {{shop}}_qbo.qbo_length(b->>'Name') > 100
           OR b->>'Type' NOT IN ('NonInventory', 'Service', 'Inventory')
           OR NOT b ? 'IncomeAccountRef' THEN
            RAISE EXCEPTION 'product %: Name (<= 100, no : TAB newline), Type or IncomeAccountRef wrong: %', k, b;
        END IF;
        n := n + 1;
        RAISE NOTICE 'product %: %', k, b;
    END LOOP;
    RAISE NOTICE 'product: % bodies look right', n;
END
$$;
