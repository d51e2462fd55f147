"""The worker loop without PostgreSQL: qbsync.worker.Worker over the in-memory queue
(qbsync.memstore.MemoryQueue) and a pusher that only says how each row went. Claims, push
outcomes, leases lost, wake-ups, outages and the drain at shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from types import SimpleNamespace
from typing import Any

import pytest

from qbsync.memstore import MemoryQueue
from qbsync.model import Outcome, Pushed, PushFailed, Row, Skipped
from qbsync.worker import Worker, WorkerConfig
from tests.waiting import eventually


class Queue(MemoryQueue):
    """The in-memory queue, counting the loop's calls."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.claims = 0
        self.refused = 0  # calls made while unavailable
        self.extends = 0
        self.connection_checks = 0

    async def claim(self, limit: int, lease_seconds: float) -> list[Row]:
        self.claims += 1
        self.refused += self.unavailable
        return await super().claim(limit, lease_seconds)

    async def record(self, outcomes: Any) -> dict[int, bool]:
        self.refused += self.unavailable
        return await super().record(outcomes)

    async def extend_leases(self, ids: list[int], lease_seconds: float) -> set[int]:
        self.extends += 1
        return await super().extend_leases(ids, lease_seconds)

    async def connected(self) -> bool:
        self.connection_checks += 1
        return await super().connected()


class Tokens:
    async def access_token(self) -> str:
        return "token"


class Pusher:
    """Stands in for qbsync.sync.Pusher: each push says what `outcome` makes of the row;
    a key with a gate waits for it to open."""

    def __init__(self, outcome: Callable[[Row], Outcome] | None = None) -> None:
        self.realm = SimpleNamespace(realm_id="realm-1")
        self.client = SimpleNamespace(limiter=None, tokens=Tokens())
        self.entities: dict[str, Any] = {}
        self.in_flight: dict[Any, Any] = {}
        self.outcome = outcome or (lambda row: Skipped(f"{row.label}: nothing to push"))
        self.gates: dict[str, asyncio.Event] = {}
        self.started: list[Row] = []
        self.running: set[str] = set()
        self.overlaps: list[str] = []

    def gate(self, *keys: str) -> None:
        for key in keys:
            self.gates[key] = asyncio.Event()

    def open(self, key: str) -> None:
        self.gates[key].set()

    async def push(self, row: Row) -> Pushed | Skipped:
        if row.key in self.running:
            self.overlaps.append(row.key)
        self.running.add(row.key)
        self.started.append(row)
        try:
            if row.key in self.gates:
                await self.gates[row.key].wait()
            outcome = self.outcome(row)
            if isinstance(outcome, PushFailed):
                raise outcome
            return outcome
        finally:
            self.running.discard(row.key)


async def until(fact: Callable[[], bool], within: float = 10.0) -> None:
    """Yield to the loop until `fact` holds (it is a bug if it never does)."""
    async def check() -> bool:
        return fact()

    await eventually(check, within, "the fact", every=0.002)


@contextlib.asynccontextmanager
async def running(queue: MemoryQueue, pusher: Pusher, **options: Any
                  ) -> AsyncIterator[tuple[Worker, asyncio.Event]]:
    dead: list[tuple[Row, PushFailed]] = []
    config = {"worker_id": queue.worker_id, "concurrency": 4, "batch_threshold": None,
              "poll_interval": 0.05, "shutdown_grace": 2.0, **options}
    worker = Worker(None, queue.listener, pusher, WorkerConfig(**config),  # type: ignore[arg-type]
                    store=queue, on_dead=lambda row, failure: dead.append((row, failure)))
    worker.dead = dead  # type: ignore[attr-defined]
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield worker, stop
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def done_keys(queue: MemoryQueue) -> list[str]:
    return [row.key for row, _ in queue.done]


# -- claims ----------------------------------------------------------------------------------

async def test_every_row_is_pushed_once_and_recorded() -> None:
    queue, pusher = Queue(), Pusher()
    for n in range(25):
        queue.capture("thing", f"k{n}")
    async with running(queue, pusher) as (worker, _):
        await until(lambda: len(queue.done) == 25)
    assert sorted(done_keys(queue)) == sorted(f"k{n}" for n in range(25))
    assert queue.backlog == 0
    assert pusher.overlaps == []
    assert worker.stats.skipped == 25


async def test_a_change_during_a_push_waits_for_it() -> None:
    queue, pusher = Queue(), Pusher()
    pusher.gate("k")
    queue.capture("thing", "k")
    async with running(queue, pusher):
        await until(lambda: "k" in pusher.running)
        queue.capture("thing", "k")  # a change while the key is being pushed
        claims = queue.claims
        await until(lambda: queue.claims > claims + 2)  # the loop claimed, and again
        assert queue.state("thing", "k") == ["running", "pending"]
        assert len(pusher.started) == 1  # never two rows of one key in flight
        pusher.open("k")
        await until(lambda: len(queue.done) == 2)
    assert done_keys(queue) == ["k", "k"]
    assert pusher.overlaps == []


async def test_batch_mode_from_the_threshold() -> None:
    queue, pusher = Queue(), Pusher()
    batches: list[list[str]] = []

    class Batches:
        async def push(self, rows: list[Row]) -> dict[int, Outcome]:
            batches.append([row.key for row in rows])
            return {row.id: Skipped("batched") for row in rows}

    for n in range(40):
        queue.capture("thing", f"k{n}")
    async with running(queue, pusher, batch_threshold=10, batch_size=5) as (worker, _):
        worker.batches = Batches()  # type: ignore[assignment]
        await until(lambda: len(queue.done) == 40)
    assert batches  # the backlog was seen, batches claimed
    assert all(len(batch) <= 5 for batch in batches)
    assert sorted(done_keys(queue)) == sorted(f"k{n}" for n in range(40))


# -- push outcomes ---------------------------------------------------------------------------

def verdict(row: Row) -> Outcome:
    kind = row.key
    if kind == "ok":
        return Pushed({"qbo_type": "Item", "qbo_id": "7", "operation": "create"})
    if kind == "skip":
        return Skipped("nothing to push")
    if kind == "boom":
        raise RuntimeError("a bug")
    if kind == "setting":
        return PushFailed("setting", f"{row.label}: waits", details={"settings": ["tax"]})
    return PushFailed(kind, f"{row.label}: {kind}")


async def test_every_outcome_goes_where_the_queue_says() -> None:
    queue = Queue(max_attempts=2, backoff=3600)
    pusher = Pusher(verdict)
    for key in ("ok", "skip", "retry", "permanent", "setting", "boom"):
        queue.capture("thing", key)
    async with running(queue, pusher) as (worker, _):
        await until(lambda: len(queue.done) == 2 and len(queue.failures) == 3
                    and queue.state("thing", "setting") == ["waiting"])
    assert sorted(done_keys(queue)) == ["ok", "skip"]
    assert queue.state("thing", "retry") == ["pending"]  # a try left
    assert queue.state("thing", "permanent") == ["dead"]
    assert queue.state("thing", "setting") == ["waiting"]  # no try spent
    assert queue.state("thing", "boom") == ["pending"]
    failures = {row.key: error for row, error in queue.failures}
    assert failures["boom"]["kind"] == "retry"
    assert failures["boom"]["unknown"] is True  # where it stopped is not known
    assert "internal error: RuntimeError: a bug" in failures["boom"]["message"]
    assert [(row.key, failure.kind) for row, failure in worker.dead] == [  # type: ignore[attr-defined]
        ("permanent", "permanent")]
    assert (worker.stats.pushed, worker.stats.skipped, worker.stats.failed,
            worker.stats.dead) == (1, 1, 3, 1)


async def test_a_row_waiting_for_another_rows_push_is_logged_at_info(
        caplog: pytest.LogCaptureFixture) -> None:
    """A payment waiting for its invoice is routine, not a warning; a retry still is."""
    queue = Queue(backoff=3600)
    pusher = Pusher(lambda row: PushFailed(row.key, f"{row.label}: {row.key}"))
    queue.capture("payment", "waiting")
    queue.capture("payment", "retry")
    caplog.set_level(logging.INFO, "qbsync.worker")
    async with running(queue, pusher):
        await until(lambda: len(queue.failures) == 2)
    levels = {r.key: r.levelname for r in caplog.records  # type: ignore[attr-defined]
              if getattr(r, "kind", None) in ("waiting", "retry")}
    assert levels == {"waiting": "INFO", "retry": "WARNING"}


async def test_a_paused_company_claims_nothing_until_connected_again() -> None:
    queue = Queue()
    pusher = Pusher(lambda row: PushFailed("paused", "reconnect", retry_after=3600)
                    if row.key == "first" else Skipped("fine"))
    queue.capture("thing", "first")
    async with running(queue, pusher) as (worker, _):
        await until(lambda: worker.paused_reason == "reconnect")
        queue.connected_now = False
        queue.capture("thing", "second")
        queue.listener.woken.set()
        checks = queue.connection_checks
        await until(lambda: queue.connection_checks > checks + 1)
        assert [row.key for row in pusher.started] == ["first"]
        queue.connected_now = True
        await until(lambda: "second" in done_keys(queue))
        assert worker.paused_reason is None


async def test_an_outcome_is_recorded_once_the_database_is_back() -> None:
    queue, pusher = Queue(), Pusher()
    pusher.gate("k")
    queue.capture("thing", "k")
    async with running(queue, pusher):
        await until(lambda: "k" in pusher.running)
        queue.unavailable = True
        pusher.open("k")
        await until(lambda: queue.refused >= 2)  # the outcome's write failed, and again
        assert queue.done == []
        queue.unavailable = False
        await until(lambda: done_keys(queue) == ["k"])


async def test_claims_go_on_once_the_database_is_back() -> None:
    queue, pusher = Queue(), Pusher()
    queue.unavailable = True
    for key in ("a", "b", "c"):
        queue.capture("thing", key)
    async with running(queue, pusher):
        await until(lambda: queue.refused >= 2)
        assert pusher.started == []
        queue.unavailable = False
        await until(lambda: len(queue.done) == 3)


# -- leases ----------------------------------------------------------------------------------

async def test_leases_are_kept_while_a_push_runs() -> None:
    queue, pusher = Queue(), Pusher()
    pusher.gate("k")
    queue.capture("thing", "k")
    async with running(queue, pusher, lease_seconds=0.3):
        await until(lambda: "k" in pusher.running)
        await until(lambda: queue.extends >= 4)  # longer than the lease by now
        pusher.open("k")
        await until(lambda: done_keys(queue) == ["k"])


async def test_a_lost_lease_is_said_and_its_outcome_not_recorded(
        caplog: pytest.LogCaptureFixture) -> None:
    queue, pusher = Queue(), Pusher()
    pusher.gate("k")
    queue.capture("thing", "k")
    caplog.set_level(logging.INFO, "qbsync.worker")
    async with running(queue, pusher, lease_seconds=0.3) as (worker, _):
        await until(lambda: "k" in pusher.running)
        entry = next(iter(queue.entries.values()))
        entry.owner = "w-2"  # another daemon took the row over
        await until(lambda: "lease on thing k lost" in caplog.text)
        pusher.open("k")
        await until(lambda: "lease on thing k was lost" in caplog.text)
        assert queue.done == []
        assert worker.stats.skipped == 1  # pushed here, recorded by the other


class RecordingSlowly(Queue):
    """A group's transaction commits (its rows are gone from the queue) while its answer is
    still on its way to the worker."""

    def __init__(self) -> None:
        super().__init__()
        self.committed = asyncio.Event()
        self.answer = asyncio.Event()

    async def record(self, outcomes: Any) -> dict[int, bool]:
        held = await super().record(outcomes)
        self.committed.set()
        await self.answer.wait()
        return held


async def test_a_row_being_recorded_is_not_said_to_have_lost_its_lease(
        caplog: pytest.LogCaptureFixture) -> None:
    queue, pusher = RecordingSlowly(), Pusher()
    queue.capture("thing", "k")
    caplog.set_level(logging.INFO, "qbsync.worker")
    async with running(queue, pusher, lease_seconds=0.3):
        await until(queue.committed.is_set)
        extends = queue.extends
        await until(lambda: queue.extends >= extends + 2)  # the row is no longer found
        queue.answer.set()
        await until(lambda: done_keys(queue) == ["k"])
    assert "lost" not in caplog.text


class ExtendingSlowly(Queue):
    """An extension whose answer is on its way while the loop claims more rows."""

    def __init__(self) -> None:
        super().__init__()
        self.extending = asyncio.Event()
        self.answer = asyncio.Event()

    async def extend_leases(self, ids: list[int], lease_seconds: float) -> set[int]:
        held = await super().extend_leases(ids, lease_seconds)
        self.extending.set()
        await self.answer.wait()
        return held


async def test_a_row_claimed_during_an_extension_is_not_said_to_have_lost_its_lease(
        caplog: pytest.LogCaptureFixture) -> None:
    queue, pusher = ExtendingSlowly(), Pusher()
    pusher.gate("a", "b")
    queue.capture("thing", "a")
    caplog.set_level(logging.INFO, "qbsync.worker")
    async with running(queue, pusher, lease_seconds=0.3):
        await until(queue.extending.is_set)  # a's lease is being extended
        queue.capture("thing", "b")
        await until(lambda: "b" in pusher.running)
        queue.answer.set()
        extends = queue.extends
        await until(lambda: queue.extends >= extends + 2)
        pusher.open("a")
        pusher.open("b")
        await until(lambda: sorted(done_keys(queue)) == ["a", "b"])
    assert "lost" not in caplog.text


# -- idle and shutdown -----------------------------------------------------------------------

async def test_a_row_captured_while_idle_wakes_the_worker() -> None:
    queue, pusher = Queue(), Pusher()
    async with running(queue, pusher, poll_interval=60):  # no fallback poll in this test
        await until(lambda: queue.waiting_until > 0)  # announced: captures notify
        queue.capture("thing", "late")
        await until(lambda: done_keys(queue) == ["late"])


async def test_shutdown_records_what_finishes_in_grace_and_hands_back_the_rest() -> None:
    queue, pusher = Queue(), Pusher()
    pusher.gate("quick", "stuck")
    queue.capture("thing", "quick")
    queue.capture("thing", "stuck")
    async with running(queue, pusher, shutdown_grace=0.2) as (_, stop):
        await until(lambda: pusher.running == {"quick", "stuck"})
        stop.set()
        pusher.open("quick")
    assert done_keys(queue) == ["quick"]
    [stuck] = queue.entries.values()
    # handed back: no try spent, its place kept, an interruption counted
    assert (stuck.state, stuck.attempts, stuck.interruptions) == ("pending", 0, 1)
    assert stuck.outcome_unknown
    assert queue.waiting_until == 0  # no longer waiting for wake-ups
    assert pusher.in_flight == {}
