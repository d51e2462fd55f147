"""Shared fixtures: a fresh database per test on the running PostgreSQL, cloned from a
template that was migrated once per session (pytest-postgresql noproc + template)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from pytest_postgresql import factories

from tests.support import PG_HOST, PG_PORT, PG_USER, conn_url, url_for

# Unique per run, so that concurrent runs on one server never share a template.
RUN_DB = f"qbsync_t{os.getpid()}"


def _migrate(host: str, port: int, user: str, dbname: str, **_: Any) -> None:
    from qbsync.migrate import migrate

    migrate(f"postgresql://{user}@{host}:{port}/{dbname}")


def _install_dixis(host: str, port: int, user: str, dbname: str, **_: Any) -> None:
    from qbsync import shop

    with psycopg.connect(f"postgresql://{user}@{host}:{port}/{dbname}") as conn:
        shop.install_shop(conn, "dixis", track=True)


def _install_medusa(host: str, port: int, user: str, dbname: str, **_: Any) -> None:
    from qbsync import shop

    with psycopg.connect(f"postgresql://{user}@{host}:{port}/{dbname}") as conn:
        shop.install_shop(conn, "medusa", track=True)


core_server = factories.postgresql_noproc(
    host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=RUN_DB, load=[_migrate]
)
dixis_server = factories.postgresql_noproc(
    dbname=f"{RUN_DB}_dixis", depends_on="core_server", load=[_install_dixis]
)
medusa_server = factories.postgresql_noproc(
    dbname=f"{RUN_DB}_medusa", depends_on="core_server", load=[_install_medusa]
)
db = factories.postgresql("core_server")
dixis_db = factories.postgresql("dixis_server")
medusa_db = factories.postgresql("medusa_server")


@pytest.fixture
def db_url(db: psycopg.Connection) -> str:
    """URL of the test's fresh migrated database (for subprocesses and asyncpg)."""
    return conn_url(db)


@pytest.fixture
def dixis_url(dixis_db: psycopg.Connection) -> str:
    return conn_url(dixis_db)


@pytest.fixture
def empty_db_url() -> Iterator[str]:
    """A fresh database with nothing in it (for migration tests)."""
    name = f"{RUN_DB}_empty"
    with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield url_for(name)
    with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(autouse=True)
def _no_daemon_outlives_its_test() -> Iterator[None]:
    from tests.process_support import kill_all

    yield
    kill_all()
