"""How tests wait: for a fact, polled until a deadline, never for a length of time.

`wait_until` (threads, subprocesses) and `eventually` (coroutines) check a condition every
few milliseconds and fail naming what did not happen. A test that needs time itself to
pass (a lease or a rate window running out) drives a clock where the code under test takes
one, and otherwise says why it sleeps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(check: Callable[[], T], within: float = 30, what: str = "condition",
               every: float = 0.05) -> T:
    """The first truthy value of `check()`; AssertionError when `within` seconds pass first."""
    deadline = time.monotonic() + within
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {within} s")
        time.sleep(every)


async def eventually(check: Callable[[], Awaitable[T]], within: float = 30,
                     what: str = "condition", every: float = 0.05) -> T:
    """`wait_until` for a coroutine check, yielding to the event loop between tries."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached within {within} s")
        await asyncio.sleep(every)
