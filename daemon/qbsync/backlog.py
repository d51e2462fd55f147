"""The backlog policy: whether the worker pushes rows one by one or through the batch
endpoint, and how many rows a claim asks for.

The ready backlog is counted now and then (a bounded count), after a claim's rows are on
their way, so that a wake-up's claim never waits for it; the mode applies from the next
claim. From `threshold` ready rows on, claims take batches. Under a rate limiter ("mixed")
batches run beside single rows: at most `batch_tasks` batch pushes at once, each claiming
`batch_claim` batches' worth, and the rest of the slots push single rows, which use the
request budget the batches leave.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("qbsync.worker")


class BacklogStore(Protocol):
    async def ready_backlog(self, limit: int) -> int | None:
        """Ready rows, counted up to `limit`; None while the database is away."""


class BacklogPolicy:
    def __init__(self, store: BacklogStore, *, threshold: int | None, check_interval: float,
                 batch_size: int, mixed: bool, batch_tasks: int, batch_claim: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.threshold = threshold  # None: never batch
        self.check_interval = check_interval
        self.batch_size = batch_size
        self.mixed = mixed
        self.batch_tasks = batch_tasks
        self.batch_claim = batch_claim
        self.clock = clock
        self.batch_mode = False
        self.near = False  # near the threshold: look again after each batch claim
        self.soon = False  # a claim came back full: look at the backlog again soon
        self.checked = 0.0

    def claim(self, free: int, batches_running: int) -> tuple[int, bool]:
        """How many rows to claim for `free` slots, and whether as a batch push."""
        batch = self.batch_mode and self.threshold is not None
        if batch and self.mixed and batches_running >= self.batch_tasks:
            batch = False  # enough batches on their way: single rows fill the other slots
        if not batch:
            return free, False
        return self.batch_size * (self.batch_claim if self.mixed else 1), True

    def claimed(self, got: int, want: int, batch: bool) -> None:
        """What a claim brought: a full one means more may be waiting."""
        if batch:
            if got:
                self.soon = self.near
        elif got and got == want and not self.batch_mode:
            self.soon = True

    async def check(self) -> None:
        """Count the backlog if it is time to, and set the mode."""
        threshold = self.threshold
        if threshold is None:
            return
        now = self.clock()
        # A burst (e.g. a backfill enqueued at once) is seen within a fraction of a second,
        # not after up to a whole check interval of single pushes.
        interval = min(0.25, self.check_interval) if self.soon else self.check_interval
        if now - self.checked < interval:
            return
        self.checked = now
        self.soon = False
        # Under a limiter, counted as far as the rows batch pushes hold (twice): below that,
        # the backlog is looked at again after each batch claim, so that batch pushes stop
        # claiming as soon as it falls under the threshold. Seen a check interval late, they
        # would claim the queue's last rows, and the single requests would sit idle while
        # those go out at 40 batches a minute.
        near = max(threshold, 2 * self.batch_tasks * self.batch_size * self.batch_claim) \
            if self.mixed else threshold
        backlog = await self.store.ready_backlog(near)
        mode = backlog is not None and backlog >= threshold
        self.near = mode and self.mixed and backlog is not None and backlog < near
        if mode != self.batch_mode:
            log.info("backlog %s: %s", backlog,
                     "pushing in batches" if mode else "pushing one by one")
        self.batch_mode = mode
