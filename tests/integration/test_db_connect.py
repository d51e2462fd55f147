"""The daemon's start-up connection: waits out a server that is down or starting, fails at
once on what waiting cannot fix; and what a pooled connection keeps when it is given back."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from qbsync.db import create_pool, holds_session_lock, wait_for_pool
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


async def test_release_unlocks_a_session_lock_and_nothing_else_costs_a_round_trip() -> None:
    pool = await create_pool(url_for("postgres"), size=1)  # one connection: the same each time
    try:
        async with pool.acquire() as conn:
            holds_session_lock(conn)
            await conn.execute("SELECT pg_advisory_lock(4242)")
            pid = conn.get_server_pid()
        async with pool.acquire() as conn:
            assert conn.get_server_pid() == pid
            locks = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid)
            assert locks == 0  # the release unlocked it
            # an unmarked connection is given back as it is (asyncpg's default reset,
            # a round trip at every release, would have unlocked this one too)
            await conn.execute("SELECT pg_advisory_lock(4243)")
        async with pool.acquire() as conn:
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = $1", pid)
            assert held == 1
            await conn.execute("SELECT pg_advisory_unlock_all()")
        # and an open transaction is still rolled back by asyncpg
        async with pool.acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE left_open (x int)")
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT to_regclass('pg_temp.left_open')") is None
    finally:
        await pool.close()
