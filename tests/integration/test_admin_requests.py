"""Admin requests answered by qbsync.admin_requests.handle_pending_requests against the in-process
QuickBooks emulator: reports (QuickBooks vs the shop), connection tests, failures."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import psycopg
import pytest

from qbsync.admin_requests import handle_pending_requests
from qbsync.db import create_pool
from qbsync.emulator import Emulator
from qbsync.qbo.client import QboClient
from tests.daemon_support import EMULATOR_URL, Shop, connect_shop, eventually, running
from tests.support import INVOICED


class EmulatorTokens:
    """A TokenProvider with a token issued straight by the emulator."""

    def __init__(self, emu: Emulator, realm: str) -> None:
        self.emu, self.realm = emu, realm
        self.token = emu.issue_tokens(realm)["access_token"]

    async def access_token(self) -> str:
        return self.token

    async def refresh(self, rejected: str) -> str:
        self.token = self.emu.issue_tokens(self.realm)["access_token"]
        return self.token


@dataclass
class Env:
    shop: Shop
    pool: asyncpg.Pool
    client: QboClient

    @property
    def realm(self) -> str:
        return self.shop.realm_id


@pytest.fixture
async def env(dixis_url: str) -> AsyncIterator[Env]:
    emu = Emulator(limits=False)
    shop = await connect_shop(dixis_url, emu)
    pool = await create_pool(dixis_url, size=3)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app))
    client = QboClient(http, base_url=EMULATOR_URL, realm_id=shop.realm_id,
                       tokens=EmulatorTokens(emu, shop.realm_id))
    try:
        yield Env(shop, pool, client)
    finally:
        await http.aclose()
        await pool.close()


def request_row(url: str, request_id: int) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT state, result, error, worker, finished_at IS NOT NULL"
                           " FROM qbsync.admin_requests WHERE id = %s", (request_id,)).fetchone()
    assert row is not None
    return dict(zip(("state", "result", "error", "worker", "finished"), row, strict=True))


def ask(url: str, query: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
    assert row is not None
    return int(row[0])


async def test_report_round_trip_matches_the_shop(env: Env) -> None:
    url = env.shop.url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT dixis.generate(25, 0.25)")

    async def invoiced() -> bool:
        with psycopg.connect(url) as conn:
            left = conn.execute("SELECT qbsync.backlog() + (SELECT count(*) FROM qbsync.outbox)"
                                ).fetchone()
        return left == (0,)

    async with running(env.shop):
        await eventually(invoiced, 90, "everything pushed")
    assert env.shop.invoices()

    request_id = ask(url, "SELECT qbsync.request_report('2000-01-01', '2100-12-31')")
    assert await handle_pending_requests(env.pool, env.client, env.realm, worker="t") == 1
    assert await handle_pending_requests(env.pool, env.client, env.realm, worker="t") == 0
    req = request_row(url, request_id)
    assert (req["state"], req["error"], req["worker"], req["finished"]) == ("done", None, "t", True)
    result = req["result"]
    with psycopg.connect(url) as conn:
        cmp = conn.execute(
            "SELECT realm_id, qbo_income, shop_revenue_net, difference, verdict, shop_orders,"
            " shop_revenue_gross FROM qbsync.report_comparison WHERE report_id = %s",
            (result["report_id"],)).fetchone()
        stored = conn.execute("SELECT report->'Header'->>'ReportName', request_id"
                              " FROM qbsync.reports").fetchone()
        completed = conn.execute(
            "SELECT count(*), sum(total) - (SELECT coalesce(sum(amount), 0) FROM dixis.refunds)"
            " FROM dixis.orders WHERE " + INVOICED).fetchone()
    assert cmp is not None
    assert completed is not None
    realm, qbo_income, shop_net, difference, verdict, orders, gross = cmp
    assert realm == env.realm
    assert qbo_income > 0
    # invoices less refund receipts: QuickBooks' income is the shop's net revenue
    assert (qbo_income, difference, verdict) == (shop_net, Decimal("0.00"), "match")
    assert (orders, gross) == completed
    assert stored == ("ProfitAndLoss", request_id)
    assert Decimal(result["qbo_income"]) == qbo_income
    assert result["start_date"] == "2000-01-01"


async def test_report_shows_a_difference_when_orders_are_missing(env: Env) -> None:
    url = env.shop.url
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT dixis.generate(8, 0.6)")
        conn.execute("DELETE FROM qbsync.changes")  # nothing reaches QuickBooks
    ask(url, "SELECT qbsync.request_report('year')")
    ask(url, "SELECT qbsync.request_report('2000-01-01', '2100-12-31')")
    assert await handle_pending_requests(env.pool, env.client, env.realm) == 2
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT period, qbo_income, shop_revenue_net, verdict"
                            " FROM qbsync.report_comparison ORDER BY report_id").fetchall()
        notices = conn.execute("SELECT kind FROM qbsync.open_notices").fetchall()
    assert rows[0][0] == "year"
    custom = rows[1]
    assert custom[0] == "custom"
    assert custom[1] == 0
    assert custom[2] > 0
    assert custom[3] == "DIFFERENT"
    assert ("report_difference",) in notices


async def test_connection_test(env: Env) -> None:
    request_id = ask(env.shop.url, "SELECT qbsync.request_connection_test()")
    assert await handle_pending_requests(env.pool, env.client, env.realm) == 1
    req = request_row(env.shop.url, request_id)
    assert req["state"] == "done"
    result = req["result"]
    assert result["ok"] is True
    assert result["company_name"] == "Dixis Α.Ε."
    assert result["realm_id"] == env.realm
    assert isinstance(result["round_trip_ms"], int)
    assert result["home_currency"] == "EUR"


async def test_quickbooks_errors_fail_the_request_with_their_message(env: Env) -> None:
    env.shop.emu.inject_fault("503", count=None, path="companyinfo")
    env.shop.emu.inject_fault("500", count=None, path="reports")
    test_id = ask(env.shop.url, "SELECT qbsync.request_connection_test()")
    report_id = ask(env.shop.url, "SELECT qbsync.request_report('month')")
    assert await handle_pending_requests(env.pool, env.client, env.realm) == 2
    for request_id in (test_id, report_id):
        req = request_row(env.shop.url, request_id)
        assert req["state"] == "failed"
        assert req["error"].startswith("QuickBooks")
        assert req["result"]["realm_id"] == env.realm
        assert req["result"]["status"] in (500, 503)
    with psycopg.connect(env.shop.url) as conn:
        assert conn.execute("SELECT count(*) FROM qbsync.reports").fetchone() == (0,)


async def test_bad_parameters_fail_only_their_request(env: Env) -> None:
    with psycopg.connect(env.shop.url, autocommit=True) as conn:
        bad = conn.execute(
            "INSERT INTO qbsync.admin_requests (kind, params) VALUES ('report', %s::jsonb)"
            " RETURNING id", (json.dumps({"report": "BalanceSheet", "start_date": "2024-01-01",
                                          "end_date": "2024-01-31"}),)).fetchone()
    assert bad is not None
    good = ask(env.shop.url, "SELECT qbsync.request_connection_test()")
    assert await handle_pending_requests(env.pool, env.client, env.realm) == 2
    assert request_row(env.shop.url, bad[0])["error"] == (
        "RequestFailed: report 'BalanceSheet' is not supported (only ProfitAndLoss)")
    assert request_row(env.shop.url, good)["state"] == "done"


async def test_a_stuck_request_is_claimed_again(env: Env) -> None:
    request_id = ask(env.shop.url, "SELECT qbsync.request_connection_test()")
    with psycopg.connect(env.shop.url, autocommit=True) as conn:
        conn.execute("UPDATE qbsync.admin_requests SET state = 'running', worker = 'dead-daemon',"
                     " started_at = now() - interval '11 minutes' WHERE id = %s", (request_id,))
    assert await handle_pending_requests(env.pool, env.client, env.realm, worker="w2") == 1
    assert request_row(env.shop.url, request_id)["worker"] == "w2"
