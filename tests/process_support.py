"""The daemon as a real subprocess (`qbsync run`), for crash, restart and signal tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import psycopg

from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.waiting import wait_until

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

    def catches(self, sig: signal.Signals) -> bool:
        """Whether the process has a handler for `sig` (SigCgt in /proc/PID/status)."""
        assert self.proc is not None
        try:
            status = Path(f"/proc/{self.proc.pid}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        caught = next(line for line in status.splitlines() if line.startswith("SigCgt:"))
        return bool(int(caught.split()[1], 16) >> (sig - 1) & 1)

    def importing(self) -> bool:
        """Whether the process has begun importing its libraries: an extension module from
        site-packages is mapped into it. Past the interpreter's own start (when no program
        can catch a signal yet), long before the daemon is ready."""
        assert self.proc is not None
        libraries = sysconfig.get_paths()["platlib"]
        try:
            maps = Path(f"/proc/{self.proc.pid}/maps").read_text()
        except (FileNotFoundError, ProcessLookupError):
            return False
        return any(libraries in line and ".so" in line for line in maps.splitlines())

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, as `systemctl stop` sends it; the exit code. Sent once the process
        catches it: a daemon restarted a moment ago may still be in the interpreter's own
        start, where SIGTERM's default action kills any program (qbsync catches it from its
        first line on, start-up included)."""
        assert self.proc is not None
        wait_until(lambda: not self.alive() or self.catches(signal.SIGTERM), 30,
                   f"daemon {self.name} catching SIGTERM", every=0.005)
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


def _alive_or_fail(procs: list[DaemonProcess]) -> None:
    for p in procs:
        if not p.alive():
            raise AssertionError(f"daemon {p.name} exited:\n{p.log()[-3000:]}")


def wait_drained(db_url: str, within: float = 120, procs: list[DaemonProcess] | None = None
                 ) -> None:
    def drained() -> bool:
        with psycopg.connect(db_url, autocommit=True) as conn:
            left = conn.execute("SELECT qbsync.backlog()").fetchone()
        if left == (0,):
            return True
        _alive_or_fail(procs or [])
        return False

    try:
        wait_until(drained, within, "an empty queue", every=0.2)
    except AssertionError as exc:
        logs = "\n".join(p.log()[-2000:] for p in procs or [])
        raise AssertionError(f"{exc}\n{logs}") from None


def wait_started(db_url: str, proc: DaemonProcess, within: float = 60) -> None:
    """Until the daemon has registered itself in qbsync.workers: it is connected and its
    settings passed; it reads the company's references next, then claims rows."""
    def registered() -> bool:
        with psycopg.connect(db_url, autocommit=True) as conn:
            row = conn.execute("SELECT 1 FROM qbsync.workers WHERE worker_id = %s",
                               (proc.name,)).fetchone()
        if row is not None:
            return True
        _alive_or_fail([proc])
        return False

    try:
        wait_until(registered, within, f"daemon {proc.name} registered", every=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{proc.log()}") from None
