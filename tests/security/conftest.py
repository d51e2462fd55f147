"""What the attack tests stand on: the cast of roles of one test, and a small shop whose
schema and tables belong to the shop's own role (the usual Laravel/Django/Rails deployment:
the application's role runs its own migrations), mapped by a DBA in qbsync_map.

Roles are cluster-wide and every parallel test run shares the cluster: each test gets roles
named after the run and the test, dropped after it (with whatever they own in the test's
database, and whatever an attack that worked gave them)."""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import sql

from tests.support import PG_HOST, PG_PORT, url_for

_serial = itertools.count()
RUN_ROLE_PREFIX = f"qbsec{os.getpid()}"   # every role a test of this run makes starts so

# The qbsync group roles an attack may try to join, and the owner role (when it exists).
QBSYNC_ROLES = ("qbsync_reader", "qbsync_admin", "qbsync_daemon", "qbsync_owner")


@dataclass(frozen=True)
class Cast:
    """The roles of one test: `shop` owns the shop's schema and tables; `reader`, `admin`
    and `daemon` are login roles in qbsync_reader, qbsync_admin and qbsync_daemon."""

    dbname: str
    shop: str
    reader: str
    admin: str
    daemon: str

    @property
    def everyone(self) -> tuple[str, ...]:
        return (self.shop, self.reader, self.admin, self.daemon)

    def url(self, role: str) -> str:
        return f"postgresql://{role}@{PG_HOST}:{PG_PORT}/{self.dbname}"

    def connect(self, role: str) -> psycopg.Connection:
        return psycopg.connect(self.url(role), autocommit=True)


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(name)


@contextlib.contextmanager
def cast_in(dbname: str) -> Iterator[Cast]:
    """The roles of one test in database `dbname`, dropped afterwards with whatever they own
    there."""
    prefix = f"{RUN_ROLE_PREFIX}_{next(_serial)}"
    c = Cast(dbname, f"{prefix}_shop", f"{prefix}_reader", f"{prefix}_admin",
             f"{prefix}_daemon")
    with psycopg.connect(url_for("postgres"), autocommit=True) as su:
        for role in c.everyone:
            su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(_ident(role)))
        for role, group in ((c.reader, "qbsync_reader"), (c.admin, "qbsync_admin"),
                            (c.daemon, "qbsync_daemon")):
            su.execute(sql.SQL("GRANT {} TO {}").format(_ident(group), _ident(role)))
    try:
        yield c
    finally:
        with psycopg.connect(url_for(c.dbname), autocommit=True) as su:
            for role in c.everyone:
                su.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(_ident(role)))
        with psycopg.connect(url_for("postgres"), autocommit=True) as su:
            for role in c.everyone:
                su.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(_ident(role)))


@pytest.fixture
def cast(db: psycopg.Connection) -> Iterator[Cast]:
    with cast_in(db.info.dbname) as c:
        yield c


# What the attacker's code records about who ran it (anyone may append), in the shop role's
# schema `shop`.
RAN_AS = """
CREATE TABLE shop.ran_as (who name NOT NULL, superuser boolean NOT NULL);
GRANT USAGE ON SCHEMA shop TO PUBLIC;
GRANT INSERT ON shop.ran_as TO PUBLIC;
"""

# The shop: its tables belong to the shop's role. The DBA (a superuser here) maps it and
# gives each qbsync role what README "Roles" says its members need to read and write there.
SHOP_TABLES = """
CREATE TABLE shop.orders (
    id bigint PRIMARY KEY, status varchar(20) NOT NULL, total numeric(12,2) NOT NULL,
    customer_id bigint, quickbooks_invoice_id text, quickbooks_sync_status text,
    quickbooks_sync_error text);
CREATE TABLE shop.customers (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE shop.products (id bigint PRIMARY KEY, name text NOT NULL, price numeric(12,2));
INSERT INTO shop.customers VALUES (1, 'Ada'), (2, 'Grace');
INSERT INTO shop.products VALUES (1, 'Olive oil', 12.50), (2, 'Honey', 8.00);
INSERT INTO shop.orders (id, status, total, customer_id) VALUES
    (1, 'completed', 12.50, 1), (2, 'completed', 8.00, 2), (3, 'pending', 20.50, 1);
""" + RAN_AS

MAPPING = """
SELECT qbsync.define_entity('order', 'Invoice');
SELECT qbsync.define_entity('customer', 'Customer');
SELECT qbsync.define_entity('product', 'Item');

CREATE FUNCTION qbsync_map."order"(key text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT jsonb_build_object('DocNumber', 'T-' || o.id, 'TotalAmt', o.total,
                                'CustomerRef', jsonb_build_object('$ref', jsonb_build_array(
                                    'customer', o.customer_id::text)))
      FROM shop.orders o WHERE o.id::text = key AND o.status = 'completed' $$;
CREATE FUNCTION qbsync_map.order_keys() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT o.id::text FROM shop.orders o ORDER BY o.id $$;
CREATE FUNCTION qbsync_map.order_key_exists(key text) RETURNS boolean
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT EXISTS (SELECT 1 FROM shop.orders o WHERE o.id::text = key) $$;
CREATE FUNCTION qbsync_map.order_unsynced_count() RETURNS bigint
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*) FROM shop.orders o
      WHERE o.status = 'completed' AND o.quickbooks_invoice_id IS NULL $$;
CREATE FUNCTION qbsync_map.order_outcome(key text, outcome jsonb) RETURNS void
LANGUAGE sql SET search_path = pg_catalog, pg_temp
AS $$ UPDATE shop.orders
      SET quickbooks_sync_status = outcome->>'status',
          quickbooks_invoice_id = coalesce(outcome->>'qbo_id', quickbooks_invoice_id),
          quickbooks_sync_error = outcome->>'error'
      WHERE id::text = key $$;
CREATE FUNCTION qbsync_map.order_revenue(from_date date, to_date date)
RETURNS TABLE (net numeric, gross numeric, orders bigint)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT sum(o.total), sum(o.total), count(*) FROM shop.orders o
      WHERE o.status = 'completed' $$;
CREATE FUNCTION qbsync_map.order_ledger(from_date date, to_date date)
RETURNS TABLE (entity text, key text, doc_number text, txn_date date, amount numeric)
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT 'order', o.id::text, 'T-' || o.id, from_date, o.total FROM shop.orders o
      WHERE o.status = 'completed' $$;
CREATE FUNCTION qbsync_map.customer(key text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT jsonb_build_object('DisplayName', c.name) FROM shop.customers c
      WHERE c.id::text = key $$;
CREATE FUNCTION qbsync_map.customer_keys() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT c.id::text FROM shop.customers c $$;
CREATE FUNCTION qbsync_map.product(key text) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT jsonb_build_object('Name', p.name) FROM shop.products p WHERE p.id::text = key $$;
CREATE FUNCTION qbsync_map.product_keys() RETURNS SETOF text
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$ SELECT p.id::text FROM shop.products p $$;
"""

# The grants README "Roles" lists for each qbsync role, given on the shop's relations.
GRANTS = """
GRANT USAGE ON SCHEMA shop TO {reader}, {admin}, {daemon};
GRANT SELECT ON shop.orders TO {reader};
GRANT SELECT ON shop.orders, shop.customers, shop.products TO {admin}, {daemon};
GRANT UPDATE (quickbooks_invoice_id, quickbooks_sync_status, quickbooks_sync_error)
    ON shop.orders TO {admin}, {daemon};
"""

# The attacker's code: it records who runs it, then tries to make the shop's role a
# superuser and a member of every qbsync role. Every step swallows its own error, so the
# query that ran it goes on as if nothing happened.
EVIL = """
CREATE FUNCTION shop.evil() RETURNS boolean
LANGUAGE plpgsql
AS $evil$
DECLARE
    v_role text;
BEGIN
    BEGIN
        INSERT INTO shop.ran_as
        SELECT current_user, r.rolsuper FROM pg_roles r WHERE r.rolname = current_user;
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    BEGIN
        EXECUTE format('ALTER ROLE %I SUPERUSER', {shop});
    EXCEPTION WHEN OTHERS THEN NULL;
    END;
    FOREACH v_role IN ARRAY ARRAY['qbsync_reader', 'qbsync_admin', 'qbsync_daemon',
                                  'qbsync_owner'] LOOP
        BEGIN
            EXECUTE format('GRANT %I TO %I', v_role, {shop});
        EXCEPTION WHEN OTHERS THEN NULL;
        END;
    END LOOP;
    RETURN true;
END
$evil$;
CREATE FUNCTION shop.evil_trigger() RETURNS trigger
LANGUAGE plpgsql
AS $evil$
BEGIN
    PERFORM shop.evil();
    RETURN NULL;
END
$evil$;
"""


@dataclass(frozen=True)
class Shop:
    cast: Cast

    def as_shop(self, statements: str) -> None:
        """Run statements as the shop's own role (what its web app, or an injection into
        it, can do)."""
        with self.cast.connect(self.cast.shop) as conn:
            conn.execute(statements.encode())

    def swap_for_view(self, table: str) -> None:
        """The shop's role renames its table and puts a view in its place whose WHERE calls
        its own function, with the grants the table had."""
        self.as_shop(f"""
            ALTER TABLE shop.{table} RENAME TO {table}_data;
            CREATE VIEW shop.{table} AS SELECT * FROM shop.{table}_data WHERE shop.evil();
            GRANT SELECT ON shop.{table} TO PUBLIC;
            GRANT UPDATE ON shop.{table} TO {self.cast.admin}, {self.cast.daemon};
        """)

    def ran_as(self) -> list[tuple[str, bool]]:
        with psycopg.connect(url_for(self.cast.dbname)) as su:
            return [(str(w), bool(s)) for w, s in
                    su.execute("SELECT DISTINCT who, superuser FROM shop.ran_as ORDER BY 1")]


@pytest.fixture
def shop(cast: Cast) -> Shop:
    with psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
        su.execute(sql.SQL("CREATE SCHEMA shop AUTHORIZATION {}").format(_ident(cast.shop)))
        s = Shop(cast)
        s.as_shop(SHOP_TABLES + EVIL.replace("{shop}", sql.quote(cast.shop)))
        su.execute(MAPPING.encode())
        su.execute(GRANTS.format(reader=cast.reader, admin=cast.admin,
                                 daemon=cast.daemon).encode())
    return s


def privileges(cast: Cast) -> dict[str, tuple[bool, list[str]]]:
    """role -> (superuser, the qbsync roles it belongs to), for every role of the cast."""
    with psycopg.connect(url_for(cast.dbname)) as su:
        out: dict[str, tuple[bool, list[str]]] = {}
        for role in cast.everyone:
            row = su.execute(
                "SELECT r.rolsuper OR r.rolcreaterole OR r.rolbypassrls,"
                " ARRAY(SELECT g FROM unnest(%s::text[]) AS g"
                "       WHERE to_regrole(g) IS NOT NULL AND pg_has_role(r.oid, g, 'MEMBER')"
                "       ORDER BY g)"
                " FROM pg_roles r WHERE r.rolname = %s", (list(QBSYNC_ROLES), role)).fetchone()
            assert row is not None
            out[role] = (bool(row[0]), list(row[1]))
    return out


def expected_privileges(cast: Cast) -> dict[str, tuple[bool, list[str]]]:
    return {cast.shop: (False, []), cast.reader: (False, ["qbsync_reader"]),
            cast.admin: (False, ["qbsync_admin"]), cast.daemon: (False, ["qbsync_daemon"])}
