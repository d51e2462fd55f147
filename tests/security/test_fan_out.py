"""A shop's fan-out triggers (one row standing for many keys: Dixis' order_refunds_changed
and category_vat_changed, Medusa's product_changed) run as the role that writes the row.

They read the shop's tables. The shop's own role owns those tables (Medusa's migrations
create them; so do Laravel's, Django's, Rails'), so it can put a view in a table's place
whose WHERE calls its own function, then fire the trigger: the function runs with the
trigger function's rights. A SECURITY DEFINER trigger function owned by the installing
superuser made that role a superuser. Here the attack is tried through each sample
trigger: nobody gains anything, the code runs as the shop's role, and the fan-out still
queues its keys, through the change view its writers may append to
(qbsync.allow_enqueue)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import errors, sql

from qbsync import shop as shops
from tests.integration import dixis_helpers as dx
from tests.security.conftest import (
    EVIL,
    RAN_AS,
    Cast,
    cast_in,
    expected_privileges,
    privileges,
)
from tests.support import url_for


@dataclass(frozen=True)
class OwnedShop:
    """A sample shop whose schema and tables belong to `cast.shop`, with the ids the
    attacks use."""

    cast: Cast
    name: str
    ids: dict[str, str]

    def as_shop(self, statements: str) -> None:
        with self.cast.connect(self.cast.shop) as conn:
            conn.execute(statements.encode())

    def superuser(self) -> psycopg.Connection:
        return psycopg.connect(url_for(self.cast.dbname), autocommit=True)


def _dixis_rows(su: psycopg.Connection) -> dict[str, str]:
    """A product of a category's rate already in QuickBooks, and a paid order not delivered
    yet with a refund recorded."""
    product = dx.product(su, vat=13)
    su.execute("UPDATE dixis.products SET quickbooks_item_id = '8' WHERE id = %s", (product,))
    order = dx.order(su, [(product, "1", "12.90")], customer_id=dx.customer(su),
                     status="pending")
    dx.pay(su, order)
    refund = dx.refund(su, order, "5.00")
    category = su.execute("SELECT category_id FROM dixis.products WHERE id = %s",
                          (product,)).fetchone()
    assert category
    return {"product": str(product), "order": str(order), "refund": str(refund),
            "category": str(category[0])}


def _medusa_rows(su: psycopg.Connection) -> dict[str, str]:
    """A product with a variant already in QuickBooks."""
    shops.generate(su, 3, seed=0.3, name="medusa")
    row = su.execute("SELECT id, product_id FROM medusa.product_variant ORDER BY id LIMIT 1"
                     ).fetchone()
    assert row
    su.execute("SELECT qbsync_map.product_outcome(%s, '{\"status\": \"synced\","
               " \"qbo_id\": \"8\"}')", (row[0],))
    return {"variant": row[0], "product": row[1]}


# The shop role's schema, its tables (their sequences follow), and its own schema `shop`
# for the attacker's code.
HAND_OVER = """
DO $$
DECLARE
    r record;
BEGIN
    EXECUTE format('ALTER SCHEMA %I OWNER TO %I', {schema}, {role});
    FOR r IN SELECT c.oid::regclass AS rel FROM pg_class c
             WHERE c.relnamespace = {schema}::regnamespace AND c.relkind IN ('r', 'p') LOOP
        EXECUTE format('ALTER TABLE %s OWNER TO %I', r.rel, {role});
    END LOOP;
    EXECUTE format('CREATE SCHEMA shop AUTHORIZATION %I', {role});
END
$$;
"""


@pytest.fixture
def owned(request: pytest.FixtureRequest) -> Iterator[OwnedShop]:
    """The sample shop `request.param` installed by the DBA (a superuser), its tables then
    handed to the shop's role, as an application that runs its own migrations has them;
    nothing queued."""
    conn: psycopg.Connection = request.getfixturevalue(f"{request.param}_db")
    conn.commit()
    with cast_in(conn.info.dbname) as cast, \
            psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
        ids = _dixis_rows(su) if request.param == "dixis" else _medusa_rows(su)
        su.execute(HAND_OVER.replace("{schema}", sql.quote(request.param))
                   .replace("{role}", sql.quote(cast.shop)).encode())
        su.execute("DELETE FROM qbsync.changes; DELETE FROM qbsync.outbox")
        owned = OwnedShop(cast, request.param, ids)
        owned.as_shop(RAN_AS + EVIL.replace("{shop}", sql.quote(cast.shop)))
        yield owned


# (shop, the table the trigger function reads, the shop's write that fires the trigger,
# the entity and the id of the key it queues)
ATTACKS = [
    pytest.param("dixis", "refunds",
                 "UPDATE dixis.orders SET status = 'completed', completed_at = now()"
                 " WHERE id = {order}", ("refund", "refund"), id="dixis-order_refunds_changed"),
    pytest.param("dixis", "products",
                 "UPDATE dixis.categories SET vat_rate = 6 WHERE id = {category}",
                 ("product", "product"), id="dixis-category_vat_changed"),
    pytest.param("medusa", "product_variant",
                 "UPDATE medusa.product SET title = title || ' (new)' WHERE id = '{product}'",
                 ("product", "variant"), id="medusa-product_changed"),
]


@pytest.mark.parametrize(("owned", "table", "fire", "queues"), ATTACKS, indirect=["owned"])
def test_a_table_swapped_under_a_fan_out_trigger(owned: OwnedShop, table: str, fire: str,
                                                 queues: tuple[str, str]) -> None:
    entity, key = queues
    owned.as_shop(f"""
        ALTER TABLE {owned.name}.{table} RENAME TO {table}_data;
        CREATE VIEW {owned.name}.{table} AS
            SELECT * FROM {owned.name}.{table}_data WHERE shop.evil();
        GRANT SELECT ON {owned.name}.{table} TO PUBLIC;
    """)
    owned.as_shop(fire.format(**owned.ids))

    cast = owned.cast
    assert privileges(cast) == expected_privileges(cast)
    with owned.superuser() as su:
        ran_as = su.execute("SELECT DISTINCT who::text, superuser FROM shop.ran_as").fetchall()
        su.execute("SELECT qbsync.collect_changes()")
        queued = su.execute("SELECT key FROM qbsync.outbox WHERE entity = %s",
                            (entity,)).fetchall()
    assert ran_as == [(cast.shop, False)]
    assert queued == [(owned.ids[key],)]


def test_a_writer_of_the_fan_out_table_alone_may_append(dixis_db: psycopg.Connection) -> None:
    """A role that may write dixis.categories, and no table tracked for products, appends
    the category's products as itself (qbsync.allow_enqueue counts it among the product's
    writers); a role that only reads the table may not. Without allow_enqueue the writer
    may not append them either, and its write fails."""
    p = dx.product(dixis_db, vat=13)
    dixis_db.execute("UPDATE dixis.products SET quickbooks_item_id = '8' WHERE id = %s", (p,))
    dixis_db.execute("DELETE FROM qbsync.changes")
    dixis_db.commit()
    with cast_in(dixis_db.info.dbname) as cast, \
            psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
        editor, reader = cast.shop, cast.reader
        su.execute(sql.SQL("GRANT USAGE ON SCHEMA dixis TO {e}, {r};"
                           " GRANT SELECT ON dixis.categories, dixis.products TO {e}, {r};"
                           " GRANT UPDATE (vat_rate) ON dixis.categories TO {e}").format(
            e=sql.Identifier(editor), r=sql.Identifier(reader)))
        may_append = ("SELECT has_column_privilege(%s, 'qbsync_capture.changes_product',"
                      " 'key', 'INSERT')")
        assert su.execute(may_append, (editor,)).fetchone() == (True,)
        assert su.execute(may_append, (reader,)).fetchone() == (False,)
        change = "UPDATE dixis.categories SET vat_rate = {} WHERE slug = 'vat-13'"
        with cast.connect(editor) as conn:
            conn.execute(change.format(6).encode())
        su.execute("SELECT qbsync.collect_changes()")
        assert su.execute("SELECT entity, key FROM qbsync.outbox").fetchall() \
            == [("product", str(p))]

        assert su.execute("SELECT qbsync.disallow_enqueue('dixis.categories', 'product')"
                          ).fetchone() == (True,)
        assert su.execute(may_append, (editor,)).fetchone() == (False,)
        with cast.connect(editor) as conn, pytest.raises(errors.InsufficientPrivilege):
            conn.execute(change.format(13).encode())
        assert su.execute("SELECT qbsync.allow_enqueue('dixis.categories', 'product')"
                          ).fetchone() == (True,)
        assert su.execute(may_append, (editor,)).fetchone() == (True,)
        assert privileges(cast) == expected_privileges(cast)
