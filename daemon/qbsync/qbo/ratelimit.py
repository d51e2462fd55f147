"""QuickBooks request limits per realm, shared by every daemon process through a permit
store (``PermitStore``; the daemon's is PostgreSQL, ``qbsync.store.PgPermits``).

The decisions live in the store (``sql/migrations/0003_rate_limits.sql``): a permit is
paced evenly among the realm's (no bursts: QuickBooks counts sliding windows), the permits
in flight are counted, batches keep a budget of their own, and a 429 pauses the realm for
every process (and widens the second window's slack for a while). This module is the thin
side that speaks to QuickBooks' pace: one call to take a permit, a sleep until its slot, one
call to return it. It runs no SQL itself.

A permit is for a slot, and the pacing only holds if each request goes out close to its
slot: QuickBooks counts requests when they arrive. A request that leaves later than the
slack allows (the process stalled: a busy event loop, a garbage collection) would crowd the
ones behind it into one second window, so it takes a new slot instead. That is checked
twice: when the waiter wakes, and again right before the request's bytes are written to the
socket (``RequestLimiter.sending``, which the client runs from httpcore's trace hook).
Lateness is measured against the slot itself, on this process's clock: the database's
clock is mapped onto it from the round trips of ``take_permit`` (the decision happened
between sending the query and reading its answer; the tightest recent bracket wins), so an
answer read late, or granted for "now", cannot hide a late start.

Usage::

    limiter = RequestLimiter(PgPermits(pool), realm_id)
    await limiter.configure(RateLimits())          # optional: defaults are in the database
    async with limiter.permit("request"):
        ... send one HTTP request ...
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import socket
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .observer import NULL_OBSERVER, Observer

# After that long, a permit that could not be given back is left to expire.
RETURN_RETRY_SECONDS = 60.0
# Clock samples older than this (monotonic seconds) no longer count.
CLOCK_SAMPLE_AGE = 60.0


class PermitStore(Protocol):
    """Where a realm's permits are kept, shared by every process that sends to it."""

    async def take(self, realm_id: str, kind: str, holder: str, hold: timedelta
                   ) -> Mapping[str, Any]:
        """A grant: ``permit_id`` (None: refused, ask again after ``wait``), ``wait`` (a
        timedelta) and ``starts_at`` (the slot, on the store's clock)."""

    async def give_back(self, permit_id: Any) -> bool:
        """False when the store is unreachable: the caller tries again later."""

    async def throttled(self, realm_id: str, pause: timedelta) -> datetime | None:
        """Pause the realm for every process; the end of the pause, None when unreachable."""

    async def set_limits(self, realm_id: str, per_minute: int | None, per_second: int | None,
                         in_flight: int | None, batch_per_minute: int | None,
                         minute: timedelta, second: timedelta, safety: float,
                         jitter: timedelta) -> None: ...

    async def free_abandoned(self, realm_id: str, holder: str) -> int: ...

    async def status(self, realm_id: str) -> dict[str, Any] | None: ...

    def closing(self) -> bool:
        """The store is shutting down: permits not given back yet are left to expire."""


@dataclass(frozen=True)
class RateLimits:
    """Limits of one realm (None = unlimited). ``time_scale`` shrinks the windows to match
    an emulator whose clock runs faster (60: a QuickBooks minute lasts one real second).

    Every window keeps a slack of ``max(window * safety, jitter)`` (jitter in real seconds,
    not scaled): with the defaults, 495 requests/minute and ~9.75/second in real time. (1 %
    of the minute is plenty, since every request leaves within ``jitter`` of its slot.)
    """

    per_minute: int | None = 500
    per_second: int | None = 10
    in_flight: int | None = 10
    batch_per_minute: int | None = 40
    time_scale: float = 1.0
    safety: float = 0.01
    jitter: float = 0.025

    def __post_init__(self) -> None:
        if self.time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        if not 0 <= self.safety < 0.5:
            raise ValueError("safety must be in [0, 0.5)")
        if self.jitter < 0:
            raise ValueError("jitter must be >= 0")


@dataclass
class Permit:
    """A granted permit. ``sending`` may exchange it for a later slot (same object)."""

    permit_id: Any  # uuid.UUID
    starts_at: datetime
    waited: float  # seconds spent waiting for it (real time)
    kind: str = "request"
    slot: float = 0.0  # starts_at on this process's monotonic clock (estimated)
    retakes: int = 0  # how often it was exchanged for a later slot


class DatabaseClock:
    """Maps the database's wall clock onto this process's monotonic clock.

    Each grant of ``take_permit`` brackets the database's decision time (``starts_at -
    wait``) between sending the query and reading its answer: the midpoint is this
    process's time of it, within half the round trip. Of the samples of the last minute the
    one with the shortest round trip is used (NTP's minimum-delay filter), so a slow round
    trip or an answer read late by a busy event loop does not skew the mapping.
    """

    def __init__(self, keep: int = 64) -> None:
        self._samples: deque[tuple[float, float, float]] = deque(maxlen=keep)

    def sample(self, db_time: float, sent: float, answered: float) -> None:
        """``db_time``: the database's epoch seconds at its decision; ``sent``/``answered``:
        this process's monotonic clock around the round trip."""
        self._samples.append((answered - sent, db_time - (sent + answered) / 2, answered))

    def offset(self) -> float | None:
        """Database epoch seconds minus monotonic seconds (None before any sample)."""
        if not self._samples:
            return None
        newest = self._samples[-1][2]
        fresh = [s for s in self._samples if newest - s[2] <= CLOCK_SAMPLE_AGE]
        return min(fresh)[1]

    def local(self, db_time: float) -> float:
        """A database time on this process's monotonic clock."""
        offset = self.offset()
        return time.monotonic() if offset is None else db_time - offset


class RequestLimiter:
    """Permits for the QuickBooks requests of one realm.

    ``local_in_flight`` caps the permits this process asks for at once, so that waiters of
    one process queue on a semaphore rather than polling the database.
    """

    def __init__(
        self,
        store: PermitStore,
        realm_id: str,
        *,
        holder: str | None = None,
        hold: float = 180.0,
        local_in_flight: int | None = 10,
        time_scale: float = 1.0,
        observer: Observer = NULL_OBSERVER,
    ) -> None:
        self.store = store
        self.observer = observer
        self.realm_id = realm_id
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}"
        self.hold = timedelta(seconds=hold)
        self.time_scale = time_scale
        self._local = asyncio.Semaphore(local_in_flight) if local_in_flight else None
        self._paused_until = 0.0  # monotonic; this process saw a 429
        self._background: set[asyncio.Future[Any]] = set()
        self._returns: set[asyncio.Future[Any]] = set()  # given back once the database is back
        self.granted = 0  # permits used by this limiter (for stats and tests)
        # seconds past its slot after which a permit is taken again (growing after a few
        # retakes of one request, so that a process that is always late still sends)
        self.late = 0.025
        self.late_retakes = 0
        self.refused = 0  # take_permit answers without a permit
        self.clock = DatabaseClock()

    def __repr__(self) -> str:
        return f"RequestLimiter(realm_id={self.realm_id!r}, holder={self.holder!r})"

    async def configure(self, limits: RateLimits) -> None:
        """Store the realm's limits (shared by every process: the last writer wins)."""
        self.time_scale = limits.time_scale
        self.late = limits.jitter
        await self.store.set_limits(
            self.realm_id, limits.per_minute, limits.per_second, limits.in_flight,
            limits.batch_per_minute, timedelta(seconds=60 / limits.time_scale),
            timedelta(seconds=1 / limits.time_scale), limits.safety,
            timedelta(seconds=limits.jitter))
        if limits.in_flight and self._local is not None:
            self._local = asyncio.Semaphore(limits.in_flight)

    @contextlib.asynccontextmanager
    async def permit(self, kind: str = "request") -> AsyncIterator[Permit]:
        """Wait for a permit, hold it while the body runs (one HTTP request), return it.
        The body should ``await sending(permit)`` right before the request goes out."""
        async with self._local if self._local is not None else contextlib.nullcontext():
            permit = await self._take(kind)
            try:
                yield permit
            finally:
                # Shielded: a cancelled request still gives its slot back promptly (else it
                # would count as in flight until it expires).
                await asyncio.shield(self._return(permit.permit_id))

    async def sending(self, permit: Permit) -> None:
        """The request of ``permit`` is about to be written to the socket: if that is later
        than the slack allows past its slot, exchange the permit for a new slot (and sleep
        until it). Cheap when on time: no round trip, no suspension."""
        while time.monotonic() - permit.slot > self._tolerance(permit.retakes):
            self.late_retakes += 1
            await self._return(permit.permit_id)
            fresh = await self._take(permit.kind, permit.retakes + 1)
            permit.permit_id, permit.starts_at, permit.slot = (
                fresh.permit_id, fresh.starts_at, fresh.slot)
            permit.waited += fresh.waited
            permit.retakes = fresh.retakes

    def _tolerance(self, retakes: int) -> float:
        """How late a request may go out after ``retakes`` new slots: the slack, and after
        the third retake twice as much each time (a process that is always late must still
        send, if less evenly)."""
        return self.late * 2 ** max(0, retakes - 2)

    async def _take(self, kind: str, retakes: int = 0) -> Permit:
        started = time.monotonic()
        while True:
            local_pause = self._paused_until - time.monotonic()
            if local_pause > 0:
                await asyncio.sleep(local_pause)
            sent = time.monotonic()
            take = asyncio.ensure_future(
                self.store.take(self.realm_id, kind, self.holder, self.hold))
            try:
                row = await asyncio.shield(take)
            except asyncio.CancelledError:
                # The database may grant the permit anyway: give it back when the answer
                # comes, rather than leave it counted in flight until it expires.
                self._track(take)
                take.add_done_callback(self._give_back)
                raise
            assert row is not None
            answered = time.monotonic()
            wait = row["wait"].total_seconds()
            if row["permit_id"] is None:
                self.refused += 1
                # Jitter so that the waiters of several processes do not wake in lockstep.
                await asyncio.sleep(wait * (1 + random.random() * 0.2))
                continue
            # granted: starts_at - wait is the database's clock at its decision (a refusal
            # may carry a slot it counted back from differently)
            self.clock.sample(row["starts_at"].timestamp() - wait, sent, answered)
            slot = self.clock.local(row["starts_at"].timestamp())
            delay = slot - time.monotonic()
            if delay > 0:
                try:
                    await asyncio.sleep(delay)
                except asyncio.CancelledError:
                    await asyncio.shield(self._return(row["permit_id"]))
                    raise
            if self._paused_until > time.monotonic():
                # A 429 arrived while we slept towards our slot: give it back, wait it out.
                await self._return(row["permit_id"])
                continue
            if time.monotonic() - slot > self._tolerance(retakes):
                # This process stalled past the slot (or read the answer late): the permits
                # of all its waiters would reach QuickBooks together, crowding one second
                # window. Take a new slot.
                self.late_retakes += 1
                retakes += 1
                await self._return(row["permit_id"])
                continue
            self.granted += 1
            self.observer.permit(self.realm_id, kind)
            return Permit(row["permit_id"], row["starts_at"], time.monotonic() - started,
                          kind, slot, retakes)

    def _track(self, fut: asyncio.Future[Any]) -> None:
        self._background.add(fut)
        fut.add_done_callback(self._background.discard)

    def _give_back(self, take: asyncio.Future[Any]) -> None:
        if take.cancelled() or take.exception() is not None:
            return
        row = take.result()
        if row is not None and row["permit_id"] is not None:
            self._track(asyncio.ensure_future(self._return(row["permit_id"])))

    async def drain(self) -> None:
        """Wait for permits still being given back (call before closing the pool)."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def _return(self, permit_id: Any) -> None:
        if not await self.store.give_back(permit_id):
            # The store is away (a database restart): give it back once it is here again.
            # Left to expire, it would count as in flight for its whole hold, and a few such
            # permits fill the realm's in-flight slots for every process.
            task = asyncio.ensure_future(self._return_later(permit_id))
            self._returns.add(task)
            task.add_done_callback(self._returns.discard)

    async def _return_later(self, permit_id: Any) -> None:
        give_up = time.monotonic() + min(self.hold.total_seconds(), RETURN_RETRY_SECONDS)
        delay = 0.25
        while time.monotonic() < give_up:
            await asyncio.sleep(delay)
            if self.store.closing():
                return  # stopping: the permit expires by itself
            if await self.store.give_back(permit_id):
                return
            delay = min(delay * 2, 5.0)

    async def throttled(self, retry_after: float) -> datetime:
        """QuickBooks answered 429: pause the realm in every process. ``retry_after`` is in
        QuickBooks seconds (divided by the time scale)."""
        seconds = max(0.0, retry_after) / self.time_scale
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        until = await self.store.throttled(self.realm_id, timedelta(seconds=seconds))
        if until is None:
            # The caller is handling a 429: this process pauses anyway (local pause above).
            return datetime.now(UTC) + timedelta(seconds=seconds)
        return until

    async def free_abandoned(self) -> int:
        """At start: free the permits still held under this holder's name. A process of the
        same name left them (it was killed), and until their hold ran out they would count
        as in flight for every process of the realm. Returns how many."""
        return await self.store.free_abandoned(self.realm_id, self.holder)

    async def status(self) -> dict[str, Any] | None:
        """The realm's row of ``qbsync.rate_limit_status`` (None before its first permit)."""
        return await self.store.status(self.realm_id)
