"""The queue kept in memory: a `store.QueueStore` for running the worker loop without
PostgreSQL (tests/unit/test_worker_loop.py), as Procrastinate's InMemoryConnector does for
its workers. It keeps the rules the loop relies on, not qbsync's SQL: one row per key
pending, a change while the key is being pushed queued behind it, never two rows of one
key in flight, leases (an expired one is taken again, as an interruption), a try spent by
a recorded failure only, wake-ups only while a worker has announced that it waits.
`unavailable` makes calls fail as a database that is away would.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from .model import Pushed, Row, Skipped

if TYPE_CHECKING:
    from .realm import Realm


class Unavailable(ConnectionError):
    """What a MemoryQueue raises while `unavailable` is set."""


@dataclass
class Entry:
    """A row of the queue (qbsync.outbox, as far as the loop can tell)."""

    id: int
    entity: str
    key: str
    state: str = "pending"  # pending | running | dead | waiting
    attempts: int = 0
    interruptions: int = 0
    outcome_unknown: bool = False
    request_id: uuid.UUID = field(default_factory=uuid.uuid4)
    ready_at: float = 0.0
    lease_until: float = 0.0
    owner: str | None = None  # the worker holding the lease
    last_error: str | None = None
    enqueued_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def row(self) -> Row:
        return Row(self.id, self.entity, self.key, self.attempts, self.request_id,
                   interruptions=self.interruptions, outcome_unknown=self.outcome_unknown,
                   enqueued_at=self.enqueued_at)


class MemoryListener:
    """The LISTEN connection's stand-in: `woken` is set by a MemoryQueue's wake-ups."""

    def __init__(self) -> None:
        self.woken = asyncio.Event()

    def healthy(self) -> bool:
        return True

    async def ensure(self) -> None:
        return None

    async def close(self) -> None:
        return None


class MemoryQueue:
    errors: tuple[type[BaseException], ...] = (Unavailable,)

    def __init__(self, worker_id: str = "memory", *, max_attempts: int = 3,
                 backoff: float = 0.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.worker_id = worker_id  # the worker this store serves
        self.max_attempts = max_attempts
        self.backoff = backoff  # seconds before a failed row is ready again
        self.clock = clock
        self.listener = MemoryListener()
        self.entries: dict[int, Entry] = {}
        self.done: list[tuple[Row, Pushed | Skipped]] = []  # recorded, in order
        self.failures: list[tuple[Row, dict[str, Any]]] = []  # qbsync.fail's inputs
        self.waiting_until = 0.0  # the worker's announcement (0: none)
        self.unavailable = False
        self.connected_now = True
        self.settings_reloads = 0
        self._ids = itertools.count(1)

    # -- what the shop does -------------------------------------------------------------

    def capture(self, entity: str, key: str) -> None:
        """A committed change of the key: one pending row per key (a change while the key
        is being pushed queues one behind it); wakes a worker that announced it waits."""
        if not any(e.entity == entity and e.key == key and e.state == "pending"
                   for e in self.entries.values()):
            entry = Entry(next(self._ids), entity, key, ready_at=self.clock())
            self.entries[entry.id] = entry
        if self.waiting_until > self.clock():
            self.listener.woken.set()

    def state(self, entity: str, key: str) -> list[str]:
        return [e.state for e in self.entries.values() if (e.entity, e.key) == (entity, key)]

    @property
    def backlog(self) -> int:
        """Rows not dealt with yet (pending or running)."""
        return sum(e.state in ("pending", "running") for e in self.entries.values())

    # -- QueueStore ---------------------------------------------------------------------

    def _available(self) -> None:
        if self.unavailable:
            raise Unavailable("the queue is unavailable")

    async def claim(self, limit: int, lease_seconds: float) -> list[Row]:
        self._available()
        now = self.clock()
        running = {(e.entity, e.key) for e in self.entries.values()
                   if e.state == "running" and e.lease_until >= now}
        expired = [e for e in self.entries.values()
                   if e.state == "running" and e.lease_until < now]
        ready = sorted((e for e in self.entries.values()
                        if e.state == "pending" and e.ready_at <= now),
                       key=lambda e: (e.ready_at, e.id))
        claimed: list[Row] = []
        for entry in expired:  # a daemon stopped mid-push: no try spent
            if len(claimed) < limit:
                entry.interruptions += 1
                entry.outcome_unknown = True
                entry.lease_until = now + lease_seconds
                entry.owner = self.worker_id
                claimed.append(entry.row())
        for entry in ready:
            if len(claimed) >= limit:
                break
            if (entry.entity, entry.key) in running:
                continue
            running.add((entry.entity, entry.key))
            entry.state = "running"
            entry.attempts += 1
            entry.lease_until = now + lease_seconds
            entry.owner = self.worker_id
            claimed.append(entry.row())
        return claimed

    async def announce_waiting(self, ttl: float) -> str | None:
        if self.unavailable:
            return None
        self.waiting_until = self.clock() + ttl
        return "memory"  # no transaction is ever open across an announcement

    async def snapshot_settled(self, snapshot: str | None) -> bool | None:
        return None if self.unavailable else True

    async def stop_waiting(self) -> None:
        if not self.unavailable:
            self.waiting_until = 0.0

    async def ready_backlog(self, limit: int) -> int | None:
        if self.unavailable:
            return None
        now = self.clock()
        return min(limit, sum(e.state == "pending" and e.ready_at <= now
                              for e in self.entries.values()))

    async def close(self) -> None:
        return None

    def _held(self, row_id: int) -> Entry | None:
        entry = self.entries.get(row_id)
        if (entry is None or entry.state != "running" or entry.owner != self.worker_id
                or entry.lease_until < self.clock()):
            return None
        return entry

    async def record(self, outcomes: Sequence[tuple[Row, Pushed | Skipped]]) -> dict[int, bool]:
        self._available()
        held: dict[int, bool] = {}
        for row, outcome in outcomes:
            entry = self._held(row.id)
            held[row.id] = entry is not None
            if entry is not None:
                del self.entries[row.id]
                self.done.append((row, outcome))
        return held

    async def fail(self, row: Row, error: dict[str, Any]) -> str:
        self._available()
        entry = self._held(row.id)
        if entry is None:
            return "lost"
        self.failures.append((row, error))
        kind = error.get("kind", "retry")
        entry.last_error = error.get("message")
        entry.owner = None
        if kind == "permanent" or (kind == "retry" and entry.attempts >= self.max_attempts):
            entry.state = "dead"
            return "dead"
        if kind in ("throttled", "auth", "paused", "waiting"):
            entry.attempts -= 1  # not the row's fault: the try is given back
        entry.state = "pending"
        entry.ready_at = self.clock() + float(error.get("retry_after") or self.backoff)
        return "pending"

    async def wait_for_settings(self, row: Row, settings: list[str], message: str) -> str:
        self._available()
        entry = self._held(row.id)
        if entry is None:
            return "lost"
        entry.state, entry.owner, entry.last_error = "waiting", None, message
        entry.attempts -= 1
        return "waiting"

    async def extend_leases(self, ids: list[int], lease_seconds: float) -> set[int]:
        self._available()
        held = {i for i in ids if self._held(i) is not None}
        for i in held:
            self.entries[i].lease_until = self.clock() + lease_seconds
        return held

    async def release(self, ids: list[int]) -> int:
        self._available()
        released = 0
        for i in ids:
            entry = self._held(i)
            if entry is not None:  # an interruption: no try spent, its place kept
                entry.state, entry.owner = "pending", None
                entry.attempts -= 1
                entry.interruptions += 1
                entry.outcome_unknown = True
                released += 1
        return released

    async def connected(self) -> bool:
        self._available()
        return self.connected_now

    async def needs_reconnect(self, message: str, code: str | None) -> bool:
        self._available()
        marked, self.connected_now = self.connected_now, False
        return marked

    async def reload_settings(self, realm: Realm) -> None:
        self._available()
        self.settings_reloads += 1
