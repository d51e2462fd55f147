"""The daemon's behaviour end to end (in-process daemon, in-process emulator): invoice
content, updates, voids, retries under injected faults, dead rows, events, exactly once."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import asyncpg
import psycopg
import pytest

from qbsync.daemon import run as daemon_run
from qbsync.emulator import Emulator
from tests.daemon_support import (
    Shop,
    connect_shop,
    drained,
    eventually,
    running,
)
from tests.integration import dixis_helpers as dx
from tests.support import INVOICED, conn_url


def one_order(conn: psycopg.Connection, **kw: Any) -> int:
    oil = dx.product(conn, "Ελαιόλαδο Κορωνέικη 1L", "12.90", vat=13)
    honey = dx.product(conn, "Μέλι Θυμαρίσιο 450g", "9.50", vat=13, vat_override=24)
    rusk = dx.product(conn, "Παξιμάδια Κρίθινα", "3.20", vat=6)
    who = dx.customer(conn, "Μαρία", "Κωνσταντινίδου", email="maria@example.gr")
    order_id = dx.order(conn, [(oil, "2", "12.90"), (honey, "1", "9.50"), (rusk, "3", "3.20")],
                        customer_id=who, shipping="4.90", payment_fee="2.00", **kw)
    conn.commit()
    return order_id


def order_row(conn: psycopg.Connection, order_id: int) -> tuple[Any, ...]:
    row = conn.execute(
        "SELECT quickbooks_invoice_id, quickbooks_sync_status, quickbooks_sync_error, total, "
        "dixis.order_number(id, created_at) FROM dixis.orders WHERE id = %s",
        (order_id,)).fetchone()
    assert row is not None
    return tuple(row)


def logs(conn: psycopg.Connection, key: str, entity: str = "order") -> list[tuple[Any, ...]]:
    conn.commit()
    return [tuple(r) for r in conn.execute(
        "SELECT operation, status, error_code, error_message, attempt FROM "
        "qbsync.integration_logs WHERE model_type = %s AND model_id = %s ORDER BY id",
        (entity, key)).fetchall()]


async def test_invoice_has_customer_lines_vat_and_total(shop: Shop,
                                                        dixis_db: psycopg.Connection) -> None:
    order_id = one_order(dixis_db)
    async with running(shop):
        await drained(shop.url)
    invoice_id, status, error, total, number = order_row(dixis_db, order_id)
    assert (status, error) == ("synced", None)
    [invoice] = shop.invoices()
    assert invoice["Id"] == invoice_id
    assert invoice["DocNumber"] == number
    assert Decimal(str(invoice["TotalAmt"])) == total == Decimal("51.80")
    [customer] = shop.customers()
    assert invoice["CustomerRef"]["value"] == customer["Id"]
    assert customer["PrimaryEmailAddr"]["Address"] == "maria@example.gr"
    assert "Μαρία Κωνσταντινίδου" in customer["DisplayName"]
    items = {i["Id"]: i for i in shop.items()}
    sold = [line for line in invoice["Line"] if line["DetailType"] == "SalesItemLineDetail"]
    names = [items[line["SalesItemLineDetail"]["ItemRef"]["value"]]["Name"] for line in sold]
    assert any(n.startswith("Ελαιόλαδο Κορωνέικη") for n in names)
    assert any(n.startswith("Μεταφορικά") for n in names)
    # VAT per line from the realm's tax codes: 13 % oil, 24 % honey (override), 6 % rusks.
    codes = {c["Id"]: c["Name"] for c in shop.emu.entities(shop.realm_id, "TaxCode")}
    line_codes = [codes[line["SalesItemLineDetail"]["TaxCodeRef"]["value"]] for line in sold]
    assert line_codes[:3] == ["ΦΠΑ 13%", "ΦΠΑ 24%", "ΦΠΑ 6%"]
    # Tax inclusive: 25.80·13/113 + (9.50 + 4.90 + 2.00)·24/124 + 9.60·6/106, per code.
    tax = Decimal(str(invoice["TxnTaxDetail"]["TotalTax"]))
    assert tax == Decimal("2.97") + Decimal("3.17") + Decimal("0.54")
    # dependencies were recorded once each, the order last
    dixis_db.commit()
    mapped = dict(dixis_db.execute(
        "SELECT entity, count(*) FROM qbsync.entity_map GROUP BY 1").fetchall())
    assert mapped == {"order": 1, "customer": 1, "product": 5}


async def test_edits_flow_as_sparse_updates(shop: Shop, dixis_db: psycopg.Connection) -> None:
    order_id = one_order(dixis_db)
    async with running(shop):
        await drained(shop.url)
        [invoice] = shop.invoices()
        customer_id = dixis_db.execute(
            "SELECT customer_id FROM dixis.orders WHERE id = %s", (order_id,)).fetchone()
        assert customer_id
        dixis_db.execute("UPDATE dixis.customers SET last_name = 'Κωνσταντίνου' WHERE id = %s",
                         customer_id)
        dixis_db.execute("UPDATE dixis.products SET price = 13.40 WHERE name LIKE 'Ελαιόλαδο%'")
        # a completed order's line changes: the invoice is replaced line by line
        dixis_db.execute(
            "UPDATE dixis.order_items SET quantity = 1, line_total = unit_price "
            "WHERE order_id = %s AND product_name LIKE 'Ελαιόλαδο%%'", (order_id,))
        dixis_db.execute(
            "UPDATE dixis.orders SET subtotal = subtotal - 12.90, total = total - 12.90 "
            "WHERE id = %s", (order_id,))
        dixis_db.commit()
        await drained(shop.url)
    [updated] = shop.invoices()
    assert updated["Id"] == invoice["Id"]
    assert int(updated["SyncToken"]) == int(invoice["SyncToken"]) + 1
    assert Decimal(str(updated["TotalAmt"])) == Decimal("38.90")
    [customer] = shop.customers()
    assert "Κωνσταντίνου" in customer["DisplayName"]
    oil = next(i for i in shop.items() if i["Name"].startswith("Ελαιόλαδο"))
    assert Decimal(str(oil["UnitPrice"])) == Decimal("13.40")
    assert order_row(dixis_db, order_id)[1] == "synced"


async def test_cancelled_after_invoicing_voids(shop: Shop, dixis_db: psycopg.Connection) -> None:
    order_id = one_order(dixis_db)
    async with running(shop):
        await drained(shop.url)
        dixis_db.execute("UPDATE dixis.orders SET status = 'cancelled' WHERE id = %s",
                         (order_id,))
        dixis_db.commit()
        await drained(shop.url)
    [invoice] = shop.invoices()
    # voided as QuickBooks shows it: zeroed, "Voided" before the note
    assert str(invoice.get("PrivateNote")).startswith("Voided")
    assert Decimal(str(invoice["TotalAmt"])) == 0
    assert order_row(dixis_db, order_id)[1] == "voided"


async def test_transient_faults_retry_and_throttles_burn_no_try(
    shop: Shop, dixis_db: psycopg.Connection
) -> None:
    emu = shop.emu
    emu.inject_fault("500", 1, method="POST", entity="invoice")
    emu.inject_fault("429", 3, method="POST", entity="invoice")
    emu.inject_fault("503", 1, method="POST", entity="invoice")
    emu.inject_fault("401", 1, method="POST", entity="invoice")
    order_id = one_order(dixis_db)
    async with running(shop) as daemon:
        await drained(shop.url)
        refreshes = daemon.tokens.refreshes
    assert order_row(dixis_db, order_id)[1] == "synced"
    assert len(shop.invoices()) == 1
    history = logs(dixis_db, str(order_id))
    retries = [(code, attempt) for op, status, code, _, attempt in history if status == "retry"]
    # two transient faults burnt tries 1 and 2; the three 429s burnt nothing
    assert sorted(c for c, _ in retries) == sorted(["10000", "10000", "3001", "3001", "3001"])
    assert history[-1][:2] == ("create", "success")
    assert history[-1][4] == 3
    assert refreshes == 1  # the 401 refreshed the token once and the same request went on


async def test_unknown_outcome_never_creates_twice(shop: Shop,
                                                   dixis_db: psycopg.Connection) -> None:
    # QuickBooks applies the create, then the connection drops before the answer.
    shop.emu.inject_fault("drop", 1, method="POST", entity="invoice")
    order_id = one_order(dixis_db)
    async with running(shop):
        await drained(shop.url)
    assert len(shop.invoices()) == 1
    assert order_row(dixis_db, order_id)[:2] == (shop.invoices()[0]["Id"], "synced")
    operations = [(op, status) for op, status, *_ in logs(dixis_db, str(order_id))]
    assert operations[0] == ("create", "retry")
    assert operations[-1][1] == "success"


async def test_bad_row_goes_dead_and_others_flow(shop: Shop,
                                                 dixis_db: psycopg.Connection) -> None:
    good = one_order(dixis_db)
    oil = dx.product(dixis_db, "Ελαιόλαδο", "12.90")
    bad = dx.order(dixis_db, [(oil, "1", "12.90")], customer_id=None, guest={
        "billing_first_name": "Νίκος", "billing_last_name": "Αλεξίου"})  # no e-mail at all
    dixis_db.commit()
    listener = await asyncpg.connect(shop.url)
    events: list[dict[str, Any]] = []
    await listener.add_listener("qbsync_events", lambda *a: events.append(json.loads(a[3])))
    try:
        async with running(shop):
            await drained(shop.url)
            await eventually(lambda: asyncio.sleep(0, len(events) >= 2), 10, "events")
    finally:
        await listener.close()
    assert order_row(dixis_db, good)[1] == "synced"
    _, status, error, _, _ = order_row(dixis_db, bad)
    assert status == "failed"
    assert f"order {bad}" in error
    dead = dixis_db.execute(
        "SELECT key, state, last_error, last_error_code FROM qbsync.outbox").fetchall()
    assert [(k, s, c) for k, s, _, c in dead] == [(str(bad), "dead", "QB001")]
    synced = next(e for e in events if e["event"] == "order.synced.quickbooks")
    assert synced["order_id"] == str(good)
    assert synced["order_number"] == order_row(dixis_db, good)[4]
    assert synced["quickbooks_invoice_id"] == order_row(dixis_db, good)[0]
    assert Decimal(str(synced["total_amount"])) == Decimal("51.80")
    assert {"invoice_number", "synced_at", "message"} <= synced.keys()
    critical = next(e for e in events if e["event"] == "sync.failed.critical")
    assert critical["key"] == str(bad)
    assert critical["code"] == "QB001"


async def test_resync_of_invoiced_order_is_skipped_unless_forced(
    shop: Shop, dixis_db: psycopg.Connection
) -> None:
    order_id = one_order(dixis_db)
    async with running(shop):
        await drained(shop.url)
        dixis_db.execute("SELECT qbsync.enqueue('order', %s, false, 'resync')", (str(order_id),))
        dixis_db.commit()
        await drained(shop.url)
        assert logs(dixis_db, str(order_id))[-1][1] == "skipped"
        dixis_db.execute("SELECT qbsync.enqueue('order', %s, true, 'resync')", (str(order_id),))
        dixis_db.commit()
        await drained(shop.url)
    assert logs(dixis_db, str(order_id))[-1][:2] == ("update", "success")
    assert len(shop.invoices()) == 1


async def test_same_person_is_adopted_other_person_disambiguated(
    shop: Shop, dixis_db: psycopg.Connection
) -> None:
    order_id = one_order(dixis_db)
    expected = dx.mapped(dixis_db, "customer", dixis_db.execute(
        "SELECT customer_id FROM dixis.orders WHERE id = %s", (order_id,)).fetchone()[0])
    assert expected
    # An accountant already created this customer by hand (same e-mail), and another
    # customer with the very same display name exists too (different e-mail).
    other_name = "Νίκος Αλεξίου (#999)"
    async with shop.emu.client() as http:
        token = shop.emu.issue_tokens(shop.realm_id)["access_token"]
        for body in (
            {"DisplayName": expected["DisplayName"],
             "PrimaryEmailAddr": {"Address": "maria@example.gr"}},
            {"DisplayName": other_name, "PrimaryEmailAddr": {"Address": "someone@else.gr"}},
        ):
            r = await http.post(f"/v3/company/{shop.realm_id}/customer", json=body,
                                headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
    who = dx.customer(dixis_db, "Νίκος", "Αλεξίου", email="nikos@example.gr")
    dixis_db.execute("UPDATE dixis.customers SET id = 999 WHERE id = %s", (who,))
    oil = dx.product(dixis_db, "Ελαιόλαδο", "12.90")
    dx.order(dixis_db, [(oil, "1", "12.90")], customer_id=999)
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    names = sorted(c["DisplayName"] for c in shop.customers())
    assert names == sorted([expected["DisplayName"], other_name, f"{other_name} (999)"])
    assert len(shop.invoices()) == 2


async def test_items_created_by_a_lost_batch_are_adopted_not_duplicated(
    shop: Shop, dixis_db: psycopg.Connection
) -> None:
    """A batch of dependency creates is applied but its answer never comes. The retry's
    batches differ (so does their requestid): each create meets 6240 and must recognise its
    own Item by Sku, which QuickBooks returns only when asked for (`SELECT *, Sku`)."""
    dixis_db.execute("SELECT dixis.generate(60, 0.5)")
    dixis_db.commit()
    shop.emu.inject_fault("drop", 1, method="POST", entity="batch")
    async with running(shop, batch_threshold=20, batch_size=30):
        await drained(shop.url)
    skus = [i.get("Sku") for i in shop.items() if i.get("Sku")]
    assert skus
    assert len(skus) == len(set(skus))  # one Item per product
    unmapped = dixis_db.execute(
        "SELECT count(*) FROM qbsync.entity_map m WHERE entity = 'product' AND key ~ '^[0-9]+$' "
        "AND qbo_id IS DISTINCT FROM (SELECT quickbooks_item_id FROM dixis.products "
        "WHERE id = m.key::bigint)").fetchone()
    assert unmapped == (0,)
    assert shop.emu.request_count("POST", "/batch", "dropped") == 1


async def test_large_backlog_goes_through_batches_exactly_once(
    shop: Shop, dixis_db: psycopg.Connection
) -> None:
    dixis_db.execute("SELECT dixis.generate(120, 0.9)")
    dixis_db.commit()
    completed = dixis_db.execute(
        "SELECT count(*) FROM dixis.orders WHERE " + INVOICED).fetchone()
    assert completed
    shop.emu.inject_fault("500", 1, method="POST", path="/batch")  # one whole batch fails
    async with running(shop, batch_threshold=20, batch_size=30):
        await drained(shop.url)
    invoices = shop.invoices()
    assert len(invoices) == completed[0]
    assert len({inv["DocNumber"] for inv in invoices}) == completed[0]
    assert shop.emu.request_count(method="POST", route="/batch") >= 4
    # Only the rows of the failed batch went one by one (looked up first: the failed batch
    # might have been applied); everything else went through batches.
    single_posts = shop.emu.request_count(method="POST", route="/invoice")
    assert single_posts <= 30
    operations = dict(dixis_db.execute(
        "SELECT operation, count(*) FROM qbsync.integration_logs WHERE model_type = 'order' "
        "AND status = 'success' GROUP BY 1").fetchall())
    assert operations.get("create (batch)", 0) > completed[0] / 2
    not_synced = dixis_db.execute(
        "SELECT count(*) FROM dixis.orders WHERE " + INVOICED
        + " AND quickbooks_sync_status IS DISTINCT FROM 'synced'").fetchone()
    assert not_synced == (0,)


async def test_company_without_custom_numbers_uses_its_own_numbers_and_the_marker(
    dixis_db: psycopg.Connection, emu: Emulator, caplog: pytest.LogCaptureFixture
) -> None:
    dixis_db.execute("UPDATE qbsync.entities SET backoff_seconds = '{0,0,0}'")
    dixis_db.commit()
    shop = await connect_shop(conn_url(dixis_db), emu, custom_txn_numbers=False)
    emu.inject_fault("drop", 1, method="POST", entity="invoice")  # outcome unknown once
    order_id = one_order(dixis_db)
    async with running(shop):
        await drained(shop.url)
    assert "custom transaction numbers off" in caplog.text
    [invoice] = shop.invoices()
    assert invoice["DocNumber"] != order_row(dixis_db, order_id)[4]  # QuickBooks' number
    assert f"qbsync:order:{order_id};" in invoice["PrivateNote"]
    number = dixis_db.execute("SELECT quickbooks_invoice_number FROM dixis.orders WHERE id = %s",
                              (order_id,)).fetchone()
    assert number == (invoice["DocNumber"],)


async def test_stale_sync_token_is_reread_and_the_change_reapplied(
    shop: Shop, dixis_db: psycopg.Connection
) -> None:
    order_id = one_order(dixis_db)
    async with running(shop):
        await drained(shop.url)
        [invoice] = shop.invoices()
        # An accountant edits the invoice in QuickBooks: its SyncToken moves on.
        token = shop.emu.issue_tokens(shop.realm_id)["access_token"]
        async with shop.emu.client() as http:
            r = await http.post(f"/v3/company/{shop.realm_id}/invoice", json={
                "Id": invoice["Id"], "SyncToken": invoice["SyncToken"], "sparse": True,
                "CustomerMemo": {"value": "Ευχαριστούμε!"}},
                headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 200, r.text
        dixis_db.execute("UPDATE dixis.orders SET billing_city = 'Πάτρα' WHERE id = %s",
                         (order_id,))
        dixis_db.commit()
        await drained(shop.url)
    [updated] = shop.invoices()
    assert updated["SyncToken"] == str(int(invoice["SyncToken"]) + 2)
    assert updated["BillAddr"]["City"] == "Πάτρα"
    assert updated["CustomerMemo"]["value"] == "Ευχαριστούμε!"  # sparse: theirs kept
    assert logs(dixis_db, str(order_id))[-1][:2] == ("update", "success")


async def test_failing_write_back_loses_no_push(shop: Shop, dixis_db: psycopg.Connection) -> None:
    """The shop's outcome function raising for one row: that row's push still stands
    (entity_map, log), the failure is logged, and the rows recorded with it are unharmed."""
    # both forms: order_outcome (one row) and order_outcomes (a group, which the daemon
    # uses when it exists)
    dixis_db.execute("ALTER FUNCTION qbsync_map.order_outcome(text, jsonb) "
                     "RENAME TO order_outcome_real")
    dixis_db.execute("ALTER FUNCTION qbsync_map.order_outcomes(text[], jsonb[]) "
                     "RENAME TO order_outcomes_real")
    dixis_db.execute("""
        CREATE FUNCTION qbsync_map.order_outcome(key text, outcome jsonb) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
            IF key = '2' THEN RAISE EXCEPTION 'shop trigger says no'; END IF;
            PERFORM qbsync_map.order_outcome_real(key, outcome);
        END $$""")
    dixis_db.execute("""
        CREATE FUNCTION qbsync_map.order_outcomes(keys text[], outcomes jsonb[]) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
            IF '2' = ANY (keys) THEN RAISE EXCEPTION 'shop trigger says no'; END IF;
            PERFORM qbsync_map.order_outcomes_real(keys, outcomes);
        END $$""")
    dixis_db.execute("SELECT dixis.generate(12, 0.3)")
    dixis_db.commit()
    expected = dixis_db.execute("SELECT count(*) FROM dixis.orders WHERE " + INVOICED).fetchone()
    async with running(shop, batch_threshold=5):
        await drained(shop.url)
    assert expected is not None
    assert len(shop.invoices()) == expected[0]
    mapped = dixis_db.execute(
        "SELECT count(*) FROM qbsync.entity_map WHERE entity = 'order' AND qbo_status = 'active'"
        ).fetchone()
    assert mapped == expected
    failed = dixis_db.execute(
        "SELECT model_id, error_message FROM qbsync.integration_logs "
        "WHERE operation = 'write_back' AND status = 'failed'").fetchall()
    assert [k for k, _ in failed] == ["2"]
    assert "shop trigger says no" in failed[0][1]


def connection_status(conn: psycopg.Connection, realm: str) -> str:
    conn.commit()
    row = conn.execute("SELECT status FROM qbsync.connections WHERE realm_id = %s",
                       (realm,)).fetchone()
    assert row is not None
    return str(row[0])


def reconnect(conn: psycopg.Connection, realm: str) -> None:
    """What `qbsync connect` does to the status (the tokens stay valid in the emulator)."""
    conn.execute("UPDATE qbsync.connections SET status = 'connected' WHERE realm_id = %s",
                 (realm,))
    conn.commit()


async def test_a_company_refusing_the_connection_pauses_it_and_no_row_dies(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """HTTP 403 / 3100 on every request (the app's access to the company withdrawn): no row
    is at fault, so none loses a try or goes dead; the connection is marked needs_reconnect
    once, and after a reconnect the rows go through."""
    async with running(shop) as daemon:
        shop.emu.inject_fault("403", None, realm=shop.realm_id)
        orders = [one_order(dixis_db)]
        feta = dx.product(dixis_db, "Φέτα ΠΟΠ 400g", "6.80", vat=13)
        who = dx.customer(dixis_db, "Νίκος", "Παπαδάκης", email="nikos@example.gr")
        orders.append(dx.order(dixis_db, [(feta, "1", "6.80")], customer_id=who,
                               shipping="3.00"))
        dixis_db.commit()

        async def marked() -> bool:
            return connection_status(dixis_db, shop.realm_id) == "needs_reconnect"
        await eventually(marked, what="the connection marked needs_reconnect")
        await eventually(lambda: asyncio.sleep(0, daemon.worker.paused_reason),
                         what="the daemon paused")

        async def settled() -> bool:
            dixis_db.commit()
            return dixis_db.execute("SELECT count(*) FROM qbsync.outbox WHERE state::text = "
                                    "'running'").fetchone() == (0,)
        await eventually(settled, what="no push in flight")
        refused = shop.emu.request_count(status=403)
        state = dixis_db.execute(
            "SELECT count(*) FILTER (WHERE state::text = 'dead'), max(attempts) "
            "FROM qbsync.outbox").fetchone()
        assert state == (0, 0)
        # paused: QuickBooks is not asked again while the company waits for a reconnect
        await asyncio.sleep(1.5)
        assert shop.emu.request_count(status=403) == refused
        shop.emu.clear_faults()
        reconnect(dixis_db, shop.realm_id)
        await drained(shop.url)
    for order_id in orders:
        assert order_row(dixis_db, order_id)[1] == "synced"
    assert len(shop.invoices()) == len(orders)
    dixis_db.commit()
    marks = dixis_db.execute(
        "SELECT error_code FROM qbsync.integration_logs WHERE operation = "
        "'connection.forbidden'").fetchall()
    assert marks == [("3100",)]
    assert dixis_db.execute("SELECT count(*) FROM qbsync.integration_logs WHERE status = "
                            "'dead'").fetchone() == (0,)


async def test_a_company_refusing_the_connection_at_start_waits_for_a_reconnect(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """The settings look-up at start meets 403 / 3100: the daemon marks the connection
    needs_reconnect and waits (it neither exits nor asks again) until it is connected."""
    shop.emu.inject_fault("403", None, realm=shop.realm_id)
    stop = asyncio.Event()
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(daemon_run(shop.settings, stop=stop, transport=shop.transport(),
                                          on_ready=ready.set_result))
    try:
        async def marked() -> bool:
            assert not task.done(), task
            return connection_status(dixis_db, shop.realm_id) == "needs_reconnect"
        await eventually(marked, what="the connection marked needs_reconnect")
        refused = shop.emu.request_count(status=403)
        await asyncio.sleep(1.5)
        assert not ready.done()
        assert not task.done()
        assert shop.emu.request_count(status=403) == refused
        shop.emu.clear_faults()
        reconnect(dixis_db, shop.realm_id)
        await asyncio.wait_for(ready, 60)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
