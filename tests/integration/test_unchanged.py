"""Unchanged bodies are not pushed again: a push whose body (references resolved) hashes the
same as the key's last successful push is skipped with no QuickBooks request and logged as
operation 'skip.unchanged', status 'skipped'. Changed bodies, forced rows, voids, a key
whose last try failed and a key changed in QuickBooks outside qbsync are still pushed."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from qbsync import drift
from tests.daemon_support import Shop, drained, running
from tests.integration import dixis_helpers as dx
from tests.integration.test_after_invoice import new_order, products


def logs(conn: psycopg.Connection, entity: str, key: int | str) -> list[tuple[str, str]]:
    conn.commit()
    return [(op, status) for op, status in conn.execute(
        "SELECT operation, status FROM qbsync.integration_logs"
        " WHERE model_type = %s AND model_id = %s ORDER BY id", (entity, str(key))).fetchall()]


def body_hash(conn: psycopg.Connection, entity: str, key: int | str) -> Any:
    conn.commit()
    row = conn.execute("SELECT body_hash FROM qbsync.entity_map WHERE entity = %s AND key = %s",
                       (entity, str(key))).fetchone()
    assert row is not None
    return row[0]


def customer_posts(shop: Shop) -> int:
    """Customer writes that reached QuickBooks (single requests; the tests' rows are too few
    for the batch endpoint unless they ask for it)."""
    return shop.emu.request_count(method="POST", route="/customer")


def customer_of(conn: psycopg.Connection, order_id: int) -> int:
    row = conn.execute("SELECT customer_id FROM dixis.orders WHERE id = %s",
                       (order_id,)).fetchone()
    assert row is not None
    return int(row[0])


def qbo_customer(shop: Shop, conn: psycopg.Connection, customer_id: int) -> dict[str, Any]:
    conn.commit()
    row = conn.execute("SELECT qbo_id FROM qbsync.entity_map WHERE entity = 'customer' "
                       "AND key = %s", (str(customer_id),)).fetchone()
    assert row is not None
    found = shop.emu.get_entity(shop.realm_id, "Customer", row[0])
    assert found is not None
    return found


def resync(conn: psycopg.Connection, entity: str, key: int, *, force: bool = False) -> None:
    conn.execute("SELECT qbsync.resync(%s, %s, %s)", (entity, str(key), force))
    conn.commit()


@pytest.mark.parametrize("batch_threshold", [100_000, 1], ids=["one by one", "batches"])
async def test_dependency_then_own_row_is_skipped_unchanged(
        shop: Shop, dixis_db: psycopg.Connection, batch_threshold: int) -> None:
    """The customer an order pushed as its dependency is not pushed again when its own
    row (queued behind the order) comes up with the same body."""
    goods = products(dixis_db)
    orders = [new_order(dixis_db, goods) for _ in range(3)]
    customers = [customer_of(dixis_db, o) for o in orders]
    dixis_db.commit()
    # the customers' own rows, queued behind their orders (as a change captured right after)
    dixis_db.execute("SELECT qbsync.resync_many('customer', %s)", ([str(c) for c in customers],))
    dixis_db.execute("UPDATE qbsync.outbox SET next_attempt_at = now() + interval '1 second'"
                     " WHERE entity = 'customer'")
    dixis_db.commit()
    async with running(shop, batch_threshold=batch_threshold):
        await drained(shop.url)
    for customer in customers:
        operations = logs(dixis_db, "customer", customer)
        assert operations[-1] == ("skip.unchanged", "skipped"), operations
        assert [s for _, s in operations].count("success") == 1, operations  # the create
        assert body_hash(dixis_db, "customer", customer)
        assert not [op for op, _ in operations if op.startswith("update")], operations
    assert len(shop.customers()) == 3
    message = dixis_db.execute(
        "SELECT error_message FROM qbsync.integration_logs WHERE operation = 'skip.unchanged'"
        " LIMIT 1").fetchone()
    assert message is not None
    assert "unchanged since its last push" in message[0]


async def test_changed_body_is_pushed_and_forced_row_always(shop: Shop,
                                                           dixis_db: psycopg.Connection) -> None:
    order_id = new_order(dixis_db, products(dixis_db))
    dixis_db.commit()
    customer = customer_of(dixis_db, order_id)
    async with running(shop):
        await drained(shop.url)
        first_hash = body_hash(dixis_db, "customer", customer)
        posts = customer_posts(shop)
        # unchanged: skipped, nothing sent
        resync(dixis_db, "customer", customer)
        await drained(shop.url)
        assert logs(dixis_db, "customer", customer)[-1] == ("skip.unchanged", "skipped")
        assert customer_posts(shop) == posts
        # changed: pushed, and the new body's hash kept
        dixis_db.execute("UPDATE dixis.customers SET last_name = 'Νικολάου' WHERE id = %s",
                         (customer,))
        dixis_db.commit()
        await drained(shop.url)
        assert logs(dixis_db, "customer", customer)[-1] == ("update", "success")
        assert customer_posts(shop) == posts + 1
        assert "Νικολάου" in qbo_customer(shop, dixis_db, customer)["DisplayName"]
        second_hash = body_hash(dixis_db, "customer", customer)
        assert second_hash not in (None, first_hash)
        # forced (an admin's resync with force): pushed although unchanged
        resync(dixis_db, "customer", customer, force=True)
        await drained(shop.url)
        assert logs(dixis_db, "customer", customer)[-1] == ("update", "success")
        assert customer_posts(shop) == posts + 2
        assert body_hash(dixis_db, "customer", customer) == second_hash
        # the order itself: unchanged, a forced resync pushes it, an unforced one skips it
        resync(dixis_db, "order", order_id, force=True)
        await drained(shop.url)
        assert logs(dixis_db, "order", order_id)[-1] == ("update", "success")


async def test_a_failed_try_that_reached_quickbooks_is_not_taken_for_unchanged(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """A change whose push QuickBooks applied but whose answer was lost, and whose row then
    went dead: the shop's next version equals the last one recorded as pushed, yet
    QuickBooks holds the lost one, so it must be pushed."""
    order_id = new_order(dixis_db, products(dixis_db))
    dixis_db.commit()
    customer = customer_of(dixis_db, order_id)
    async with running(shop):
        await drained(shop.url)
        original = qbo_customer(shop, dixis_db, customer)["DisplayName"]
        assert body_hash(dixis_db, "customer", customer)
        dixis_db.execute("UPDATE qbsync.entities SET max_attempts = 1 WHERE entity = 'customer'")
        shop.emu.inject_fault("drop", 1, method="POST", entity="customer")  # applied, then cut
        dixis_db.execute("UPDATE dixis.customers SET last_name = 'Νικολάου' WHERE id = %s",
                         (customer,))
        dixis_db.commit()
        await drained(shop.url)
        assert logs(dixis_db, "customer", customer)[-1][1] == "dead"
        assert "Νικολάου" in qbo_customer(shop, dixis_db, customer)["DisplayName"]
        assert body_hash(dixis_db, "customer", customer) is None
        # back to the name qbsync last pushed successfully: pushed, QuickBooks follows
        dixis_db.execute("UPDATE qbsync.entities SET max_attempts = 3 WHERE entity = 'customer'")
        dixis_db.execute("UPDATE dixis.customers SET last_name = 'Παπαδόπουλος' WHERE id = %s",
                         (customer,))
        dixis_db.commit()
        await drained(shop.url)
    assert logs(dixis_db, "customer", customer)[-1] == ("update", "success")
    assert qbo_customer(shop, dixis_db, customer)["DisplayName"] == original
    dixis_db.commit()
    assert dixis_db.execute("SELECT count(*) FROM qbsync.outbox").fetchone() == (0,)


@pytest.mark.parametrize("what", ["drift", "harmless"])
async def test_a_change_in_quickbooks_clears_the_hash(shop: Shop, dixis_db: psycopg.Connection,
                                                      what: str) -> None:
    """After drift detection saw the object changed outside qbsync (a drift, or a change of
    a field drift ignores), an unchanged shop body is pushed again, not skipped."""
    order_id = new_order(dixis_db, products(dixis_db))
    dixis_db.commit()
    customer = customer_of(dixis_db, order_id)
    async with running(shop) as daemon:
        await drained(shop.url)
        ours = qbo_customer(shop, dixis_db, customer)
        changes = ({"DisplayName": "Λογιστής Άλλαξε"} if what == "drift"
                   else {"Notes": "called about the delivery"})
        shop.emu.edit_entity(shop.realm_id, "Customer", ours["Id"], changes)
        found = await drift.poll(daemon.pool, daemon.client, shop.realm_id)
        assert found == (1 if what == "drift" else 0)
        assert body_hash(dixis_db, "customer", customer) is None
        resync(dixis_db, "customer", customer)
        await drained(shop.url)
        assert logs(dixis_db, "customer", customer)[-1] == ("update", "success")
        assert body_hash(dixis_db, "customer", customer)
    assert qbo_customer(shop, dixis_db, customer)["DisplayName"] == ours["DisplayName"]


async def test_resolved_drift_is_pushed(shop: Shop, dixis_db: psycopg.Connection) -> None:
    order_id = new_order(dixis_db, products(dixis_db))
    dixis_db.commit()
    customer = customer_of(dixis_db, order_id)
    async with running(shop) as daemon:
        await drained(shop.url)
        ours = qbo_customer(shop, dixis_db, customer)
        shop.emu.edit_entity(shop.realm_id, "Customer", ours["Id"],
                             {"DisplayName": "Λογιστής Άλλαξε"})
        assert await drift.poll(daemon.pool, daemon.client, shop.realm_id) == 1
        dixis_db.commit()
        [(drift_id,)] = dixis_db.execute("SELECT id FROM qbsync.drift").fetchall()
        dixis_db.execute("SELECT qbsync.resolve_drift(%s, 'push')", (drift_id,))
        dixis_db.commit()
        await drained(shop.url)
    assert logs(dixis_db, "customer", customer)[-1] == ("update", "success")
    assert qbo_customer(shop, dixis_db, customer)["DisplayName"] == ours["DisplayName"]


async def test_void_is_never_skipped_and_clears_the_hash(shop: Shop,
                                                         dixis_db: psycopg.Connection) -> None:
    order_id = new_order(dixis_db, products(dixis_db), method="bank_transfer")
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
        assert body_hash(dixis_db, "order", order_id)
        dixis_db.execute("UPDATE dixis.orders SET status = 'cancelled' WHERE id = %s",
                         (order_id,))
        dixis_db.commit()
        await drained(shop.url)
    assert logs(dixis_db, "order", order_id)[-1] == ("void", "success")
    assert body_hash(dixis_db, "order", order_id) is None
    [invoice] = shop.invoices()
    assert invoice.get("Voided") or "Voided" in (invoice.get("PrivateNote") or "")
    assert (dx.mapped(dixis_db, "order", order_id) or {}).get("$op") == "void"


async def test_batches_sharing_new_customers_create_each_once(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """Concurrent batches whose orders share new customers (a batch waits only for the
    customers another batch is creating, after creating its own): each customer is created
    once, every invoice refers to it, and the customers' own rows are skipped unchanged."""
    oil, wine, _ = products(dixis_db)
    customers = [dx.customer(dixis_db, "Πελάτης", f"Νο{n}") for n in range(12)]
    orders = [dx.order(dixis_db, [(oil, "1", "12.90"), (wine, "1", "15.00")],
                       customer_id=customers[n % len(customers)]) for n in range(120)]
    dixis_db.commit()
    dixis_db.execute("SELECT qbsync.resync_many('customer', %s)", ([str(c) for c in customers],))
    dixis_db.execute("UPDATE qbsync.outbox SET next_attempt_at = now() + interval '2 seconds'"
                     " WHERE entity = 'customer'")
    dixis_db.commit()
    async with running(shop, batch_threshold=1):
        await drained(shop.url)
    assert len(shop.customers()) == len(customers)
    invoices = shop.invoices()
    assert len(invoices) == len(orders)
    dixis_db.commit()
    ids = dict(dixis_db.execute(
        "SELECT key, qbo_id FROM qbsync.entity_map WHERE entity = 'customer'").fetchall())
    assert {i["CustomerRef"]["value"] for i in invoices} == set(ids.values())
    for customer in customers:
        operations = logs(dixis_db, "customer", customer)
        assert [s for _, s in operations].count("success") == 1, operations
        assert operations[-1] == ("skip.unchanged", "skipped"), operations
    assert dixis_db.execute(
        "SELECT operation, status, error_message FROM qbsync.integration_logs"
        " WHERE status IN ('failed', 'retry', 'dead')").fetchall() == []
