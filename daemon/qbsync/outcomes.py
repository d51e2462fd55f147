"""Records successful outcomes in groups: one transaction (one commit, one WAL flush) for the
rows that finished together, instead of one per row. A group is written once every push in
flight has reported, or when it is full, or after a few milliseconds at most."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from .model import Pushed, Row, Skipped


class OutcomeStore(Protocol):
    async def record(self, outcomes: Sequence[tuple[Row, Pushed | Skipped]]) -> dict[int, bool]:
        """By row id: True when recorded, False when the lease was lost."""


class OutcomeGroups:
    def __init__(self, store: OutcomeStore, rows_in_flight: Callable[[], int], *,
                 max_items: int = 64, max_delay: float = 0.003) -> None:
        self.store = store
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
            held = await self.store.record([(row, outcome) for row, outcome, _ in items])
        except Exception as exc:
            for _, _, future in items:
                if not future.done():
                    future.set_exception(exc)
            return
        for row, _, future in items:
            if not future.done():
                future.set_result(held[row.id])
