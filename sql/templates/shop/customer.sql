-- @@ mapping
-- {{shop}}: customers (entity "customer" -> QuickBooks Customer), written by `qbsync shop new`.
--
-- key: what names a customer in your shop, as text. An account: its id ('42'). A guest
-- (an order without an account): something stable the order carries, e.g.
-- 'guest:' || lower(email); the order's mapping must build the very same key.
--
-- To fill (marked FILL ... END FILL): customer_source (the fields, from your tables),
-- customer_keys (every key), optionally customer_outcome (the write-back).

-- FILL: one row for the customer `key`, no row when there is none (deleted: nothing is
-- pushed). Keep the columns' names and types; NULL where your shop has nothing.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.customer_source(key text)
RETURNS TABLE (display_name text, given_name text, family_name text, company_name text,
               email text, phone text, address text, city text, postal_code text,
               country text, active boolean)
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(customer_source): accounts by id, guests by the e-mail of their latest order
    SELECT NULL::text, c.first_name::text, c.last_name::text, c.company::text,
           c.email::text, c.phone::text, c.address::text, c.city::text, c.postcode::text,
           c.country::text, true
    FROM fill_me.customers c
    WHERE c.id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END
    UNION ALL
    (SELECT NULL::text, o.first_name::text, o.last_name::text, NULL::text, o.email::text,
            o.phone::text, o.address::text, o.city::text, o.postcode::text, o.country::text,
            true
     FROM fill_me.orders o
     WHERE o.customer_id IS NULL AND key = 'guest:' || lower(o.email)
     ORDER BY o.id DESC
     LIMIT 1);
    -- END FILL
END;

-- The QuickBooks Customer. QuickBooks requires DisplayName (or name parts): at most 500
-- characters, no ':' / TAB / newline, unique across customers, vendors and employees (qbsync
-- adopts an existing customer with the same e-mail, else adds the key to the name).
CREATE OR REPLACE FUNCTION qbsync_map.customer(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    c record;
    v_name text;
BEGIN
    SELECT * INTO c FROM {{shop}}_qbo.customer_source(key);
    IF NOT FOUND THEN
        RETURN NULL;                          -- nothing to push
    END IF;
    v_name := {{shop}}_qbo.qbo_name(coalesce(c.display_name,
                                             nullif(concat_ws(' ', c.given_name, c.family_name), ''),
                                             c.company_name, c.email), 500);
    IF v_name IS NULL THEN
        PERFORM {{shop}}_qbo.refuse(format('customer %s: no name, company or e-mail to call it by', key));
    END IF;
    RETURN jsonb_strip_nulls(jsonb_build_object(
        'DisplayName', v_name,
        'GivenName', {{shop}}_qbo.qbo_name(c.given_name, 100),
        'FamilyName', {{shop}}_qbo.qbo_name(c.family_name, 100),
        'CompanyName', {{shop}}_qbo.qbo_text(c.company_name, 100),
        'PrimaryEmailAddr', CASE WHEN {{shop}}_qbo.qbo_email(c.email) IS NOT NULL
                                 THEN jsonb_build_object('Address', {{shop}}_qbo.qbo_email(c.email)) END,
        'PrimaryPhone', CASE WHEN {{shop}}_qbo.qbo_text(c.phone, 30) IS NOT NULL
                             THEN jsonb_build_object('FreeFormNumber', {{shop}}_qbo.qbo_text(c.phone, 30)) END,
        'BillAddr', {{shop}}_qbo.qbo_address(c.address, c.city, c.postal_code, c.country),
        'Active', coalesce(c.active, true)));
END
$$;

-- FILL: every customer key (sync_all_customers, resync and check-mapping list them here).
CREATE OR REPLACE FUNCTION qbsync_map.customer_keys()
RETURNS SETOF text
LANGUAGE sql STABLE
BEGIN ATOMIC
    -- FILL(customer_keys)
    SELECT c.id::text FROM fill_me.customers c
    UNION
    SELECT 'guest:' || lower(o.email) FROM fill_me.orders o
    WHERE o.customer_id IS NULL AND o.email IS NOT NULL;
    -- END FILL
END;

-- Does the shop know this key (resync refuses keys it does not)? One look-up.
CREATE OR REPLACE FUNCTION qbsync_map.customer_key_exists(key text)
RETURNS boolean
LANGUAGE sql STABLE
RETURN EXISTS (SELECT 1 FROM {{shop}}_qbo.customer_source(key));

-- FILL (optional): write the outcome back onto your row. outcome has realm_id, status
-- (synced, failed, pending, voided, deleted), qbo_id, doc_number, error, attempted_at,
-- synced_at. Without columns for it, keep NULL: qbsync's own tables keep everything.
CREATE OR REPLACE FUNCTION qbsync_map.customer_outcome(key text, outcome jsonb)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    -- FILL(customer_outcome)
    NULL;  -- e.g. UPDATE fill_me.customers SET quickbooks_id = coalesce(outcome->>'qbo_id', quickbooks_id) WHERE id = CASE WHEN key ~ '^[0-9]{1,18}$' THEN key::bigint END;
    -- END FILL
END
$$;

-- @@ track
-- Customers: every change of the fields customer_source reads. (A shop that pushes
-- customers only with their first invoice can add "when" => 'quickbooks_id IS NOT NULL'.)
SELECT qbsync.define_entity('customer', 'Customer', 3, '{30,120,300}', 120);
-- FILL(track_customer): the tables and columns customer_source reads, with the key
SELECT qbsync.track('fill_me.customers', 'customer', 'id',
    columns => ARRAY['first_name', 'last_name', 'company', 'email', 'phone', 'address', 'city',
                     'postcode', 'country']);
-- END FILL

-- @@ test
DO $$
DECLARE
    k text;
    b jsonb;
    n int := 0;
BEGIN
    IF to_regprocedure('qbsync_map.customer(text)') IS NULL
       OR to_regprocedure('qbsync_map.customer_keys()') IS NULL
       OR to_regprocedure('qbsync_map.customer_outcome(text,jsonb)') IS NULL THEN
        RAISE EXCEPTION 'customer: qbsync_map.customer(text), customer_keys() or customer_outcome(text, jsonb) is missing';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM qbsync.entities WHERE entity = 'customer' AND qbo_type = 'Customer') THEN
        RAISE EXCEPTION 'customer: not registered (track.sql: qbsync.define_entity)';
    END IF;
    FOR k IN SELECT x FROM qbsync_map.customer_keys() AS x LIMIT 5 LOOP
        IF NOT qbsync_map.customer_key_exists(k) THEN
            RAISE EXCEPTION 'customer %: listed by customer_keys() but customer_key_exists() says no', k;
        END IF;
        b := qbsync_map.customer(k);
        CONTINUE WHEN b IS NULL;
        IF jsonb_typeof(b) <> 'object' OR coalesce(b->>'DisplayName', '') = ''
           OR b->>'DisplayName' ~ '[:\t\n\r]' OR {{shop}}_qbo.qbo_length(b->>'DisplayName') > 500 THEN
            RAISE EXCEPTION 'customer %: DisplayName missing, too long or with : TAB newline: %', k, b;
        END IF;
        n := n + 1;
        RAISE NOTICE 'customer %: %', k, b;
    END LOOP;
    RAISE NOTICE 'customer: % bodies look right', n;
END
$$;
