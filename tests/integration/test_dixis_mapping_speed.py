"""The Dixis mapping functions after their speed-up give exactly the bodies (and the QB001
refusals) of the original definitions, kept below as a reference under schema dixis_ref:
on generated orders, on awkward text, and on bad data with the shop's constraints dropped.

The reference is the mapping as it was before the speed-up (helpers called per line and per
field, SET search_path on invoice_lines, one query per check); only the names changed:
qbsync_map.* and the dixis.qbo_* / invoice_lines / order_keeps_invoice helpers live in
dixis_ref. No timing is asserted here (see the benchmarks)."""

# ruff: noqa: E501  (the reference SQL below is kept as it was written)
from __future__ import annotations

import psycopg

from qbsync import shop

ENTITIES = ("order", "customer", "product", "payment", "refund")

# Outcome of one call as text: the body exactly as PostgreSQL prints it (so 1.50 <> 1.5),
# '<null>', or the error's SQLSTATE and message.
OUTCOME = """
CREATE FUNCTION dixis_ref.outcome(impl text, entity text, key text)
RETURNS text
LANGUAGE plpgsql
AS $$
DECLARE
    b jsonb;
BEGIN
    EXECUTE format('SELECT %I.%I($1)', impl, entity) INTO b USING key;
    RETURN coalesce(b::text, '<null>');
EXCEPTION WHEN others THEN
    RETURN 'ERROR ' || SQLSTATE || ': ' || SQLERRM;
END
$$;
"""

# Keys that are not in any _keys() list: malformed, unknown, gone.
ODD_KEYS = ["", "abc", "-1", "1.5", "0", "999999999", "1234567890123456789", "guest:",
            "guest:nobody@example.gr", "fee:shipping", "fee:cod", "fee:discount", "fee:refund",
            "fee:bogus", " 1", "1 "]


def load_reference(conn: psycopg.Connection) -> None:
    conn.execute("CREATE SCHEMA dixis_ref")
    conn.execute(REFERENCE)
    conn.execute(OUTCOME)


def differences(conn: psycopg.Connection, *, limit: int = 20) -> tuple[int, list[tuple]]:
    """(calls compared, the first differences) over every key of every entity."""
    conn.execute("CREATE TEMP TABLE cmp_keys (entity text, key text)")
    for entity in ENTITIES:
        conn.execute(f"INSERT INTO cmp_keys SELECT %s, k FROM qbsync_map.{entity}_keys() k",
                     (entity,))  # type: ignore[arg-type]
        conn.execute("INSERT INTO cmp_keys SELECT %s, unnest(%s::text[])", (entity, ODD_KEYS))
    # refunds of deleted rows, orders' ids as customers, etc.
    conn.execute("INSERT INTO cmp_keys SELECT 'refund', (max(id) + 1)::text FROM dixis.refunds")
    conn.execute("INSERT INTO cmp_keys SELECT 'payment', id::text FROM dixis.orders "
                 "WHERE paid_at IS NULL")
    rows = conn.execute("""
        SELECT entity, key, new, old
        FROM (SELECT entity, key, dixis_ref.outcome('qbsync_map', entity, key) AS new,
                     dixis_ref.outcome('dixis_ref', entity, key) AS old
              FROM (SELECT DISTINCT entity, key FROM cmp_keys) k) c
        ORDER BY entity, key
    """).fetchall()
    diff = [r for r in rows if r[2] != r[3]]
    conn.execute("DROP TABLE cmp_keys")
    return len(rows), diff[:limit]


def test_same_bodies_as_the_reference_on_generated_orders(dixis_db: psycopg.Connection) -> None:
    conn = dixis_db
    shop.generate(conn, 400, seed=0.17)
    load_reference(conn)
    compared, diff = differences(conn)
    assert not diff, diff
    assert compared > 1000
    bodies = conn.execute(
        "SELECT count(*) FILTER (WHERE b IS NOT NULL AND b ? 'Line'), "
        "       count(*) FILTER (WHERE jsonb_array_length(b->'Line') > 3) "
        "FROM (SELECT qbsync_map.\"order\"(id::text) AS b FROM dixis.orders) o").fetchone()
    assert bodies is not None
    assert bodies[0] > 300
    assert bodies[1] > 50
    coupons = conn.execute("SELECT count(*) FROM dixis.orders WHERE discount > 0").fetchone()
    assert coupons is not None
    assert coupons[0] > 5


# Mutations of generated rows once the shop's CHECK and FOREIGN KEY constraints are gone:
# every branch of the checks, and text that needs cleaning.
MUTATIONS = [
    # awkward text
    "UPDATE dixis.order_items SET product_name = E'Λάδι:\\t1L\\n\\r  extra  ' WHERE id % 23 = 1",
    "UPDATE dixis.order_items SET product_name = repeat('Μέλι 🍯 ', 700) WHERE id % 97 = 2",
    "UPDATE dixis.order_items SET product_name = E' \\t\\n ' WHERE id % 211 = 3",
    "UPDATE dixis.order_items SET product_name = '' WHERE id % 223 = 4",
    "UPDATE dixis.orders SET billing_address = E'Ερμού 12\\nΔιαμ. 3', billing_city = E'\\tΑθήνα '"
    " WHERE id % 7 = 1",
    "UPDATE dixis.orders SET billing_address = NULL, billing_city = NULL WHERE id % 11 = 2",
    "UPDATE dixis.orders SET billing_address = repeat('Ο', 600), billing_postcode = repeat('1', 40)"
    " WHERE id % 13 = 3",
    "UPDATE dixis.orders SET billing_email = ' bad@@example ' WHERE id % 17 = 4",
    "UPDATE dixis.orders SET billing_email = NULL WHERE id % 19 = 5 AND customer_id IS NULL",
    "UPDATE dixis.orders SET billing_first_name = E' \\t', billing_last_name = NULL"
    " WHERE id % 29 = 6 AND customer_id IS NULL",
    "UPDATE dixis.orders SET coupon_code = E'  ΚΑΛΟΚΑΙΡΙ:10\\t' WHERE discount > 0 AND id % 2 = 0",
    "UPDATE dixis.orders SET payment_reference = repeat('R', 30) WHERE id % 31 = 7",
    "UPDATE dixis.orders SET payment_reference = '  ' WHERE id % 37 = 8",
    "UPDATE dixis.customers SET first_name = E'Γιώργος:\\tΝίκος', last_name = '🙂🙂'"
    " WHERE id % 5 = 1",
    "UPDATE dixis.customers SET first_name = ' ', last_name = E'\\t' WHERE id % 41 = 2",
    "UPDATE dixis.customers SET company_name = E'Α.Ε.\\nΒ', vat_number = '123456789',"
    " phone = repeat('6', 40) WHERE id % 9 = 3",
    "UPDATE dixis.products SET name = E'Ελιές: Καλαμών\\t500g', description = NULL"
    " WHERE id % 6 = 1",
    "UPDATE dixis.products SET name = repeat('Φέτα 🧀 ', 30) WHERE id % 10 = 2",
    "UPDATE dixis.products SET name = E'\\n', description = E'\\t' WHERE id % 47 = 3",
    "UPDATE dixis.products SET price = 'NaN' WHERE id % 53 = 4",
    "UPDATE dixis.products SET price = -1 WHERE id % 59 = 5",
    # bad amounts on orders
    "UPDATE dixis.orders SET shipping_fee = 'NaN' WHERE id % 61 = 9",
    "UPDATE dixis.orders SET shipping_fee = -2 WHERE id % 67 = 10",
    "UPDATE dixis.orders SET payment_fee = -1 WHERE id % 71 = 11",
    "UPDATE dixis.orders SET discount = -1 WHERE id % 73 = 12",
    "UPDATE dixis.orders SET total = -5 WHERE id % 79 = 13",
    "UPDATE dixis.orders SET discount = subtotal + 1 WHERE id % 83 = 14",
    "UPDATE dixis.orders SET total = total + 0.01 WHERE id % 89 = 15",
    "UPDATE dixis.orders SET subtotal = subtotal + 1, total = total + 1 WHERE id % 101 = 16",
    "UPDATE dixis.orders SET customer_id = 99999999 WHERE id % 103 = 17"
    " AND customer_id IS NOT NULL",
    "UPDATE dixis.orders SET customer_id = NULL, billing_email = ' ' WHERE id % 107 = 18",
    # bad lines
    "UPDATE dixis.order_items SET product_id = NULL WHERE id % 109 = 19",
    "UPDATE dixis.order_items SET product_id = 99999999 WHERE id % 113 = 20",
    "UPDATE dixis.order_items SET quantity = 'NaN' WHERE id % 127 = 21",
    "UPDATE dixis.order_items SET quantity = 0 WHERE id % 131 = 22",
    "UPDATE dixis.order_items SET unit_price = -1 WHERE id % 137 = 23",
    "UPDATE dixis.order_items SET discount = -1 WHERE id % 139 = 24",
    "UPDATE dixis.order_items SET discount = line_total + 100 WHERE id % 149 = 25",
    "UPDATE dixis.order_items SET line_total = line_total + 1 WHERE id % 151 = 26",
    "DELETE FROM dixis.order_items WHERE order_id % 157 = 27",
    "UPDATE dixis.products SET category_id = 9999 WHERE id % 163 = 28",
    # payments and refunds
    "UPDATE dixis.orders SET amount_paid = NULL WHERE id % 167 = 29 AND paid_at IS NOT NULL",
    "UPDATE dixis.orders SET paid_at = NULL WHERE id % 173 = 30 AND amount_paid IS NOT NULL",
    "UPDATE dixis.orders SET amount_paid = total + 1 WHERE id % 179 = 31 AND paid_at IS NOT NULL",
    "UPDATE dixis.orders SET amount_paid = 'NaN' WHERE id % 181 = 32 AND paid_at IS NOT NULL",
    "UPDATE dixis.orders SET amount_paid = 0 WHERE id % 191 = 33 AND paid_at IS NOT NULL",
    "UPDATE dixis.orders SET payment_method = 'crypto' WHERE id % 193 = 34",
    "UPDATE dixis.refunds SET amount = 'NaN' WHERE id % 7 = 1",
    "UPDATE dixis.refunds SET amount = -1 WHERE id % 7 = 2",
    "UPDATE dixis.refunds SET method = 'gold' WHERE id % 7 = 3",
    "UPDATE dixis.refunds SET reason = E'σπασμένο\\tβάζο\\n', reference = repeat('X', 25)"
    " WHERE id % 5 = 4",
    # statuses
    "UPDATE dixis.orders SET status = 'cancelled' WHERE id % 43 = 35",
    "UPDATE dixis.orders SET status = 'refunded', completed_at = NULL WHERE id % 47 = 36",
]


def test_same_bodies_and_refusals_on_awkward_and_bad_data(dixis_db: psycopg.Connection) -> None:
    conn = dixis_db
    shop.generate(conn, 300, seed=-0.61)
    conn.execute("""
        DO $$ DECLARE c record; BEGIN
          FOR c IN SELECT conrelid::regclass AS tbl, conname FROM pg_constraint
                   WHERE contype IN ('c', 'f') AND connamespace = 'dixis'::regnamespace
          LOOP EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', c.tbl, c.conname); END LOOP;
        END $$""")
    conn.execute("SET session_replication_role = replica")  # no triggers (refund checks)
    for mutation in MUTATIONS:
        conn.execute(mutation)  # type: ignore[arg-type]
    # full refunds (the invoice's own lines) next to partial ones
    conn.execute("UPDATE dixis.refunds r SET amount = o.total FROM dixis.orders o "
                 "WHERE o.id = r.order_id AND r.id % 3 = 0")
    # an order of more lines than QuickBooks takes
    conn.execute("""
        INSERT INTO dixis.order_items (order_id, product_id, product_name, quantity, unit_price,
                                       vat_rate, discount, line_total)
        SELECT o.id, i.product_id, i.product_name, 1, 0, i.vat_rate, 0, 0
        FROM (SELECT min(id) AS id FROM dixis.orders WHERE status = 'completed') o
        CROSS JOIN LATERAL (SELECT * FROM dixis.order_items WHERE order_id = o.id LIMIT 1) i
        CROSS JOIN generate_series(1, 760)""")
    conn.execute("SET session_replication_role = origin")
    load_reference(conn)
    compared, diff = differences(conn)
    assert not diff, diff
    assert compared > 800
    outcomes = conn.execute("""
        SELECT count(*) FILTER (WHERE v LIKE 'ERROR QB001%'), count(*) FILTER (WHERE v LIKE '{%')
        FROM (SELECT dixis_ref.outcome('qbsync_map', 'order', id::text) AS v
              FROM dixis.orders) o""").fetchone()
    assert outcomes is not None
    assert outcomes[0] > 30, outcomes
    assert outcomes[1] > 100, outcomes


def test_the_hot_helpers_are_inlined(dixis_db: psycopg.Connection) -> None:
    """A SQL helper that stops being inlined is called through the SQL-function executor,
    which costs more than the rest of the mapping: invoice_lines, qbo_sales_line,
    qbo_tax_code, qbo_text and qbo_bill_addr must not show up as calls."""
    conn = dixis_db
    shop.generate(conn, 60, seed=0.3)
    conn.commit()
    conn.execute("SET track_functions = 'all'")
    conn.execute('SELECT count(qbsync_map."order"(id::text)), '
                 "count(qbsync_map.payment(id::text)) FROM dixis.orders")
    conn.execute("SELECT count(qbsync_map.refund(id::text)) FROM dixis.refunds")
    conn.commit()
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.commit()
    conn.execute("SELECT pg_stat_clear_snapshot()")
    calls = dict(conn.execute(
        "SELECT funcname, calls FROM pg_stat_user_functions WHERE schemaname = 'dixis'"
    ).fetchall())
    assert calls.get("qbo_invoice_lines_json", 0) > 0, calls  # the stats are there
    # a few calls are the planner folding constant arguments (qbo_text('Μεταφορικά', 4000)),
    # once per plan; a helper that is not inlined is called once per row or more
    for helper in ("invoice_lines", "qbo_sales_line", "qbo_tax_code", "qbo_text",
                   "qbo_bill_addr", "qbo_email", "order_keeps_invoice"):
        assert calls.get(helper, 0) <= 5, (helper, calls)


REFERENCE = r"""
CREATE OR REPLACE FUNCTION dixis_ref.qbo_length(s text)
RETURNS int
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN char_length(s) + char_length(s) - char_length(regexp_replace(s, '[\U00010000-\U0010FFFF]', '', 'g'));

CREATE OR REPLACE FUNCTION dixis_ref.qbo_clip(s text, n int)
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
    WHILE dixis_ref.qbo_length(r) > n LOOP    -- only when emoji are in the way
        r := left(r, char_length(r) - 1);
    END LOOP;
    RETURN CASE WHEN r = s THEN r ELSE rtrim(r) END;
END
$$;

CREATE OR REPLACE FUNCTION dixis_ref.qbo_name(s text, n int)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN nullif(dixis_ref.qbo_clip(btrim(regexp_replace(regexp_replace(replace(s, ':', '-'),
                                                                 '[[:cntrl:]]', ' ', 'g'),
                                                  '\s+', ' ', 'g')), n), '');

CREATE OR REPLACE FUNCTION dixis_ref.qbo_text(s text, n int)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN nullif(dixis_ref.qbo_clip(btrim(regexp_replace(s, '[\t\r\n]+', ' ', 'g')), n), '');

CREATE OR REPLACE FUNCTION dixis_ref.qbo_email(s text)
RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN CASE WHEN btrim(s) ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$' AND char_length(btrim(s)) <= 100
            THEN btrim(s) END;

CREATE OR REPLACE FUNCTION dixis_ref.qbo_tax_code(vat_rate numeric)
RETURNS jsonb
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
RETURN jsonb_build_object('$setting', 'tax_code:' || trim_scale(vat_rate)::text);

CREATE OR REPLACE FUNCTION dixis_ref.qbo_bill_addr(line1 text, city text, postcode text, country text)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN nullif(jsonb_strip_nulls(jsonb_build_object(
           'Line1', dixis_ref.qbo_text(line1, 500),
           'City', dixis_ref.qbo_text(city, 255),
           'PostalCode', dixis_ref.qbo_text(postcode, 30),
           'Country', CASE WHEN dixis_ref.qbo_text(line1, 500) IS NOT NULL
                             OR dixis_ref.qbo_text(city, 255) IS NOT NULL
                           THEN dixis_ref.qbo_text(country, 255) END)), '{}');

CREATE OR REPLACE FUNCTION dixis_ref.qbo_refuse(message text)
RETURNS void
LANGUAGE plpgsql
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'QB001', MESSAGE = message;
END
$$;

CREATE OR REPLACE FUNCTION dixis_ref.customer(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
        v_suffix := ' (' || coalesce(dixis_ref.qbo_name(lower(v_email), 200), 'guest') || ')';
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
        PERFORM dixis_ref.qbo_refuse(format('customer %s: the key is neither a customer id nor guest:<email>', key));
    END IF;

    v_full := dixis_ref.qbo_name(concat_ws(' ', v_first, v_last), 500);
    IF v_full IS NULL THEN
        PERFORM dixis_ref.qbo_refuse(format('customer %s: empty name (first and last name are blank)', key));
    END IF;

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'DisplayName', dixis_ref.qbo_clip(v_full, 500 - dixis_ref.qbo_length(v_suffix)) || v_suffix,
        'GivenName', dixis_ref.qbo_name(v_first, 100),
        'FamilyName', dixis_ref.qbo_name(v_last, 100),
        'CompanyName', dixis_ref.qbo_text(v_company, 100),
        'PrimaryEmailAddr', CASE WHEN dixis_ref.qbo_email(v_email) IS NOT NULL
                                 THEN jsonb_build_object('Address', dixis_ref.qbo_email(v_email)) END,
        'PrimaryPhone', CASE WHEN dixis_ref.qbo_text(v_phone, 30) IS NOT NULL
                             THEN jsonb_build_object('FreeFormNumber', dixis_ref.qbo_text(v_phone, 30)) END,
        'BillAddr', dixis_ref.qbo_bill_addr(v_addr, v_city, v_postcode, v_country),
        'Notes', CASE WHEN v_guest THEN 'Πελάτης χωρίς λογαριασμό (guest) στο Dixis'
                      WHEN v_afm IS NOT NULL THEN 'ΑΦΜ: ' || v_afm END,
        'Active', true
    ));
END
$$;

CREATE OR REPLACE FUNCTION dixis_ref.product(key text)
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
                   'SalesTaxCodeRef', dixis_ref.qbo_tax_code(24),
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
            PERFORM dixis_ref.qbo_refuse(format(
                'product %s: unknown fee item (known: fee:shipping, fee:cod, fee:discount, fee:refund)', key));
        END IF;
        RETURN v_body;
    END IF;
    IF key !~ '^[0-9]{1,18}$' THEN
        PERFORM dixis_ref.qbo_refuse(format('product %s: the key is not a product id', key));
    END IF;

    SELECT pr.*, coalesce(pr.vat_rate, c.vat_rate) AS effective_vat
    INTO p
    FROM dixis.products pr JOIN dixis.categories c ON c.id = pr.category_id
    WHERE pr.id = key::bigint;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF p.price = 'NaN' OR p.price < 0 THEN
        PERFORM dixis_ref.qbo_refuse(format('product %s: invalid price %s', key, p.price));
    END IF;
    v_suffix := ' (' || coalesce(dixis_ref.qbo_name(p.sku, 60), '#' || key) || ')';
    v_name := dixis_ref.qbo_name(p.name, 100 - dixis_ref.qbo_length(v_suffix));
    IF v_name IS NULL THEN
        PERFORM dixis_ref.qbo_refuse(format('product %s: empty name', key));
    END IF;

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'Type', 'NonInventory',
        'Name', v_name || v_suffix,
        'Sku', dixis_ref.qbo_text(p.sku, 100),
        'Description', coalesce(dixis_ref.qbo_text(p.description, 4000), dixis_ref.qbo_text(p.name, 4000)),
        'UnitPrice', p.price,
        'Taxable', p.effective_vat > 0,
        'SalesTaxIncluded', true,
        'SalesTaxCodeRef', dixis_ref.qbo_tax_code(p.effective_vat),
        'IncomeAccountRef', jsonb_build_object('$setting', 'income_account'),
        'Active', p.active));
END
$$;

CREATE OR REPLACE FUNCTION dixis_ref.qbo_order_customer(o dixis.orders, label text)
RETURNS text
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF o.customer_id IS NOT NULL THEN
        IF NOT EXISTS (SELECT 1 FROM dixis.customers c WHERE c.id = o.customer_id) THEN
            PERFORM dixis_ref.qbo_refuse(format('%s: customer %s does not exist', label, o.customer_id));
        END IF;
        RETURN o.customer_id::text;
    ELSIF btrim(o.billing_email) <> '' THEN
        IF dixis_ref.qbo_name(concat_ws(' ', o.billing_first_name, o.billing_last_name), 500) IS NULL THEN
            PERFORM dixis_ref.qbo_refuse(format('%s: the guest has an empty name', label));
        END IF;
        RETURN 'guest:' || lower(o.billing_email);
    END IF;
    PERFORM dixis_ref.qbo_refuse(format(
        '%s: no customer: customer_id is NULL (account deleted?) and there is no billing e-mail to file it under a guest', label));
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION dixis_ref.invoice_lines(o dixis.orders)
RETURNS TABLE (num bigint, item text, descr text, qty numeric, price numeric, amount numeric,
               vat numeric)
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
    ORDER BY sort
$$;

CREATE OR REPLACE FUNCTION dixis_ref.qbo_sales_line(num bigint, item text, descr text, qty numeric,
                                                price numeric, amount numeric, vat numeric)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN jsonb_build_object(
    'LineNum', num,
    'DetailType', 'SalesItemLineDetail',
    'Amount', amount,
    'Description', dixis_ref.qbo_text(descr, 4000),
    'SalesItemLineDetail', jsonb_build_object(
        'ItemRef', jsonb_build_object('$ref', jsonb_build_array('product', item)),
        'Qty', trim_scale(qty),
        'UnitPrice', price,
        'TaxCodeRef', dixis_ref.qbo_tax_code(vat)));

CREATE OR REPLACE FUNCTION dixis_ref.order_keeps_invoice(o dixis.orders)
RETURNS boolean
LANGUAGE sql IMMUTABLE
RETURN o.completed_at IS NOT NULL
       AND (o.status = 'completed'
            OR (o.status IN ('cancelled', 'refunded') AND o.paid_at IS NOT NULL));

CREATE OR REPLACE FUNCTION dixis_ref."order"(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o dixis.orders;
    v_ref text;               -- what the message calls the order: order 123 (DX-2026-000123)
    v_customer text;
    v_bad text;
    v_lines jsonb;
    v_sum numeric;
    v_count int;
BEGIN
    IF key !~ '^[0-9]{1,18}$' THEN
        PERFORM dixis_ref.qbo_refuse(format('order %s: the key is not an order id', key));
    END IF;
    SELECT * INTO o FROM dixis.orders WHERE id = key::bigint;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    v_ref := format('order %s (%s)', key, dixis.order_number(o.id, o.created_at));

    IF o.status IN ('cancelled', 'refunded') AND NOT dixis_ref.order_keeps_invoice(o) THEN
        -- ended without a payment (or before delivery): void the invoice if there is one
        -- (the daemon does nothing when there is none)
        RETURN jsonb_build_object('$op', 'void', 'DocNumber', dixis.order_number(o.id, o.created_at));
    ELSIF NOT dixis_ref.order_keeps_invoice(o) THEN
        RETURN NULL;                           -- not invoiced before delivery
    END IF;
    -- completed, or cancelled/refunded after payment: the invoice stays as it was billed

    -- Who is billed: the account, else the guest filed under the order's e-mail.
    v_customer := dixis_ref.qbo_order_customer(o, v_ref);

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
        PERFORM dixis_ref.qbo_refuse(v_ref || ': ' || v_bad);
    END IF;

    IF NOT EXISTS (SELECT 1 FROM dixis.order_items i WHERE i.order_id = o.id) THEN
        PERFORM dixis_ref.qbo_refuse(v_ref || ': the order has no lines');
    END IF;

    -- The first bad line, if any.
    SELECT format('line %s (%s): %s', l.n, coalesce(nullif(btrim(l.product_name), ''), '?'), l.why)
    INTO v_bad
    FROM (
        SELECT row_number() OVER (ORDER BY i.id) AS n, i.product_name,
               CASE WHEN i.product_id IS NULL THEN 'no product (deleted from the catalogue?)'
                    WHEN p.id IS NULL THEN format('product %s does not exist', i.product_id)
                    WHEN i.quantity = 'NaN' OR i.unit_price = 'NaN' OR i.discount = 'NaN'
                         OR i.line_total = 'NaN' THEN 'an amount is NaN'
                    WHEN i.quantity <= 0 THEN format('quantity %s is not positive', i.quantity)
                    WHEN i.unit_price < 0 THEN format('negative unit price %s', i.unit_price)
                    WHEN i.discount < 0 THEN format('negative discount %s', i.discount)
                    WHEN i.discount > round(i.quantity * i.unit_price, 2)
                        THEN format('discount %s exceeds the line amount %s', i.discount,
                                    round(i.quantity * i.unit_price, 2))
                    WHEN i.line_total <> round(i.quantity * i.unit_price, 2) - i.discount
                        THEN format('line total %s <> round(%s x %s, 2) - discount %s',
                                    i.line_total, i.quantity, i.unit_price, i.discount)
                    WHEN dixis_ref.qbo_text(i.product_name, 4000) IS NULL THEN 'empty product name'
               END AS why
        FROM dixis.order_items i
        LEFT JOIN dixis.products p ON p.id = i.product_id
        WHERE i.order_id = o.id
    ) l
    WHERE l.why IS NOT NULL
    ORDER BY l.n
    LIMIT 1;
    IF v_bad IS NOT NULL THEN
        PERFORM dixis_ref.qbo_refuse(v_ref || ': ' || v_bad);
    END IF;

    SELECT jsonb_agg(dixis_ref.qbo_sales_line(l.num, l.item, l.descr, l.qty, l.price, l.amount, l.vat)
                     ORDER BY l.num),
           sum(l.amount), count(*)
    INTO v_lines, v_sum, v_count
    FROM dixis_ref.invoice_lines(o) l;

    IF v_count > 750 THEN
        PERFORM dixis_ref.qbo_refuse(format('%s: %s invoice lines, QuickBooks takes at most 750', v_ref, v_count));
    END IF;
    IF v_sum <> o.total THEN
        PERFORM dixis_ref.qbo_refuse(format('%s: the lines add up to %s but the order total is %s (subtotal %s <> sum of its lines?)',
                                        v_ref, v_sum, o.total, o.subtotal));
    END IF;

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array('customer', v_customer)),
        'DocNumber', dixis.order_number(o.id, o.created_at),
        'TxnDate', to_char(coalesce(o.completed_at, o.created_at) AT TIME ZONE 'Europe/Athens', 'YYYY-MM-DD'),
        'GlobalTaxCalculation', 'TaxInclusive',
        'Line', v_lines,
        'BillEmail', CASE WHEN dixis_ref.qbo_email(o.billing_email) IS NOT NULL
                          THEN jsonb_build_object('Address', dixis_ref.qbo_email(o.billing_email)) END,
        'BillAddr', dixis_ref.qbo_bill_addr(o.billing_address, o.billing_city, o.billing_postcode,
                                        o.billing_country),
        'PrivateNote', format('Dixis order id %s (%s), payment: %s', o.id,
                              dixis.order_number(o.id, o.created_at), o.payment_method)
    ));
END
$$;

CREATE OR REPLACE FUNCTION dixis_ref.payment(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    o dixis.orders;
    v_number text;
    v_label text;
    v_bad text;
BEGIN
    IF key !~ '^[0-9]{1,18}$' THEN
        PERFORM dixis_ref.qbo_refuse(format('payment %s: the key is not an order id', key));
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
    IF NOT dixis_ref.order_keeps_invoice(o) THEN
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
        PERFORM dixis_ref.qbo_refuse(v_label || ': ' || v_bad);
    END IF;

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array(
            'customer', dixis_ref.qbo_order_customer(o, v_label))),
        'TotalAmt', o.amount_paid,
        'TxnDate', to_char(o.paid_at AT TIME ZONE 'Europe/Athens', 'YYYY-MM-DD'),
        'Line', jsonb_build_array(jsonb_build_object(
            'Amount', o.amount_paid,
            'LinkedTxn', jsonb_build_array(jsonb_build_object(
                'TxnId', jsonb_build_object('$id', jsonb_build_array('order', key)),
                'TxnType', 'Invoice')))),
        -- QBO keeps 21 characters: the reference when it fits, else the order number
        -- (the full reference is in the note either way)
        'PaymentRefNum', coalesce(CASE WHEN dixis_ref.qbo_length(btrim(o.payment_reference)) <= 21
                                       THEN nullif(btrim(o.payment_reference), '') END,
                                  v_number),
        'PaymentMethodRef', jsonb_build_object('$setting', 'payment_method:' || o.payment_method),
        'DepositToAccountRef', jsonb_build_object('$setting', 'deposit_account:' || o.payment_method),
        'PrivateNote', dixis_ref.qbo_text(format('Dixis order %s (id %s), %s payment, reference %s',
                                             v_number, o.id, o.payment_method,
                                             coalesce(nullif(btrim(o.payment_reference), ''), '-')),
                                      4000)
    ));
END
$$;

CREATE OR REPLACE FUNCTION dixis_ref.refund(key text)
RETURNS jsonb
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
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
BEGIN
    IF key !~ '^[0-9]{1,18}$' THEN
        PERFORM dixis_ref.qbo_refuse(format('refund %s: the key is not a refund id', key));
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
    IF NOT dixis_ref.order_keeps_invoice(o) AND o.paid_at IS NOT NULL THEN
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
        PERFORM dixis_ref.qbo_refuse(v_label || ': ' || v_bad);
    END IF;

    -- the order itself must be invoiceable (same checks, named after the refund)
    BEGIN
        PERFORM dixis_ref."order"(o.id::text);
    EXCEPTION WHEN SQLSTATE 'QB001' THEN
        PERFORM dixis_ref.qbo_refuse(v_label || ': ' || SQLERRM);
    END;

    IF r.amount = o.total THEN
        SELECT jsonb_agg(dixis_ref.qbo_sales_line(l.num, l.item, l.descr, l.qty, l.price, l.amount, l.vat)
                         ORDER BY l.num), sum(l.amount)
        INTO v_lines, v_sum
        FROM dixis_ref.invoice_lines(o) l;
    ELSE
        WITH rate AS (
            SELECT l.vat, sum(l.amount) AS base FROM dixis_ref.invoice_lines(o) l GROUP BY l.vat
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
        SELECT jsonb_agg(dixis_ref.qbo_sales_line(p.num, 'fee:refund',
                                              'Επιστροφή χρημάτων (ΦΠΑ ' || trim_scale(p.vat) || '%)',
                                              1, p.amount, p.amount, p.vat)
                         ORDER BY p.num), sum(p.amount)
        INTO v_lines, v_sum
        FROM (SELECT part.*, row_number() OVER (ORDER BY part.vat DESC) AS num
              FROM part WHERE part.amount > 0) p;
    END IF;
    IF v_sum IS DISTINCT FROM r.amount THEN     -- a bug, not bad data: never push it
        PERFORM dixis_ref.qbo_refuse(format('%s: the lines add up to %s, not the refund amount %s',
                                        v_label, coalesce(v_sum::text, 'nothing'), r.amount));
    END IF;

    -- DX-2026-000123-R1 (17 characters) while it fits QBO's 21; beyond 9-digit order ids
    -- the year goes: DX-<id>-R<n> is at most 3 + 13 + 2 + 2 = 20.
    v_doc := v_number || '-R' || r.number;
    IF length(v_doc) > 21 THEN
        v_doc := 'DX-' || o.id || '-R' || r.number;
    END IF;

    RETURN jsonb_strip_nulls(jsonb_build_object(
        'CustomerRef', jsonb_build_object('$ref', jsonb_build_array(
            'customer', dixis_ref.qbo_order_customer(o, v_label))),
        'DocNumber', v_doc,
        'TxnDate', to_char(r.refunded_at AT TIME ZONE 'Europe/Athens', 'YYYY-MM-DD'),
        'GlobalTaxCalculation', 'TaxInclusive',
        'Line', v_lines,
        'PaymentRefNum', CASE WHEN dixis_ref.qbo_length(btrim(r.reference)) <= 21
                              THEN nullif(btrim(r.reference), '') END,
        'PaymentMethodRef', jsonb_build_object('$setting', 'payment_method:' || r.method),
        'DepositToAccountRef', jsonb_build_object('$setting', 'deposit_account:' || r.method),
        'BillEmail', CASE WHEN dixis_ref.qbo_email(o.billing_email) IS NOT NULL
                          THEN jsonb_build_object('Address', dixis_ref.qbo_email(o.billing_email)) END,
        'PrivateNote', dixis_ref.qbo_text(format('Refund of order %s: %s%s', v_number,
                                             coalesce(nullif(btrim(r.reason), ''), '-'),
                                             coalesce(' (reference ' || nullif(btrim(r.reference), '') || ')', '')),
                                      4000)
    ));
END
$$;
"""
