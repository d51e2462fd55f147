"""Where `qbsync run`'s start-up stands, for the metrics endpoint, which listens from the
moment the settings are read: until the daemon runs, /readyz answers 503 naming what
start-up waits for, /healthz says whether start-up still takes steps, and /metrics carries
``qbsync_startup_phase``.

Start-up may wait for as long as it takes, in one of three phases:

* ``database``: for PostgreSQL to accept connections, then checks the schema;
* ``connection``: for the company to be connected (missing from qbsync.connections,
  disconnected or needing to be reconnected: `qbsync connect`);
* ``quickbooks``: for QuickBooks to answer the reads of the company's settings (5xx, 429,
  no answer), or for stored tokens this daemon's keys can decrypt;

then the phase is ``running`` and the daemon's own checks answer.

A *step* is a try at what the phase waits for (a connection to the database, a read of the
company's status, a pass over the company's settings), a QuickBooks request that ended
(answered or not), a rate-limit permit or a token refresh. Each wait tries again at least
every `RETRY_PAUSE` seconds, and one database operation or QuickBooks request is bounded
(`DATABASE_TIMEOUT`, `http_timeout`), so a start-up that takes no step for
`stall_limit(http_timeout)` seconds hangs: /healthz answers 503 then.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from .qbo.observer import Observer

PHASES = ("database", "connection", "quickbooks", "running")
RETRY_PAUSE = 30.0  # the longest pause between two tries of a start-up wait
DATABASE_TIMEOUT = 60.0  # asyncpg's connect timeout and the pool's command_timeout


def stall_limit(http_timeout: float) -> float:
    """Seconds without a step after which start-up counts as hung: one database operation,
    one QuickBooks request and the longest pause between two tries."""
    return DATABASE_TIMEOUT + http_timeout + RETRY_PAUSE


class Startup:
    """The phase, why start-up is not done (one line), the time of its last step, and the
    pool once the database answered and its schema passed (for the database's gauges)."""

    def __init__(self, *, stall_after: float = stall_limit(60.0),
                 on_phase: Callable[[str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after = stall_after
        self.clock = clock
        self._on_phase = on_phase
        self.phase = ""
        self.reason = ""
        self.stepped = clock()
        self.pool: Any = None  # asyncpg.Pool
        self.enter("database", "waiting for the database")

    def enter(self, phase: str, reason: str) -> None:
        assert phase in PHASES, phase
        self.phase = phase
        self.step(reason)
        if self._on_phase is not None:
            self._on_phase(phase)

    def step(self, reason: str | None = None) -> None:
        """A try was made (with what it left to wait for, when that changed)."""
        self.stepped = self.clock()
        if reason is not None:
            self.reason = " ".join(reason.split())

    def not_ready(self) -> str:
        """/readyz's reason until the daemon runs."""
        return f"starting: {self.reason}"

    def stalled(self) -> str | None:
        """/healthz's reason until the daemon runs: None while start-up takes steps."""
        idle = self.clock() - self.stepped
        if idle < self.stall_after:
            return None
        return (f"start-up has taken no step for {idle:.0f} s (limit "
                f"{self.stall_after:.0f} s) in phase {self.phase} ({self.reason})")

    def observing(self, observer: Observer) -> Observer:
        """`observer`, with each QuickBooks request, permit and token refresh a step."""
        return _Stepping(observer, self)


class _Stepping:
    """An Observer that tells `startup` of each event, then passes it on."""

    def __init__(self, observer: Observer, startup: Startup) -> None:
        self._observer = observer
        self._step = startup.step

    def request(self, endpoint: str, status: int | None, seconds: float) -> None:
        self._step()
        self._observer.request(endpoint, status, seconds)

    def throttled(self, realm_id: str) -> None:
        self._observer.throttled(realm_id)

    def permit(self, realm_id: str, kind: str) -> None:
        self._step()
        self._observer.permit(realm_id, kind)

    def token_refresh(self, outcome: str) -> None:
        self._step()
        self._observer.token_refresh(outcome)
