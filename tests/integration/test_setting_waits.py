"""A gap in the company's configuration pauses rows; it does not kill them.

A row whose mapping uses a {"$setting": ...} the company has no value for waits (outbox
state 'waiting', no try burnt, on both push paths); connection_status and a notice name the
setting, the rows and the SQL that sets it; an override, a look-up on request (`qbsync
settings --refresh`) or at the next daemon start releases them at once. A look-up QuickBooks
refuses leaves only its own settings unresolved, and the daemon runs on. Tax codes are
looked up by effective rate; two codes of one rate raise a notice."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest
from click.testing import CliRunner

from qbsync import batch, daemon
from qbsync.cli import main as cli
from qbsync.daemon import Daemon
from qbsync.emulator import Emulator
from qbsync.model import PushFailed
from tests.daemon_support import Shop, connect_shop, drained, eventually, running
from tests.integration import dixis_helpers as dx
from tests.support import conn_url

THIRTEEN = "2"  # the emulator's 13 % VAT code


def deactivate(shop: Shop, code_id: str, active: bool = False) -> None:
    """An accountant makes a tax code (in)active in QuickBooks."""
    shop.emu.company(shop.realm_id).entities["TaxCode"][code_id]["Active"] = active


def order_at(conn: psycopg.Connection, vat: int, n: int) -> int:
    item = dx.product(conn, f"Προϊόν {vat}% {n}", "5.00", vat=vat)
    order_id = dx.order(conn, [(item, "1", "5.00")], customer_id=dx.customer(conn))
    conn.commit()
    return order_id


def outbox(conn: psycopg.Connection, entity: str, keys: list[int]) -> list[tuple[Any, ...]]:
    conn.commit()
    return [tuple(r) for r in conn.execute(
        "SELECT key, state::text, attempts, waiting_for FROM qbsync.outbox "
        "WHERE entity = %s AND key = ANY(%s) ORDER BY key::int",
        (entity, [str(k) for k in keys])).fetchall()]


def statuses(conn: psycopg.Connection, keys: list[int]) -> list[tuple[Any, ...]]:
    conn.commit()
    return [tuple(r) for r in conn.execute(
        "SELECT id, quickbooks_sync_status, quickbooks_sync_error FROM dixis.orders "
        "WHERE id = ANY(%s) ORDER BY id", (keys,)).fetchall()]


def missing(conn: psycopg.Connection) -> list[dict[str, Any]]:
    conn.commit()
    row = conn.execute("SELECT missing_settings FROM qbsync.connection_status "
                       "WHERE active").fetchone()
    assert row is not None
    return list(row[0])


def notices(conn: psycopg.Connection, kind: str) -> list[tuple[Any, ...]]:
    conn.commit()
    return [tuple(r) for r in conn.execute(
        "SELECT key, message, details FROM qbsync.open_notices WHERE kind = %s ORDER BY key",
        (kind,)).fetchall()]


async def waiting(conn: psycopg.Connection, entity: str, keys: list[int]) -> None:
    async def check() -> bool:
        return all(state == "waiting" for _, state, _, _ in outbox(conn, entity, keys)) \
            and len(outbox(conn, entity, keys)) == len(keys)
    await eventually(check, 30, f"{entity} {keys} waiting")


async def test_a_missing_tax_code_pauses_its_rows_and_an_override_releases_them(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    deactivate(shop, THIRTEEN)  # the company has no active 13 % code
    stuck = [order_at(dixis_db, 13, n) for n in range(3)]
    fine = order_at(dixis_db, 24, 9)
    async with running(shop):
        await waiting(dixis_db, "order", stuck)
        await eventually(lambda: _synced(dixis_db, [fine]), 30, "the 24 % order synced")
        # no try burnt, nothing dead; the shop rows say what they wait for
        assert outbox(dixis_db, "order", stuck) == [
            (str(k), "waiting", 0, ["tax_code:13"]) for k in stuck]
        assert dixis_db.execute("SELECT count(*) FROM qbsync.outbox "
                                "WHERE state = 'dead'").fetchone() == (0,)
        for _, status, error in statuses(dixis_db, stuck):
            assert status == "pending"
            assert 'waits for the QuickBooks setting "tax_code:13"' in error
        # connection_status and the notice name the setting, the rows and the fix
        [gap] = missing(dixis_db)
        assert gap["setting"] == "tax_code:13"
        assert gap["rows_waiting"] == 3
        assert gap["some_keys"] == [f"order {k}" for k in stuck]
        assert "SELECT qbsync.override_setting('tax_code:13', '{\"value\": " in gap["set_it"]
        assert "qbsync settings --refresh" in gap["set_it"]
        # rows that started waiting together are counted in the notice within a few seconds
        await eventually(lambda: _notice_counts(dixis_db, "tax_code:13", 3), 15,
                         "the notice counting 3 rows")
        [(key, message, details)] = notices(dixis_db, "setting_missing")
        assert key == "tax_code:13"
        assert "3 row(s) wait for it" in message
        assert all(f"order {k}" in message for k in stuck)
        assert "qbsync.override_setting('tax_code:13'" in message
        assert details["rows_waiting"] == 3
        logged = dixis_db.execute(
            "SELECT count(*) FROM qbsync.integration_logs WHERE operation = 'wait.setting' "
            "AND status = 'info' AND model_id = ANY(%s)", ([str(k) for k in stuck],)).fetchone()
        assert logged == (3,)
        # the accountant turns the code on again and the DBA points tax_code:13 at it
        deactivate(shop, THIRTEEN, active=True)
        dixis_db.execute("SELECT qbsync.override_setting('tax_code:13', '{\"value\": \"2\"}')")
        dixis_db.commit()
        await drained(shop.url)  # released at once: no backoff, no recheck to wait for
    assert [s for _, s, _ in statuses(dixis_db, [*stuck, fine])] == ["synced"] * 4
    assert missing(dixis_db) == []
    assert notices(dixis_db, "setting_missing") == []
    attempts = dixis_db.execute(
        "SELECT attempt FROM qbsync.integration_logs WHERE operation = 'create' "
        "AND model_type = 'order' AND model_id = ANY(%s)", ([str(k) for k in stuck],)).fetchall()
    assert attempts == [(1,)] * 3  # the invoice went out on the first try the rows got


async def _notice_counts(conn: psycopg.Connection, setting: str, rows: int) -> bool:
    return any(key == setting and details["rows_waiting"] == rows
               for key, _, details in notices(conn, "setting_missing"))


async def _synced(conn: psycopg.Connection, keys: list[int]) -> bool:
    return all(s == "synced" for _, s, _ in statuses(conn, keys))


async def test_settings_looked_up_again_on_request_release_the_rows(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    deactivate(shop, THIRTEEN)
    stuck = [order_at(dixis_db, 13, n) for n in range(2)]
    async with running(shop):
        await waiting(dixis_db, "order", stuck)
        deactivate(shop, THIRTEEN, active=True)
        result = await asyncio.to_thread(
            CliRunner().invoke, cli, ["settings", "--refresh", "--database-url", shop.url])
        assert result.exit_code == 0, result.output
        assert "settings of QuickBooks company" in result.output
        assert "no row waits for a setting" in result.output
        await drained(shop.url)
    assert [s for _, s, _ in statuses(dixis_db, stuck)] == ["synced", "synced"]
    assert notices(dixis_db, "setting_missing") == []


async def test_a_daemon_start_looks_the_settings_up_again(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    deactivate(shop, THIRTEEN)
    stuck = [order_at(dixis_db, 13, n) for n in range(2)]
    async with running(shop):
        await waiting(dixis_db, "order", stuck)
    listing = CliRunner().invoke(cli, ["settings", "--database-url", shop.url])
    assert listing.exit_code == 1  # rows wait: an operator's script sees it
    assert "tax_code:13: 2 row(s)" in listing.output
    deactivate(shop, THIRTEEN, active=True)
    async with running(shop):
        await drained(shop.url)
    assert [s for _, s, _ in statuses(dixis_db, stuck)] == ["synced", "synced"]


async def test_the_batch_path_makes_rows_wait_the_same_way(
        shop: Shop, dixis_db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch) -> None:
    deactivate(shop, THIRTEEN)
    stuck = [order_at(dixis_db, 13, n) for n in range(4)]
    fine = [order_at(dixis_db, 24, n) for n in range(4)]
    outcomes: dict[int, Any] = {}
    push = batch.BatchPusher.push

    async def recorded(self: batch.BatchPusher, rows: list[Any]) -> dict[int, Any]:
        out = await push(self, rows)
        outcomes.update(out)
        return out

    monkeypatch.setattr(batch.BatchPusher, "push", recorded)
    # one row at a time until the backlog is seen, then batches
    async with running(shop, batch_threshold=2, concurrency=1):
        await waiting(dixis_db, "order", stuck)
        await eventually(lambda: _synced(dixis_db, fine), 30, "the 24 % orders synced")
    failed = {i: o for i, o in outcomes.items() if isinstance(o, PushFailed)}
    assert len(failed) >= 2  # rows of the stuck orders went through the batch path
    assert {(o.kind, tuple(o.details["settings"])) for o in failed.values()} == {
        ("setting", ("tax_code:13",))}
    assert shop.emu.request_count(method="POST", route="/batch") >= 1
    assert outbox(dixis_db, "order", stuck) == [
        (str(k), "waiting", 0, ["tax_code:13"]) for k in stuck]


# QuickBooks' fault for a query it cannot run (its 400 ValidationFault, code 4000)
REFUSAL = {"Fault": {"Error": [{
    "Message": "Error parsing query",
    "Detail": "QueryParserError: Encountered \" <IDENTIFIER> \"PaymentMethod \"\" at "
              "line 1, column 15.",
    "code": "4000"}], "type": "ValidationFault"}, "time": "2026-03-14T12:00:00.000-07:00"}


class RefusePaymentMethods(httpx.AsyncBaseTransport):
    """QuickBooks answering 400 to the PaymentMethod query, as a company did."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params.get("query", "")
        if request.url.path.endswith("/query") and "from paymentmethod" in query.lower():
            return httpx.Response(400, json=REFUSAL, request=request)
        return await self.inner.handle_async_request(request)


@contextlib.asynccontextmanager
async def running_with(shop: Shop, transport: httpx.AsyncBaseTransport
                       ) -> AsyncIterator[Daemon]:
    stop = asyncio.Event()
    ready: asyncio.Future[Daemon] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(daemon.run(shop.settings, stop=stop, transport=transport,
                                          on_ready=ready.set_result))
    done, _ = await asyncio.wait({task, ready}, timeout=30,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        task.result()
        raise RuntimeError("daemon stopped before it was ready")
    try:
        yield ready.result()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_a_look_up_quickbooks_refuses_leaves_only_its_settings_unresolved(
        shop: Shop, dixis_db: psycopg.Connection) -> None:
    oil = dx.product(dixis_db, "Ελαιόλαδο", "12.90", vat=13)
    paid = dx.order(dixis_db, [(oil, "1", "12.90")], customer_id=dx.customer(dixis_db))
    dx.pay(dixis_db, paid)
    dixis_db.commit()
    async with running_with(shop, RefusePaymentMethods(shop.transport())):
        await waiting(dixis_db, "payment", [paid])
        await eventually(lambda: _synced(dixis_db, [paid]), 30, "the invoice synced")
        names = {r[0] for r in dixis_db.execute(
            "SELECT name FROM qbsync.realm_settings").fetchall()}
        assert not [n for n in names if n.startswith("payment_method:")]
        assert {"tax_code:13", "income_account", "deposit_account:undeposited_funds",
                "custom_txn_numbers"} <= names
        row = dixis_db.execute("SELECT settings_lookup_refused FROM qbsync.connection_status "
                               "WHERE active").fetchone()
        assert row is not None
        assert list(row[0]) == ["payment_method"]
        assert "4000" in row[0]["payment_method"]
        [(key, message, _)] = notices(dixis_db, "lookup_refused")
        assert key == "payment_method"
        assert "Error parsing query" in message
        [gap] = missing(dixis_db)
        assert (gap["setting"], gap["rows_waiting"]) == ("payment_method:card", 1)
        dixis_db.execute("SELECT qbsync.override_setting('payment_method:card', "
                         "'{\"value\": \"3\"}')")  # the emulator's Credit Card method
        dixis_db.commit()
        await drained(shop.url)
    [payment] = shop.emu.entities(shop.realm_id, "Payment")
    assert payment["PaymentMethodRef"]["value"] == "3"


async def test_two_active_codes_of_one_rate_raise_a_notice_naming_both(
        dixis_db: psycopg.Connection) -> None:
    emu = Emulator(limits=False)
    shop = await connect_shop(conn_url(dixis_db), emu)
    codes = emu.company(shop.realm_id).entities["TaxCode"]
    second = json.loads(json.dumps(codes["1"]))
    second.update(Id="8", Name="ΦΠΑ 24% (νησιά)")  # a second active 24 % code
    codes["8"] = second
    async with running(shop):
        pass
    [(key, message, details)] = notices(dixis_db, "tax_code_tie")
    assert key == "tax_code:24"
    assert '"ΦΠΑ 24%" (Id 1, used) and "ΦΠΑ 24% (νησιά)" (Id 8)' in message
    assert "SELECT qbsync.override_setting('tax_code:24', '{\"value\": \"8\"}');" in message
    assert [c["id"] for c in details["codes"]] == ["1", "8"]
    setting = dixis_db.execute("SELECT value->>'value' FROM qbsync.realm_settings "
                               "WHERE name = 'tax_code:24'").fetchone()
    assert setting == ("1",)
    # the hidden 24 % code (Id 7) and the inactive 23 % code (Id 5) are not candidates
    assert "Id 7" not in message
    row = dixis_db.execute("SELECT value->>'value' FROM qbsync.realm_settings "
                           "WHERE name = 'tax_code:14.5'").fetchone()
    assert row == ("6",)  # the two-rate group code, 13 % + 1.5 %
    assert dixis_db.execute("SELECT count(*) FROM qbsync.realm_settings "
                            "WHERE name = 'tax_code:23'").fetchone() == (0,)
    # the DBA settles it: the next look-up closes the notice and keeps the choice
    dixis_db.execute("SELECT qbsync.override_setting('tax_code:24', '{\"value\": \"8\"}')")
    dixis_db.commit()
    async with running(shop):
        pass
    assert notices(dixis_db, "tax_code_tie") == []
    assert dixis_db.execute("SELECT value->>'value', source FROM qbsync.realm_settings "
                            "WHERE name = 'tax_code:24'").fetchone() == ("8", "override")
