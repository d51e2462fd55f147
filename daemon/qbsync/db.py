"""asyncpg pool and the dedicated LISTEN connection of the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from typing import Any

import asyncpg

from . import fastjson
from .queries import load as load_queries

log = logging.getLogger(__name__)
Q = load_queries()

WAKEUP_CHANNEL = "qbsync_wakeup"
# What a lost or restarting server raises through asyncpg; asyncpg's InternalClientError
# ("cannot switch to state …") shows up on a connection broken mid-operation.
CONNECTION_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                     asyncpg.exceptions._base.InternalClientError, TimeoutError)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # jsonb in and out as Python objects, through orjson (application_name is set by
    # create_pool's server_settings).
    await conn.set_type_codec(
        "jsonb", encoder=fastjson.dumps, decoder=fastjson.loads, schema="pg_catalog",
        format="text"
    )


# Backend pids of pooled connections that took a session advisory lock (the token
# refresh): given back to the pool, they are unlocked. asyncpg's default reset (advisory
# unlock, CLOSE ALL, UNLISTEN *, RESET ALL) would cost a round trip at every release, several
# per pushed row, for state the daemon never leaves on a pooled connection otherwise: LISTEN
# has its own connection, settings are set per transaction, cursors live in transactions
# (an open transaction is still rolled back by asyncpg before the reset).
_SESSION_LOCKED: set[int] = set()


def holds_session_lock(conn: asyncpg.Connection) -> None:
    """Mark a pooled connection that took a session advisory lock: its release unlocks."""
    _SESSION_LOCKED.add(conn.get_server_pid())


async def _reset_connection(conn: asyncpg.Connection) -> None:
    pid = conn.get_server_pid()
    if pid in _SESSION_LOCKED:
        await conn.execute(Q.unlock_session_locks)
        _SESSION_LOCKED.discard(pid)


async def create_pool(dsn: str, *, size: int = 10) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn or None,
        min_size=1,
        max_size=size,
        init=_init_connection,
        reset=_reset_connection,
        server_settings={"application_name": "qbsync"},
        command_timeout=60,
    )


# Connection failures worth waiting out at start-up (the server is down, starting, shutting
# down or full); anything else (a wrong password, no such database) fails at once.
TRANSIENT_CONNECT_ERRORS = (OSError, TimeoutError, asyncpg.CannotConnectNowError,
                            asyncpg.TooManyConnectionsError)


async def wait_for_pool(dsn: str, stop: asyncio.Event, *, size: int = 10,
                        max_delay: float = 30.0,
                        failed: Callable[[str], None] | None = None) -> asyncpg.Pool | None:
    """create_pool, retried with backoff while the server is unreachable; None if `stop` is
    set first. A daemon started together with (or just before) PostgreSQL waits for it.
    `failed` hears of each failed try (its error, one line)."""
    delay = 0.5
    while True:
        try:
            return await create_pool(dsn, size=size)
        except TRANSIENT_CONNECT_ERRORS as exc:
            error = f"{type(exc).__name__}: {exc}"
            log.warning("database not reachable (%s); retrying in %.1f s", error, delay)
            if failed is not None:
                failed(error)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return None
        delay = min(delay * 2, max_delay)


class Listener:
    """One direct connection that LISTENs for wake-ups, reconnecting with jittered backoff.

    A pooler in transaction mode breaks LISTEN, so this never comes from the pool. When it
    cannot reconnect within `give_up_after` seconds it raises: the daemon exits non-zero and
    systemd restarts it, rather than limping on with polling alone.
    """

    def __init__(self, dsn: str, *, give_up_after: float = 120.0) -> None:
        self.dsn = dsn
        self.give_up_after = give_up_after
        self.woken = asyncio.Event()
        self._conn: asyncpg.Connection | None = None
        self._lost = asyncio.Event()

    def _on_notify(self, *_: Any) -> None:
        self.woken.set()

    def _on_terminate(self, *_: Any) -> None:
        self._lost.set()

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.give_up_after
        delay = 0.2
        while True:
            try:
                conn = await asyncpg.connect(
                    self.dsn or None, server_settings={"application_name": "qbsync-listen"}
                )
                await conn.add_listener(WAKEUP_CHANNEL, self._on_notify)
                conn.add_termination_listener(self._on_terminate)
                self._conn = conn
                self._lost.clear()
                self.woken.set()  # anything may have happened while we were away
                return
            except CONNECTION_ERRORS as exc:
                if loop.time() + delay > deadline:
                    raise ConnectionError(
                        f"LISTEN connection lost and not back after {self.give_up_after:.0f} s: "
                        f"{exc}"
                    ) from exc
                log.warning("LISTEN connection failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                delay = min(delay * 2, 10.0)

    def healthy(self) -> bool:
        return self._conn is not None and not self._conn.is_closed() and not self._lost.is_set()

    async def ensure(self) -> None:
        if not self.healthy():
            await self.close()
            await self.connect()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 5)
            except CONNECTION_ERRORS:
                conn.terminate()
