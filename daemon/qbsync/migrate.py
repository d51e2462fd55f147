"""Versioned, checksummed migrations of the qbsync schema.

Files are `sql/migrations/NNNN_name.sql`, applied in order, each in its own transaction
together with its row in `qbsync.schema_migrations`. A session advisory lock serializes
concurrent runs (the second waits, then finds nothing to do). A file changed after it was
applied is refused: write a new migration instead.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import psycopg

from . import __version__
from .errors import MigrationError, describe_db_error
from .queries import load_cli
from .resources import sql_path

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
Q = load_cli()  # the bookkeeping queries: migrations_*


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def discover(directory: Path | None = None) -> list[Migration]:
    directory = directory or sql_path("migrations")
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(
                f"{path}: migration files are named NNNN_name.sql (lower-case name)"
            )
        found.append(Migration(int(match[1]), path.name, path))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"two migration files share a version number in {directory}")
    return found


def applied(conn: psycopg.Connection) -> dict[int, tuple[str, str]]:
    """version -> (name, checksum) of what the database has; empty when never migrated."""
    exists = conn.execute(Q.migrations_table_exists).fetchone()
    if not exists or not exists[0]:
        return {}
    rows = conn.execute(Q.migrations_applied).fetchall()
    return {version: (name, checksum) for version, name, checksum in rows}


def pending(conn: psycopg.Connection, migrations: list[Migration]) -> list[Migration]:
    """What is left to apply; refuses a changed or unknown applied migration."""
    done = applied(conn)
    known = {m.version for m in migrations}
    for version, (name, _) in sorted(done.items()):
        if version not in known:
            raise MigrationError(
                f"the database has migration {name} applied, which this qbsync does not "
                "know: it was migrated by a newer qbsync; upgrade qbsync"
            )
    for m in migrations:
        if m.version in done and done[m.version][1] != m.checksum:
            raise MigrationError(
                f"migration {m.name} was changed after it was applied "
                f"(database checksum {done[m.version][1][:12]}, file {m.checksum[:12]}); "
                "applied migrations must never change: put the change in a new migration"
            )
    return [m for m in migrations if m.version not in done]


def migrate(
    conninfo: str,
    *,
    directory: Path | None = None,
    on_apply: Callable[[Migration], None] | None = None,
    before_apply: Callable[[psycopg.Connection, list[Migration]], None] | None = None,
) -> list[Migration]:
    """Bring the database up to date; returns the migrations applied (empty: up to date).

    `before_apply(conn, todo)` runs under the migration lock when there is something to
    apply, before the first migration; raising stops the run with nothing applied (`qbsync
    migrate` refuses there while daemons are alive: `refuse_live_daemons`)."""
    migrations = discover(directory)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(Q.migrations_lock)
        try:
            with conn.transaction():
                conn.execute(Q.migrations_bootstrap)
            todo = pending(conn, migrations)
            if todo and before_apply:
                before_apply(conn, todo)
            for m in todo:
                if on_apply:
                    on_apply(m)
                try:
                    with conn.transaction():
                        conn.execute(m.sql)  # type: ignore[arg-type]  # file text, not input
                        conn.execute(Q.migrations_record,
                                     (m.version, m.name, m.checksum, __version__))
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {m.name} failed: {describe_db_error(exc)}") from exc
            return todo
        finally:
            conn.execute(Q.migrations_unlock)


# --- stop, migrate, start -------------------------------------------------------------------

@dataclass(frozen=True)
class LiveDaemon:
    worker_id: str
    hostname: str
    pid: int
    heartbeat_age: int  # seconds since its last heartbeat

    def __str__(self) -> str:
        return (f"{self.worker_id} (host {self.hostname}, pid {self.pid}, heartbeat "
                f"{self.heartbeat_age} s ago)")


def live_daemons(conn: psycopg.Connection) -> list[LiveDaemon]:
    """Daemons registered in qbsync.workers with a recent heartbeat (none before 0001)."""
    exists = conn.execute(Q.workers_table_exists).fetchone()
    if not exists or not exists[0]:
        return []
    return [LiveDaemon(*row) for row in conn.execute(Q.migrations_live_daemons).fetchall()]


def refuse_live_daemons(
    force: bool, on_forced: Callable[[list[LiveDaemon]], None] | None = None
) -> Callable[[psycopg.Connection, list[Migration]], None]:
    """A `before_apply` for `migrate`: upgrades are stop, migrate, start. A daemon running
    while functions change under it could call them with the old semantics, so this refuses
    while one is alive, naming each; `force` goes ahead (a daemon that was killed and no
    longer heartbeats is gone within 2 minutes anyway), telling `on_forced` whom it
    overrode. A running daemon stops by itself once it sees the new schema."""

    def check(conn: psycopg.Connection, todo: list[Migration]) -> None:
        alive = live_daemons(conn)
        if not alive:
            return
        if force:
            if on_forced:
                on_forced(alive)
            return
        raise MigrationError(
            f"{len(alive)} daemon(s) running: {'; '.join(map(str, alive))}. Stop them "
            f"(systemctl stop qbsync), then migrate ({len(todo)} migration(s) pending: "
            f"{', '.join(m.name for m in todo)}), then start them; --force migrates anyway")

    return check
