"""Tries, lookups and requestids end to end (in-process daemon, in-process emulator): a row
whose last try lost its answer is looked up and adopted, never written back `failed` while
QuickBooks has its invoice; a row whose daemon keeps stopping is looked up, then dies
saying so; a requestid is kept only for a resend of the same body (single and batch path),
since QuickBooks answers a repeated requestid with its first answer, whatever the body."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import psycopg

from qbsync.emulator import Emulator
from tests.daemon_support import Shop, drained, eventually, running
from tests.integration import dixis_helpers as dx


def history(conn: psycopg.Connection, key: str) -> list[tuple[Any, ...]]:
    conn.commit()
    return [tuple(r) for r in conn.execute(
        "SELECT operation, status, attempt, error_message FROM qbsync.integration_logs"
        " WHERE model_type = 'order' AND model_id = %s ORDER BY id", (key,)).fetchall()]


def order_status(conn: psycopg.Connection, order_id: int) -> tuple[Any, ...]:
    conn.commit()
    row = conn.execute("SELECT quickbooks_sync_status, quickbooks_invoice_id FROM dixis.orders"
                       " WHERE id = %s", (order_id,)).fetchone()
    assert row is not None
    return tuple(row)


def dead_rows(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    conn.commit()
    return [tuple(r) for r in conn.execute(
        "SELECT key, last_error FROM qbsync.outbox WHERE state = 'dead' ORDER BY id")]


def stored_requestids(emu: Emulator, realm: str, *, batches: bool = False) -> set[str]:
    """The requestids QuickBooks answered with a success and will answer again by replay
    (only those of batch requests)."""
    return {rid for rid, (_, answer) in emu.companies[realm].requestids.items()
            if not batches or "BatchItemResponse" in answer}


def one_row_failed_once(conn: psycopg.Connection) -> Callable[[], Awaitable[bool]]:
    """For `eventually`: the outbox holds one row, pending again after one failed try."""
    async def check() -> bool:
        conn.commit()
        return conn.execute("SELECT state::text, attempts FROM qbsync.outbox"
                            ).fetchall() == [("pending", 1)]
    return check


def a_catalogue(conn: psycopg.Connection) -> tuple[int, list[tuple[int, str, str]]]:
    who = dx.customer(conn, "Μαρία", "Κωνσταντινίδου", email="maria@example.gr")
    oil = dx.product(conn, "Ελαιόλαδο Κορωνέικη 1L", "12.90", vat=13)
    rusk = dx.product(conn, "Παξιμάδια Κρίθινα", "3.20", vat=6)
    return who, [(oil, "2", "12.90"), (rusk, "1", "3.20")]


def override_tax_codes(conn: psycopg.Connection, realm: str, value: str | dict[str, str]
                       ) -> None:
    """A DBA's override of every tax code setting: one id for all (a str), or by name."""
    for (name,) in conn.execute("SELECT name FROM qbsync.realm_settings WHERE realm_id = %s"
                                " AND name LIKE 'tax_code:%%'", (realm,)).fetchall():
        code = value if isinstance(value, str) else value.get(name)
        if code is not None:
            conn.execute(
                "INSERT INTO qbsync.realm_settings (realm_id, name, value, source)"
                " VALUES (%s, %s, jsonb_build_object('value', %s::text), 'override')"
                " ON CONFLICT (realm_id, name) DO UPDATE SET value = excluded.value,"
                " source = 'override'", (realm, name, code))
    conn.commit()


def drop_overrides(conn: psycopg.Connection) -> None:
    """The override undone: the next daemon start looks the tax codes up again."""
    conn.execute("DELETE FROM qbsync.realm_settings WHERE source = 'override'")
    conn.commit()


# -- a crash costs no try, and `failed` never hides an invoice ---------------------------------

async def test_a_lost_answer_on_the_last_try_is_adopted_not_failed(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """Tries 1 and 2 meet a 500, try 3 creates the invoice but its answer is lost: out of
    tries, the row is looked up once more instead of going dead, and the invoice QuickBooks
    has is adopted (the shop row says synced, with its Id)."""
    who, lines = a_catalogue(dixis_db)
    order_id = dx.order(dixis_db, lines, customer_id=who)
    dixis_db.commit()
    shop.emu.inject_fault("500", 2, method="POST", entity="invoice")
    shop.emu.inject_fault("drop", 1, method="POST", entity="invoice")
    async with running(shop):
        await drained(shop.url)
    [invoice] = shop.invoices()
    assert order_status(dixis_db, order_id) == ("synced", invoice["Id"])
    assert dead_rows(dixis_db) == []
    steps = [(op, status, attempt) for op, status, attempt, _ in history(dixis_db, str(order_id))]
    assert steps == [("create", "retry", 1), ("create", "retry", 2), ("create", "retry", 3),
                     ("adopt", "success", 4)]
    assert "looked up before giving up" in history(dixis_db, str(order_id))[-1][3]


async def test_an_invoice_found_by_the_final_lookup_is_adopted_even_if_it_cannot_be_updated(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """One try: its create is applied, its answer lost. The final lookup finds the invoice;
    bringing it up to date fails (a 500): it is adopted as it is, and the shop row says
    synced with its Id, not failed."""
    who, lines = a_catalogue(dixis_db)
    order_id = dx.order(dixis_db, lines, customer_id=who)
    dixis_db.execute("UPDATE qbsync.entities SET max_attempts = 1 WHERE entity = 'order'")
    dixis_db.commit()
    shop.emu.inject_fault("drop", 1, method="POST", entity="invoice")
    shop.emu.inject_fault("500", 1, method="POST", entity="invoice")  # the adoption's update
    async with running(shop):
        await drained(shop.url)
    [invoice] = shop.invoices()
    assert order_status(dixis_db, order_id) == ("synced", invoice["Id"])
    assert dead_rows(dixis_db) == []
    *_, last = history(dixis_db, str(order_id))
    assert last[:2] == ("adopt", "success")
    assert "as it is" in last[3]
    assert "10000" in last[3]
    body_hash = dixis_db.execute(
        "SELECT body_hash FROM qbsync.entity_map WHERE entity = 'order'").fetchone()
    assert body_hash == (None,)  # the key's next push sends the shop's version


async def test_a_row_whose_daemon_keeps_stopping_is_looked_up_then_dead(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """max_interruptions = 2. Order A's invoice reached QuickBooks but its answer was lost;
    order B never reached QuickBooks. Then daemons stop twice while pushing each: at the
    bound both are looked up. A's invoice is adopted; B goes dead with "the daemon stopped
    2 times while pushing this row"."""
    who, lines = a_catalogue(dixis_db)
    a = dx.order(dixis_db, lines, customer_id=who)
    dixis_db.execute("UPDATE qbsync.entities SET backoff_seconds = '{3600}'"
                     " WHERE entity = 'order'")
    dixis_db.commit()
    shop.emu.inject_fault("drop", 1, method="POST", entity="invoice")

    async with running(shop):
        await eventually(one_row_failed_once(dixis_db), 30, "order A's lost answer recorded")
    assert len(shop.invoices()) == 1  # applied, not linked
    b = dx.order(dixis_db, lines, customer_id=who)
    dixis_db.execute("UPDATE qbsync.outbox SET next_attempt_at = now()")  # A's backoff over
    dixis_db.execute("UPDATE qbsync.settings SET value = '2' WHERE name = 'max_interruptions'")
    dixis_db.commit()
    for _ in range(2):
        claimed = dixis_db.execute("SELECT key FROM qbsync.claim('ghost', 10, '1 minute')"
                                   ).fetchall()
        assert sorted(k for (k,) in claimed) == sorted([str(a), str(b)])
        dixis_db.execute("SELECT qbsync.release('ghost')")  # stopped before it finished
        dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    [invoice] = shop.invoices()
    assert order_status(dixis_db, a) == ("synced", invoice["Id"])
    assert history(dixis_db, str(a))[-1][:3] == ("adopt", "success", 2)
    assert dead_rows(dixis_db) == [(str(b), (
        f"order {b}: the daemon stopped 2 times while pushing this row; order {b}: not in "
        "QuickBooks either (looked up before giving up)"))]
    assert order_status(dixis_db, b)[0] == "failed"


# -- a requestid only for a resend of the same body ----------------------------------------

async def test_a_changed_body_after_retry_dead_gets_a_new_requestid(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """An update (a forced resync) is applied but its answer lost, and its row goes dead
    (one try). Retried as it was, it keeps its requestid (QuickBooks replays the answer;
    nothing applied twice). Retried after a DBA changed a tax code setting, the body
    differs: a new requestid, so that QuickBooks applies it instead of replaying the old
    body's answer (and qbsync recording a success for a body never applied)."""
    who, lines = a_catalogue(dixis_db)
    order_id = dx.order(dixis_db, lines, customer_id=who)
    dixis_db.execute("UPDATE qbsync.entities SET max_attempts = 1 WHERE entity = 'order'")
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    [invoice] = shop.invoices()
    emu, realm = shop.emu, shop.realm_id

    def sync_token() -> str:
        current = emu.get_entity(realm, "Invoice", invoice["Id"])
        assert current is not None
        return str(current["SyncToken"])

    async def dead_after_a_lost_update() -> None:
        dixis_db.execute("SELECT qbsync.enqueue('order', %s, true, 'resync')", (str(order_id),))
        dixis_db.commit()
        emu.inject_fault("drop", 1, method="POST", entity="invoice")
        async with running(shop):
            await drained(shop.url)
        assert [k for k, _ in dead_rows(dixis_db)] == [str(order_id)]

    async def retry_dead() -> None:
        dixis_db.execute("SELECT qbsync.retry_dead('order', %s)", (str(order_id),))
        dixis_db.commit()
        async with running(shop):  # a new daemon: it reads the settings afresh
            await drained(shop.url)
        assert dead_rows(dixis_db) == []
        assert history(dixis_db, str(order_id))[-1][:2] == ("update", "success")

    # the same body again: the same requestid, answered by replay
    await dead_after_a_lost_update()
    assert sync_token() == "1"
    before = stored_requestids(emu, realm)
    await retry_dead()
    assert stored_requestids(emu, realm) == before
    assert sync_token() == "1"  # applied once

    # a changed body (the 13 % lines under the 24 % code): a new requestid, applied
    await dead_after_a_lost_update()
    assert sync_token() == "2"
    codes = {c["Name"]: c["Id"] for c in emu.entities(realm, "TaxCode")}
    override_tax_codes(dixis_db, realm, {"tax_code:13": codes["ΦΠΑ 24%"]})
    before = stored_requestids(emu, realm)
    await retry_dead()
    assert len(stored_requestids(emu, realm) - before) == 1
    assert sync_token() == "3"
    current = emu.get_entity(realm, "Invoice", invoice["Id"])
    assert current is not None
    sold = [line["SalesItemLineDetail"]["TaxCodeRef"]["value"] for line in current["Line"]
            if line.get("DetailType") == "SalesItemLineDetail"]
    assert sold[0] == codes["ΦΠΑ 24%"]  # the oil, a 13 % product, as the DBA set it


async def test_a_changed_batch_after_retry_dead_gets_a_new_requestid(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """Eight invoices in one batch, all refused (a tax code setting points nowhere): the
    batch's answer, faults and all, is what QuickBooks replays for its requestid. Retried
    as they were, the same batch requestid (replayed: nothing runs again); retried once the
    DBA fixed the setting, the bodies differ, and so does the batch requestid: created."""
    dixis_db.execute("SELECT qbsync.untrack(tbl::text, entity) FROM qbsync.tracked"
                     " WHERE entity NOT IN ('order', 'customer', 'product')")
    who, lines = a_catalogue(dixis_db)
    dx.order(dixis_db, lines, customer_id=who)  # the customer and items reach QuickBooks
    dixis_db.commit()
    emu, realm = shop.emu, shop.realm_id
    settings = {"batch_threshold": 5, "concurrency": 1}
    async with running(shop, **settings):
        await drained(shop.url)
    assert len(shop.invoices()) == 1

    def decoy() -> None:
        """A row queued ahead of the orders (committed first: it is older): a fresh
        daemon's first claim, made one by one before it has looked at the backlog, takes
        it; the orders then go as one batch."""
        dixis_db.execute("SELECT qbsync.enqueue('customer', %s, true, 'test')", (str(who),))
        dixis_db.commit()

    decoy()
    orders = [dx.order(dixis_db, lines, customer_id=who) for _ in range(8)]
    override_tax_codes(dixis_db, realm, "999")  # no such tax code
    async with running(shop, **settings):
        await drained(shop.url)
    assert sorted(int(k) for k, _ in dead_rows(dixis_db)) == orders
    assert emu.request_count("POST", "/batch", 200) == 1
    assert len(shop.invoices()) == 1

    # as they were: the same batch requestid, answered by replay
    before = stored_requestids(emu, realm, batches=True)
    decoy()
    dixis_db.execute("SELECT qbsync.retry_dead('order')")
    dixis_db.commit()
    async with running(shop, **settings):
        await drained(shop.url)
    assert emu.request_count("POST", "/batch", 200) == 2
    assert stored_requestids(emu, realm, batches=True) == before
    assert sorted(int(k) for k, _ in dead_rows(dixis_db)) == orders

    # fixed: new bodies, a new batch requestid
    drop_overrides(dixis_db)
    decoy()
    dixis_db.execute("SELECT qbsync.retry_dead('order')")
    dixis_db.commit()
    async with running(shop, **settings):
        await drained(shop.url)
    assert dead_rows(dixis_db) == []
    assert emu.request_count("POST", "/batch", 200) == 3
    assert len(stored_requestids(emu, realm, batches=True) - before) == 1
    assert len(shop.invoices()) == 9
    operations = {op for op, status, _, _ in history(dixis_db, str(orders[-1]))
                  if status == "success"}
    assert operations == {"create (batch)"}


async def test_a_lost_batch_is_looked_up_and_adopted_in_batches(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """A batch of invoices is applied but its answer lost: their next attempt looks them up
    by DocNumber in one query and adopts them in one batch, not one request or two per row."""
    who, lines = a_catalogue(dixis_db)
    dx.order(dixis_db, lines, customer_id=who)  # the customer and items reach QuickBooks
    dixis_db.commit()
    emu = shop.emu
    settings = {"batch_threshold": 5, "concurrency": 1}
    async with running(shop, **settings):
        await drained(shop.url)
    # ahead of the orders: a fresh daemon's first claim, made one by one, takes it
    dixis_db.execute("SELECT qbsync.enqueue('customer', %s, true, 'test')", (str(who),))
    dixis_db.commit()
    orders = [dx.order(dixis_db, lines, customer_id=who) for _ in range(10)]
    dixis_db.commit()
    emu.inject_fault("drop", 1, method="POST", entity="batch")
    async with running(shop, **settings):
        await drained(shop.url)
    assert dead_rows(dixis_db) == []
    assert len(shop.invoices()) == 11
    assert emu.request_count("POST", "/batch", "dropped") == 1
    assert emu.request_count("POST", "/batch", 200) == 1
    assert emu.request_count("POST", "/invoice") == 1  # the first order's create only
    for order_id in orders:
        steps = [(op, status) for op, status, _, _ in history(dixis_db, str(order_id))]
        assert steps == [("create (batch)", "retry"), ("adopt (batch)", "success")]
        assert order_status(dixis_db, order_id)[0] == "synced"


async def test_payments_of_a_lost_batch_are_looked_up_by_their_marker(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """Payments go in a batch; its answer is lost. Each payment's next attempt looks it up
    by qbsync's marker (one by one) and adopts it: one payment per order, none made twice
    by a second batch or a plain create."""
    who, lines = a_catalogue(dixis_db)
    orders = [dx.order(dixis_db, lines, customer_id=who) for _ in range(6)]
    dixis_db.commit()
    emu, realm = shop.emu, shop.realm_id
    settings = {"batch_threshold": 5, "concurrency": 1}
    async with running(shop, **settings):
        await drained(shop.url)
    assert len(shop.invoices()) == 6
    # ahead of the payments: a fresh daemon's first claim, made one by one, takes it
    dixis_db.execute("SELECT qbsync.enqueue('customer', %s, true, 'test')", (str(who),))
    dixis_db.commit()
    for order_id in orders:
        dx.pay(dixis_db, order_id)
    dixis_db.commit()
    emu.inject_fault("drop", 1, method="POST", entity="batch")
    async with running(shop, **settings):
        await drained(shop.url)
    assert emu.request_count("POST", "/batch", "dropped") == 1
    assert dead_rows(dixis_db) == []
    payments = emu.entities(realm, "Payment")
    assert sorted(p["PrivateNote"].rsplit(" ", 1)[-1] for p in payments) == sorted(
        f"qbsync:payment:{order_id};" for order_id in orders)
    assert emu.request_count("POST", "/payment") == 6  # the adoptions' updates
    for order_id in orders:
        steps = dixis_db.execute(
            "SELECT operation, status FROM qbsync.integration_logs WHERE model_type ="
            " 'payment' AND model_id = %s ORDER BY id", (str(order_id),)).fetchall()
        assert steps == [("create (batch)", "retry"), ("adopt", "success")]


async def test_a_payment_whose_answer_was_lost_is_not_made_twice_nor_left_stale(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """A payment is created but its answer lost; then the shop changes its reference. The
    next attempt looks the payment up by qbsync's marker in its PrivateNote (the changed
    body has another requestid, which QuickBooks would not replay) and brings the payment
    it finds up to date."""
    who, lines = a_catalogue(dixis_db)
    order_id = dx.order(dixis_db, lines, customer_id=who)
    dixis_db.execute("UPDATE qbsync.entities SET backoff_seconds = '{3600}'"
                     " WHERE entity = 'payment'")
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    dx.pay(dixis_db, order_id, reference="ch_first")
    dixis_db.commit()
    shop.emu.inject_fault("drop", 1, method="POST", entity="payment")

    async with running(shop):
        await eventually(one_row_failed_once(dixis_db), 30,
                         "the payment's lost answer recorded")
    [made] = shop.emu.entities(shop.realm_id, "Payment")
    assert "ch_first" in made["PrivateNote"]
    dixis_db.execute("UPDATE dixis.orders SET payment_reference = 'ch_second' WHERE id = %s",
                     (order_id,))
    dixis_db.execute("SELECT qbsync.collect_changes()")
    dixis_db.execute("UPDATE qbsync.outbox SET next_attempt_at = now()")
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    [payment] = shop.emu.entities(shop.realm_id, "Payment")
    assert payment["Id"] == made["Id"]
    assert "ch_second" in payment["PrivateNote"]
    assert dead_rows(dixis_db) == []
    steps = dixis_db.execute("SELECT operation, status FROM qbsync.integration_logs"
                             " WHERE model_type = 'payment' ORDER BY id").fetchall()
    assert steps == [("create", "retry"), ("adopt", "success")]


async def test_a_lost_payment_is_found_by_its_marker_where_quickbooks_ignores_the_requestid(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """A payment is created but its answer lost, and QuickBooks does not honour the
    requestid of payments (two identical Payments under one RequestId:
    intuit/QuickBooks-V3-DotNET-SDK#352): the next attempt, with the same body, finds the
    payment by qbsync's marker in its PrivateNote (among the customer's payments of that
    date) and adopts it. One payment, no dead row."""
    who, lines = a_catalogue(dixis_db)
    order_id = dx.order(dixis_db, lines, customer_id=who)
    dixis_db.execute("UPDATE qbsync.entities SET backoff_seconds = '{3600}'"
                     " WHERE entity = 'payment'")
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    dx.pay(dixis_db, order_id)
    dixis_db.commit()
    emu = shop.emu
    emu.set_requestid_policy(ignored=["payment"])
    emu.inject_fault("drop", 1, method="POST", entity="payment")

    async with running(shop):
        await eventually(one_row_failed_once(dixis_db), 30,
                         "the payment's lost answer recorded")
    [made] = emu.entities(shop.realm_id, "Payment")
    dixis_db.execute("UPDATE qbsync.outbox SET next_attempt_at = now()")
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    assert [p["Id"] for p in emu.entities(shop.realm_id, "Payment")] == [made["Id"]]
    assert dead_rows(dixis_db) == []
    assert f"qbsync:payment:{order_id};" in made["PrivateNote"]
    steps = dixis_db.execute("SELECT operation, status FROM qbsync.integration_logs"
                             " WHERE model_type = 'payment' ORDER BY id").fetchall()
    assert steps == [("create", "retry"), ("adopt", "success")]
    linked = dixis_db.execute("SELECT qbo_id FROM qbsync.entity_map WHERE entity = 'payment'"
                              ).fetchall()
    assert linked == [(made["Id"],)]


async def test_a_refused_payment_fixed_and_retried_goes_under_a_new_requestid(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """A payment is refused (its deposit account is an income account: 6000) and goes
    dead; the DBA fixes the setting and retries it. The fixed body goes under a new
    requestid, so that even a QuickBooks that kept the refusal under the first one
    (undocumented either way) creates the payment instead of answering the refusal again."""
    who, lines = a_catalogue(dixis_db)
    order_id = dx.order(dixis_db, lines, customer_id=who)
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    emu, realm = shop.emu, shop.realm_id
    emu.set_requestid_policy(refusals=True)
    dixis_db.execute("SELECT qbsync.override_setting('deposit_account:undeposited_funds',"
                     """ '{"value": "1"}')""")  # Sales of Product Income
    dx.pay(dixis_db, order_id)
    dixis_db.commit()
    before = stored_requestids(emu, realm)
    async with running(shop):
        await drained(shop.url)
    assert [k for k, _ in dead_rows(dixis_db)] == [str(order_id)]
    assert emu.entities(realm, "Payment") == []
    refused = stored_requestids(emu, realm) - before
    assert len(refused) == 1

    drop_overrides(dixis_db)  # looked up again: Undeposited Funds
    dixis_db.execute("SELECT qbsync.retry_dead('payment', %s)", (str(order_id),))
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    assert dead_rows(dixis_db) == []
    [payment] = emu.entities(realm, "Payment")
    assert payment["DepositToAccountRef"]["value"] == "8"
    assert len(stored_requestids(emu, realm) - before - refused) == 1  # the fixed create's


async def test_a_failed_dependency_batch_costs_the_rows_no_try(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """A fresh shop's first batch request creates customers and items; it fails with a 500.
    Those dependencies are left to the rows that need them, created one by one in the same
    attempt: not a try spent by every row of the push."""
    dixis_db.execute("SELECT qbsync.untrack(tbl::text, entity) FROM qbsync.tracked"
                     " WHERE entity NOT IN ('order', 'customer', 'product')")
    dixis_db.execute("SELECT dixis.generate(60, 0.5)")
    dixis_db.commit()
    shop.emu.inject_fault("500", 1, method="POST", entity="batch")
    async with running(shop, batch_threshold=20, batch_size=30):
        await drained(shop.url)
    assert shop.emu.request_count("POST", "/batch", 500) == 1
    assert dead_rows(dixis_db) == []
    tries = dixis_db.execute(
        "SELECT status, max(attempt), count(*) FROM qbsync.integration_logs"
        " WHERE model_type = 'order' AND status <> 'skipped' GROUP BY 1 ORDER BY 1").fetchall()
    assert [(status, attempt) for status, attempt, _ in tries] == [("success", 1)]


async def test_retry_dead_pushes_a_captured_change_to_an_invoiced_order(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    """A shop change of an invoiced order (a capture, not forced) goes dead on a fault;
    retry_dead must push it as the capture it was, not skip it as "already has invoice"
    (the skip is for a resync of an order that has its invoice)."""
    who, lines = a_catalogue(dixis_db)
    order_id = dx.order(dixis_db, lines, customer_id=who)
    dixis_db.execute("UPDATE qbsync.entities SET max_attempts = 1 WHERE entity = 'order'")
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    [invoice] = shop.invoices()
    dixis_db.execute("UPDATE dixis.orders SET billing_address = 'Λεωφόρος Κηφισίας 12'"
                     " WHERE id = %s", (order_id,))  # the invoice's BillAddr
    dixis_db.commit()
    shop.emu.inject_fault("500", 1, method="POST", entity="invoice")
    async with running(shop):
        await drained(shop.url)
    assert [k for k, _ in dead_rows(dixis_db)] == [str(order_id)]

    dixis_db.execute("SELECT qbsync.retry_dead('order', %s)", (str(order_id),))
    dixis_db.commit()
    async with running(shop):
        await drained(shop.url)
    assert dead_rows(dixis_db) == []
    assert history(dixis_db, str(order_id))[-1][:2] == ("update", "success")
    current = shop.emu.get_entity(shop.realm_id, "Invoice", invoice["Id"])
    assert current is not None
    assert current["SyncToken"] == "1"
    assert current["BillAddr"]["Line1"] == "Λεωφόρος Κηφισίας 12"
    assert order_status(dixis_db, order_id) == ("synced", invoice["Id"])
