"""The daemon as real processes: kill -9 at random moments, two daemons at once, SIGTERM
drain, PostgreSQL restarted under it. Every order ends with exactly one invoice."""

from __future__ import annotations

import asyncio
import collections
import random
import signal
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from qbsync import shop as dixis
from qbsync.emulator import Emulator
from qbsync.emulator.server import EmulatorServer
from qbsync.migrate import migrate
from qbsync.pgcluster import TempCluster
from tests.daemon_support import connect_shop
from tests.process_support import DaemonProcess, daemon_env, wait_drained, wait_started
from tests.support import INVOICED, conn_url

pytestmark = pytest.mark.slow


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emu = Emulator(limits=False)
    with EmulatorServer(emu) as srv:
        yield srv


def completed_orders(conn: psycopg.Connection) -> dict[str, str]:
    conn.commit()
    return dict(conn.execute(
        "SELECT dixis.order_number(id, created_at), id::text FROM dixis.orders "
        "WHERE " + INVOICED).fetchall())


def assert_exactly_once(conn: psycopg.Connection, emu: Emulator, realm: str) -> None:
    expected = completed_orders(conn)
    invoices = emu.entities(realm, "Invoice")
    numbers = collections.Counter(inv["DocNumber"] for inv in invoices)
    assert [n for n, c in numbers.items() if c > 1] == []
    assert set(numbers) == set(expected)
    names = collections.Counter(c["DisplayName"] for c in emu.entities(realm, "Customer"))
    assert [n for n, c in names.items() if c > 1] == []
    items = collections.Counter(i["Name"] for i in emu.entities(realm, "Item"))
    assert [n for n, c in items.items() if c > 1] == []
    synced = conn.execute(
        "SELECT count(*) FROM dixis.orders WHERE " + INVOICED
        + " AND quickbooks_sync_status = 'synced'").fetchone()
    assert synced == (len(expected),)


async def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    emu = server.emulator
    emu.set_latency(0.002, 0.03)  # so that kills land while requests are in flight
    shop = await connect_shop(conn_url(dixis_db), emu, api_base_url=server.base_url)
    dixis_db.execute("UPDATE qbsync.entities SET max_attempts = 10, backoff_seconds = '{0}'")
    dixis_db.execute("SELECT dixis.generate(150, 0.7)")
    dixis_db.commit()
    env = daemon_env(shop.url, server.base_url, shop.token_keys)
    daemon = DaemonProcess(env, "crashy", tmp_path).start()
    rng = random.Random(7)
    for _ in range(8):
        await asyncio.sleep(rng.uniform(0.3, 1.2))
        daemon.kill()
        daemon.start()
    wait_drained(shop.url, 120, [daemon])
    assert daemon.terminate() == 0, daemon.log()[-4000:]
    dead = dixis_db.execute("SELECT key, last_error FROM qbsync.outbox").fetchall()
    assert dead == []
    assert_exactly_once(dixis_db, emu, shop.realm_id)
    assert daemon.starts == 9


async def test_two_daemons_never_push_a_row_twice(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    emu = server.emulator
    emu.set_latency(0.001, 0.01)
    shop = await connect_shop(conn_url(dixis_db), emu, api_base_url=server.base_url)
    # one request per invoice (the batch endpoint is tested on its own), counted below
    env = daemon_env(shop.url, server.base_url, shop.token_keys, batch_threshold=100_000)
    daemons = [DaemonProcess(env, f"twin-{i}", tmp_path).start() for i in (1, 2)]
    await asyncio.sleep(1)
    dixis_db.execute("SELECT dixis.generate(150, 0.3)")
    dixis_db.commit()
    wait_drained(shop.url, 120, daemons)
    for d in daemons:
        assert d.terminate() == 0, d.log()
    assert_exactly_once(dixis_db, emu, shop.realm_id)
    creates = dixis_db.execute(
        "SELECT model_id, count(*) FROM qbsync.integration_logs WHERE model_type = 'order' "
        "AND status = 'success' GROUP BY 1 HAVING count(*) > 1").fetchall()
    assert creates == []
    posts = emu.request_count(method="POST", route="/invoice", status=200)
    assert posts == len(completed_orders(dixis_db))
    actors = dixis_db.execute(
        "SELECT DISTINCT actor FROM qbsync.integration_logs WHERE status = 'success'").fetchall()
    assert sorted(a for (a,) in actors) == ["twin-1", "twin-2"]  # both shared the queue
    assert all(d.starts == 1 for d in daemons)


async def test_sigterm_drains_and_releases(dixis_db: psycopg.Connection,
                                           server: EmulatorServer, tmp_path: Path) -> None:
    emu = server.emulator
    emu.set_latency(0.2, 0.2)
    shop = await connect_shop(conn_url(dixis_db), emu, api_base_url=server.base_url)
    dixis_db.execute("SELECT dixis.generate(60, 0.5)")
    dixis_db.commit()
    daemon = DaemonProcess(daemon_env(shop.url, server.base_url, shop.token_keys,
                                      shutdown_grace=1), "polite", tmp_path).start()
    wait_started(shop.url, daemon)  # a SIGTERM during start-up is a plain kill
    await asyncio.sleep(1)
    assert daemon.terminate(30) == 0, daemon.log()
    running = dixis_db.execute(
        "SELECT count(*) FROM qbsync.outbox WHERE state = 'running'").fetchone()
    assert running == (0,)  # drained within the grace period or handed back
    workers = dixis_db.execute("SELECT count(*) FROM qbsync.workers").fetchone()
    assert workers == (0,)
    emu.set_latency(None)
    successor = DaemonProcess(daemon.env, "polite2", tmp_path).start()
    wait_drained(shop.url, 120, [successor])
    assert successor.terminate() == 0, successor.log()[-4000:]
    assert_exactly_once(dixis_db, emu, shop.realm_id)


async def test_postgres_restart_mid_run_loses_nothing(server: EmulatorServer,
                                                      tmp_path: Path) -> None:
    emu = server.emulator
    emu.set_latency(0.001, 0.01)
    with TempCluster() as pg, psycopg.connect(pg.url(), autocommit=True) as admin:
        admin.execute("CREATE DATABASE shop")
        url = pg.url("shop")
        migrate(url)
        with psycopg.connect(url) as conn:
            dixis.install_shop(conn, "dixis")
        shop = await connect_shop(url, emu, api_base_url=server.base_url)
        daemon = DaemonProcess(daemon_env(url, server.base_url, shop.token_keys),
                               "survivor", tmp_path).start()
        wait_started(url, daemon)
        with psycopg.connect(url) as conn:
            dixis.generate(conn, 80, seed=0.1)
        await asyncio.sleep(1.0)
        pg.restart()
        with psycopg.connect(url) as conn:
            conn.execute("UPDATE dixis.orders SET status = 'completed', completed_at = now() "
                         "WHERE status <> 'completed' AND id % 2 = 0")
            conn.commit()
        wait_drained(url, 120, [daemon])
        assert daemon.alive(), daemon.log()
        daemon.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
        assert daemon.proc.wait(30) == 0  # type: ignore[union-attr]
        with psycopg.connect(url) as conn:
            assert_exactly_once(conn, emu, shop.realm_id)
