"""The operator commands' session with the shop database (asyncpg): `open_db` opens it (a
database that cannot be reached is `DatabaseUnavailable`, which the CLI exits 3 for) and
`operator` names who acts, as integration_logs records it (``cli:<user>``)."""

from __future__ import annotations

import getpass

import asyncpg

from .config import Settings
from .errors import QbsyncError


class DatabaseUnavailable(QbsyncError):
    """The database could not be reached (the CLI exits 3)."""


async def open_db(settings: Settings) -> asyncpg.Connection:
    """A connection to the shop database; a failure to connect is `DatabaseUnavailable`."""
    try:
        return await asyncpg.connect(settings.database_url or None, timeout=30)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        raise DatabaseUnavailable(str(exc) or type(exc).__name__) from exc


def operator() -> str:
    """The actor recorded in integration_logs for CLI operations."""
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"
