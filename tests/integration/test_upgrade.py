"""A live qbsync 0.1.0 database upgrades to this qbsync and its daemon finishes every row once.

The database is built the way 0.1.0 left it: exactly migrations 0001-0006 applied, the Dixis
shop as 0.1.0 shipped it (tests/fixtures/dixis-0.1.0, pinned by tests/unit/test_release.py),
and state made only by 0.1.0's own SQL functions, as a 0.1.0 daemon killed mid-run leaves it:
rows pending in the outbox and changes not yet collected; rows running under a lease, one
of them a customer whose create had reached QuickBooks; customers already synced
(entity_map, write-back, log rows); a dead order; drift; the company's tokens encrypted in
0.1.0's format with an expired access token. Then stop-migrate-start: `qbsync migrate`
refuses while the killed daemon's heartbeat is fresh, `--force` upgrades, and today's daemon
runs. Nothing here names a migration after 0006, so the test holds as migrations are added.
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

from qbsync.cli import main
from qbsync.emulator import Emulator
from qbsync.migrate import discover
from qbsync.vault import generate_key
from tests.daemon_support import EMULATOR_URL, Shop, drained, running, settings_for
from tests.schema_support import (
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
    dead: int  # rows of the dead order (the order, its payment)
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
    dead = [i for i, e, k in claimed if k == live.dead_order and e in ("order", "payment",
                                                                         "refund")]
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

    # The shop kept selling: changes captured, not collected yet.
    conn.execute("SELECT dixis.generate(3, 0.5)")
    row = conn.execute("SELECT (SELECT max(id) FROM qbsync.integration_logs), "
                       "(SELECT count(*) FROM qbsync.changes)").fetchone()
    assert row is not None
    live.log_ids, live.uncollected = int(row[0]), int(row[1])
    assert live.uncollected > 0
    return live


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
    tmp_path: Path, runner_env: dict[str, str | None]
) -> None:
    with fresh_database("upgrade") as url:
        assert [m.name for m in migrate_released(url, tmp_path)] == list(RELEASED)
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

        # Stop (the old daemon was killed), migrate, start.
        refused = CliRunner().invoke(main, ["migrate", "--database-url", url], env=runner_env)
        assert refused.exit_code == 1
        assert f"1 daemon(s) running: {OLD_DAEMON}" in refused.stderr
        upgraded = CliRunner().invoke(main, ["migrate", "--force", "--database-url", url],
                                      env=runner_env)
        assert upgraded.exit_code == 0, upgraded.stderr
        applied = [m.name for m in discover()][len(RELEASED):]
        assert [f"applying {n}" for n in applied] == upgraded.stdout.splitlines()[:-1]

        settings = settings_for(url, key, worker_name="new-host:1", drift_interval=0)
        shop = Shop(url, emu, realm, settings)
        async with running(shop):
            await drained(url, within=180)
        with psycopg.connect(url) as conn:
            after = outbox(conn)
            invoiced = invoices_by_order(conn, emu, realm)
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
        assert_nothing_twice(emu, realm)
