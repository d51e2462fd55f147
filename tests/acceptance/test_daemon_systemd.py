"""The daemon under systemd's eyes: READY, STATUS, WATCHDOG and STOPPING on NOTIFY_SOCKET;
and no secret in its logs, even at DEBUG with httpx's request logging."""

from __future__ import annotations

import contextlib
import importlib.metadata
import signal
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from qbsync.emulator import DEFAULT_CLIENT_SECRET, Emulator
from qbsync.emulator.server import EmulatorServer
from tests.daemon_support import connect_shop
from tests.process_support import DaemonProcess, daemon_env, wait_drained, wait_started
from tests.support import conn_url
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


@pytest.fixture
def server() -> Iterator[EmulatorServer]:
    with EmulatorServer(Emulator(limits=False)) as srv:
        yield srv


class NotifyListener:
    """A NOTIFY_SOCKET read all along, as systemd reads it (a socket left unread holds
    only 10 datagrams, after which the daemon drops what it sends)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.messages: list[str] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(self.path)
        self._sock.settimeout(0.1)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(TimeoutError):
                self.messages.append(self._sock.recv(4096).decode())

    def fields(self) -> list[str]:
        """Every field received so far, one per line of a message."""
        return [line for m in list(self.messages) for line in m.splitlines()]

    def close(self) -> list[str]:
        """Every message received, once the last one is in."""
        self._stop.set()
        self._thread.join()
        self._sock.close()
        return self.messages


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(tmp_path / "notify")
    yield listener
    listener.close()


async def test_notify_ready_status_watchdog_stopping(
    dixis_db: psycopg.Connection, server: EmulatorServer, notify_socket: NotifyListener,
    tmp_path: Path,
) -> None:
    shop = await connect_shop(conn_url(dixis_db), server.emulator, api_base_url=server.base_url)
    env = daemon_env(shop.url, server.base_url, shop.token_keys)
    env["NOTIFY_SOCKET"] = notify_socket.path
    env["WATCHDOG_USEC"] = "2000000"  # 2 s: the daemon pings every second
    daemon = DaemonProcess(env, "notified", tmp_path).start()
    wait_started(shop.url, daemon)
    dixis_db.execute("SELECT dixis.generate(10)")
    dixis_db.commit()
    wait_drained(shop.url, 60, [daemon])

    def reported() -> bool:  # two watchdog pings, and a status after the queue drained
        fields = notify_socket.fields()
        return fields.count("WATCHDOG=1") >= 2 and any(
            "queue 0 pending" in f and "pushed" in f for f in fields)

    wait_until(reported, 30, "two WATCHDOG=1 and a status of the empty queue")
    assert daemon.terminate() == 0, daemon.log()
    messages = notify_socket.close()
    fields = [line for m in messages for line in m.splitlines()]
    assert "READY=1" in fields
    assert fields.count("WATCHDOG=1") >= 2
    statuses = [f for f in fields if f.startswith("STATUS=")]
    assert any("queue 0 pending" in s and "pushed" in s for s in statuses), statuses
    assert "STOPPING=1" in fields
    assert fields.index("READY=1") < fields.index("STOPPING=1")


async def test_no_secret_in_logs_even_at_debug(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    emu = server.emulator
    shop = await connect_shop(conn_url(dixis_db), emu, api_base_url=server.base_url)
    emu.expire_access_tokens(shop.realm_id)  # forces a refresh: new tokens travel
    emu.inject_fault("500", 2, method="POST", entity="invoice")
    env = daemon_env(shop.url, server.base_url, shop.token_keys, log_level="DEBUG",
                     log_format="json")
    dixis_db.execute("UPDATE qbsync.entities SET backoff_seconds = '{0}'")
    dixis_db.commit()
    daemon = DaemonProcess(env, "chatty", tmp_path).start()
    wait_started(shop.url, daemon)
    dixis_db.execute("SELECT dixis.generate(5)")
    dixis_db.commit()
    wait_drained(shop.url, 60, [daemon])
    assert daemon.terminate() == 0, daemon.log()[-4000:]
    assert emu.entities(shop.realm_id, "Invoice")  # the daemon did the work
    log = daemon.log()
    assert '"logger": "httpx"' in log  # requests were logged, URLs and all
    access = list(emu.oauth.access)  # every access token the emulator ever issued
    refresh = [g.refresh_token for g in emu.oauth.grants.values()] + list(emu.oauth.refresh)
    assert len(access) >= 2  # the expired token was refreshed: new ones travelled
    secrets = [DEFAULT_CLIENT_SECRET, shop.token_keys.split(":", 1)[1], *access, *refresh]
    leaked = [s[:8] + "…" for s in secrets if s in log]
    assert leaked == []


async def test_sigterm_while_starting_is_a_clean_stop(
    dixis_db: psycopg.Connection, server: EmulatorServer, tmp_path: Path
) -> None:
    """`systemctl stop` while the unit is still activating: SIGTERM while the daemon
    imports its libraries (a second or more on a busy host, long before READY) is a stop
    request, and the daemon exits 0 without starting; the signal's default action would
    end it with -15, which systemd counts as a failed stop."""
    script = importlib.metadata.entry_points(group="console_scripts", name="qbsync")
    assert [e.value for e in script] == ["qbsync.entry:main"], (
        "the installed qbsync script predates qbsync.entry: pip install --no-deps -e .")
    shop = await connect_shop(conn_url(dixis_db), server.emulator, api_base_url=server.base_url)
    env = daemon_env(shop.url, server.base_url, shop.token_keys, log_level="INFO")
    daemon = DaemonProcess(env, "stopped-early", tmp_path).start()
    assert daemon.proc is not None
    wait_until(daemon.importing, 60, "the daemon importing its libraries", every=0.001)
    daemon.proc.send_signal(signal.SIGTERM)
    assert daemon.proc.wait(60) == 0, daemon.log()
    log = daemon.log()
    assert "stopped-early stopped before it started" in log, log
    assert "syncing to company" not in log
    workers = dixis_db.execute("SELECT count(*) FROM qbsync.workers").fetchone()
    assert workers == (0,)


async def test_a_daemon_waiting_at_start_is_started_for_systemd_and_pings_its_watchdog(
    dixis_db: psycopg.Connection, server: EmulatorServer, notify_socket: NotifyListener,
    tmp_path: Path,
) -> None:
    """Start-up that waits for a reconnect (which takes an operator and a browser) must not
    hold `systemctl start` and the boot, nor be killed by the start timeout or the watchdog:
    READY=1 with a STATUS naming the wait, then WATCHDOG=1 while start-up takes steps;
    after `qbsync connect` the daemon syncs."""
    shop = await connect_shop(conn_url(dixis_db), server.emulator, api_base_url=server.base_url)
    dixis_db.execute("UPDATE qbsync.connections SET status = 'needs_reconnect'")
    dixis_db.commit()
    env = daemon_env(shop.url, server.base_url, shop.token_keys)
    env["NOTIFY_SOCKET"] = notify_socket.path
    env["WATCHDOG_USEC"] = "2000000"  # 2 s: the daemon pings every second
    daemon = DaemonProcess(env, "waiting", tmp_path).start()

    def waiting_and_pinging() -> bool:
        fields = notify_socket.fields()
        return "READY=1" in fields and fields.count("WATCHDOG=1") >= 3

    wait_until(waiting_and_pinging, 30, "READY=1 and three WATCHDOG=1 while waiting")
    fields = notify_socket.fields()
    statuses = [f for f in fields[:fields.index("READY=1") + 2] if f.startswith("STATUS=")]
    assert any("starting:" in s for s in statuses), fields
    assert any("needs reconnecting" in f for f in fields if f.startswith("STATUS=")), fields
    dixis_db.execute("UPDATE qbsync.connections SET status = 'connected'")
    dixis_db.execute("SELECT dixis.generate(3)")
    dixis_db.commit()
    wait_started(shop.url, daemon)
    wait_drained(shop.url, 60, [daemon])
    assert daemon.terminate() == 0, daemon.log()
