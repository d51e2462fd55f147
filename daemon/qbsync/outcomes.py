"""Records successful outcomes in groups: one transaction (one commit, one WAL flush) for the
rows that finished together, instead of one per row. A group is written once every push in
flight has reported, or when it is full, or after a few milliseconds at most."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg

from .model import Pushed, Row, Skipped
from .queries import load as load_queries

Q = load_queries()
# SQLSTATE classes of a lost or refused connection: the whole group is retried later.
CONNECTION_CLASSES = {"08", "53", "57"}


class OutcomeGroups:
    def __init__(self, pool: asyncpg.Pool, worker_id: str, realm_id: str,
                 rows_in_flight: Callable[[], int], *, max_items: int = 64,
                 max_delay: float = 0.003) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.realm_id = realm_id
        self.rows_in_flight = rows_in_flight
        self.max_items = max_items
        self.max_delay = max_delay
        self._items: list[tuple[Row, Pushed | Skipped, asyncio.Future[bool]]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._writes: set[asyncio.Task[None]] = set()

    @property
    def buffered(self) -> int:
        """Outcomes waiting for their group to be written."""
        return len(self._items)

    async def record(self, row: Row, outcome: Pushed | Skipped) -> bool:
        """True when recorded, False when the lease was lost; raises a database error."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._items.append((row, outcome, future))
        if len(self._items) >= min(self.max_items, max(self.rows_in_flight(), 1)):
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_delay, self._flush)
        return await future

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        items, self._items = self._items, []
        if items:
            task = asyncio.create_task(self._write(items), name="record outcomes")
            self._writes.add(task)
            task.add_done_callback(self._writes.discard)

    async def _write(self, items: list[tuple[Row, Pushed | Skipped, asyncio.Future[bool]]]
                     ) -> None:
        try:
            try:
                lost = set(await self._write_group(items))
                held = {row.id: row.id not in lost for row, _, _ in items}
            except asyncpg.PostgresError as exc:
                if (getattr(exc, "sqlstate", "") or "")[:2] in CONNECTION_CLASSES:
                    raise
                # One row's write-back failed and took the group with it: row by row, each
                # guarded, so that the others are recorded and the failure is logged.
                held = {row.id: await self._one(row, outcome) for row, outcome, _ in items}
        except Exception as exc:
            for _, _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for row, _, future in items:
            if not future.done():
                future.set_result(held[row.id])

    async def _write_group(self, items: list[tuple[Row, Pushed | Skipped, asyncio.Future[bool]]]
                           ) -> list[int]:
        """One call for the group; the ids whose lease was lost."""
        if all(isinstance(outcome, Skipped) and outcome.operation == "skip"
               for _, outcome, _ in items):
            # plain skips only (rows the mapping had nothing to push for): the lean function
            lost = await self.pool.fetchval(
                Q.skip_many, self.worker_id, self.realm_id, [row.id for row, _, _ in items],
                [outcome.reason for _, outcome, _ in items if isinstance(outcome, Skipped)])
        else:
            lost = await self.pool.fetchval(Q.complete_many, self.worker_id, self.realm_id,
                                            [_item(row, outcome) for row, outcome, _ in items])
        return list(lost or [])

    async def _one(self, row: Row, outcome: Pushed | Skipped) -> bool:
        if isinstance(outcome, Pushed):
            return bool(await self.pool.fetchval(Q.complete, row.id, self.worker_id,
                                                 self.realm_id, outcome.result))
        if outcome.operation != "skip":  # qbsync.skip logs operation 'skip' only
            lost = await self.pool.fetchval(Q.complete_many, self.worker_id, self.realm_id,
                                            [_item(row, outcome)])
            return not lost
        return bool(await self.pool.fetchval(Q.skip, row.id, self.worker_id, self.realm_id,
                                             outcome.reason))


def _item(row: Row, outcome: Pushed | Skipped) -> dict[str, Any]:
    """One element of complete_many's p_items."""
    if isinstance(outcome, Pushed):
        return {"id": row.id, "result": outcome.result}
    item: dict[str, Any] = {"id": row.id, "skip": outcome.reason}
    if outcome.operation != "skip":
        item["operation"] = outcome.operation
    return item
