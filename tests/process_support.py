"""The daemon as a real subprocess (`qbsync run`), for crash, restart and signal tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

QBSYNC = str(Path(sys.executable).with_name("qbsync"))


def daemon_env(db_url: str, emulator_url: str, token_keys: str, **settings: object
               ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
    env.update({
        "QBSYNC_DATABASE_URL": db_url,
        "QBSYNC_CLIENT_ID": DEFAULT_CLIENT_ID,
        "QBSYNC_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "QBSYNC_TOKEN_KEYS": token_keys,
        "QBSYNC_API_BASE_URL": emulator_url,
        "QBSYNC_OAUTH_DISCOVERY_URL": f"{emulator_url}/.well-known/openid_configuration",
        "QBSYNC_ALLOW_LOCAL_QUICKBOOKS": "1",  # the emulator listens on 127.0.0.1
        "QBSYNC_RATE_LIMITS": "false",
        "QBSYNC_POLL_INTERVAL": "0.2",
        "QBSYNC_LEASE_SECONDS": "10",
        "QBSYNC_SHUTDOWN_GRACE": "5",
        "QBSYNC_LOG_LEVEL": "WARNING",
        "QBSYNC_CONFIG": "",
        "QBSYNC_METRICS_LISTEN": "",  # tests that scrape ask for a port of their own
        "PYTHONFAULTHANDLER": "1",
    })
    env.update({f"QBSYNC_{k.upper()}": str(v) for k, v in settings.items()})
    return env


# Every daemon a test starts, so that none outlives its test: a leftover daemon would
# reconnect to the next test's database of the same name and act there.
STARTED: list[DaemonProcess] = []


def kill_all() -> None:
    while STARTED:
        STARTED.pop().kill()


class DaemonProcess:
    def __init__(self, env: dict[str, str], name: str, log_dir: Path) -> None:
        self.env = {**env, "QBSYNC_WORKER_NAME": name}
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> DaemonProcess:
        self.starts += 1
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([QBSYNC, "run"], env=self.env, stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        STARTED.append(self)
        return self

    def kill(self) -> None:
        """kill -9: no drain, no release; the leases must expire or be taken back."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            # A hung stop: faulthandler (PYTHONFAULTHANDLER) writes every thread's stack
            # to the log on SIGABRT, which the failure then shows.
            self.proc.send_signal(signal.SIGABRT)
            self.proc.wait(10)
            raise AssertionError(f"daemon {self.name} did not stop within {timeout} s of "
                                 f"SIGTERM:\n{self.log()[-6000:]}") from None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_drained(db_url: str, within: float = 120, procs: list[DaemonProcess] | None = None
                 ) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with psycopg.connect(db_url, autocommit=True) as conn:
            left = conn.execute(
                "SELECT qbsync.backlog()").fetchone()
        if left == (0,):
            return
        for p in procs or []:
            if not p.alive():
                raise AssertionError(f"daemon {p.name} exited:\n{p.log()[-3000:]}")
        time.sleep(0.2)
    logs = "\n".join(p.log()[-2000:] for p in procs or [])
    raise AssertionError(f"queue not drained within {within} s\n{logs}")


def wait_started(db_url: str, proc: DaemonProcess, within: float = 60) -> None:
    """Until the daemon has registered itself (it is connected and has its signal handlers:
    a SIGTERM from then on is a drain, not a kill during start-up)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute("SELECT 1 FROM qbsync.workers WHERE worker_id = %s",
                               (proc.name,)).fetchone()
        if row:
            return
        if not proc.alive():
            raise AssertionError(f"daemon {proc.name} exited:\n{proc.log()[-3000:]}")
        time.sleep(0.1)
    raise AssertionError(f"daemon {proc.name} not started within {within} s\n{proc.log()}")
