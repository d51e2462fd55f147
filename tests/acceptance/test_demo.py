"""`qbsync demo` as a subprocess against the local server, in a database of its own."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.support import url_for

QBSYNC = str(Path(sys.executable).with_name("qbsync"))


@pytest.fixture
def demo_db() -> Iterator[str]:
    """A demo database name no other run uses; dropped afterwards."""
    name = f"qbsync_demo_t{os.getpid()}"
    yield name
    with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
    return subprocess.run([QBSYNC, "demo", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, stdin=subprocess.DEVNULL, check=False)


def test_demo_syncs_every_sample_order(demo_db: str) -> None:
    result = demo("--orders", "20", "--demo-db", demo_db, "--database-url",
                  url_for("postgres"), "--keep")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "connected Dixis Α.Ε." in out
    found = re.search(r"Orders: 20 generated, (\d+) completed, (\d+) synced; (\d+) invoiced "
                      r"in all.*; QuickBooks holds (\d+) invoices", out)
    assert found, out
    completed, synced, invoiced, invoices = map(int, found.groups())
    assert completed > 0
    assert completed == synced
    assert invoiced == invoices >= completed
    assert f"{completed}/{completed} invoices" in out
    assert "Every completed order is in QuickBooks, one invoice per order." in out
    assert "Dashboard" in out
    assert "Traceback" not in result.stderr
    with psycopg.connect(url_for(demo_db)) as conn:  # --keep kept it
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE status = 'completed'), "
            "count(*) FILTER (WHERE quickbooks_invoice_id IS NOT NULL) FROM dixis.orders"
        ).fetchone()
        tokens = conn.execute("SELECT tokens FROM qbsync.connections").fetchone()
    assert row == (completed, invoiced)
    assert tokens is not None
    assert b"access_token" not in bytes(tokens[0])


def test_demo_drops_its_database_without_keep(demo_db: str) -> None:
    result = demo("--orders", "3", "--demo-db", demo_db, "--database-url",
                  url_for("postgres"), "--no-limits")
    assert result.returncode == 0, result.stdout + result.stderr
    with psycopg.connect(url_for("postgres")) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (demo_db,)).fetchone()
    assert exists is None


def test_demo_never_drops_a_database_it_did_not_create(demo_db: str) -> None:
    with psycopg.connect(url_for("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{demo_db}"')
    result = demo("--demo-db", demo_db, "--database-url", url_for("postgres"))
    assert result.returncode == 1
    assert "was not created by `qbsync demo`" in result.stderr
    with psycopg.connect(url_for("postgres")) as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                            (demo_db,)).fetchone() == (1,)


def test_demo_explicit_unreachable_server_exits_3() -> None:
    result = demo("--database-url", "postgresql://postgres@127.0.0.1:1/x", timeout=60)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "cannot reach the database" in result.stderr


def test_demo_help() -> None:
    result = subprocess.run([QBSYNC, "demo", "--help"], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 0
    for option in ("--orders", "--keep", "--demo-db", "--time-scale", "--database-url"):
        assert option in result.stdout
