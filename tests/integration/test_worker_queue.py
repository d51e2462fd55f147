"""The worker loop as a queue (no QuickBooks): every captured key pushed exactly once, two
rows of one key never in flight together, and outcomes written in groups (one transaction
for the rows that finished together, not one per row)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import asyncpg
import psycopg
import pytest

from qbsync.db import Listener, create_pool
from qbsync.model import Row, Skipped
from qbsync.worker import Worker, WorkerConfig
from tests.waiting import eventually


class StubPusher:
    """Stands in for qbsync.sync.Pusher: a push that only yields to the loop and notes
    which keys are in flight; every row is skipped."""

    def __init__(self) -> None:
        self.realm = SimpleNamespace(realm_id="realm-1")
        self.client = SimpleNamespace(limiter=None)
        self.entities: dict[str, Any] = {}
        self.in_flight: dict[Any, Any] = {}
        self.pushed: list[str] = []
        self.running: set[str] = set()
        self.overlaps: list[str] = []

    async def push(self, row: Row) -> Skipped:
        if row.key in self.running:
            self.overlaps.append(row.key)
        self.running.add(row.key)
        try:
            # a push that takes a moment, so that changes of its key arrive meanwhile
            await asyncio.sleep(0.001 if row.key.startswith("slow") else 0)
            self.pushed.append(row.key)
            return Skipped("nothing to push")
        finally:
            self.running.discard(row.key)


@contextlib.asynccontextmanager
async def running_worker(url: str, pusher: StubPusher) -> AsyncIterator[asyncio.Task[None]]:
    """The worker loop over `pusher`, running until the block ends."""
    pool = await create_pool(url, size=14)
    worker = Worker(pool, Listener(url), pusher,  # type: ignore[arg-type]
                    WorkerConfig(worker_id="w-test", concurrency=10, batch_threshold=None,
                                 poll_interval=0.2))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await worker.listener.close()
        await pool.close()


async def wait_drained(conn: asyncpg.Connection, task: asyncio.Task[None], within: float
                       ) -> None:
    async def drained() -> bool:
        if await conn.fetchval("SELECT qbsync.backlog()") == 0:
            return True
        assert not task.done(), task
        return False

    await eventually(drained, within, "an empty queue", every=0.02)


@pytest.fixture
def queue_url(db: psycopg.Connection, db_url: str) -> str:
    db.execute("SELECT qbsync.define_entity('thing', 'Item')")
    db.execute("SELECT qbsync.register_worker('w-test', 'host', 0)")
    db.commit()
    return db_url


async def test_every_key_once_and_outcomes_in_groups(queue_url: str) -> None:
    conn = await asyncpg.connect(queue_url)
    try:
        await conn.execute("INSERT INTO qbsync.changes (entity, key)"
                           " SELECT 'thing', 'k' || g FROM generate_series(1, 300) AS g")
        pusher = StubPusher()
        async with running_worker(queue_url, pusher) as task:
            await wait_drained(conn, task, within=60)
        assert sorted(pusher.pushed) == sorted(f"k{i}" for i in range(1, 301))
        logs, transactions = await conn.fetchrow(
            "SELECT count(*), count(DISTINCT created_at) FROM qbsync.integration_logs"
            " WHERE operation = 'skip' AND status = 'skipped' AND actor = 'w-test'")
        assert logs == 300
        # claims of up to 10 rows; the rows that finished together are one transaction
        assert transactions <= 300 // 4, transactions
    finally:
        await conn.close()


async def test_a_key_changed_while_pushed_is_pushed_again_after(queue_url: str) -> None:
    conn = await asyncpg.connect(queue_url)
    try:
        await conn.execute("INSERT INTO qbsync.changes (entity, key)"
                           " SELECT 'thing', 'slow' || (g % 5) FROM generate_series(1, 5) AS g")
        pusher = StubPusher()
        async with running_worker(queue_url, pusher) as task:
            # keep changing the same five keys while the worker pushes them
            for _ in range(40):
                await conn.execute(
                    "INSERT INTO qbsync.changes (entity, key)"
                    " SELECT 'thing', 'slow' || (g % 5) FROM generate_series(1, 5) AS g")
                await asyncio.sleep(0.005)  # the changes come over time, not at once
            await wait_drained(conn, task, within=30)
        assert pusher.overlaps == []  # never two rows of one key in flight
        assert set(pusher.pushed) == {f"slow{i}" for i in range(5)}
        assert len(pusher.pushed) > 5  # changes during a push were pushed again after it
        assert await conn.fetchval("SELECT count(*) FROM qbsync.outbox") == 0
    finally:
        await conn.close()
