"""The admin commands through the real `qbsync` entry point (a subprocess), against a fresh
Dixis database; the daemon's part of report / test-connection runs in the test process."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from qbsync.admin_requests import handle_pending_requests
from qbsync.db import create_pool
from qbsync.emulator import Emulator
from qbsync.qbo.client import QboClient
from tests.daemon_support import EMULATOR_URL, connect_shop

QBSYNC = str(Path(sys.executable).with_name("qbsync"))


def run(*args: str, url: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [QBSYNC, *args] + (["--database-url", url] if url else [])
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def url(dixis_url: str) -> str:
    with psycopg.connect(dixis_url, autocommit=True) as conn:
        conn.execute("SELECT dixis.generate(12, 0.35)")
        conn.execute("DELETE FROM qbsync.changes")
    return dixis_url


def sql(url: str, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, params)  # type: ignore[arg-type]
        return cur.fetchall() if cur.description else []


@pytest.mark.parametrize("command", ["status", "logs", "resync", "sync", "retry-dead", "report",
                                     "test-connection", "notices"])
def test_help(command: str) -> None:
    done = run(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "--database-url" in done.stdout
    assert "Usage: qbsync " + command in done.stdout


def test_status_table_and_json(url: str) -> None:
    done = run("status", url=url)
    assert done.returncode == 0, done.stderr
    assert "orders without an invoice" in done.stdout
    assert "not connected" in done.stdout
    pending = sql(url, "SELECT count(*) FROM dixis.orders WHERE status = 'completed'"
                       " AND quickbooks_invoice_id IS NULL")[0][0]
    as_json = run("status", "--json", url=url)
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert data["orders_pending"] == pending
    assert data["connection_status"] == "not connected"
    assert data["queue_depth"] == 0


def test_logs_pages_and_filters(url: str) -> None:
    sql(url, "INSERT INTO qbsync.integration_logs (created_at, operation, model_type, model_id,"
             " status, error_message) SELECT now() - make_interval(secs => g), 'create', 'order',"
             " g::text, CASE WHEN g %% 10 = 0 THEN 'dead' ELSE 'success' END,"
             " CASE WHEN g %% 10 = 0 THEN 'QuickBooks 6000 broken ' || g END"
             " FROM generate_series(1, 120) g")
    first = run("logs", url=url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.rstrip().endswith("page 1 of 3")
    lines = first.stdout.splitlines()
    assert lines[2].split()[3] == "1"  # newest first: key 1 is the most recent
    last = run("logs", "--page", "3", url=url)
    assert "page 3 of 3" in last.stdout
    assert len(last.stdout.splitlines()) == 2 + 20 + 1
    dead = run("logs", "--status", "dead", "--entity", "order", url=url)
    assert "page 1 of 1" in dead.stdout
    assert dead.stdout.count("QuickBooks 6000 broken") == 12
    one = run("logs", "--key", "30", url=url)
    assert "QuickBooks 6000 broken 30" in one.stdout
    assert run("logs", "--status", "bogus", url=url).returncode == 2


def test_resync_known_and_unknown_keys(url: str) -> None:
    keys = [str(r[0]) for r in sql(url, "SELECT id FROM dixis.orders ORDER BY id LIMIT 2")]
    done = run("resync", "order", *keys, "--force", url=url)
    assert done.returncode == 0, done.stderr
    assert "queued 2 of 2 order key(s) (forced)" in done.stdout
    assert sql(url, "SELECT count(*) FROM qbsync.outbox WHERE origin = 'resync' AND force")[0][0] \
        == 2
    sql(url, "DELETE FROM qbsync.outbox")
    bad = run("resync", "order", keys[0], "424242", "nope", url=url)
    assert bad.returncode == 1
    assert "424242, nope" in bad.stderr
    assert "nothing was enqueued" in bad.stderr
    assert "Traceback" not in bad.stderr
    assert sql(url, "SELECT count(*) FROM qbsync.outbox")[0][0] == 0
    unknown_entity = run("resync", "invoice", "1", url=url)
    assert unknown_entity.returncode == 1
    assert "unknown entity" in unknown_entity.stderr
    assert run("resync", "order", url=url).returncode == 2  # no key


def test_sync_customers_and_catalog(url: str) -> None:
    customers = run("sync", "customers", url=url)
    assert customers.returncode == 0, customers.stderr
    n = sql(url, "SELECT count(*) FROM qbsync_map.customer_keys()")[0][0]
    assert f"queued {n} row(s)" in customers.stdout
    catalog = run("sync", "catalog", url=url)
    products = sql(url, "SELECT count(*) FROM qbsync_map.product_keys()")[0][0]
    assert f"queued {products} row(s)" in catalog.stdout
    # nobody pushes them: waiting times out with exit 4 and shows the progress
    waited = run("sync", "catalog", "--wait", "0.5", url=url)
    assert waited.returncode == 0  # nothing new was queued, nothing to wait for
    sql(url, "DELETE FROM qbsync.outbox WHERE entity = 'product'")
    waited = run("sync", "catalog", "--wait", "0.5", url=url)
    assert waited.returncode == 4
    assert f"0/{products} pushed" in waited.stdout


def test_retry_dead_and_notices(url: str) -> None:
    sql(url, "SELECT qbsync.enqueue('order', '1'), qbsync.enqueue('order', '2')")
    for row_id, key in sql(url, "SELECT id, key FROM qbsync.claim('w', 5, '1 minute')"):
        sql(url, "SELECT qbsync.fail(%s, 'w', 'r', %s::jsonb)",
            (row_id, json.dumps({"kind": "permanent", "message": f"bad order {key}"})))
    listed = run("notices", url=url)
    assert listed.returncode == 0, listed.stderr
    assert "bad order 1" in listed.stdout
    assert "2 open notice(s)" in listed.stdout
    nid = sql(url, "SELECT id FROM qbsync.open_notices WHERE key = '1'")[0][0]
    acked = run("notices", "--ack", str(nid), url=url)
    assert f"notice {nid} acknowledged" in acked.stdout
    again = run("notices", "--ack", str(nid), url=url)
    assert again.returncode == 0
    assert "acknowledged already" in again.stdout
    missing = run("notices", "--ack", "999999", url=url)
    assert missing.returncode == 1
    assert "no notice 999999" in missing.stderr
    assert run("notices", "--ack", "1", "--ack-all", url=url).returncode == 2

    retried = run("retry-dead", "--entity", "order", "--key", "1", url=url)
    assert retried.returncode == 0, retried.stderr
    assert "1 dead row(s) queued again" in retried.stdout
    assert "no dead rows matched" in run("retry-dead", "--key", "1", url=url).stdout
    assert "1 notice(s) acknowledged" in run("notices", "--ack-all", url=url).stdout
    assert "no open notices" in run("notices", url=url).stdout
    assert "1 dead row(s) queued again" in run("retry-dead", url=url).stdout


def test_report_and_connection_test_without_daemon_time_out(url: str) -> None:
    asked = run("report", "--period", "month", url=url)
    assert asked.returncode == 0, asked.stderr
    assert "report requested" in asked.stdout
    waited = run("report", "--period", "week", "--wait", "0.3", url=url)
    assert waited.returncode == 4
    assert "no answer from the daemon" in waited.stderr
    assert run("test-connection", "--wait", "0.3", url=url).returncode == 4
    assert run("report", url=url).returncode == 2
    assert run("report", "--period", "month", "--from", "2024-01-01", url=url).returncode == 2
    assert run("report", "--from", "2024-01-01", url=url).returncode == 2
    ranged = run("report", "--from", "2024-01-01", "--to", "2024-03-31", url=url)
    assert ranged.returncode == 0
    assert sql(url, "SELECT count(*) FROM qbsync.admin_requests WHERE state = 'pending'")[0][0] \
        == 4


async def _answer(url: str, emu: Emulator, realm: str, proc: subprocess.Popen[str]) -> None:
    """Play the daemon: answer requests until the CLI process exits."""
    pool = await create_pool(url, size=2)
    token = emu.issue_tokens(realm)["access_token"]

    class Tokens:
        async def access_token(self) -> str:
            return token

        async def refresh(self, rejected: str) -> str:
            return token

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app))
    client = QboClient(http, base_url=EMULATOR_URL, realm_id=realm, tokens=Tokens())
    try:
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            await handle_pending_requests(pool, client, realm)
            await asyncio.sleep(0.1)  # the daemon's poll interval
    finally:
        await http.aclose()
        await pool.close()


def test_report_and_connection_test_answered(url: str) -> None:
    emu = Emulator(limits=False)
    shop = asyncio.run(connect_shop(url, emu))
    proc = subprocess.Popen([QBSYNC, "report", "--from", "2000-01-01", "--to", "2100-12-31",
                             "--wait", "60", "--database-url", url], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    asyncio.run(_answer(url, emu, shop.realm_id, proc))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    # nothing was pushed: QuickBooks has no income, the shop has its completed orders
    net = sql(url, "SELECT net FROM qbsync_map.order_revenue('2000-01-01', '2100-12-31')")[0][0]
    assert net
    income = next(line for line in out.splitlines() if line.startswith("income, net of VAT"))
    assert income.split()[-2:] == ["0.00", f"{net:,.2f}"]
    assert "DIFFERENT" in out
    assert "ProfitAndLoss 2000-01-01 .. 2100-12-31 (custom)" in out

    proc = subprocess.Popen([QBSYNC, "test-connection", "--wait", "60", "--database-url", url],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    asyncio.run(_answer(url, emu, shop.realm_id, proc))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, out + err
    assert "Dixis Α.Ε." in out
    assert f"realm {shop.realm_id}" in out
    assert "ms round trip" in out


def test_unreachable_database_exit_code() -> None:
    done = run("status", url="postgresql://postgres@127.0.0.1:1/x?connect_timeout=2")
    assert done.returncode == 3
    assert "cannot reach the database" in done.stderr
