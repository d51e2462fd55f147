"""The daemon's start-up connection: waits out a server that is down or starting, fails at
once on what waiting cannot fix."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from qbsync.db import wait_for_pool
from qbsync.pgcluster import free_port
from tests.support import url_for


async def test_waits_for_an_unreachable_server_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()
    asyncio.get_running_loop().call_later(1.2, stop.set)
    with caplog.at_level(logging.WARNING, logger="qbsync.db"):
        pool = await wait_for_pool(f"postgresql://postgres@127.0.0.1:{free_port()}/x", stop)
    assert pool is None
    retries = [r.getMessage() for r in caplog.records if "not reachable" in r.getMessage()]
    assert len(retries) >= 2  # 0.5 s, then 1 s
    assert "retrying in 0.5 s" in retries[0]


async def test_connects_when_the_server_answers() -> None:
    pool = await wait_for_pool(url_for("postgres"), asyncio.Event())
    assert pool is not None
    try:
        assert await pool.fetchval("SELECT 1") == 1
    finally:
        await pool.close()


async def test_a_missing_database_fails_at_once() -> None:
    with pytest.raises(asyncpg.InvalidCatalogNameError):
        await asyncio.wait_for(
            wait_for_pool(url_for("qbsync_no_such_database"), asyncio.Event()), 10)
