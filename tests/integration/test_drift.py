"""Drift: changes an accountant makes directly in QuickBooks (the emulator's UI helpers)
show up in qbsync.drift with what changed, harmless ones do not, and each resolves both ways:
push (the shop's version goes back) or accept (QuickBooks' version is recorded)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from qbsync import drift
from qbsync.daemon import Daemon
from tests.daemon_support import (
    Shop,
    drained,
    eventually,
    running,
)
from tests.integration import dixis_helpers as dx
from tests.integration.test_after_invoice import TOTAL, d, new_order, products


def open_drift(conn: psycopg.Connection) -> list[dict[str, Any]]:
    conn.commit()
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM qbsync.drift ORDER BY entity, key").fetchall()


def resolve(conn: psycopg.Connection, drift_id: int, action: str) -> str:
    row = conn.execute("SELECT qbsync.resolve_drift(%s, %s)", (drift_id, action)).fetchone()
    conn.commit()
    assert row is not None
    return str(row[0])


def mapped(conn: psycopg.Connection, entity: str, key: int | str) -> dict[str, Any] | None:
    conn.commit()
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute("SELECT * FROM qbsync.entity_map WHERE entity = %s AND key = %s",
                           (entity, str(key))).fetchone()


def column(conn: psycopg.Connection, query: str, *args: Any) -> Any:
    conn.commit()
    row = conn.execute(query, args).fetchone()  # type: ignore[arg-type]
    return None if row is None else row[0]


async def poll(daemon: Daemon, shop: Shop) -> int:
    return await drift.poll(daemon.pool, daemon.client, shop.realm_id)


def invoiced(shop: Shop, dixis_db: psycopg.Connection, *, paid: bool = False) -> int:
    order_id = new_order(dixis_db, products(dixis_db))
    if paid:
        dx.pay(dixis_db, order_id)
    dixis_db.commit()
    return order_id


def invoice_id(conn: psycopg.Connection, order_id: int) -> str:
    return str(column(conn, "SELECT quickbooks_invoice_id FROM dixis.orders WHERE id = %s",
                      order_id))


def cut_first_line(shop: Shop, qbo_id: str) -> dict[str, Any]:
    """The accountant changes the first line to one bottle instead of two."""
    invoice = shop.emu.get_entity(shop.realm_id, "Invoice", qbo_id)
    assert invoice is not None
    lines = [line for line in invoice["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    first = lines[0]
    detail = first["SalesItemLineDetail"]
    detail["Qty"] = 1
    first["Amount"] = float(d(detail["UnitPrice"]))
    return shop.emu.edit_entity(shop.realm_id, "Invoice", qbo_id, {"Line": lines})


async def test_payments_move_sync_tokens_without_drift(shop: Shop,
                                                       dixis_db: psycopg.Connection) -> None:
    order_id = invoiced(shop, dixis_db)
    async with running(shop) as daemon:
        await drained(shop.url)
        token_before = mapped(dixis_db, "order", order_id)
        dx.pay(dixis_db, order_id)
        dixis_db.commit()
        await drained(shop.url)
        invoice = shop.emu.get_entity(shop.realm_id, "Invoice", invoice_id(dixis_db, order_id))
        assert invoice is not None
        assert d(invoice["Balance"]) == 0
        assert token_before is not None
        assert invoice["SyncToken"] != token_before["sync_token"]
        assert await poll(daemon, shop) == 0
        assert open_drift(dixis_db) == []
        # the new SyncToken is taken in quietly, for the next sparse update
        after = mapped(dixis_db, "order", order_id)
        assert after is not None
        assert after["sync_token"] == invoice["SyncToken"]
        assert await poll(daemon, shop) == 0


async def test_edited_invoice_is_drift_and_push_restores_the_shop_version(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    order_id = invoiced(shop, dixis_db)
    async with running(shop) as daemon:
        await drained(shop.url)
        qbo_id = invoice_id(dixis_db, order_id)
        edited = cut_first_line(shop, qbo_id)
        assert d(edited["TotalAmt"]) == TOTAL - Decimal("12.90")
        assert await poll(daemon, shop) == 1
        [found] = open_drift(dixis_db)
        assert (found["entity"], found["key"], found["qbo_type"], found["qbo_id"],
                found["change"]) == ("order", str(order_id), "Invoice", qbo_id, "updated")
        assert set(found["fields"]) == {"TotalAmt", "Lines"}
        assert d(found["fields"]["TotalAmt"]["qbsync"]) == TOTAL
        assert d(found["fields"]["TotalAmt"]["quickbooks"]) == TOTAL - Decimal("12.90")
        assert "TotalAmt: 55.3 → 42.4" in found["what_changed"]
        # seen again: still one open drift
        assert await poll(daemon, shop) == 0
        assert resolve(dixis_db, found["id"], "push") == "pushed"
        await drained(shop.url)
        restored = shop.emu.get_entity(shop.realm_id, "Invoice", qbo_id)
        assert restored is not None
        assert d(restored["TotalAmt"]) == TOTAL
        assert open_drift(dixis_db) == []
        assert await poll(daemon, shop) == 0  # our own write is not drift
    assert len(shop.invoices()) == 1
    assert column(dixis_db, "SELECT resolution FROM qbsync.drift_log WHERE id = %s",
                  found["id"]) == "pushed"


async def test_accepted_edit_is_recorded_and_not_pushed(shop: Shop,
                                                        dixis_db: psycopg.Connection) -> None:
    order_id = invoiced(shop, dixis_db)
    async with running(shop) as daemon:
        await drained(shop.url)
        qbo_id = invoice_id(dixis_db, order_id)
        edited = cut_first_line(shop, qbo_id)
        assert await poll(daemon, shop) == 1
        [found] = open_drift(dixis_db)
        assert resolve(dixis_db, found["id"], "accept") == "accepted"
        assert column(dixis_db, "SELECT count(*) FROM qbsync.outbox") == 0
        assert column(dixis_db, "SELECT count(*) FROM qbsync.changes") == 0
        entry = mapped(dixis_db, "order", order_id)
        assert entry is not None
        assert entry["sync_token"] == edited["SyncToken"]
        assert d(entry["digest"]["TotalAmt"]) == d(edited["TotalAmt"])
        assert open_drift(dixis_db) == []
        assert await poll(daemon, shop) == 0  # QuickBooks' version is now the reference
        await drained(shop.url)
    current = shop.emu.get_entity(shop.realm_id, "Invoice", qbo_id)
    assert current is not None
    assert d(current["TotalAmt"]) == d(edited["TotalAmt"])
    assert column(dixis_db, "SELECT quickbooks_sync_status FROM dixis.orders WHERE id = %s",
                  order_id) == "synced"
    logged = dixis_db.execute(
        "SELECT operation, status, actor FROM qbsync.integration_logs"
        " WHERE model_type = 'order' AND model_id = %s AND operation LIKE 'drift%%'"
        " ORDER BY id", (str(order_id),)).fetchall()
    assert [(op, status) for op, status, _ in logged] == [("drift", "info"),
                                                          ("drift.accept", "info")]


async def test_voided_invoice_can_only_be_accepted(shop: Shop,
                                                   dixis_db: psycopg.Connection) -> None:
    order_id = invoiced(shop, dixis_db)
    async with running(shop) as daemon:
        await drained(shop.url)
        qbo_id = invoice_id(dixis_db, order_id)
        shop.emu.void_entity(shop.realm_id, "Invoice", qbo_id)
        assert await poll(daemon, shop) == 1
        [found] = open_drift(dixis_db)
        assert found["change"] == "voided"
        with pytest.raises(psycopg.errors.InvalidParameterValue, match="cannot be undone"):
            resolve(dixis_db, found["id"], "push")
        dixis_db.rollback()
        assert resolve(dixis_db, found["id"], "accept") == "accepted"
        assert column(dixis_db, "SELECT count(*) FROM qbsync.outbox") == 0
        assert column(dixis_db, "SELECT count(*) FROM qbsync.changes") == 0
    entry = mapped(dixis_db, "order", order_id)
    assert entry is not None
    assert entry["qbo_status"] == "voided"
    status, _error = dixis_db.execute(
        "SELECT quickbooks_sync_status, quickbooks_sync_error FROM dixis.orders WHERE id = %s",
        (order_id,)).fetchone() or (None, None)
    assert status == "voided"


async def test_deleted_invoice_is_recreated_on_push(shop: Shop,
                                                    dixis_db: psycopg.Connection) -> None:
    order_id = invoiced(shop, dixis_db)
    async with running(shop) as daemon:
        await drained(shop.url)
        qbo_id = invoice_id(dixis_db, order_id)
        shop.emu.delete_entity(shop.realm_id, "Invoice", qbo_id)
        assert shop.invoices() == []
        assert await poll(daemon, shop) == 1
        [found] = open_drift(dixis_db)
        assert (found["change"], found["qbo_id"]) == ("deleted", qbo_id)
        assert resolve(dixis_db, found["id"], "push") == "pushed"
        await drained(shop.url)
        assert await poll(daemon, shop) == 0
    [again] = shop.invoices()
    assert again["Id"] != qbo_id
    assert d(again["TotalAmt"]) == TOTAL
    assert invoice_id(dixis_db, order_id) == again["Id"]
    assert open_drift(dixis_db) == []


async def test_deleted_payment_both_ways(shop: Shop, dixis_db: psycopg.Connection) -> None:
    first = invoiced(shop, dixis_db, paid=True)
    second = invoiced(shop, dixis_db, paid=True)
    async with running(shop) as daemon:
        await drained(shop.url)
        payments = {p["Id"] for p in shop.emu.entities(shop.realm_id, "Payment")}
        assert len(payments) == 2
        ids = {o: column(dixis_db, "SELECT quickbooks_payment_id FROM dixis.orders"
                         " WHERE id = %s", o) for o in (first, second)}
        for payment_id in ids.values():
            shop.emu.delete_entity(shop.realm_id, "Payment", payment_id)
        assert await poll(daemon, shop) == 2  # the invoices' balances moved: not drift
        found = {int(f["key"]): f for f in open_drift(dixis_db)}
        assert set(found) == {first, second}
        assert all((f["entity"], f["change"]) == ("payment", "deleted") for f in found.values())
        resolve(dixis_db, found[first]["id"], "push")
        resolve(dixis_db, found[second]["id"], "accept")
        await drained(shop.url)
        assert await poll(daemon, shop) == 0
    [recreated] = shop.emu.entities(shop.realm_id, "Payment")
    assert recreated["Id"] not in payments
    assert d(recreated["TotalAmt"]) == TOTAL
    assert column(dixis_db, "SELECT quickbooks_payment_id FROM dixis.orders WHERE id = %s",
                  first) == recreated["Id"]
    assert d(shop.emu.get_entity(shop.realm_id, "Invoice",
                                 invoice_id(dixis_db, first))["Balance"]) == 0  # type: ignore[index]
    # accepted: the shop row knows QuickBooks has no payment; nothing was pushed
    assert dixis_db.execute(
        "SELECT quickbooks_payment_id, quickbooks_payment_status FROM dixis.orders"
        " WHERE id = %s", (second,)).fetchone() == (None, "deleted")
    assert d(shop.emu.get_entity(shop.realm_id, "Invoice",
                                 invoice_id(dixis_db, second))["Balance"]) == TOTAL  # type: ignore[index]


async def test_merged_customer_shows_on_the_customer_and_its_invoices(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    goods = products(dixis_db)
    ours, theirs = new_order(dixis_db, goods), new_order(dixis_db, goods)
    dixis_db.commit()
    async with running(shop) as daemon:
        await drained(shop.url)
        gone = mapped(dixis_db, "customer", column(
            dixis_db, "SELECT customer_id FROM dixis.orders WHERE id = %s", ours))
        into = mapped(dixis_db, "customer", column(
            dixis_db, "SELECT customer_id FROM dixis.orders WHERE id = %s", theirs))
        assert gone is not None
        assert into is not None
        shop.emu.merge_customers(shop.realm_id, gone["qbo_id"], into["qbo_id"])
        assert await poll(daemon, shop) == 2
        found = {(f["entity"], f["change"]): f for f in open_drift(dixis_db)}
        assert set(found) == {("customer", "deleted"), ("order", "updated")}
        moved = found[("order", "updated")]
        assert moved["key"] == str(ours)
        assert moved["fields"] == {"CustomerRef": {"qbsync": gone["qbo_id"],
                                                   "quickbooks": into["qbo_id"]}}
        # push both: the customer comes back, its invoice goes back to it
        resolve(dixis_db, found[("customer", "deleted")]["id"], "push")
        await drained(shop.url)
        resolve(dixis_db, moved["id"], "push")
        await drained(shop.url)
        assert await poll(daemon, shop) == 0
    back = mapped(dixis_db, "customer", column(
        dixis_db, "SELECT customer_id FROM dixis.orders WHERE id = %s", ours))
    assert back is not None
    assert back["qbo_id"] not in (gone["qbo_id"], into["qbo_id"])
    invoice = shop.emu.get_entity(shop.realm_id, "Invoice", invoice_id(dixis_db, ours))
    assert invoice is not None
    assert invoice["CustomerRef"]["value"] == back["qbo_id"]
    assert open_drift(dixis_db) == []


async def test_daemon_polls_for_drift_by_itself(shop: Shop, dixis_db: psycopg.Connection
                                                ) -> None:
    order_id = invoiced(shop, dixis_db)
    async with running(shop, drift_interval=0.5):
        await drained(shop.url)
        shop.emu.edit_entity(shop.realm_id, "Invoice", invoice_id(dixis_db, order_id),
                             {"TxnDate": "2026-01-02"})

        async def seen() -> bool:
            return len(open_drift(dixis_db)) == 1
        await eventually(seen, 20, "drift recorded by the daemon")
    [found] = open_drift(dixis_db)
    assert found["fields"]["TxnDate"]["quickbooks"] == "2026-01-02"
    assert json.loads(json.dumps(found["fields"]))  # plain JSON for psql users
