"""Turns: the order in which a process's batch requests take QuickBooks' 40 slots a minute."""

from __future__ import annotations

import asyncio

import pytest

from qbsync.batch import Turns


async def hold(turns: Turns, priority: int, name: str, order: list[str],
               release: asyncio.Event) -> None:
    async with turns.turn(priority):
        order.append(name)
        await release.wait()


async def test_waiters_go_by_priority_then_arrival() -> None:
    turns = Turns(1)
    order: list[str] = []
    first = asyncio.Event()
    go = asyncio.Event()
    go.set()
    holder = asyncio.create_task(hold(turns, 0, "holder", order, first))
    await asyncio.sleep(0)
    waiters = [asyncio.create_task(hold(turns, p, n, order, go))
               for p, n in [(0, "invoices"), (2, "items a"), (1, "customers"), (2, "items b")]]
    await asyncio.sleep(0)
    assert order == ["holder"]
    assert turns.busy == 1
    first.set()
    await asyncio.gather(holder, *waiters)
    assert order == ["holder", "items a", "items b", "customers", "invoices"]
    assert turns.busy == 0


async def test_width_holders_at_once() -> None:
    turns = Turns(2)
    order: list[str] = []
    release = asyncio.Event()
    tasks = [asyncio.create_task(hold(turns, 0, str(n), order, release)) for n in range(3)]
    await asyncio.sleep(0)  # one turn of the loop: each task runs until it waits
    assert order == ["0", "1"]
    assert turns.busy == 2
    release.set()
    await asyncio.gather(*tasks)
    assert order == ["0", "1", "2"]
    assert turns.busy == 0


@pytest.mark.parametrize("handed", [False, True], ids=["while-waiting", "as-its-turn-comes"])
async def test_a_cancelled_waiter_passes_its_turn_on(handed: bool) -> None:
    turns = Turns(1)
    order: list[str] = []
    release = asyncio.Event()
    holder = asyncio.create_task(hold(turns, 0, "holder", order, release))
    await asyncio.sleep(0)
    quitter = asyncio.create_task(hold(turns, 5, "quitter", order, release))
    waiter = asyncio.create_task(hold(turns, 0, "waiter", order, release))
    await asyncio.sleep(0)
    if handed:
        release.set()
        await asyncio.sleep(0)  # the holder leaves: the quitter is given the turn, not run
    quitter.cancel()
    release.set()
    await asyncio.gather(holder, waiter)
    assert order == ["holder", "waiter"]
    assert turns.busy == 0
