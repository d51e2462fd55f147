"""Is the database's qbsync schema the one this qbsync was built for?

Every command and the daemon ask first. The answer compares the migration files shipped with
this qbsync (`qbsync.migrate.discover`) with what `qbsync.schema_migrations` records, so it
holds for any set of migrations without naming one:

* no qbsync schema                    -> "run `qbsync migrate`";
* a migration applied that this qbsync does not ship -> the database is newer: refuse,
  naming both versions (upgrade qbsync);
* a shipped migration whose applied checksum differs -> another build migrated it: refuse;
* a shipped migration not applied     -> the database is older: "run `qbsync migrate`".

Upgrades are stop, migrate, start: `qbsync migrate` refuses while a daemon is alive, and a
running daemon checks again every few seconds, stopping (exit 5) when the schema moved
under it. The daemon takes the shipped set once at start: a package upgraded on disk while
it runs does not change what its loaded code expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from . import __version__
from .errors import SchemaError
from .migrate import Migration, discover
from .queries import load, load_cli

Q = load_cli()
DQ = load()


@dataclass(frozen=True)
class Applied:
    """A row of qbsync.schema_migrations."""

    version: int
    name: str
    checksum: str
    applied_at: datetime | None = None
    applied_by: str | None = None
    qbsync_version: str | None = None  # NULL for migrations qbsync 0.1.0 applied


@dataclass(frozen=True)
class SchemaStatus:
    """The shipped migrations against the applied ones; `problem` says what is wrong."""

    shipped: tuple[Migration, ...]
    applied: dict[int, Applied]
    present: bool = True  # qbsync.schema_migrations exists
    readable: bool = True  # ... and the connected role may read it
    role: str = ""

    @property
    def pending(self) -> list[Migration]:
        return [m for m in self.shipped if m.version not in self.applied]

    @property
    def unknown(self) -> list[Applied]:
        """Applied migrations this qbsync does not ship: a newer qbsync applied them."""
        shipped = {m.version for m in self.shipped}
        return [a for v, a in sorted(self.applied.items()) if v not in shipped]

    @property
    def changed(self) -> list[tuple[Migration, Applied]]:
        return [(m, self.applied[m.version]) for m in self.shipped
                if m.version in self.applied and self.applied[m.version].checksum != m.checksum]

    @property
    def database_version(self) -> int | None:
        return max(self.applied) if self.applied else None

    @property
    def code_version(self) -> int | None:
        return max(m.version for m in self.shipped) if self.shipped else None

    def problem(self) -> SchemaError | None:
        """What stops this qbsync from using the database; None when the schema is its own."""
        if not self.present or (self.readable and not self.applied):
            return SchemaError("missing", "the database has no qbsync schema: run "
                               "`qbsync migrate`")
        if not self.readable:
            return SchemaError(
                "unreadable", f"role {self.role} cannot read qbsync.schema_migrations, so "
                "the schema version is unknown: run `qbsync migrate` (it grants SELECT on it "
                "to qbsync_reader, qbsync_admin and qbsync_daemon)")
        if self.unknown:
            newest = self.unknown[-1]
            by = f", applied by qbsync {newest.qbsync_version}" if newest.qbsync_version else ""
            return SchemaError(
                "newer", f"the database schema is at version {newest.version} "
                f"({newest.name}{by}), newer than this qbsync {__version__} knows (version "
                f"{self.code_version}): upgrade qbsync to the release that migrated it "
                f"(unknown migrations: {_names(a.name for a in self.unknown)})")
        if self.changed:
            ours, theirs = self.changed[0]
            return SchemaError(
                "changed", f"the database's migration {theirs.name} (checksum "
                f"{theirs.checksum[:12]}) is not this qbsync's {ours.name} (checksum "
                f"{ours.checksum[:12]}): another build of qbsync migrated this database; "
                "released migrations never change, so use the qbsync release that migrated "
                f"it (changed: {_names(m.name for m, _ in self.changed)})")
        if self.pending:
            return SchemaError(
                "older", f"the database schema is at version {self.database_version}, older "
                f"than this qbsync {__version__} needs (version {self.code_version}; "
                f"{len(self.pending)} migration(s) pending: "
                f"{_names(m.name for m in self.pending)}): run `qbsync migrate`")
        return None

    def check(self) -> None:
        error = self.problem()
        if error is not None:
            raise error


def _names(names: Any, limit: int = 6) -> str:
    listed = list(names)
    shown = ", ".join(listed[:limit])
    return shown + (f" and {len(listed) - limit} more" if len(listed) > limit else "")


def _status(shipped: Sequence[Migration] | None, access: Any, rows: Sequence[Any]
            ) -> SchemaStatus:
    applied = {int(r["version"]): Applied(int(r["version"]), r["name"], r["checksum"],
                                          r["applied_at"], r["applied_by"], r["qbsync_version"])
               for r in rows}
    return SchemaStatus(tuple(discover() if shipped is None else shipped), applied,
                        present=bool(access["present"]), readable=bool(access["readable"]),
                        role=str(access["role"]))


def read_status(conn: psycopg.Connection[Any],
                shipped: Sequence[Migration] | None = None) -> SchemaStatus:
    """The schema's status over a psycopg connection (the CLI)."""
    with conn.cursor(row_factory=dict_row) as cur:
        access = cur.execute(Q.schema_access).fetchone()
        assert access is not None
        rows = (cur.execute(Q.schema_versions).fetchall()
                if access["present"] and access["readable"] else [])
    return _status(shipped, access, rows)


def check(conn: psycopg.Connection[Any]) -> None:
    """Raise `SchemaError` unless the database has exactly this qbsync's schema."""
    read_status(conn).check()


async def read_status_async(conn: Any, shipped: Sequence[Migration]) -> SchemaStatus:
    """The same over asyncpg (the daemon; `conn` a connection or a pool)."""
    access = await conn.fetchrow(DQ.schema_access)
    rows = (await conn.fetch(DQ.schema_versions)
            if access["present"] and access["readable"] else [])
    return _status(shipped, access, rows)
