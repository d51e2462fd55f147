"""Drift detection: read QuickBooks' change data capture for the types qbsync manages and
let the database (qbsync.record_drift) compare each changed object with what qbsync last
wrote. Windows stay within QuickBooks' limits: at most 30 days back, and when a type comes
back with the 1,000-object cap the cursor only moves to the newest object seen."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from .digest import marked_voided
from .qbo.client import QboClient
from .queries import load as load_queries

log = logging.getLogger(__name__)
Q = load_queries()

CDC_CAP = 1000
MAX_LOOKBACK = timedelta(days=29)  # QuickBooks keeps 30; a day of margin
OVERLAP = timedelta(minutes=5)  # clock skew between us and QuickBooks; re-reads are harmless


def _updated(obj: dict[str, Any]) -> datetime | None:
    stamp = (obj.get("MetaData") or {}).get("LastUpdatedTime")
    try:
        return datetime.fromisoformat(stamp) if stamp else None
    except ValueError:
        return None


async def poll(pool: asyncpg.Pool, client: QboClient, realm_id: str,
               *, now: datetime | None = None) -> int:
    """One CDC read since the realm's cursor; returns the drifts recorded or updated."""
    started = now or datetime.now(UTC)
    since = await pool.fetchval(Q.cdc_cursor, realm_id)
    if since is None:
        # First poll: from when qbsync itself started writing to this company.
        since = await pool.fetchval(Q.connected_at, realm_id)
    since = max(since or started, started - MAX_LOOKBACK)
    # QuickBooks stamps LastUpdatedTime to the second: a window starting mid-second would
    # miss what changed earlier in that second (re-reading it is harmless).
    since = since.replace(microsecond=0)
    types = [r["qbo_type"] for r in await pool.fetch(Q.managed_types)]
    changes = await client.cdc(types, since)
    found = 0
    cursor = started - OVERLAP
    for qbo_type, objects in changes.items():
        if not objects:
            continue
        # a void made in QuickBooks shows only as a zeroed "Voided" object: marked, so that
        # qbsync.record_drift sees a void (which only an accept resolves), not an edit
        objects = [marked_voided(qbo_type, obj) for obj in objects]
        found += await pool.fetchval(Q.record_drift, realm_id, qbo_type, objects)
        if len(objects) >= CDC_CAP:
            # Capped: what lies beyond the newest object seen comes with the next poll.
            newest = max((t for t in map(_updated, objects) if t), default=None)
            if newest is not None:
                cursor = min(cursor, newest)
    await pool.execute(Q.save_cdc_cursor, realm_id, max(cursor, since), None)
    if found:
        log.warning("%s change(s) made in QuickBooks outside qbsync: see qbsync.drift", found)
    return found
