"""The daemon's loop: claim rows, push them concurrently, record every outcome.

A push slot (of `concurrency`) is taken while a row is pushed, not while its outcome is
recorded: outcomes are written in groups (OutcomeGroups) while the next rows are claimed
and pushed. The row stays leased and `running` until its outcome is written, so another
row of its key is not claimed before then (per-key order) and a crash leaves it to be
reclaimed when the lease expires. At most `concurrency` more rows wait for their outcome to
be written. The loop's own queries (claim, the idle protocol) use one connection the store
keeps, not a pool checkout per query (each checkout costs a reset round trip).

What the loop asks of the queue is a `store.QueueStore`: PostgreSQL (`store.PgQueue`), or
memory (`memstore.MemoryQueue`, for tests of the loop). When to listen for new rows is the
idle protocol's (`idle.IdleProtocol`), whether to push in batches the backlog policy's
(`backlog.BacklogPolicy`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from . import sdnotify
from .backlog import BacklogPolicy
from .batch import BatchPusher
from .db import Listener
from .errors import QbsyncError
from .idle import IdleProtocol
from .model import (
    OutcomeObserver,
    Pushed,
    PushFailed,
    Row,
    Skipped,
    plain_operation,
    success_outcome,
)
from .outcomes import OutcomeGroups
from .store import PgQueue, QueueStore
from .sync import Pusher

log = logging.getLogger(__name__)


@dataclass
class WorkerConfig:
    worker_id: str
    concurrency: int = 10
    lease_seconds: float = 120.0
    poll_interval: float = 2.0
    shutdown_grace: float = 30.0
    settle_check: float = 0.02  # how often to check that the announcement has settled
    batch_size: int = 30
    batch_threshold: int | None = 200  # ready rows from which batches are used; None: never
    backlog_check: float = 2.0  # seconds between two looks at the backlog size
    # Under a rate limiter, batch mode runs at most this many batch pushes at once (enough
    # to have the next batch ready for every batch slot) and spends the rest of the
    # concurrency on single rows, which use the request budget the batches leave (460 of
    # QuickBooks' 500 a minute): batches alone would leave 92 % of that budget unused.
    batch_tasks: int = 4
    batch_claim: int = 3  # batches' worth of rows per batch push: its new customers and
    #                       items fill whole dependency batches more often
    wakeup_notify: bool = True  # False: never announce; rely on the fallback poll alone


@dataclass
class Stats:
    pushed: int = 0
    skipped: int = 0
    failed: int = 0
    dead: int = 0
    last_push: float | None = None


class Worker:
    def __init__(
        self,
        pool: asyncpg.Pool | None,
        listener: Listener,
        pusher: Pusher,
        config: WorkerConfig,
        *,
        on_dead: Callable[[Row, PushFailed], None] | None = None,
        store: QueueStore | None = None,
        observer: OutcomeObserver | None = None,
    ) -> None:
        if store is None:
            assert pool is not None, "a pool, or a store"
            store = PgQueue(pool, config.worker_id, pusher.realm.realm_id)
        self.store = store
        self.listener = listener
        self.pusher = pusher
        self.config = config
        self.on_dead = on_dead
        self.observer = observer  # told of every outcome recorded (the metrics)
        self.stats = Stats()
        self.paused_reason: str | None = None
        self.loop_alive = time.monotonic()
        # Batches beside single rows only when a limiter gives batches a budget of their own;
        # without one, batching everything is the cheapest.
        self.mixed = pusher.client.limiter is not None
        self.batches = BatchPusher(pusher, config.batch_size,
                                   min_fill=config.batch_size * 2 // 3 if self.mixed else 1,
                                   at_once=2 if self.mixed else config.concurrency)
        self.idle = IdleProtocol(store, poll_interval=config.poll_interval,
                                 settle_check=config.settle_check,
                                 notify=config.wakeup_notify)
        self.backlog = BacklogPolicy(store, threshold=config.batch_threshold,
                                     check_interval=config.backlog_check,
                                     batch_size=config.batch_size, mixed=self.mixed,
                                     batch_tasks=config.batch_tasks,
                                     batch_claim=config.batch_claim)
        # a group is written once every row still being pushed has reported (or when full)
        self.outcomes = OutcomeGroups(store, lambda: self._unreported + self.outcomes.buffered)
        # what is under way: each push task and the rows it holds (leased until recorded)
        self._tasks: dict[asyncio.Task[None], list[Row]] = {}
        # rows of those tasks whose outcome is being recorded, or was: a lease extension
        # waits for a group being recorded and then no longer finds its rows (done, not lost)
        self._recording: set[int] = set()
        self._batch_tasks: set[asyncio.Task[None]] = set()
        self._pushing = 0  # single rows whose push is under way (each takes a slot)
        self._unreported = 0  # claimed rows whose outcome is not with OutcomeGroups yet
        self._slot_freed = asyncio.Event()

    @property
    def realm_id(self) -> str:
        return self.pusher.realm.realm_id

    # -- the loop -------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        await self.listener.ensure()
        leases = asyncio.create_task(self._keep_leases(stop), name="qbsync-leases")
        need_claim = True
        try:
            while not stop.is_set():
                self.loop_alive = time.monotonic()
                if need_claim:
                    need_claim = await self._claim_round()
                    if need_claim:
                        continue
                woke = await self._wait(stop, self.idle.sleep_for())
                if woke != "timeout":
                    need_claim = True
                    continue
                need_claim = await self.idle.slept()
                if self.paused_reason and need_claim:
                    await self._check_unpause()
        finally:
            leases.cancel()
            await self.store.close()
            await self._drain()
            await self.store.stop_waiting()
            await self.store.close()

    def _busy(self) -> int:
        """Slots taken: rows being pushed one by one, and batch pushes (until recorded)."""
        return self._pushing + len(self._batch_tasks)

    async def _claim_round(self) -> bool:
        """Claims for the free slots; True when another claim should follow at once."""
        try:
            return await self._claim()
        finally:
            await self.backlog.check()

    async def _claim(self) -> bool:
        self.idle.claiming()
        cfg = self.config
        # free slots, and at most `concurrency` rows waiting for their outcome to be written
        free = min(cfg.concurrency - self._busy(), 2 * cfg.concurrency - len(self._tasks))
        if free <= 0 or self.paused_reason:
            return False
        want, batch = self.backlog.claim(free, len(self._batch_tasks))
        try:
            rows = await self.store.claim(want, cfg.lease_seconds)
        except self.store.errors as exc:
            log.warning("claim failed: %s; retrying after the poll interval", exc)
            return False
        self._unreported += len(rows)
        self.backlog.claimed(len(rows), want, batch)
        if batch and rows:
            task = asyncio.create_task(self._process_batch(rows), name="push batch")
            self._tasks[task] = rows
            self._batch_tasks.add(task)
            task.add_done_callback(self._batch_tasks.discard)
            return len(rows) == want
        for row in rows:
            pushed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.pusher.in_flight[(row.entity, row.key)] = pushed
            self._pushing += 1
            task = asyncio.create_task(self._process(row, pushed), name=f"push {row.label}")
            self._tasks[task] = [row]
        if len(rows) == free:
            await self.idle.filled(self._busy() >= cfg.concurrency)
            return True
        return await self.idle.came_short()

    async def _wait(self, stop: asyncio.Event, wait_for: float) -> str:
        woken = asyncio.ensure_future(self.listener.woken.wait())
        stopping = asyncio.ensure_future(stop.wait())
        freed = asyncio.ensure_future(self._slot_freed.wait())
        waiters: set[asyncio.Future[Any]] = {woken, stopping, freed, *self._tasks}
        try:
            done, _ = await asyncio.wait(waiters, timeout=wait_for,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            woken.cancel()
            stopping.cancel()
            freed.cancel()
        for task in [t for t in done if t in self._tasks]:
            for row in self._tasks.pop(task):  # type: ignore[arg-type]
                self._recording.discard(row.id)
        self._slot_freed.clear()
        if woken in done:
            self.listener.woken.clear()
            return "woken"
        if stopping in done:
            return "stop"
        if done:
            return "task"
        if not self.listener.healthy():
            await self.listener.ensure()  # raises when it cannot come back: exit, restart
        return "timeout"

    # -- one row --------------------------------------------------------------------

    async def _process(self, row: Row, pushed: asyncio.Future[None]) -> None:
        """`pushed`: this try's future in pusher.in_flight, which rows that need this one
        wait on. Set here whatever the map holds now: once this try's outcome is recorded
        the key can be claimed again, and the next try's future replaces this one in the
        map before this task ends; a row that took this future must still be woken."""
        try:
            await self._push_and_record(row)
        finally:
            if self.pusher.in_flight.get((row.entity, row.key)) is pushed:
                del self.pusher.in_flight[(row.entity, row.key)]
            if not pushed.done():
                pushed.set_result(None)

    async def _push_and_record(self, row: Row) -> None:
        deadline = self.pusher.entities[row.entity].deadline_seconds \
            if row.entity in self.pusher.entities else 120
        outcome: Pushed | Skipped | PushFailed
        try:
            async with asyncio.timeout(deadline):
                outcome = await self.pusher.push(row)
        except PushFailed as failure:
            outcome = failure
        except TimeoutError:
            outcome = PushFailed(
                "retry", f"{row.label}: no answer within the {deadline} s deadline; the next "
                "try looks the object up in QuickBooks before creating it", unknown=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("unexpected error pushing %s", row.label)
            # where it stopped is not known: a write may have gone out
            outcome = PushFailed("retry", f"{row.label}: internal error: "
                                          f"{type(exc).__name__}: {exc}", unknown=True)
        finally:
            # the push is over: its slot is free while the outcome is recorded
            self._pushing -= 1
            self._unreported -= 1
            self._slot_freed.set()
        await self._record(row, outcome)

    async def _process_batch(self, rows: list[Row]) -> None:
        deadline = max((self.pusher.entities[r.entity].deadline_seconds
                        for r in rows if r.entity in self.pusher.entities), default=120)
        outcomes: dict[int, Pushed | Skipped | PushFailed]
        try:
            async with asyncio.timeout(deadline * 2):
                outcomes = await self.batches.push(rows)
        except PushFailed as failure:
            outcomes = {r.id: failure.copy_for(r) for r in rows}
        except TimeoutError:
            outcomes = {}
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("unexpected error pushing a batch")
            outcomes = {r.id: PushFailed("retry", f"{r.label}: internal error: "
                                                  f"{type(exc).__name__}: {exc}", unknown=True)
                        for r in rows}

        async def record(row: Row) -> None:
            # counted as reported one by one, as each joins the group: the group is written
            # with the last of them, not with the first
            self._unreported -= 1
            await self._record(row, outcomes.get(row.id) or PushFailed(
                "retry", f"{row.label}: the batch got no answer within {deadline * 2} s; "
                "the next try looks the object up in QuickBooks before creating it",
                unknown=True))

        # recorded together: the group of outcomes becomes one transaction
        await asyncio.gather(*(record(row) for row in rows))

    async def _record(self, row: Row, outcome: Pushed | Skipped | PushFailed) -> None:
        """Store the outcome; keeps trying through a database outage while the lease lasts
        (the push itself is done, and its result must not be lost)."""
        realm = self.realm_id
        self._recording.add(row.id)
        give_up = time.monotonic() + self.config.lease_seconds
        delay = 0.2
        while True:
            try:
                if isinstance(outcome, Pushed | Skipped):
                    held = await self.outcomes.record(row, outcome)
                    if isinstance(outcome, Pushed):
                        self.stats.pushed += 1
                        self.stats.last_push = time.time()
                    else:
                        self.stats.skipped += 1
                    state = ("done" if isinstance(outcome, Pushed) else "skipped") \
                        if held else "lost"
                elif outcome.kind == "setting":
                    # a gap in the company's configuration: the row waits, burning no try
                    state = await self.store.wait_for_settings(
                        row, outcome.details.get("settings") or [], outcome.message)
                else:
                    # before the row's failure: other daemons pause at their next look,
                    # and this one stays paused until a reconnect
                    if outcome.needs_reconnect and await self.store.needs_reconnect(
                            outcome.message, outcome.code):
                        log.error("QuickBooks company %s refused the connection (%s); it "
                                  "is marked needs_reconnect: run `qbsync connect`",
                                  realm, outcome.message)
                    state = await self.store.fail(row, outcome.as_error(row))
                    self.stats.failed += 1
                break
            except self.store.errors as exc:
                if time.monotonic() + delay > give_up:
                    log.error("could not record the outcome of %s (%s); the row's lease will "
                              "expire and it will be retried", row.label, exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        if self.observer is not None and state != "lost":
            self._observe(row, outcome, state)
        extra = {"entity": row.entity, "key": row.key, "attempt": row.attempts,
                 "realm_id": realm}
        if state == "lost":
            log.warning("lease on %s was lost (another daemon took it over); outcome not "
                        "recorded here", row.label, extra=extra)
        elif isinstance(outcome, PushFailed):
            # a row waiting for another's push (a payment for its invoice) is routine
            level = logging.ERROR if state == "dead" else \
                logging.INFO if outcome.kind == "waiting" else logging.WARNING
            log.log(level, "%s (%s, row %s)", outcome.message, state, row.id,
                    extra={**extra, "code": outcome.code, "kind": outcome.kind})
            if state == "dead":
                self.stats.dead += 1
                if self.on_dead:
                    self.on_dead(row, outcome)
            if outcome.kind == "paused":
                self.paused_reason = outcome.message
                sdnotify.notify(STATUS=f"paused: {outcome.message}")
            if outcome.kind == "setting" and state == "pending":
                # set while the row was mapped: read the company's settings again now
                with contextlib.suppress(*self.store.errors):
                    await self.store.reload_settings(self.pusher.realm)
        else:
            log.info("%s: %s", row.label, state, extra=extra)

    def _observe(self, row: Row, outcome: Pushed | Skipped | PushFailed, state: str) -> None:
        """The recorded outcome, in the terms of integration_logs' status: a success
        (created, updated, ...), skipped, failed (a retry), waiting, dead."""
        assert self.observer is not None
        if isinstance(outcome, Pushed):
            operation = str(outcome.result.get("operation") or "push")
            self.observer.outcome(row.entity, plain_operation(operation),
                                  success_outcome(operation), row.enqueued_at)
        elif isinstance(outcome, Skipped):
            self.observer.outcome(row.entity, outcome.operation, "skipped")
        else:
            verdict = "dead" if state == "dead" else \
                "waiting" if outcome.kind in ("waiting", "setting") else "failed"
            self.observer.outcome(row.entity, plain_operation(outcome.operation), verdict)

    # -- background duties ------------------------------------------------------------

    async def _keep_leases(self, stop: asyncio.Event) -> None:
        period = self.config.lease_seconds / 3
        while not stop.is_set():
            await asyncio.sleep(period)
            extended = [row for rows in self._tasks.values() for row in rows]
            if not extended:
                continue
            try:
                held = await self.store.extend_leases([row.id for row in extended],
                                                      self.config.lease_seconds)
            except self.store.errors as exc:
                log.warning("could not extend leases: %s", exc)
                continue
            # Lost: a row still being pushed here that the extension did not find. Not a
            # row claimed meanwhile (not extended), nor one whose outcome was recorded
            # meanwhile or is being recorded (that says itself whether its lease was lost).
            pushing = {row.id for rows in self._tasks.values() for row in rows} \
                - self._recording
            for row in extended:
                if row.id not in held and row.id in pushing:
                    log.warning("lease on %s lost", row.label)

    async def _check_unpause(self) -> None:
        if await self.store.connected():
            try:  # the tokens must be usable too: a key ring may lack their key
                await self.pusher.client.tokens.access_token()
            except (QbsyncError, *self.store.errors) as exc:
                log.debug("company %s stays paused: %s", self.realm_id, exc)
                return
            log.info("company %s is connected again; resuming", self.realm_id)
            self.paused_reason = None

    async def _drain(self) -> None:
        """Stop: give in-flight pushes the grace period, then hand the rest back."""
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.config.shutdown_grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=5)
                ids = [row.id for t in pending for row in self._tasks[t]]
                with contextlib.suppress(*self.store.errors):
                    released = await self.store.release(ids)
                    log.info("released %s unfinished row(s)", released)
            self._tasks.clear()
            self._recording.clear()
