"""The idle protocol: how a worker with nothing to claim learns of new rows without making
every shop transaction pay for a NOTIFY.

When a claim comes back short, the worker announces that it waits (capture triggers NOTIFY
only while a worker waits) and claims once more at once: a row committed before the
announcement was visible to that claim. A transaction still open at the announcement may
have read "nobody waits" and commit without a NOTIFY, so the worker claims again once every
such transaction has ended (the announcement's snapshot has settled). A fallback poll
bounds every wait; the announcement lasts three polls and is renewed before it runs out.
While every slot is busy the worker stops waiting (nothing to wake it for).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Protocol


class WaitingStore(Protocol):
    """The calls the protocol makes (store.QueueStore); each answers None while the
    database is away."""

    async def announce_waiting(self, ttl: float) -> str | None: ...
    async def snapshot_settled(self, snapshot: str | None) -> bool | None: ...
    async def stop_waiting(self) -> None: ...


class IdleProtocol:
    def __init__(self, store: WaitingStore, *, poll_interval: float, settle_check: float,
                 notify: bool = True, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.poll_interval = poll_interval
        self.settle_check = settle_check  # how often to look whether the snapshot settled
        self.notify = notify  # False: never announce; the fallback poll alone
        self.clock = clock
        self.waiting = False  # announced, and the announcement not withdrawn
        self.snapshot: str | None = None  # the transactions open at the announcement
        self.settled = True  # every one of them has ended
        self.announced_at = 0.0
        self.last_claim = 0.0

    def claiming(self) -> None:
        """A claim starts now (the fallback poll counts from the last one)."""
        self.last_claim = self.clock()

    async def filled(self, all_busy: bool) -> None:
        """A claim filled every free slot. With every slot busy there is nothing to wake
        the worker for: it stops waiting, and the triggers stop notifying."""
        if self.waiting and all_busy:
            self.waiting = False
            await self.store.stop_waiting()

    async def came_short(self) -> bool:
        """A claim came back short: announce, or renew an announcement about to run out
        (also when the worker is kept busy and never sleeps a whole poll). True when the
        worker should claim once more now (it has just announced)."""
        if self.waiting and self.clock() - self.announced_at > self.poll_interval:
            self.waiting = False
        if self.waiting or not self.notify:
            return False
        self.snapshot = await self.store.announce_waiting(self.poll_interval * 3)
        self.waiting = self.snapshot is not None
        self.settled = not self.waiting
        self.announced_at = self.clock()
        return self.waiting

    def sleep_for(self) -> float:
        """How long to sleep before looking again (a wake-up may come first): until the
        next fallback poll, or a short while when the announcement has not settled yet."""
        if self.settled:
            return max(0.0, self.last_claim + self.poll_interval - self.clock())
        return self.settle_check

    async def slept(self) -> bool:
        """The sleep ended with no wake-up: True when it is time to claim (the
        announcement settled, or the fallback poll is due)."""
        now = self.clock()
        claim = False
        if not self.settled:
            # A transaction that stays open (a long report, a forgotten session) never
            # settles: after a poll interval the fallback poll covers it.
            self.settled = bool(await self.store.snapshot_settled(self.snapshot)) \
                or now - self.announced_at > self.poll_interval
            claim = self.settled
        if now - self.last_claim >= self.poll_interval:
            claim = True  # the fallback poll, whatever else goes on
        return claim
