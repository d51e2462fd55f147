"""The Medusa shop with the daemon as a real process killed with kill -9 at random moments:
every invoiceable order ends with exactly one invoice of Medusa's total, every capture with
one payment, every refund with one receipt, nothing duplicated, and the only dead rows are the
foreign-currency orders, with their reason."""

from __future__ import annotations

import asyncio
import collections
import random
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from qbsync import shop as shops
from qbsync.emulator import Emulator
from qbsync.emulator.server import EmulatorServer
from tests.daemon_support import connect_shop
from tests.integration.dixis_helpers import money
from tests.integration.medusa_helpers import INVOICED, MEDUSA_TOTAL
from tests.process_support import DaemonProcess, daemon_env, wait_drained
from tests.support import conn_url

QBSYNC = str(Path(sys.executable).with_name("qbsync"))


def qbsync(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QBSYNC, *args], capture_output=True, text=True, timeout=300,
                          check=False)


def test_shop_install_and_generate_medusa_from_the_command_line(db_url: str) -> None:
    installed = qbsync("shop", "install", "medusa", "--database-url", db_url)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout.strip() == "shop medusa installed with capture triggers"
    made = qbsync("shop", "generate", "medusa", "--orders", "25", "--seed", "0.2",
                  "--database-url", db_url)
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("25 orders, "), made.stdout
    # installing again refreshes the functions and rules and keeps the data
    again = qbsync("shop", "install", "medusa", "--database-url", db_url)
    assert again.returncode == 0, again.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute('SELECT count(*) FROM medusa."order"').fetchone() == (25,)
        tracked = conn.execute("SELECT count(DISTINCT tbl) FROM qbsync.tracked").fetchone()
        assert tracked is not None
        assert tracked[0] >= 10
        pending = conn.execute("SELECT qbsync.backlog()").fetchone()
        assert pending is not None
        assert pending[0] > 0  # the generated orders were captured


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emu = Emulator(limits=False)
    with EmulatorServer(emu) as srv:
        yield srv


@pytest.mark.slow
async def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    medusa_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    emu = server.emulator
    emu.set_latency(0.002, 0.03)  # so that kills land while requests are in flight
    shop = await connect_shop(conn_url(medusa_db), emu, api_base_url=server.base_url)
    medusa_db.execute("UPDATE qbsync.entities SET max_attempts = 10, backoff_seconds = '{0}'")
    shops.generate(medusa_db, 120, seed=0.7, name="medusa")
    medusa_db.commit()
    daemon = DaemonProcess(daemon_env(shop.url, server.base_url, shop.token_keys), "crashy",
                           tmp_path).start()
    rng = random.Random(11)
    for _ in range(6):
        await asyncio.sleep(rng.uniform(0.3, 1.2))  # a random moment: the chaos under test
        daemon.kill()
        daemon.start()
    wait_drained(shop.url, 180, [daemon])
    assert daemon.terminate() == 0, daemon.log()[-4000:]
    assert daemon.starts == 7
    conn = medusa_db
    conn.commit()

    expected = {f"MED-{n}": total for n, total in conn.execute(
        f"SELECT t.display_id, t.total FROM ({MEDUSA_TOTAL}) t WHERE t.id IN ({INVOICED})")}
    invoices = emu.entities(shop.realm_id, "Invoice")
    numbers = collections.Counter(inv["DocNumber"] for inv in invoices)
    assert [n for n, c in numbers.items() if c > 1] == []
    assert set(numbers) == set(expected)
    for inv in invoices:
        assert Decimal(str(inv["TotalAmt"])) == money(expected[inv["DocNumber"]])
    for kind, key in (("Customer", "DisplayName"), ("Item", "Name")):
        names = collections.Counter(o[key] for o in emu.entities(shop.realm_id, kind))
        assert [n for n, c in names.items() if c > 1] == []
    captures = conn.execute(
        "SELECT count(*) FROM medusa.capture c JOIN medusa.payment p ON p.id = c.payment_id "
        "JOIN medusa.order_payment_collection opc ON opc.payment_collection_id = "
        "p.payment_collection_id JOIN medusa.\"order\" o ON o.id = opc.order_id "
        f"WHERE o.id IN ({INVOICED})").fetchone()
    assert captures == (len(emu.entities(shop.realm_id, "Payment")),)
    payments = collections.Counter(p["PrivateNote"] for p in emu.entities(shop.realm_id, "Payment"))
    assert [n for n, c in payments.items() if c > 1] == []
    receipts = collections.Counter(r.get("DocNumber")
                                   for r in emu.entities(shop.realm_id, "RefundReceipt"))
    assert [n for n, c in receipts.items() if c > 1] == []
    refunds = conn.execute(
        "SELECT count(*) FROM medusa.refund r JOIN medusa.payment p ON p.id = r.payment_id "
        "JOIN medusa.order_payment_collection opc ON opc.payment_collection_id = "
        f"p.payment_collection_id WHERE opc.order_id IN ({INVOICED})").fetchone()
    assert refunds == (sum(receipts.values()),)
    assert refunds != (0,)
    dead = conn.execute("SELECT entity, last_error FROM qbsync.outbox").fetchall()
    assert dead  # the dollar orders, 4 % of them
    assert all(f"is in USD (CurrencyRef) but QuickBooks company {shop.realm_id} keeps its "
               "books in EUR" in error for _, error in dead), dead
    synced = conn.execute(
        "SELECT count(*) FROM medusa_qbsync.sync_state WHERE entity = 'order' AND status = 'synced'"
    ).fetchone()
    assert synced == (len(expected),)
