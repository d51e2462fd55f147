"""qbsync.reads: the columns a mapping function reads, for check-mapping's capture rule:
exact for SQL functions (pg_depend, of the function or of a BEGIN ATOMIC copy of a string
body), from the source text for PL/pgSQL, through views and called functions."""

from __future__ import annotations

import psycopg
import pytest

from qbsync.reads import Analyser, Catalog, clean

SHOP = """
CREATE SCHEMA r;
CREATE TABLE r.orders (id bigint PRIMARY KEY, customer_id bigint, status text, total numeric,
                       note text, secret text, billing jsonb);
CREATE TABLE r.lines (id bigint PRIMARY KEY, order_id bigint, sku text, qty numeric,
                      price numeric, unused text);
CREATE TABLE r.customers (id bigint PRIMARY KEY, name text, email text, unused text);
CREATE VIEW r.order_view AS SELECT o.id, o.total FROM r.orders o;
"""


def reads(db: psycopg.Connection, definition: str, signature: str) -> set[str]:
    db.execute(definition)  # type: ignore[arg-type]  # the test's own SQL
    oid = db.execute("SELECT %s::regprocedure::oid", (signature,)).fetchone()
    assert oid is not None
    catalog = Catalog(db)
    found = Analyser(catalog).reads(int(oid[0]))
    return {f"{catalog.relations[rel].name}.{column}" for rel, column in found.columns}


@pytest.fixture
def shop(db: psycopg.Connection) -> psycopg.Connection:
    db.execute(SHOP)  # type: ignore[arg-type]
    return db


def test_sql_standard_body_exact(shop: psycopg.Connection) -> None:
    assert reads(shop, """
        CREATE FUNCTION r.f(key text) RETURNS jsonb LANGUAGE sql STABLE
        RETURN (SELECT jsonb_build_object('t', o.total, 'n', c.name)
                FROM r.orders o JOIN r.customers c ON c.id = o.customer_id
                WHERE o.id = key::bigint)""", "r.f(text)") == {
        "orders.total", "orders.customer_id", "orders.id", "customers.name", "customers.id"}


def test_string_sql_body_compiled_again(shop: psycopg.Connection) -> None:
    """`AS $$ … $$`: PostgreSQL records nothing; a BEGIN ATOMIC copy does. Nothing of the
    copy stays."""
    assert reads(shop, """
        CREATE FUNCTION r.f(key text) RETURNS numeric LANGUAGE sql STABLE
        SET search_path = r, pg_catalog
        AS $$ SELECT sum(qty * price) FROM lines WHERE order_id = key::bigint $$""",
                 "r.f(text)") == {"lines.qty", "lines.price", "lines.order_id"}
    assert shop.execute("SELECT count(*) FROM pg_proc WHERE proname LIKE 'qbsync_check_probe%'"
                        ).fetchone() == (0,)


def test_plpgsql_source(shop: psycopg.Connection) -> None:
    """Aliases, a row variable of a table's type (declared, %ROWTYPE, SELECT * INTO, FOR …
    IN SELECT), a row parameter, unqualified columns of a table named without alias,
    to_jsonb of a whole row; comments and strings are no columns."""
    shop.execute("""
        CREATE FUNCTION r.line_sum(o r.orders) RETURNS numeric LANGUAGE sql STABLE
        RETURN o.total""")
    assert reads(shop, """
        CREATE FUNCTION r.f(key text) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
        DECLARE
            o r.orders;
            c r.customers%ROWTYPE;
            l record;
            v numeric := 0;
        BEGIN
            -- o.secret is not read: a comment
            SELECT * INTO o FROM r.orders WHERE id = key::bigint;
            SELECT * INTO c FROM r.customers WHERE id = o.customer_id;
            FOR l IN SELECT * FROM r.lines WHERE order_id = o.id LOOP
                v := v + l.qty;
            END LOOP;
            RETURN jsonb_build_object('note', 'o.secret', 'email', c.email, 'v', v,
                                      'sum', r.line_sum(o), 'billing', o.billing);
        END $$""", "r.f(text)") == {
        "orders.id", "orders.customer_id", "orders.billing", "orders.total",
        "customers.id", "customers.email", "lines.order_id", "lines.qty"}
    assert reads(shop, """
        CREATE FUNCTION r.g(key text) RETURNS jsonb LANGUAGE plpgsql STABLE AS $$
        DECLARE
            c record;
        BEGIN
            SELECT cu.* INTO c FROM r.customers cu WHERE cu.id = key::bigint;
            RETURN to_jsonb(c);
        END $$""", "r.g(text)") == {
        "customers.id", "customers.name", "customers.email", "customers.unused"}


def test_views_and_dynamic_sql(shop: psycopg.Connection) -> None:
    """A view stands for the columns under it; EXECUTE is reported, not guessed."""
    assert reads(shop, """
        CREATE FUNCTION r.f(key text) RETURNS numeric LANGUAGE sql STABLE
        RETURN (SELECT v.total FROM r.order_view v WHERE v.id = key::bigint)""",
                 "r.f(text)") == {"orders.id", "orders.total"}
    shop.execute("""
        CREATE FUNCTION r.g(key text) RETURNS text LANGUAGE plpgsql STABLE AS $$
        DECLARE v text;
        BEGIN
            EXECUTE 'SELECT note FROM r.orders WHERE id = $1' INTO v USING key::bigint;
            RETURN v;
        END $$""")
    oid = shop.execute("SELECT 'r.g(text)'::regprocedure::oid").fetchone()
    assert oid is not None
    found = Analyser(Catalog(shop)).reads(int(oid[0]))
    assert found.columns == set()
    assert found.notes == ["r.g runs dynamic SQL (EXECUTE): what it reads there is not analysed"]


def test_clean_drops_comments_and_strings() -> None:
    text, dynamic = clean("SELECT a -- b.c\n, 'x.y''z' /* d.e */, $q$f.g$q$, E'\\'h.i', j")
    assert text == "SELECT a \n, '' , '', E'', j"
    assert dynamic is False
    assert clean("EXECUTE format('SELECT 1')")[1] is True
