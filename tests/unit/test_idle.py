"""The idle protocol (qbsync.idle) on a fake clock and a store that records its calls."""

from __future__ import annotations

import pytest

from qbsync.idle import IdleProtocol
from tests.clock import Clock


class Store:
    def __init__(self) -> None:
        self.calls: list[str] = []
        self.settled: bool | None = False
        self.away = False

    async def announce_waiting(self, ttl: float) -> str | None:
        self.calls.append(f"announce {ttl:g}")
        return None if self.away else "snap"

    async def snapshot_settled(self, snapshot: str | None) -> bool | None:
        self.calls.append(f"settled? {snapshot}")
        return None if self.away else self.settled

    async def stop_waiting(self) -> None:
        self.calls.append("stop")


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def idle(store: Store, clock: Clock) -> IdleProtocol:
    return IdleProtocol(store, poll_interval=2.0, settle_check=0.02, clock=clock)


async def test_a_short_claim_announces_and_claims_once_more(
        idle: IdleProtocol, store: Store) -> None:
    idle.claiming()
    assert await idle.came_short() is True  # a row committed before it is visible now
    assert store.calls == ["announce 6"]  # it lasts three polls
    assert idle.waiting
    assert not idle.settled
    assert idle.sleep_for() == 0.02  # look again soon whether the snapshot settled
    assert await idle.came_short() is False  # announced already: nothing more to do
    assert store.calls == ["announce 6"]


async def test_once_the_snapshot_settles_the_worker_claims_again(
        idle: IdleProtocol, store: Store, clock: Clock) -> None:
    idle.claiming()
    await idle.came_short()
    clock.now += 0.02
    assert await idle.slept() is False  # a transaction open at the announcement still runs
    store.settled = True
    clock.now += 0.02
    assert await idle.slept() is True
    assert idle.settled
    assert store.calls == ["announce 6", "settled? snap", "settled? snap"]
    # then it sleeps until the fallback poll
    assert idle.sleep_for() == pytest.approx(2.0 - 0.04)


async def test_a_transaction_that_never_ends_is_left_to_the_fallback_poll(
        idle: IdleProtocol, store: Store, clock: Clock) -> None:
    idle.claiming()
    await idle.came_short()
    clock.now += 2.01  # past a poll interval since the announcement, still not settled
    assert await idle.slept() is True
    assert idle.settled


async def test_the_fallback_poll_claims_whatever_else_goes_on(
        idle: IdleProtocol, clock: Clock) -> None:
    idle.claiming()
    clock.now += 1.0
    assert idle.sleep_for() == pytest.approx(1.0)
    assert await idle.slept() is False
    clock.now += 1.0
    assert idle.sleep_for() == 0.0
    assert await idle.slept() is True


async def test_the_announcement_is_renewed_before_it_runs_out(
        idle: IdleProtocol, store: Store, clock: Clock) -> None:
    await idle.came_short()
    clock.now += 1.0
    assert await idle.came_short() is False
    clock.now += 1.5  # more than a poll interval since the announcement
    assert await idle.came_short() is True
    assert store.calls == ["announce 6", "announce 6"]


async def test_with_every_slot_busy_the_worker_stops_waiting(
        idle: IdleProtocol, store: Store) -> None:
    await idle.filled(all_busy=True)
    assert store.calls == []  # not waiting: nothing to withdraw
    await idle.came_short()
    await idle.filled(all_busy=False)
    assert idle.waiting
    await idle.filled(all_busy=True)
    assert not idle.waiting
    assert store.calls == ["announce 6", "stop"]


async def test_without_notify_it_never_announces(store: Store, clock: Clock) -> None:
    idle = IdleProtocol(store, poll_interval=2.0, settle_check=0.02, notify=False, clock=clock)
    assert await idle.came_short() is False
    assert store.calls == []
    assert idle.settled


async def test_a_database_away_leaves_the_fallback_poll(
        idle: IdleProtocol, store: Store) -> None:
    store.away = True
    idle.claiming()
    assert await idle.came_short() is False  # no announcement: no extra claim
    assert not idle.waiting
    assert idle.settled
    assert idle.sleep_for() == pytest.approx(2.0)
