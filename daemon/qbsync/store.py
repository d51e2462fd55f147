"""The daemon's gateway to PostgreSQL for the parts that must not know SQL: the rate
limiter's permits (`PgPermits`, a `qbo.ratelimit.PermitStore`). Every statement is a named
block of sql/queries.sql and every state change a qbsync function.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from .db import CONNECTION_ERRORS
from .queries import load as load_queries

Q = load_queries()


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
