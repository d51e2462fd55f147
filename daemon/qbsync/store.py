"""The daemon's gateway to PostgreSQL for the parts that must not know SQL: the worker
loop's queue operations (`PgQueue`, a `QueueStore`) and the rate limiter's permits
(`PgPermits`, a `qbo.ratelimit.PermitStore`). Every statement is a named block of
sql/queries.sql and every state change a qbsync function; what the database raises when it
is away is `errors`. `memstore.MemoryQueue` is the queue kept in memory, for tests of the
loop without PostgreSQL.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

import asyncpg

from .db import CONNECTION_ERRORS
from .model import Pushed, Row, Skipped
from .queries import load as load_queries

if TYPE_CHECKING:
    from .realm import Realm

log = logging.getLogger(__name__)
Q = load_queries()
# SQLSTATE classes of a lost or refused connection: a group of outcomes is retried later.
CONNECTION_CLASSES = {"08", "53", "57"}


class QueueStore(Protocol):
    """The queue as the worker loop uses it, for one worker of one realm.

    The loop's own calls (claim, the idle protocol, the backlog) share one connection the
    store keeps. `announce_waiting`, `snapshot_settled`, `stop_waiting` and `ready_backlog`
    answer None while the database is away (and say so in the log): the loop then polls.
    Every other call raises one of `errors`."""

    errors: tuple[type[BaseException], ...]

    async def claim(self, limit: int, lease_seconds: float) -> list[Row]: ...
    async def announce_waiting(self, ttl: float) -> str | None: ...
    async def snapshot_settled(self, snapshot: str | None) -> bool | None: ...
    async def stop_waiting(self) -> None: ...
    async def ready_backlog(self, limit: int) -> int | None: ...
    async def close(self) -> None:
        """Give the loop's connection back."""

    async def record(self, outcomes: Sequence[tuple[Row, Pushed | Skipped]]) -> dict[int, bool]:
        """Record successes and skips together; by row id, False where the lease was lost."""

    async def fail(self, row: Row, error: dict[str, Any]) -> str:
        """qbsync.fail: the row's state after it (pending, dead, lost)."""

    async def wait_for_settings(self, row: Row, settings: list[str], message: str) -> str: ...
    async def extend_leases(self, ids: list[int], lease_seconds: float) -> set[int]: ...
    async def release(self, ids: list[int]) -> int: ...
    async def connected(self) -> bool:
        """Is the realm's connection usable again (status connected)?"""

    async def needs_reconnect(self, message: str, code: str | None) -> bool:
        """qbsync.mark_forbidden: QuickBooks refused the connection itself; True when
        this call marked the connection needs_reconnect."""

    async def reload_settings(self, realm: Realm) -> None: ...


class PgQueue:
    """QueueStore on PostgreSQL (qbsync.claim, qbsync.complete_many, qbsync.fail, ...)."""

    errors = CONNECTION_ERRORS

    def __init__(self, pool: asyncpg.Pool, worker_id: str, realm_id: str) -> None:
        self.pool = pool
        self.worker_id = worker_id
        self.realm_id = realm_id
        # the loop's own connection: a pool checkout per query costs a reset round trip
        self._conn: asyncpg.Connection | None = None

    # -- the loop's own connection ------------------------------------------------------

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            self._conn = await self.pool.acquire()
        return self._conn

    async def close(self) -> None:
        """Gives the loop's connection back (after an error the pool replaces a broken one)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):
                await self.pool.release(conn, timeout=5)

    async def _loop_value(self, query: str, *args: Any) -> Any:
        """One of the loop's soft queries: None while the database is away."""
        try:
            conn = await self._connection()
            return await conn.fetchval(query, *args)
        except CONNECTION_ERRORS as exc:
            log.warning("database call failed: %s", exc)
            await self.close()
            return None

    async def claim(self, limit: int, lease_seconds: float) -> list[Row]:
        try:
            conn = await self._connection()
            records = await conn.fetch(Q.claim, self.worker_id, limit, lease_seconds)
        except CONNECTION_ERRORS:
            await self.close()
            raise
        return [Row(r["id"], r["entity"], r["key"], r["attempts"], r["request_id"], r["force"],
                    r["origin"], r["interruptions"], r["outcome_unknown"], r["lookup_due"],
                    r["last_error_code"], r["enqueued_at"]) for r in records]

    async def announce_waiting(self, ttl: float) -> str | None:
        snapshot: str | None = await self._loop_value(Q.announce_waiting, self.worker_id, ttl)
        return snapshot

    async def snapshot_settled(self, snapshot: str | None) -> bool | None:
        settled: bool | None = await self._loop_value(Q.snapshot_settled, snapshot)
        return settled

    async def stop_waiting(self) -> None:
        await self._loop_value(Q.stop_waiting, self.worker_id)

    async def ready_backlog(self, limit: int) -> int | None:
        backlog: int | None = await self._loop_value(Q.ready_backlog, limit)
        return backlog

    # -- outcomes and leases ----------------------------------------------------------------

    async def record(self, outcomes: Sequence[tuple[Row, Pushed | Skipped]]) -> dict[int, bool]:
        try:
            lost = set(await self._record_group(outcomes))
            return {row.id: row.id not in lost for row, _ in outcomes}
        except asyncpg.PostgresError as exc:
            if (getattr(exc, "sqlstate", "") or "")[:2] in CONNECTION_CLASSES:
                raise
            # One row's write-back failed and took the group with it: row by row, each
            # guarded, so that the others are recorded and the failure is logged.
            return {row.id: await self._record_one(row, outcome) for row, outcome in outcomes}

    async def _record_group(self, outcomes: Sequence[tuple[Row, Pushed | Skipped]]
                            ) -> list[int]:
        """One call for the group; the ids whose lease was lost."""
        if all(isinstance(outcome, Skipped) and outcome.operation == "skip"
               for _, outcome in outcomes):
            # plain skips only (rows the mapping had nothing to push for): the lean function
            lost = await self.pool.fetchval(
                Q.skip_many, self.worker_id, self.realm_id, [row.id for row, _ in outcomes],
                [outcome.reason for _, outcome in outcomes if isinstance(outcome, Skipped)])
        else:
            lost = await self.pool.fetchval(Q.complete_many, self.worker_id, self.realm_id,
                                            [_item(row, outcome) for row, outcome in outcomes])
        return list(lost or [])

    async def _record_one(self, row: Row, outcome: Pushed | Skipped) -> bool:
        if isinstance(outcome, Pushed):
            return bool(await self.pool.fetchval(Q.complete, row.id, self.worker_id,
                                                 self.realm_id, outcome.result))
        if outcome.operation != "skip":  # qbsync.skip logs operation 'skip' only
            lost = await self.pool.fetchval(Q.complete_many, self.worker_id, self.realm_id,
                                            [_item(row, outcome)])
            return not lost
        return bool(await self.pool.fetchval(Q.skip, row.id, self.worker_id, self.realm_id,
                                             outcome.reason))

    async def fail(self, row: Row, error: dict[str, Any]) -> str:
        state: str = await self.pool.fetchval(Q.fail, row.id, self.worker_id, self.realm_id,
                                              error)
        return state

    async def wait_for_settings(self, row: Row, settings: list[str], message: str) -> str:
        state: str = await self.pool.fetchval(Q.wait_for_settings, row.id, self.worker_id,
                                              self.realm_id, settings, message)
        return state

    async def extend_leases(self, ids: list[int], lease_seconds: float) -> set[int]:
        rows = await self.pool.fetch(Q.extend_leases, self.worker_id, ids, lease_seconds)
        return {r[0] for r in rows}

    async def release(self, ids: list[int]) -> int:
        released: int = await self.pool.fetchval(Q.release, self.worker_id, ids)
        return released

    async def connected(self) -> bool:
        record = await self.pool.fetchrow(Q.active_connection, self.realm_id)
        return bool(record and record["status"] == "connected")

    async def needs_reconnect(self, message: str, code: str | None) -> bool:
        return bool(await self.pool.fetchval(Q.mark_forbidden, self.realm_id, message, code))

    async def reload_settings(self, realm: Realm) -> None:
        await realm.reload_settings(self.pool)


def _item(row: Row, outcome: Pushed | Skipped) -> dict[str, Any]:
    """One element of complete_many's p_items."""
    if isinstance(outcome, Pushed):
        return {"id": row.id, "result": outcome.result}
    item: dict[str, Any] = {"id": row.id, "skip": outcome.reason}
    if outcome.operation != "skip":
        item["operation"] = outcome.operation
    return item


class PgPermits:
    """The rate limiter's permits in PostgreSQL (qbsync.take_permit and friends, 0003),
    shared by every process of a realm: a `qbo.ratelimit.PermitStore`."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def take(self, realm_id: str, kind: str, holder: str, hold: timedelta) -> Any:
        """The grant: a record of permit_id (None: refused), wait and starts_at."""
        return await self.pool.fetchrow(Q.take_permit, realm_id, kind, holder, hold)

    async def give_back(self, permit_id: Any) -> bool:
        """False when the database is away (the caller tries again later)."""
        try:
            await self.pool.execute(Q.return_permit, permit_id)
        except CONNECTION_ERRORS:
            return False
        return True

    async def throttled(self, realm_id: str, pause: timedelta) -> datetime | None:
        """Pause the realm for every process; None when the database is away."""
        try:
            until: datetime = await self.pool.fetchval(Q.throttled, realm_id, pause)
        except (asyncpg.PostgresError, OSError):
            return None
        return until

    async def set_limits(self, realm_id: str, per_minute: int | None, per_second: int | None,
                         in_flight: int | None, batch_per_minute: int | None,
                         minute: timedelta, second: timedelta, safety: float,
                         jitter: timedelta) -> None:
        await self.pool.execute(Q.set_rate_limits, realm_id, per_minute, per_second, in_flight,
                                batch_per_minute, minute, second, safety, jitter)

    async def free_abandoned(self, realm_id: str, holder: str) -> int:
        freed: int = await self.pool.fetchval(Q.free_abandoned_permits, realm_id, holder)
        return freed

    async def status(self, realm_id: str) -> dict[str, Any] | None:
        row = await self.pool.fetchrow(Q.rate_limit_status, realm_id)
        return dict(row) if row else None

    def closing(self) -> bool:
        return bool(self.pool.is_closing())
