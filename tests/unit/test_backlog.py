"""The backlog policy (qbsync.backlog) on a fake clock and a fake backlog count."""

from __future__ import annotations

from typing import Any

import pytest

from qbsync.backlog import BacklogPolicy
from tests.clock import Clock


class Store:
    def __init__(self, backlog: int | None = 0) -> None:
        self.backlog = backlog
        self.asked: list[int] = []

    async def ready_backlog(self, limit: int) -> int | None:
        self.asked.append(limit)
        return None if self.backlog is None else min(self.backlog, limit)


def policy(store: Store, clock: Clock, **kw: Any) -> BacklogPolicy:
    options: dict[str, Any] = {"threshold": 200, "check_interval": 2.0, "batch_size": 30,
                               "mixed": False, "batch_tasks": 4, "batch_claim": 3}
    return BacklogPolicy(store, clock=clock, **{**options, **kw})


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_below_the_threshold_rows_go_one_by_one(clock: Clock) -> None:
    store = Store(199)
    backlog = policy(store, clock)
    await backlog.check()
    assert not backlog.batch_mode
    assert backlog.claim(7, 0) == (7, False)
    assert store.asked == [200]  # counted no further than the threshold


async def test_from_the_threshold_claims_take_a_batch(clock: Clock) -> None:
    backlog = policy(Store(200), clock)
    await backlog.check()
    assert backlog.batch_mode
    assert backlog.claim(7, 0) == (30, True)
    assert backlog.claim(7, 9) == (30, True)  # without a limiter, batches only


async def test_under_a_limiter_batches_go_beside_single_rows(clock: Clock) -> None:
    store = Store(300)
    backlog = policy(store, clock, mixed=True)
    await backlog.check()
    assert store.asked == [720]  # as far as the rows batch pushes hold, twice
    assert backlog.batch_mode
    assert backlog.near  # below that: looked at again after each batch claim
    assert backlog.claim(7, 3) == (90, True)  # three batches' worth per batch push
    assert backlog.claim(7, 4) == (7, False)  # enough batch pushes: single rows
    store.backlog = 5000
    clock.now += 2.0
    await backlog.check()
    assert backlog.batch_mode
    assert not backlog.near


async def test_the_backlog_is_counted_once_per_interval(clock: Clock) -> None:
    store = Store(0)
    backlog = policy(store, clock)
    await backlog.check()
    clock.now += 1.0
    await backlog.check()
    assert len(store.asked) == 1
    clock.now += 1.0
    await backlog.check()
    assert len(store.asked) == 2


async def test_a_full_claim_looks_at_the_backlog_again_soon(clock: Clock) -> None:
    store = Store(0)
    backlog = policy(store, clock)
    await backlog.check()
    backlog.claimed(5, 7, batch=False)  # a short claim: nothing more waiting
    clock.now += 0.25
    await backlog.check()
    assert len(store.asked) == 1
    backlog.claimed(7, 7, batch=False)  # a full one: a burst may be arriving
    await backlog.check()
    assert len(store.asked) == 2
    assert not backlog.soon


async def test_a_batch_claim_near_the_threshold_looks_again_soon(clock: Clock) -> None:
    store = Store(300)
    backlog = policy(store, clock, mixed=True)
    await backlog.check()
    backlog.claimed(90, 90, batch=True)
    assert backlog.soon
    store.backlog = 150  # the batches took most of it: back to single rows
    clock.now += 0.25
    await backlog.check()
    assert not backlog.batch_mode
    backlog.claimed(0, 90, batch=True)  # nothing claimed: nothing learnt
    assert not backlog.soon


async def test_no_threshold_never_batches_nor_counts(clock: Clock) -> None:
    store = Store(10_000)
    backlog = policy(store, clock, threshold=None)
    await backlog.check()
    assert store.asked == []
    assert backlog.claim(7, 0) == (7, False)


async def test_a_database_away_means_one_by_one(clock: Clock) -> None:
    store = Store(500)
    backlog = policy(store, clock)
    await backlog.check()
    assert backlog.batch_mode
    store.backlog = None
    clock.now += 2.0
    await backlog.check()
    assert not backlog.batch_mode
