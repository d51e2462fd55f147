"""`qbsync run` as a real process serving /metrics, /healthz and /readyz on metrics_listen:
scraped while it drains the Dixis sample against an emulator that answers some requests
with 429, 500 and 503; its counters agree with qbsync.integration_logs and with what the
emulator served; /readyz says 503 while the company needs reconnecting and 200 again once
it is reconnected. The endpoint answers from the start: a daemon that waits at start-up (for
its database, for its company to be reconnected, for QuickBooks to answer) says which on
/readyz and serves its metrics meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import psycopg
import pytest

from qbsync.connect import save_connection
from qbsync.emulator import Emulator
from qbsync.emulator.server import EmulatorServer
from qbsync.model import SUCCESS_OUTCOMES, plain_operation
from qbsync.qbo.oauth import TokenSet
from qbsync.vault import Vault, generate_key
from tests.daemon_support import Shop, connect_shop
from tests.metrics_support import Sample, by, free_port, get, scrape, total
from tests.process_support import DaemonProcess, daemon_env, wait_drained, wait_started
from tests.support import conn_url

pytestmark = pytest.mark.slow

SUCCESSES = {*SUCCESS_OUTCOMES.values(), "pushed"}
# the push counters' outcomes, as integration_logs' status has them
STATUS = {**{o: "success" for o in SUCCESSES}, "skipped": "skipped", "failed": "retry",
          "dead": "dead"}


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    emu = Emulator(limits=False)
    with EmulatorServer(emu) as srv:
        yield srv


def wait_for(check: object, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} not reached within {within} s")


def logged(conn: psycopg.Connection, worker: str) -> dict[tuple[str, str, str], float]:
    """integration_logs' push outcomes of `worker`, by (entity, status, operation)."""
    conn.commit()
    out: dict[tuple[str, str, str], float] = {}
    for entity, status, operation, n in conn.execute(
            "SELECT model_type, status, operation, count(*) FROM qbsync.integration_logs"
            " WHERE actor = %s AND status IN ('success', 'skipped', 'retry', 'dead')"
            " GROUP BY 1, 2, 3", (worker,)).fetchall():
        key = (entity, status, plain_operation(operation))
        out[key] = out.get(key, 0.0) + n
    return out


def counted(samples: list[Sample]) -> dict[tuple[str, str, str], float]:
    """The push counters in the same terms."""
    out: dict[tuple[str, str, str], float] = {}
    for (entity, operation, outcome), n in by(samples, "qbsync_pushes_total", "entity",
                                               "operation", "outcome").items():
        if outcome in STATUS:
            key = (entity, STATUS[outcome], operation)
            out[key] = out.get(key, 0.0) + n
    return out


def served(emu: Emulator, realm: str) -> dict[str, int]:
    """API requests the emulator answered, by status (its OAuth endpoints left out)."""
    out: dict[str, int] = {}
    for key, n in emu.counter_snapshot(realm).items():
        _, route, status = key.split(" ")
        if route.startswith("/v3/company/"):
            out[status] = out.get(status, 0) + n
    return out


async def test_metrics_of_a_draining_daemon_agree_with_the_log_and_quickbooks(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    emu = server.emulator
    emu.injector.seed(18)
    for kind, rate in (("429", 0.03), ("500", 0.02), ("503", 0.02)):
        emu.inject_fault(kind, None, path="/v3/company/", rate=rate)
    shop = await connect_shop(conn_url(dixis_db), emu, api_base_url=server.base_url)
    dixis_db.execute("UPDATE qbsync.entities SET backoff_seconds = '{0}', max_attempts = 10")
    dixis_db.execute("SELECT dixis.generate(300, 0.3)")
    dixis_db.commit()
    base = f"http://127.0.0.1:{free_port()}"
    env = daemon_env(shop.url, server.base_url, shop.token_keys,
                     metrics_listen=base.removeprefix("http://"),
                     rate_time_scale=600)  # a 429's 60 s pause lasts 0.1 s
    daemon = DaemonProcess(env, "observed", tmp_path).start()
    wait_started(shop.url, daemon)
    wait_for(lambda: _answers(base), 30, "the metrics endpoint")

    # while it drains: every scrape parses, and the backlog shows
    pending_seen = 0.0
    with psycopg.connect(shop.url, autocommit=True) as watch:
        while watch.execute("SELECT qbsync.backlog()").fetchone() != (0,):
            samples = scrape(base)
            assert total(samples, "qbsync_database_up") == 1
            pending_seen = max(pending_seen, total(samples, "qbsync_outbox_rows",
                                                  state="pending"))
            assert daemon.alive(), daemon.log()[-3000:]
    wait_drained(shop.url, 120, [daemon])
    assert pending_seen > 0

    # counted as recorded: the scrape catches up with the log at once; the database's
    # gauges are read again once a second at most
    wait_for(lambda: counted(scrape(base)) == logged(dixis_db, "observed"), 10,
             "counters equal to integration_logs")
    wait_for(lambda: _drained_gauges(scrape(base)), 10, "the gauges of a drained queue")
    samples = scrape(base)
    pushes = counted(samples)
    assert pushes == logged(dixis_db, "observed")
    assert sum(n for (e, s, _), n in pushes.items() if e == "order" and s == "success") >= 1
    assert sum(n for (_, s, _), n in pushes.items() if s == "retry") >= 1  # faults were met

    # every API request QuickBooks answered, by status, as the emulator counted it
    requests = {status: int(n) for (status,), n in
                by(samples, "qbsync_quickbooks_requests_total", "status").items()}
    assert requests == served(emu, shop.realm_id)
    assert requests.get("429", 0) >= 1
    assert requests.get("500", 0) + requests.get("503", 0) >= 1
    assert total(samples, "qbsync_throttled_total", realm=shop.realm_id) == requests["429"]
    assert total(samples, "qbsync_quickbooks_request_duration_seconds_count") == \
        sum(requests.values())

    # the database's gauges: drained, nothing dead, the company connected
    assert total(samples, "qbsync_outbox_rows", state="pending") == 0
    assert total(samples, "qbsync_outbox_rows", state="running") == 0
    assert total(samples, "qbsync_dead_rows") == 0
    assert total(samples, "qbsync_oldest_pending_age_seconds") == 0
    assert total(samples, "qbsync_connection_status", realm=shop.realm_id,
                 status="connected") == 1
    assert total(samples, "qbsync_last_success_timestamp_seconds", entity="order") > 0
    assert total(samples, "qbsync_commit_to_push_seconds_count", entity="order") == \
        sum(n for (e, s, _), n in pushes.items() if e == "order" and s == "success")
    assert total(samples, "qbsync_build_info") == 1
    assert get(base, "/healthz").status_code == 200
    assert daemon.terminate() == 0, daemon.log()[-4000:]


def _answers(base: str) -> bool:
    try:
        return get(base, "/healthz").status_code == 200
    except httpx.HTTPError:
        return False


async def test_readyz_is_503_while_the_company_of_a_running_daemon_needs_reconnecting(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    emu = server.emulator
    shop = await connect_shop(conn_url(dixis_db), emu, api_base_url=server.base_url)
    base = f"http://127.0.0.1:{free_port()}"
    env = daemon_env(shop.url, server.base_url, shop.token_keys,
                     metrics_listen=base.removeprefix("http://"))
    daemon = DaemonProcess(env, "ready", tmp_path).start()
    wait_started(shop.url, daemon)
    wait_for(lambda: _answers(base), 30, "the metrics endpoint")
    ready = get(base, "/readyz")
    assert (ready.status_code, ready.text) == (200, "ready\n")

    # Intuit forgets the grant: the next request's refresh is refused (invalid_grant)
    emu.revoke_grants(shop.realm_id)
    emu.expire_access_tokens(shop.realm_id)
    dixis_db.execute("SELECT dixis.generate(3, 1.0)")
    dixis_db.commit()
    wait_for(lambda: get(base, "/readyz").status_code == 503, 60,
             "/readyz 503")
    reason = get(base, "/readyz").text
    assert reason.count("\n") == 1
    assert f"QuickBooks company {shop.realm_id} needs reconnecting: run `qbsync connect`" \
        in reason
    samples = scrape(base)
    assert total(samples, "qbsync_token_refreshes_total", outcome="rejected") >= 1
    assert total(samples, "qbsync_connection_status", realm=shop.realm_id,
                 status="needs_reconnect") == 1
    assert get(base, "/healthz").status_code == 200  # alive, not ready

    # `qbsync connect` again: new tokens stored, the daemon resumes by itself
    await _reconnect(shop, server)
    wait_for(lambda: get(base, "/readyz").status_code == 200, 60,
             "/readyz 200 again")
    assert daemon.terminate() == 0, daemon.log()[-4000:]


async def test_a_daemon_started_while_the_company_needs_reconnecting_says_so_until_it_is(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    """A restart while the company needs reconnecting: the daemon waits for `qbsync connect`
    with the endpoint up, /readyz naming the company, and the company's status and the
    start-up phase in /metrics (what the alerts go by); reconnected, it starts."""
    shop = await connect_shop(conn_url(dixis_db), server.emulator,
                              api_base_url=server.base_url)
    dixis_db.execute("UPDATE qbsync.connections SET status = 'needs_reconnect',"
                     " last_error = 'invalid_grant' WHERE realm_id = %s", (shop.realm_id,))
    dixis_db.commit()
    base = f"http://127.0.0.1:{free_port()}"
    env = daemon_env(shop.url, server.base_url, shop.token_keys,
                     metrics_listen=base.removeprefix("http://"))
    daemon = DaemonProcess(env, "restarted", tmp_path).start()
    reason = (f"starting: QuickBooks company {shop.realm_id} needs reconnecting: run "
              "`qbsync connect`\n")
    wait_for(lambda: _readyz(base) == (503, reason), 30, "/readyz naming the company")
    samples = scrape(base)
    assert total(samples, "qbsync_startup_phase", phase="connection") == 1
    assert total(samples, "qbsync_startup_phase") == 1
    assert total(samples, "qbsync_connection_status", realm=shop.realm_id,
                 status="needs_reconnect") == 1
    assert total(samples, "qbsync_database_up") == 1
    assert total(samples, "qbsync_build_info") == 1
    assert get(base, "/healthz").text == "ok\n"  # alive, and its start-up waits as it should

    await _reconnect(shop, server)
    wait_for(lambda: _readyz(base) == (200, "ready\n"), 60, "/readyz 200")
    samples = scrape(base)
    assert total(samples, "qbsync_startup_phase", phase="running") == 1
    assert total(samples, "qbsync_startup_phase") == 1
    assert total(samples, "qbsync_connection_status", realm=shop.realm_id,
                 status="connected") == 1
    assert daemon.terminate() == 0, daemon.log()[-4000:]


async def test_a_daemon_whose_first_quickbooks_reads_fail_says_so_until_they_succeed(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    emu = server.emulator
    shop = await connect_shop(conn_url(dixis_db), emu, api_base_url=server.base_url)
    emu.inject_fault("503", None, path="/v3/company/")
    base = f"http://127.0.0.1:{free_port()}"
    env = daemon_env(shop.url, server.base_url, shop.token_keys,
                     metrics_listen=base.removeprefix("http://"))
    daemon = DaemonProcess(env, "unanswered", tmp_path).start()
    reading = f"starting: reading QuickBooks company {shop.realm_id}'s settings (failed: "
    wait_for(lambda: (_readyz(base) or (0, ""))[1].startswith(reading), 30,
             "/readyz naming the failed read")
    status, text = _readyz(base) or (0, "")
    assert status == 503
    assert text.removeprefix(reading).startswith("HTTP 503, ")
    assert text.count("\n") == 1
    samples = scrape(base)
    assert total(samples, "qbsync_startup_phase", phase="quickbooks") == 1
    assert total(samples, "qbsync_quickbooks_requests_total", status="503") >= 1
    assert get(base, "/healthz").status_code == 200

    emu.clear_faults()
    wait_for(lambda: _readyz(base) == (200, "ready\n"), 60, "/readyz 200")
    assert daemon.terminate() == 0, daemon.log()[-4000:]


def test_a_daemon_waiting_for_its_database_says_so_and_serves_its_own_metrics(
    tmp_path: Path
) -> None:
    base = f"http://127.0.0.1:{free_port()}"
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/qbsync"  # nothing listens
    env = daemon_env(nowhere, "http://127.0.0.1:9", generate_key("k1"),
                     metrics_listen=base.removeprefix("http://"))
    daemon = DaemonProcess(env, "databaseless", tmp_path).start()
    waiting = "starting: waiting for the database ("
    wait_for(lambda: (_readyz(base) or (0, ""))[1].startswith(waiting), 30,
             "/readyz naming the database")
    assert (_readyz(base) or (0, ""))[0] == 503
    samples = scrape(base)
    assert total(samples, "qbsync_startup_phase", phase="database") == 1
    assert total(samples, "qbsync_startup_phase") == 1
    assert total(samples, "qbsync_database_up") == 0
    assert total(samples, "qbsync_build_info") == 1
    assert not [s for s in samples if s.name == "qbsync_outbox_rows"]
    assert get(base, "/healthz").status_code == 200
    assert daemon.terminate() == 0, daemon.log()[-4000:]


async def _reconnect(shop: Shop, server: EmulatorServer) -> None:
    """What `qbsync connect` stores: new tokens, the company connected."""
    conn = await asyncpg.connect(shop.url)
    try:
        await save_connection(conn, Vault.parse(shop.token_keys), shop.realm_id,
                              TokenSet.from_response(server.emulator.issue_tokens(
                                  shop.realm_id)),
                              api_base_url=server.base_url, company_name="Dixis Α.Ε.",
                              environment="emulator")
    finally:
        await conn.close()


def _readyz(base: str) -> tuple[int, str] | None:
    """/readyz's status and text; None while nothing answers on the address."""
    try:
        resp = get(base, "/readyz")
    except httpx.HTTPError:
        return None
    return resp.status_code, resp.text


def _drained_gauges(samples: list[Sample]) -> bool:
    """Nothing pending and nothing running: a read of the gauges made after the drain (one
    cached from a moment when every row was claimed shows 0 pending, the rest running)."""
    return (total(samples, "qbsync_outbox_rows", state="pending") == 0
            and total(samples, "qbsync_outbox_rows", state="running") == 0)
