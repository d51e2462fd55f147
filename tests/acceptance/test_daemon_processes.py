"""The daemon as real processes: kill -9 at random moments (during a batch-mode backlog
against a faulty QuickBooks, with the shipped tries), two daemons at once, SIGTERM drain,
PostgreSQL restarted under it. Every order ends with exactly one invoice."""

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
from tests.waiting import wait_until

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
        await asyncio.sleep(rng.uniform(0.3, 1.2))  # a random moment: the chaos under test
        daemon.kill()
        daemon.start()
    wait_drained(shop.url, 120, [daemon])
    assert daemon.terminate() == 0, daemon.log()[-4000:]
    dead = dixis_db.execute("SELECT key, last_error FROM qbsync.outbox").fetchall()
    assert dead == []
    assert_exactly_once(dixis_db, emu, shop.realm_id)
    assert daemon.starts == 9


def _progress(conn: psycopg.Connection) -> tuple[int, int, int]:
    """Invoices pushed so far (success logs of orders), the rows the daemon holds, the rows
    left (qbsync.backlog(): collected or not)."""
    row = conn.execute(
        "SELECT (SELECT count(*) FROM qbsync.integration_logs WHERE status = 'success'"
        "        AND model_type = 'order'),"
        " (SELECT count(*) FROM qbsync.outbox WHERE state = 'running'),"
        " qbsync.backlog()").fetchone()
    assert row is not None
    return row[0], row[1], row[2]


async def test_kill_9_during_a_batch_backlog_costs_no_try_and_hides_no_invoice(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    """The shipped tries (orders, customers, products: 3), a QuickBooks that answers 1 % of
    the writes with 500/503 and loses 3 % of their answers after applying them, a backlog
    kept above batch_threshold, and the daemon killed with kill -9 20 times, each time at a
    random moment once it has pushed 50 invoices since its start and holds a batch claim's
    rows. Held rows come back as interruptions, not tries; rows whose answer was lost are
    looked up before they may go dead. At the end: no dead row, every order invoiced once,
    none written back `failed`."""
    emu = server.emulator
    emu.set_latency(0.002, 0.02)  # so that kills land while requests are in flight
    emu.injector.seed(14)
    for kind, rate in (("500", 0.005), ("503", 0.005), ("drop", 0.03)):
        emu.inject_fault(kind, None, method="POST", path="/v3/company/", rate=rate)
    shop = await connect_shop(conn_url(dixis_db), emu, api_base_url=server.base_url)
    # quick retries: the schedule's waits (minutes) would outlast the test; the tries are
    # the shipped ones
    dixis_db.execute("UPDATE qbsync.entities SET backoff_seconds = '{0}'")
    tries = dict(dixis_db.execute("SELECT entity, max_attempts FROM qbsync.entities"))
    assert {tries[e] for e in ("order", "customer", "product")} == {3}
    threshold = 200  # the shipped batch_threshold
    dixis_db.execute("SELECT qbsync.untrack(tbl::text, entity) FROM qbsync.tracked"
                     " WHERE entity NOT IN ('order', 'customer', 'product')")
    dixis_db.execute("SELECT dixis.generate(450, 0.25)")
    dixis_db.commit()
    daemon = DaemonProcess(daemon_env(shop.url, server.base_url, shop.token_keys),
                           "crashy", tmp_path).start()
    rng = random.Random(14)
    left_at_kills = []
    with psycopg.connect(shop.url, autocommit=True) as watch:
        for wave in range(20):
            pushed, _, left = _progress(watch)
            if left < 3 * threshold:  # keep the backlog above batch_threshold
                watch.execute("SELECT dixis.generate(%s, %s)", (3 * threshold - left,
                                                               wave / 20))

            def working(since: int = pushed, wave: int = wave) -> bool:
                """The new daemon pushes invoices, and holds a batch's rows; the backlog is
                kept well above batch_threshold while that is awaited too (a daemon between
                two batch claims holds fewer rows, and drains on meanwhile)."""
                now, held, left = _progress(watch)
                if left < 5 * threshold // 2:
                    watch.execute("SELECT dixis.generate(%s, %s)",
                                  (3 * threshold - left, wave / 20))
                if now >= since + 50 and held >= 30:
                    return True
                assert daemon.alive(), daemon.log()[-3000:]
                return False

            try:
                wait_until(working, 60, "progress", every=0.02)
            except AssertionError as exc:
                raise AssertionError(f"{exc}: {daemon.log()[-3000:]}") from None
            await asyncio.sleep(rng.uniform(0, 0.2))  # a random moment of its work
            left_at_kills.append(_progress(watch)[2])
            daemon.kill()
            daemon.start()
    assert min(left_at_kills) >= threshold  # every kill hit a batch-mode backlog
    wait_drained(shop.url, 180, [daemon])
    assert daemon.terminate() == 0, daemon.log()[-4000:]
    assert daemon.starts == 21
    dead = dixis_db.execute("SELECT key, attempts, last_error FROM qbsync.outbox").fetchall()
    assert dead == []
    assert_exactly_once(dixis_db, emu, shop.realm_id)
    numbers = {inv["DocNumber"] for inv in emu.entities(shop.realm_id, "Invoice")}
    failed = dixis_db.execute(
        "SELECT dixis.order_number(id, created_at) FROM dixis.orders"
        " WHERE quickbooks_sync_status = 'failed'").fetchall()
    assert [n for (n,) in failed if n in numbers] == []
    # the chaos happened: batches, lost answers, interrupted rows pushed within their tries
    dixis_db.commit()
    batched, dropped = (emu.request_count("POST", "/batch", 200),
                        emu.request_count(method="POST", status="dropped"))
    assert batched > 0
    assert dropped > 0
    interrupted = dixis_db.execute(
        "SELECT count(*), max(attempt) FROM qbsync.integration_logs WHERE status = 'success'"
        " AND (details->>'interruptions')::int > 0").fetchone()
    assert interrupted is not None
    assert interrupted[0] > 0
    assert interrupted[1] <= 4  # three tries, and a final lookup


async def test_two_daemons_never_push_a_row_twice(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    emu = server.emulator
    emu.set_latency(0.001, 0.01)
    shop = await connect_shop(conn_url(dixis_db), emu, api_base_url=server.base_url)
    # one request per invoice (the batch endpoint is tested on its own), counted below
    env = daemon_env(shop.url, server.base_url, shop.token_keys, batch_threshold=100_000)
    daemons = [DaemonProcess(env, f"twin-{i}", tmp_path).start() for i in (1, 2)]
    for d in daemons:  # both claim from the first row on
        wait_started(shop.url, d)
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

    def in_flight() -> bool:  # pushes under way (each answer takes 0.2 s): SIGTERM drains
        row = dixis_db.execute(
            "SELECT count(*) FROM qbsync.outbox WHERE state = 'running'").fetchone()
        dixis_db.commit()
        return row is not None and row[0] > 0

    wait_until(in_flight, 60, "rows held by the daemon", every=0.02)
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

        def pushing() -> bool:  # PostgreSQL restarts under a daemon at work
            with psycopg.connect(url, autocommit=True) as conn:
                row = conn.execute("SELECT count(*) FROM qbsync.integration_logs"
                                   " WHERE status = 'success'").fetchone()
            return row is not None and row[0] > 0

        wait_until(pushing, 60, "the daemon's first push", every=0.02)
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
