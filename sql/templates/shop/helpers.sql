-- {{shop}}: helpers of the qbsync mapping (schema {{shop}}_qbo), written by `qbsync shop new`.
-- Nothing to fill here. Schema qbsync_map holds only the functions of qbsync's mapping
-- contract; what they share lives here. SQL-standard bodies (RETURN ...): bound when
-- created, so no search_path matters, and inlined into their callers.

CREATE SCHEMA IF NOT EXISTS {{shop}}_qbo;
CREATE SCHEMA IF NOT EXISTS qbsync_map;   -- made by `qbsync migrate`

-- QuickBooks counts lengths in UTF-16 units: a character outside the BMP (an emoji) counts 2.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.qbo_length(s text) RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN char_length(s) + char_length(s) - char_length(regexp_replace(s, '[\U00010000-\U0010FFFF]', '', 'g'));

-- At most n UTF-16 units, never splitting a character; trailing blanks dropped.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.qbo_clip(s text, n int) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    r text;
BEGIN
    IF octet_length(s) <= n THEN          -- UTF-8 never has fewer bytes than UTF-16 units
        RETURN s;
    END IF;
    r := left(s, n);
    WHILE {{shop}}_qbo.qbo_length(r) > n LOOP
        r := left(r, char_length(r) - 1);
    END LOOP;
    RETURN rtrim(r);
END
$$;

-- A name QuickBooks takes (DisplayName, GivenName, Item Name ...): no ':' (made '-'), no TAB,
-- newline or other control character (made a space), blanks collapsed, clipped to n;
-- NULL when nothing is left.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.qbo_name(s text, n int) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN nullif({{shop}}_qbo.qbo_clip(btrim(regexp_replace(regexp_replace(replace(s, ':', '-'),
                                                                        '[[:cntrl:]]', ' ', 'g'),
                                                         '\s+', ' ', 'g')), n), '');

-- Free text (descriptions, addresses, notes): TAB / CR / LF made blanks, clipped to n.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.qbo_text(s text, n int) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN nullif({{shop}}_qbo.qbo_clip(btrim(regexp_replace(s, '[\t\r\n]+', ' ', 'g')), n), '');

-- An e-mail address QuickBooks takes ('@', a dot after it, at most 100), else NULL: a bad
-- address is left out rather than failing the whole customer or invoice.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.qbo_email(s text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN btrim(s) ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND char_length(btrim(s)) <= 100
            THEN btrim(s) END;

-- A billing address, or NULL when there is none.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.qbo_address(line1 text, city text, postal_code text,
                                                    country text) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN nullif(jsonb_strip_nulls(jsonb_build_object(
           'Line1', {{shop}}_qbo.qbo_text(line1, 500),
           'City', {{shop}}_qbo.qbo_text(city, 255),
           'PostalCode', {{shop}}_qbo.qbo_text(postal_code, 30),
           'Country', {{shop}}_qbo.qbo_text(country, 255))), '{}');

-- The tax code of a line or an item, as a per-company setting ({"$setting": name}) that
-- the daemon looks up in the connected QuickBooks company.
-- VAT: tax_code:<rate> (the code whose rates add up to it: tax_code:24, tax_code:6.5).
-- US: tax_code:TAX or tax_code:NON (QuickBooks computes the sales tax itself).
CREATE OR REPLACE FUNCTION {{shop}}_qbo.tax_code(rate numeric, taxable boolean) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN CASE WHEN rate IS NOT NULL THEN jsonb_build_object('$setting', 'tax_code:' || trim_scale(rate)) END;  --@vat
RETURN jsonb_build_object('$setting', CASE WHEN coalesce(taxable, rate > 0, false) THEN 'tax_code:TAX' ELSE 'tax_code:NON' END);  --@us

-- One invoice or refund line. Amount = round(Qty x UnitPrice, 2), which QuickBooks checks
-- (error 6070); a discount is a line of its own with a negative price, so that every line
-- keeps that equality. ItemRef names a product key: the daemon pushes the item first when
-- QuickBooks does not have it yet ({"$ref": ["product", key]} becomes {"value": "<Id>"}).
CREATE OR REPLACE FUNCTION {{shop}}_qbo.sales_line(item_key text, description text, qty numeric,
                                                   unit_price numeric, tax_rate numeric,
                                                   taxable boolean) RETURNS jsonb
LANGUAGE sql STABLE PARALLEL SAFE
RETURN jsonb_strip_nulls(jsonb_build_object(
    'DetailType', 'SalesItemLineDetail',
    'Amount', round(qty * unit_price, 2),
    'Description', {{shop}}_qbo.qbo_text(description, 4000),
    'SalesItemLineDetail', jsonb_build_object(
        'ItemRef', jsonb_build_object('$ref', jsonb_build_array('product', item_key)),
        'Qty', trim_scale(qty),
        'UnitPrice', unit_price,
        'TaxCodeRef', {{shop}}_qbo.tax_code(tax_rate, taxable))));

-- The one way the mapping reports a row it cannot map: SQLSTATE QB001, the row goes dead at
-- once with this message (no retry can fix the data). Name the key and the reason.
CREATE OR REPLACE FUNCTION {{shop}}_qbo.refuse(message text) RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'QB001', MESSAGE = message;
END
$$;
