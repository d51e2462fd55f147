"""Payments and refunds across kill -9: the daemon as a real process, killed at random
moments while orders are paid and refunded; afterwards exactly one Payment per paid order,
one RefundReceipt per refund, and every paid invoice balanced."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from decimal import Decimal
from pathlib import Path

import psycopg

from qbsync.emulator.server import EmulatorServer
from tests.acceptance.test_daemon_processes import server  # noqa: F401  # the fixture
from tests.daemon_support import connect_shop
from tests.process_support import DaemonProcess, daemon_env, wait_drained
from tests.support import conn_url

KEPT = "dixis.order_keeps_invoice(o)"


def pay_some(conn: psycopg.Connection, n: int) -> None:
    conn.execute(
        "UPDATE dixis.orders SET paid_at = completed_at + interval '1 day',"
        " amount_paid = total, payment_reference = 'RF-' || id"
        " WHERE id IN (SELECT id FROM dixis.orders WHERE status = 'completed'"
        "              AND paid_at IS NULL AND total > 0 ORDER BY id LIMIT %s)", (n,))


def refund_some(conn: psycopg.Connection, n: int) -> None:
    conn.execute(
        "INSERT INTO dixis.refunds (order_id, amount, reason, refunded_at, method, reference)"
        " SELECT o.id, round(o.amount_paid * 0.2, 2), 'Σπασμένο βάζο', now(), 'card', 're_' || o.id"
        " FROM dixis.orders o WHERE o.status = 'completed' AND o.amount_paid >= 1"
        " AND NOT EXISTS (SELECT 1 FROM dixis.refunds r WHERE r.order_id = o.id)"
        " ORDER BY o.id DESC LIMIT %s", (n,))


async def test_kill_9_while_payments_and_refunds_flow(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path  # noqa: F811
) -> None:
    emu = server.emulator
    emu.set_latency(0.002, 0.03)  # so that kills land while requests are in flight
    shop = await connect_shop(conn_url(dixis_db), emu, api_base_url=server.base_url)
    dixis_db.execute("UPDATE qbsync.entities SET max_attempts = 10, backoff_seconds = '{0}'")
    dixis_db.execute("SELECT dixis.generate(80, 0.3)")
    dixis_db.commit()
    env = daemon_env(shop.url, server.base_url, shop.token_keys)
    daemon = DaemonProcess(env, "crashy-payments", tmp_path).start()
    rng = random.Random(11)
    for _ in range(8):
        # random moments, for the payments and for the kill: the chaos under test
        await asyncio.sleep(rng.uniform(0.3, 1.0))
        pay_some(dixis_db, 3)
        refund_some(dixis_db, 2)
        dixis_db.commit()
        await asyncio.sleep(rng.uniform(0.05, 0.4))
        daemon.kill()
        daemon.start()
    wait_drained(shop.url, 180, [daemon])
    assert daemon.terminate() == 0, daemon.log()[-4000:]
    assert dixis_db.execute("SELECT entity, key, last_error FROM qbsync.outbox").fetchall() == []

    paid = {str(r[0]): (Decimal(r[1]), Decimal(r[2])) for r in dixis_db.execute(
        f"SELECT o.id, o.amount_paid, o.total FROM dixis.orders o WHERE o.paid_at IS NOT NULL"
        f" AND {KEPT}").fetchall()}
    invoice_of = {k: v for k, v in dixis_db.execute(
        "SELECT key, qbo_id FROM qbsync.entity_map WHERE entity = 'order'").fetchall()}
    invoices = {i["Id"]: i for i in emu.entities(shop.realm_id, "Invoice")}
    payments = emu.entities(shop.realm_id, "Payment")
    applied = Counter(line["LinkedTxn"][0]["TxnId"] for p in payments for line in p["Line"])
    assert len(payments) == len(paid)
    for key, (amount, total) in paid.items():
        invoice = invoices[invoice_of[key]]
        assert applied[invoice["Id"]] == 1, f"order {key}: {applied[invoice['Id']]} payments"
        assert Decimal(str(invoice["Balance"])) == total - amount, key

    refunds = dixis_db.execute(
        f"SELECT r.id::text FROM dixis.refunds r JOIN dixis.orders o ON o.id = r.order_id"
        f" WHERE {KEPT}").fetchall()
    receipts = emu.entities(shop.realm_id, "RefundReceipt")
    numbers = Counter(r["DocNumber"] for r in receipts)
    assert len(receipts) == len(refunds) == len(numbers), numbers.most_common(3)
    mapped = dixis_db.execute(
        "SELECT count(*) FROM qbsync.entity_map WHERE entity = 'refund'").fetchone()
    assert mapped == (len(refunds),)
    assert daemon.starts == 9
