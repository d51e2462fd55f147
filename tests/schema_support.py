"""Databases at another schema version than this qbsync's: released (0.1.0: exactly migrations
0001-0006, applied by 0.1.0's runner), older (every shipped migration but the last), newer (one
this qbsync does not ship). Written against the set of shipped migrations, so they hold as
migrations are added."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg

from qbsync.migrate import Migration, discover, migrate
from qbsync.resources import sql_path
from tests.support import url_for

RELEASED = ("0001_core.sql", "0002_daemon.sql", "0003_rate_limits.sql", "0004_admin.sql",
            "0005_drift.sql", "0006_reconcile.sql")  # 0.1.0
SHOP_0_1_0 = Path(__file__).resolve().parent / "fixtures" / "dixis-0.1.0"
FUTURE_VERSION = 99_999
FUTURE_NAME = f"{FUTURE_VERSION}_from_the_future.sql"
FUTURE_QBSYNC = "99.0.0"


@contextlib.contextmanager
def fresh_database(suffix: str) -> Iterator[str]:
    """An empty database of this test run, dropped afterwards."""
    name = f"qbsync_t{os.getpid()}_{suffix}"
    with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url_for(name)
    finally:
        with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def install_shop_0_1_0(conn: psycopg.Connection) -> None:
    """What `qbsync shop install dixis` of 0.1.0 ran, in its order (the Dixis shop as 0.1.0
    shipped it, pinned by tests/unit/test_release.py)."""
    with conn.transaction():
        for file in ("schema.sql", "generate.sql", "mapping.sql", "admin.sql", "track.sql"):
            conn.execute((SHOP_0_1_0 / file).read_text(encoding="utf-8"))  # type: ignore[arg-type]


def migrate_only(url: str, names: list[str], tmp: Path) -> list[Migration]:
    """Apply exactly these shipped migration files (a database of an earlier release)."""
    directory = tmp / "migrations"
    directory.mkdir(exist_ok=True)
    for name in names:
        shutil.copy(sql_path("migrations", name), directory / name)
    return migrate(url, directory=directory)


# What qbsync 0.1.0's `migrate` ran around the files (its sql/cli_queries.sql): a bookkeeping
# table without the qbsync_version column, each file and its row in one transaction, and no
# owner role.
BOOKKEEPING_0_1_0 = """
CREATE SCHEMA IF NOT EXISTS qbsync;
CREATE TABLE IF NOT EXISTS qbsync.schema_migrations (
    version    int PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now(),
    applied_by text NOT NULL DEFAULT current_user
);
"""
RECORD_0_1_0 = ("INSERT INTO qbsync.schema_migrations (version, name, checksum) "
                "VALUES (%s, %s, %s)")
COLUMNS_0_1_0 = ["version", "name", "checksum", "applied_at", "applied_by"]


def migrate_released(url: str) -> list[Migration]:
    """The schema of qbsync 0.1.0, applied as 0.1.0's own runner applied it."""
    shipped = {m.name: m for m in discover()}
    released = [shipped[name] for name in RELEASED]
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(BOOKKEEPING_0_1_0)
        for m in released:
            with conn.transaction():
                conn.execute(m.sql)  # type: ignore[arg-type]  # a shipped file, not input
                conn.execute(RECORD_0_1_0, (m.version, m.name, m.checksum))
    return released


def migrate_all_but_last(url: str, tmp: Path) -> Migration:
    """Older than this qbsync: every shipped migration but the newest; returns that one."""
    shipped = discover()
    migrate_only(url, [m.name for m in shipped[:-1]], tmp)
    return shipped[-1]


def make_newer(url: str) -> None:
    """A fully migrated database that a newer qbsync migrated once more."""
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO qbsync.schema_migrations (version, name, checksum, "
                     "qbsync_version) VALUES (%s, %s, 'f' || repeat('0', 63), %s)",
                     (FUTURE_VERSION, FUTURE_NAME, FUTURE_QBSYNC))
