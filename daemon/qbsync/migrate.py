"""Versioned, checksummed migrations of the qbsync schema.

Files are `sql/migrations/NNNN_name.sql`, applied in order, each in its own transaction
together with its row in `qbsync.schema_migrations`. A session advisory lock serializes
concurrent runs (the second waits, then finds nothing to do). A file changed after it was
applied is refused: write a new migration instead.

qbsync's objects belong to the role qbsync_owner (NOLOGIN, no members), which migrate
creates: every migration runs as the connecting role (a superuser: it creates roles and event
triggers), and what it created is handed to qbsync_owner in the same transaction
(qbsync.reassert_ownership(), from 0010 on); so is anything left to another owner since the
last run. A connecting role that is not a superuser (a managed service's administrator role)
is made a member of qbsync_owner, the one member it may have (SECURITY.md, "Migrating
superuser"): only a member may hand objects to a role.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import LiteralString

import psycopg
from psycopg import errors, sql

from . import __version__
from .errors import MigrationError, describe_db_error
from .queries import load_cli
from .resources import sql_path

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
Q = load_cli()  # the bookkeeping queries: migrations_*, owner_role_*, ownership_*
OWNER_ROLE = "qbsync_owner"
log = logging.getLogger(__name__)


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
                f"the database has migration {name} applied, which this qbsync "
                f"{__version__} does not know: it was migrated by a newer qbsync; upgrade "
                "qbsync"
            )
    for m in migrations:
        if m.version in done and done[m.version][1] != m.checksum:
            raise MigrationError(
                f"migration {m.name} was changed after it was applied "
                f"(database checksum {done[m.version][1][:12]}, file {m.checksum[:12]}); "
                "applied migrations must never change: put the change in a new migration"
            )
    return [m for m in migrations if m.version not in done]


def _owner_state(conn: psycopg.Connection, role: str) -> dict[str, object] | None:
    cur = conn.execute(Q.owner_role_state, (role,))
    row = cur.fetchone()
    if row is None:
        return None
    assert cur.description is not None
    return dict(zip([c.name for c in cur.description], row, strict=True))


def _role_sql(query: LiteralString, role: str) -> sql.Composed:
    # a role name is an identifier, composed here; the statement is in cli_queries.sql
    return sql.SQL(query).format(role=sql.Identifier(role))


def ensure_owner_role(conn: psycopg.Connection, role: str = OWNER_ROLE) -> None:
    """Create the owner role when missing and check it is still what qbsync relies on:
    NOLOGIN, no superuser or other power, no member but the migrating role, which joins it
    when it is not a superuser (another role's membership is refused, that of a role that
    migrated before included). Roles are cluster-wide: migrations of other databases may
    create it at the same moment, which is fine (the creation that loses finds it made).
    `conn` is in autocommit mode."""
    state = _owner_state(conn, role)
    if state is None:
        try:
            with conn.transaction():
                conn.execute(_role_sql(Q.owner_role_create, role))
        except (errors.DuplicateObject, errors.UniqueViolation):
            pass  # created meanwhile by another database's migration
        except errors.InsufficientPrivilege as exc:
            raise MigrationError(
                f"cannot create role {role}, which owns qbsync's objects: the migrating role "
                f"lacks CREATEROLE ({exc.diag.message_primary}); migrate as a superuser, or "
                f"have one run: CREATE ROLE {role} NOLOGIN;") from exc
        state = _owner_state(conn, role)
        assert state is not None
    powers = [name for name, column in (
        ("LOGIN", "rolcanlogin"), ("SUPERUSER", "rolsuper"), ("CREATEROLE", "rolcreaterole"),
        ("CREATEDB", "rolcreatedb"), ("REPLICATION", "rolreplication"),
        ("BYPASSRLS", "rolbypassrls")) if state[column]]
    if powers:
        raise MigrationError(
            f"role {role} owns qbsync's objects and must have no powers, but it has "
            f"{', '.join(powers)}: ALTER ROLE {role} "
            f"{' '.join('NO' + p for p in powers)}; then migrate again")
    members = state["members"]
    if members:
        raise MigrationError(
            f"role {role} owns qbsync's objects, so its members may change any qbsync "
            f"function, but it has members: {', '.join(map(str, members))}; REVOKE {role} "
            f"FROM {', '.join(map(str, members))}; then migrate again")
    if not state["migrator_is_superuser"] and not state["migrator_is_member"]:
        try:
            with conn.transaction():
                conn.execute(_role_sql(Q.owner_role_join, role))
        except psycopg.Error as exc:
            raise MigrationError(
                f"the migrating role is not a superuser and cannot join {role}, which it must "
                f"to hand qbsync's objects to it ({exc}); migrate as a superuser") from exc
    if not state["reads_stats"]:
        try:
            with conn.transaction():
                conn.execute(_role_sql(Q.owner_role_read_stats, role))
        except psycopg.Error as exc:
            again = _owner_state(conn, role)
            if not (again and again["reads_stats"]):  # else granted meanwhile elsewhere
                log.warning("role %s could not join pg_read_all_stats (%s): qbsync.queue_health "
                            "lists only its own sessions' long transactions", role, exc)


def _reassert_ownership(conn: psycopg.Connection) -> None:
    """Hand what the last migration (or anyone since) created in qbsync's schemas to the
    owner role; before 0010 there is nothing to do (and no function to do it)."""
    exists = conn.execute(Q.ownership_function_exists).fetchone()
    if exists and exists[0]:
        conn.execute(Q.ownership_reassert)


def migrate(
    conninfo: str,
    *,
    directory: Path | None = None,
    on_apply: Callable[[Migration], None] | None = None,
    check: Callable[[psycopg.Connection, list[Migration]], None] | None = None,
    before_apply: Callable[[psycopg.Connection, list[Migration]], None] | None = None,
) -> list[Migration]:
    """Bring the database up to date; returns the migrations applied (empty: up to date).

    `check(conn, migrations)` runs first under the migration lock, before anything is
    created, and `before_apply(conn, todo)` when there is something to apply, before the
    first migration; raising in either stops the run with nothing applied. `qbsync migrate`
    refuses in `check` a schema that is not this qbsync's to upgrade (`SchemaError`, exit 5)
    and in `before_apply` while daemons are alive (`refuse_live_daemons`)."""
    migrations = discover(directory)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(Q.migrations_lock)
        try:
            if check:
                check(conn, migrations)
            ensure_owner_role(conn)
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
                        _reassert_ownership(conn)
                        conn.execute(Q.migrations_record,
                                     (m.version, m.name, m.checksum, __version__))
                except psycopg.Error as exc:
                    raise MigrationError(
                        f"migration {m.name} failed: {describe_db_error(exc)}") from exc
            try:
                with conn.transaction():
                    _reassert_ownership(conn)
            except psycopg.Error as exc:
                raise MigrationError(f"cannot give qbsync's objects to {OWNER_ROLE}: "
                                     f"{describe_db_error(exc)}") from exc
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
