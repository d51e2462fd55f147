"""A live qbsync 0.1.0 database upgrades to this qbsync and its daemon finishes every row once.

The database is built the way 0.1.0 left it: exactly migrations 0001-0006 applied by 0.1.0's
runner (tests/schema_support.py: its bookkeeping table, without today's qbsync_version column),
the Dixis shop as 0.1.0 shipped it (tests/fixtures/dixis-0.1.0, pinned by
tests/unit/test_release.py), and state made only by 0.1.0's own SQL functions, as a 0.1.0
daemon killed mid-run leaves it: rows pending in the outbox and changes not yet collected; rows
running under a lease, one of them a customer whose create had reached QuickBooks; customers
already synced (entity_map, write-back, log rows); a dead order; drift; the company's tokens
encrypted in 0.1.0's format with an expired access token; a refund the shop recorded after the
kill. Then stop-migrate-start: `qbsync migrate` refuses while the killed daemon's heartbeat is
fresh, `--force` upgrades, and today's daemon runs: one invoice per order, one payment per paid
order, one refund receipt per refund, no customer or item twice. Nothing here names a migration
after 0006, so the test holds as migrations are added.
"""

from __future__ import annotations

import base64
import collections
import json
import os
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from qbsync import __version__
from qbsync.cli import main
from qbsync.emulator import Emulator
from qbsync.migrate import discover
from qbsync.vault import generate_key
from tests.daemon_support import EMULATOR_URL, Shop, drained, running, settings_for
from tests.schema_support import (
    COLUMNS_0_1_0,
    RELEASED,
    fresh_database,
    install_shop_0_1_0,
    migrate_released,
)
from tests.support import INVOICED

OLD_DAEMON = "old-host:4242"
COMPANY = "Dixis Α.Ε."


def tokens_0_1_0(key_entry: str, realm: str, issued: dict[str, Any]) -> tuple[bytes, str]:
    """0.1.0's token blob, written out here rather than by today's vault: version byte 1,
    12-byte nonce, AES-256-GCM over the sorted compact JSON, bound to realm and key id. The
    access token has expired: the new daemon must decrypt the refresh token and use it."""
    key_id, _, key = key_entry.partition(":")
    now = datetime.now(UTC)
    payload = {"access_token": issued["access_token"], "refresh_token": issued["refresh_token"],
               "expires_at": (now - timedelta(hours=1)).isoformat(),
               "refresh_expires_at": (now + timedelta(days=100)).isoformat()}
    nonce = secrets.token_bytes(12)
    sealed = AESGCM(base64.b64decode(key)).encrypt(
        nonce, json.dumps(payload, separators=(",", ":"), sort_keys=True).encode(),
        b"qbsync.tokens.v1\x00" + realm.encode() + b"\x00" + key_id.encode())
    return b"\x01" + nonce + sealed, key_id


class Live:
    """What the 0.1.0 state holds, to check after the upgrade."""

    synced: dict[str, str]  # customer key -> QuickBooks Id, recorded by 0.1.0
    reached: tuple[str, str]  # (customer key, QuickBooks Id): created, never recorded
    dead_order: str
    dead_refunds: set[str]  # refund keys of the dead order
    dead: int  # rows of the dead order (the order, its payment, its refunds)
    refunded: str  # the refund key the shop added after the kill
    log_ids: int  # the last integration_logs id 0.1.0 wrote
    uncollected: int


def build_0_1_0_state(conn: psycopg.Connection, emu: Emulator, realm: str, key: str) -> Live:
    live = Live()
    conn.execute("SELECT dixis.generate(14, 0.35)")
    conn.execute("SELECT qbsync.sync_all_customers()")  # `qbsync sync customers`
    issued = emu.issue_tokens(realm)
    blob, key_id = tokens_0_1_0(key, realm, issued)
    now = datetime.now(UTC)
    conn.execute("SELECT qbsync.save_connection(%s, 'emulator', %s, %s, NULL, %s, %s, %s, %s, "
                 "true)", (realm, EMULATOR_URL, COMPANY, blob, key_id, now - timedelta(hours=1),
                           now + timedelta(days=100)))

    # A 0.1.0 daemon collected the changes, took every row under a lease, and was killed.
    conn.execute("SELECT qbsync.collect_changes(100000)")
    conn.execute("SELECT qbsync.register_worker(%s, 'old-host', 4242)", (OLD_DAEMON,))
    claimed = conn.execute("SELECT id, entity, key FROM qbsync.claim(%s, 100000, "
                           "'1 millisecond')", (OLD_DAEMON,)).fetchall()
    customers = [(i, k) for i, e, k in claimed if e == "customer" and k.isdigit()]
    orders = [(i, k) for i, e, k in claimed if e == "order"]
    assert len(customers) >= 3
    assert len(orders) >= 2

    # It had pushed and recorded two customers...
    live.synced = {}
    for row_id, ckey in customers[:2]:
        body = conn.execute("SELECT qbsync_map.customer(%s)", (ckey,)).fetchone()
        assert body is not None
        obj = emu.create_entity(realm, "Customer", body[0])
        result = {"qbo_type": "Customer", "qbo_id": obj["Id"], "sync_token": obj["SyncToken"],
                  "operation": "create", "object": obj}
        done = conn.execute("SELECT qbsync.complete(%s, %s, %s, %s::jsonb)",
                            (row_id, OLD_DAEMON, realm, json.dumps(result))).fetchone()
        assert done == (True,)
        live.synced[ckey] = obj["Id"]
    # ...created a third whose answer it never recorded (killed in flight)...
    ckey = customers[2][1]
    body = conn.execute("SELECT qbsync_map.customer(%s)", (ckey,)).fetchone()
    assert body is not None
    live.reached = (ckey, emu.create_entity(realm, "Customer", body[0])["Id"])
    # ...gave an order up for good, and its payment (which would wait for the invoice)...
    live.dead_order = orders[0][1]
    refunds = {str(r[0]) for r in conn.execute(
        "SELECT id FROM dixis.refunds WHERE order_id = %s", (int(live.dead_order),))}
    dead = [i for i, e, k in claimed
            if (e in ("order", "payment") and k == live.dead_order)
            or (e == "refund" and k in refunds)]
    live.dead_refunds = refunds
    for row_id in dead:
        state = conn.execute("SELECT qbsync.fail(%s, %s, %s, %s::jsonb)", (
            row_id, OLD_DAEMON, realm, json.dumps({
                "kind": "permanent", "code": "6000",
                "message": "QuickBooks 6000: a business validation error (0.1.0)"}))
        ).fetchone()
        assert state == ("dead",)
    live.dead = len(dead)
    # ...and held that customer and one more order when it was killed; the rest it had
    # handed back.
    kept = {customers[2][0], orders[1][0]}
    done = {r for r, _ in customers[:2]} | set(dead) | kept
    conn.execute("SELECT qbsync.release(%s, %s)",
                 (OLD_DAEMON, [i for i, _, _ in claimed if i not in done]))

    # An accountant edited a synced customer in QuickBooks; 0.1.0's drift detection saw it.
    drifted = emu.edit_entity(realm, "Customer", live.synced[customers[0][1]],
                              {"PrimaryEmailAddr": {"Address": "accountant@example.gr"}})
    conn.execute("SELECT qbsync.record_drift(%s, 'Customer', %s::jsonb)",
                 (realm, json.dumps([drifted])))

    # The shop kept selling, and gave part of a paid order's money back: changes captured,
    # not collected yet.
    conn.execute("SELECT dixis.generate(3, 0.5)")
    refunded = conn.execute(
        "INSERT INTO dixis.refunds (order_id, amount, reason, refunded_at, method, reference) "
        "SELECT id, round(amount_paid / 4, 2), 'Σπασμένο βάζο κατά τη μεταφορά', "
        "       completed_at + interval '1 day', 'bank_transfer', 'ΕΜΒ-00000001' "
        "FROM dixis.orders WHERE status = 'completed' AND paid_at IS NOT NULL "
        "  AND amount_paid >= 1 AND id <> %s ORDER BY id LIMIT 1 RETURNING id",
        (int(live.dead_order),)).fetchone()
    assert refunded is not None
    live.refunded = str(refunded[0])
    row = conn.execute("SELECT (SELECT max(id) FROM qbsync.integration_logs), "
                       "(SELECT count(*) FROM qbsync.changes)").fetchone()
    assert row is not None
    live.log_ids, live.uncollected = int(row[0]), int(row[1])
    assert live.uncollected > 0
    return live


def migrations(url: str) -> tuple[list[str], list[tuple[str, str | None]]]:
    """qbsync.schema_migrations' columns, and each row's name and recording qbsync."""
    with psycopg.connect(url) as conn:
        columns = [str(r[0]) for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'qbsync.schema_migrations'"
            "::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum").fetchall()]
        rows = conn.execute("SELECT name, to_jsonb(m) ->> 'qbsync_version' "
                            "FROM qbsync.schema_migrations m ORDER BY version").fetchall()
    return columns, [(str(n), v) for n, v in rows]


def outbox(conn: psycopg.Connection) -> collections.Counter[str]:
    return collections.Counter(str(r[0]) for r in conn.execute(
        "SELECT state FROM qbsync.outbox").fetchall())


def invoices_by_order(conn: psycopg.Connection, emu: Emulator, realm: str
                      ) -> dict[str, int]:
    numbers = dict(conn.execute("SELECT dixis.order_number(id, created_at), id::text "
                                "FROM dixis.orders WHERE " + INVOICED).fetchall())
    counted = collections.Counter(inv["DocNumber"] for inv in emu.entities(realm, "Invoice"))
    assert set(counted) <= set(numbers)
    return {numbers[n]: counted.get(n, 0) for n in numbers}


def payments_by_order(conn: psycopg.Connection, emu: Emulator, realm: str
                      ) -> dict[str, int]:
    """Payments applied to each paid, invoiced order's invoice (Dixis: one per order)."""
    numbers = dict(conn.execute("SELECT dixis.order_number(id, created_at), id::text "
                                "FROM dixis.orders WHERE paid_at IS NOT NULL AND ("
                                + INVOICED + ")").fetchall())
    invoices = {inv["Id"]: inv["DocNumber"] for inv in emu.entities(realm, "Invoice")}
    counted = collections.Counter(
        invoices[linked["TxnId"]] for payment in emu.entities(realm, "Payment")
        for line in payment["Line"] for linked in line["LinkedTxn"])
    assert set(counted) <= set(numbers)
    return {numbers[n]: counted.get(n, 0) for n in numbers}


def refunds_by_key(conn: psycopg.Connection, emu: Emulator, realm: str) -> dict[str, int]:
    """RefundReceipts of each refund of an invoiced order (their DocNumber: the order's
    number, -R and the refund's rank)."""
    numbers = dict(conn.execute(
        "SELECT dixis.order_number(o.id, o.created_at) || '-R' || r.number, r.id::text "
        "FROM dixis.refunds r JOIN (SELECT * FROM dixis.orders WHERE " + INVOICED + ") o "
        "ON o.id = r.order_id").fetchall())
    counted = collections.Counter(r["DocNumber"]
                                  for r in emu.entities(realm, "RefundReceipt"))
    assert set(counted) <= set(numbers)
    return {numbers[n]: counted.get(n, 0) for n in numbers}


def assert_nothing_twice(emu: Emulator, realm: str) -> None:
    for kind, field in (("Customer", "DisplayName"), ("Item", "Name")):
        names = collections.Counter(o[field] for o in emu.entities(realm, kind))
        assert [n for n, c in names.items() if c > 1] == [], kind


@pytest.fixture
def runner_env(tmp_path: Path) -> dict[str, str | None]:
    config = tmp_path / "empty.toml"
    config.write_text("")
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("QBSYNC_")}
    env["QBSYNC_CONFIG"] = str(config)
    return env


async def test_a_live_0_1_0_database_upgrades_and_every_row_is_finished_once(
    runner_env: dict[str, str | None],
) -> None:
    with fresh_database("upgrade") as url:
        assert [m.name for m in migrate_released(url)] == list(RELEASED)
        emu = Emulator(limits=False)
        realm = emu.create_company(COMPANY, custom_txn_numbers=True)
        key = generate_key("k0")
        with psycopg.connect(url, autocommit=True) as conn:
            install_shop_0_1_0(conn)
            conn.execute("UPDATE qbsync.entities SET backoff_seconds = '{0,0,0}'")
            live = build_0_1_0_state(conn, emu, realm, key)
            before = outbox(conn)
            generation = conn.execute("SELECT token_generation FROM qbsync.connections"
                                      ).fetchone()
        assert before["dead"] == live.dead
        assert before["running"] == 2
        assert before["pending"] > 10
        assert migrations(url)[0] == COLUMNS_0_1_0  # 0.1.0's bookkeeping, as it left it

        # This qbsync reads 0.1.0's bookkeeping: every released migration applied, by no
        # recorded qbsync version; the rest pending.
        status = CliRunner().invoke(main, ["migrate", "--status", "--json", "--database-url",
                                           url], env=runner_env)
        assert status.exit_code == 5, status.stderr
        assert {(m["name"], m["state"], m["qbsync_version"])
                for m in json.loads(status.stdout)["migrations"]} == {
            (m.name, "applied" if m.name in RELEASED else "pending", None) for m in discover()}

        # Stop (the old daemon was killed), migrate, start.
        refused = CliRunner().invoke(main, ["migrate", "--database-url", url], env=runner_env)
        assert refused.exit_code == 1
        assert f"1 daemon(s) running: {OLD_DAEMON}" in refused.stderr
        upgraded = CliRunner().invoke(main, ["migrate", "--force", "--database-url", url],
                                      env=runner_env)
        assert upgraded.exit_code == 0, upgraded.stderr
        applied = [m.name for m in discover()][len(RELEASED):]
        assert [f"applying {n}" for n in applied] == upgraded.stdout.splitlines()[:-1]
        assert migrations(url)[1] == [(n, None) for n in RELEASED] + [
            (n, __version__) for n in applied]

        settings = settings_for(url, key, worker_name="new-host:1", drift_interval=0)
        shop = Shop(url, emu, realm, settings)
        async with running(shop):
            await drained(url, within=180)
        with psycopg.connect(url) as conn:
            after = outbox(conn)
            invoiced = invoices_by_order(conn, emu, realm)
            paid = payments_by_order(conn, emu, realm)
            refunds = refunds_by_key(conn, emu, realm)
            mapped = dict(conn.execute("SELECT key, qbo_id FROM qbsync.entity_map "
                                       "WHERE entity = 'customer'").fetchall())
            old_logs = conn.execute("SELECT count(*) FROM qbsync.sync_logs WHERE id <= %s",
                                    (live.log_ids,)).fetchone()
            drift = conn.execute("SELECT entity, key, change FROM qbsync.drift").fetchall()
            tokens = conn.execute("SELECT status, key_id, token_generation "
                                  "FROM qbsync.connections").fetchone()
            left = conn.execute("SELECT qbsync.backlog()").fetchone()

        # every row finished: nothing pending, running or uncollected; the dead one still dead
        assert left == (0,)
        assert after == {"dead": live.dead}
        assert invoiced.pop(live.dead_order) == 0
        assert set(invoiced.values()) == {1}  # one invoice per order
        assert paid.pop(live.dead_order, 0) == 0
        assert set(paid.values()) == {1}  # one payment per paid order
        assert {k: refunds.pop(k, 0) for k in live.dead_refunds} == dict.fromkeys(
            live.dead_refunds, 0)
        assert live.refunded in refunds
        assert set(refunds.values()) == {1}  # one refund receipt per refund
        assert_nothing_twice(emu, realm)
        # what 0.1.0 recorded stands; what it created unrecorded was adopted, not repeated
        assert {k: mapped[k] for k in live.synced} == live.synced
        assert mapped[live.reached[0]] == live.reached[1]
        assert old_logs is not None
        assert old_logs[0] > 0
        assert drift == [("customer", next(iter(live.synced)), "updated")]
        assert tokens is not None
        assert generation is not None
        assert tokens[:2] == ("connected", "k0")
        assert tokens[2] > generation[0]  # refreshed with the 0.1.0 refresh token

        # the dead order goes once it is retried, and only then
        with psycopg.connect(url, autocommit=True) as conn:
            assert conn.execute("SELECT qbsync.retry_dead(NULL, %s)",
                                (live.dead_order,)).fetchone() == (live.dead,)
        async with running(shop):
            await drained(url, within=120)
        with psycopg.connect(url) as conn:
            assert outbox(conn) == {}
            assert set(invoices_by_order(conn, emu, realm).values()) == {1}
            assert set(payments_by_order(conn, emu, realm).values()) == {1}
            assert set(refunds_by_key(conn, emu, realm).values()) == {1}
        assert_nothing_twice(emu, realm)
