"""Every command checks the schema version before anything else: on a database without the
qbsync schema, with an older one and with a newer one it prints one line naming the versions
and exits 5, changing nothing. `qbsync migrate` refuses while a daemon is alive; the daemon
refuses a schema it was not built for, at start and when it changes under it."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from qbsync import __version__, daemon
from qbsync.cli import main
from qbsync.errors import SchemaError
from qbsync.migrate import discover
from tests.daemon_support import Shop, settings_for
from tests.schema_support import (
    FUTURE_NAME,
    FUTURE_QBSYNC,
    FUTURE_VERSION,
    fresh_database,
    make_newer,
    migrate_all_but_last,
)

QBSYNC = str(Path(sys.executable).with_name("qbsync"))

# Every command that uses a database, with arguments that would make it act.
COMMANDS: list[tuple[str, ...]] = [
    ("status",), ("status", "--json"), ("logs",), ("logs", "--follow"), ("failed",),
    ("resync", "order", "1"), ("sync", "customers"), ("retry-dead",),
    ("report", "--period", "month"), ("test-connection", "--wait", "5"), ("notices",),
    ("notices", "--ack-all"), ("drift",), ("drift", "--resolve", "1", "--accept"),
    ("reconcile", "--from", "2024-01-01", "--to", "2024-01-31", "--wait", "5"),
    ("connect", "--emulator", "http://127.0.0.1:9", "--no-browser"), ("disconnect",),
    ("rotate-key", "--dry-run"), ("shop", "install"), ("shop", "generate", "--orders", "1"),
    ("migrate", "--status"), ("settings",), ("settings", "--refresh", "--wait", "5"),
    ("check-mapping",),
]
# `run` is a real process below; `demo` makes its own database; `migrate` is the cure of a
# missing or older schema, and refuses a newer one like the rest (NEWER_ONLY).
NEWER_ONLY: list[tuple[str, ...]] = [("migrate",)]
NOT_CHECKED_HERE = {"run", "demo", "migrate", "emulator", "keygen", "config", "systemd-unit"}


def invoke(url: str, tmp_path: Path, *args: str) -> Result:
    config = tmp_path / "empty.toml"
    config.write_text("")
    env: dict[str, str | None] = {k: None for k in os.environ if k.startswith("QBSYNC_")}
    env["QBSYNC_CONFIG"] = str(config)
    return CliRunner().invoke(main, [*args, "--database-url", url], env=env,
                              catch_exceptions=False)


def test_the_list_covers_every_command_that_takes_a_database() -> None:
    def walk(group: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
        for name, command in getattr(group, "commands", {}).items():
            if name in NOT_CHECKED_HERE and not prefix:
                continue
            if hasattr(command, "commands"):
                yield from walk(command, (*prefix, name))
            elif any(p.name == "database_url" for p in command.params):
                yield (*prefix, name)

    listed = {c[:2] if c[0] == "shop" else c[:1] for c in COMMANDS}
    assert set(walk(main)) - listed == set()


@pytest.fixture
def missing(empty_db_url: str) -> str:
    return empty_db_url


@pytest.fixture
def older(tmp_path: Path) -> Iterator[str]:
    with fresh_database("older") as url:
        migrate_all_but_last(url, tmp_path)
        yield url


@pytest.fixture
def newer(tmp_path: Path) -> Iterator[str]:
    with fresh_database("newer") as url:
        make_newer(url)
        yield url


def _expected(state: str) -> list[str]:
    shipped = discover()
    if state == "missing":
        return ["the database has no qbsync schema: run `qbsync migrate`"]
    if state == "older":
        return [f"the database schema is at version {shipped[-2].version}, older than this "
                f"qbsync {__version__} needs (version {shipped[-1].version}; 1 migration(s) "
                f"pending: {shipped[-1].name}): run `qbsync migrate`"]
    return [f"the database schema is at version {FUTURE_VERSION} ({FUTURE_NAME}, applied by "
            f"qbsync {FUTURE_QBSYNC}), newer than this qbsync {__version__} knows (version "
            f"{shipped[-1].version}): upgrade qbsync"]


def _counts(url: str) -> tuple[int, ...]:
    with psycopg.connect(url) as conn:
        if conn.execute("SELECT to_regclass('qbsync.outbox')").fetchone() == (None,):
            return ()
        row = conn.execute(
            "SELECT (SELECT count(*) FROM qbsync.outbox), "
            "(SELECT count(*) FROM qbsync.admin_requests), "
            "(SELECT count(*) FROM qbsync.connections), "
            "(SELECT count(*) FROM pg_namespace WHERE nspname = 'dixis')").fetchone()
    assert row is not None
    return tuple(row)


@pytest.mark.parametrize("state", ["missing", "older", "newer"])
def test_every_command_checks_the_schema_first(state: str, request: pytest.FixtureRequest,
                                              tmp_path: Path) -> None:
    url = request.getfixturevalue(state)
    before = _counts(url)
    wrong = []
    for command in COMMANDS + (NEWER_ONLY if state == "newer" else []):
        result = invoke(url, tmp_path, *command)
        message = result.stdout + result.stderr
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        if command == ("migrate", "--status"):  # its table, then the verdict
            lines = [message.strip().splitlines()[-1]]
        if (result.exit_code != 5 or len(lines) != 1
                or not all(part in lines[0] for part in _expected(state))):
            wrong.append((command, result.exit_code, message[-600:]))
    assert wrong == []
    assert _counts(url) == before  # nothing was enqueued, requested, installed


@pytest.mark.parametrize("state", ["missing", "older", "newer"])
def test_run_refuses_with_one_line(state: str, request: pytest.FixtureRequest,
                                   tmp_path: Path) -> None:
    """A real `qbsync run`: one log line (JSON in JSON mode), no traceback, exit 5."""
    url = request.getfixturevalue(state)
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
    env.update(QBSYNC_DATABASE_URL=url, QBSYNC_CLIENT_SECRET="s", QBSYNC_CONFIG="",
               QBSYNC_TOKEN_KEYS="k1:" + "A" * 43 + "=", QBSYNC_LOG_FORMAT="json",
               QBSYNC_METRICS_LISTEN="")  # the endpoint's line would come first
    done = subprocess.run([QBSYNC, "run"], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 5, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    record = json.loads(lines[0])
    assert record["level"] == "CRITICAL"
    assert record["exit_code"] == 5
    assert all(part in record["msg"] for part in _expected(state)), record["msg"]


# --- stop, migrate, start ------------------------------------------------------------------------


def _register(url: str, worker: str, seconds_ago: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO qbsync.workers (worker_id, hostname, pid, heartbeat_at) "
                     "VALUES (%s, 'shop-host', 4242, now() - make_interval(secs => %s))",
                     (worker, seconds_ago))


def _applied(url: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT count(*) FROM qbsync.schema_migrations").fetchone()
    assert row is not None
    return int(row[0])


def test_migrate_refuses_while_a_daemon_heartbeats(older: str, tmp_path: Path) -> None:
    _register(older, "shop-host:4242", seconds_ago=3)
    before = _applied(older)
    refused = invoke(older, tmp_path, "migrate")
    assert refused.exit_code == 1
    assert "1 daemon(s) running: shop-host:4242 (host shop-host, pid 4242, heartbeat" \
        in refused.stderr
    assert "--force migrates anyway" in refused.stderr
    assert discover()[-1].name in refused.stderr
    assert _applied(older) == before
    forced = invoke(older, tmp_path, "migrate", "--force")
    assert forced.exit_code == 0, forced.stderr
    assert "warning: migrating while 1 daemon(s) run (--force): shop-host:4242" in forced.stderr
    assert _applied(older) == before + 1


def test_a_daemon_gone_quiet_does_not_block_migrate(older: str, tmp_path: Path) -> None:
    _register(older, "crashed:1", seconds_ago=600)
    done = invoke(older, tmp_path, "migrate")
    assert done.exit_code == 0, done.stderr
    assert "applying" in done.stdout


def test_an_up_to_date_schema_is_no_reason_to_refuse(db_url: str, tmp_path: Path) -> None:
    _register(db_url, "alive:1", seconds_ago=1)
    done = invoke(db_url, tmp_path, "migrate")
    assert done.exit_code == 0, done.stderr
    assert "database is up to date" in done.stdout


def test_migrate_refuses_a_schema_another_build_migrated(older: str, tmp_path: Path) -> None:
    """A changed applied migration: one line naming both checksums, exit 5, nothing
    applied."""
    shipped = discover()
    with psycopg.connect(older, autocommit=True) as conn:
        conn.execute("UPDATE qbsync.schema_migrations SET checksum = 'e' || repeat('0', 63) "
                     "WHERE version = %s", (shipped[0].version,))
    before = _applied(older)
    refused = invoke(older, tmp_path, "migrate")
    assert refused.exit_code == 5
    assert refused.stdout == ""
    assert refused.stderr.splitlines() == [
        f"qbsync: the database's migration {shipped[0].name} (checksum e00000000000) is not "
        f"this qbsync's {shipped[0].name} (checksum {shipped[0].checksum[:12]}): another build "
        "of qbsync migrated this database; released migrations never change, so use the "
        f"qbsync release that migrated it (changed: {shipped[0].name})"]
    assert _applied(older) == before


def test_migrate_status_lists_applied_pending_and_changed(older: str, tmp_path: Path) -> None:
    shipped = discover()
    with psycopg.connect(older, autocommit=True) as conn:
        conn.execute("UPDATE qbsync.schema_migrations SET checksum = 'e' || repeat('0', 63) "
                     "WHERE version = %s", (shipped[0].version,))
    done = invoke(older, tmp_path, "migrate", "--status", "--json")
    assert done.exit_code == 5
    status = json.loads(done.stdout)
    states = {m["name"]: m["state"] for m in status["migrations"]}
    assert states[shipped[0].name] == "changed"
    assert states[shipped[-1].name] == "pending"
    assert {states[m.name] for m in shipped[1:-1]} == {"applied"}
    assert "another build of qbsync migrated this database" in status["problem"]
    table = invoke(older, tmp_path, "migrate", "--status")
    assert f"changed  {shipped[0].name}" in table.stdout
    assert f"pending  {shipped[-1].name}" in table.stdout


# --- the daemon's side ---------------------------------------------------------------------------


async def test_the_daemon_refuses_to_start_on_an_older_schema(older: str) -> None:
    settings = settings_for(older, "k1:" + "A" * 43 + "=")
    with pytest.raises(SchemaError, match="older than this qbsync") as info:
        await daemon.start(settings, asyncio.Event())
    assert info.value.kind == "older"


async def test_the_daemon_stops_claiming_when_the_schema_changes_under_it(shop: Shop) -> None:
    """`qbsync migrate --force` while it runs: it stops (exit 5) instead of calling functions
    whose meaning may have changed; what is queued afterwards stays queued."""
    stop = asyncio.Event()
    ready: asyncio.Future[daemon.Daemon] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(daemon.run(shop.settings, stop=stop, transport=shop.transport(),
                                          on_ready=ready.set_result))
    await asyncio.wait_for(asyncio.shield(ready), 30)
    make_newer_in_place(shop.url)
    code = await asyncio.wait_for(task, 60)
    assert code == 5
    with psycopg.connect(shop.url, autocommit=True) as conn:
        conn.execute("SELECT qbsync.enqueue('customer', '1')")
        left = conn.execute("SELECT count(*) FROM qbsync.outbox WHERE state = 'pending'"
                            ).fetchone()
    assert left == (1,)


def make_newer_in_place(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO qbsync.schema_migrations (version, name, checksum, "
                     "qbsync_version) VALUES (%s, %s, 'f', %s)",
                     (FUTURE_VERSION, FUTURE_NAME, FUTURE_QBSYNC))
