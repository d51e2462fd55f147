from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import psycopg
import pytest

from qbsync.errors import MigrationError
from qbsync.migrate import discover, migrate
from qbsync.resources import sql_path


def test_migrate_creates_schema_and_is_idempotent(empty_db_url: str) -> None:
    applied = migrate(empty_db_url)
    assert [m.name for m in applied] == [m.name for m in discover()]
    assert migrate(empty_db_url) == []
    with psycopg.connect(empty_db_url) as conn:
        rows = conn.execute(
            "SELECT version, name, length(checksum) FROM qbsync.schema_migrations ORDER BY 1"
        ).fetchall()
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'qbsync'"
            ).fetchall()
        }
    assert rows[0][:2] == (1, "0001_core.sql")
    assert len(rows) == len(discover())
    assert rows[0][2] == 64
    assert {"outbox", "entity_map", "integration_logs_overflow", "connections"} <= tables


def test_changed_applied_migration_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(sql_path("migrations"), migrations)
    migrate(empty_db_url, directory=migrations)
    first = sorted(migrations.glob("*.sql"))[0]
    first.write_text(first.read_text() + "\n-- an edit after the fact\n")
    with pytest.raises(MigrationError, match=r"0001_core\.sql was changed after it was applied"):
        migrate(empty_db_url, directory=migrations)


def test_new_migration_is_applied_after_the_old_ones(empty_db_url: str, tmp_path: Path) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(sql_path("migrations"), migrations)
    migrate(empty_db_url, directory=migrations)
    (migrations / "9999_extra.sql").write_text("CREATE TABLE qbsync.extra (id int);")
    assert [m.name for m in migrate(empty_db_url, directory=migrations)] == ["9999_extra.sql"]


def test_unknown_applied_migration_is_refused(empty_db_url: str, tmp_path: Path) -> None:
    migrate(empty_db_url)
    with psycopg.connect(empty_db_url) as conn:
        conn.execute(
            "INSERT INTO qbsync.schema_migrations (version, name, checksum) "
            "VALUES (9998, '9998_future.sql', 'x')"
        )
    with pytest.raises(MigrationError, match="newer qbsync"):
        migrate(empty_db_url)


def test_failed_migration_rolls_back_and_names_the_file(
    empty_db_url: str, tmp_path: Path
) -> None:
    migrations = tmp_path / "migrations"
    shutil.copytree(sql_path("migrations"), migrations)
    (migrations / "9999_broken.sql").write_text(
        "CREATE TABLE qbsync.half_done (id int);\nSELECT no_such_function();"
    )
    with pytest.raises(MigrationError, match=r"9999_broken\.sql failed.*no_such_function"):
        migrate(empty_db_url, directory=migrations)
    with psycopg.connect(empty_db_url) as conn:
        assert conn.execute("SELECT to_regclass('qbsync.half_done')").fetchone() == (None,)
        latest = conn.execute("SELECT max(version) FROM qbsync.schema_migrations").fetchone()
    assert latest == (max(m.version for m in discover()),)


def test_concurrent_migrations_are_serialized(empty_db_url: str) -> None:
    # Hold the advisory lock so that every runner queues behind it, then release them all.
    results: list[object] = []
    with psycopg.connect(empty_db_url, autocommit=True) as blocker:
        blocker.execute("SELECT pg_advisory_lock(hashtext('qbsync.migrate'))")

        def run() -> None:
            try:
                results.append(len(migrate(empty_db_url)))
            except Exception as exc:
                results.append(exc)

        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        with psycopg.connect(empty_db_url, autocommit=True) as probe:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # wait until all four are queued on the lock
                waiting = probe.execute(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                ).fetchone()
                if waiting and waiting[0] == 4:
                    break
        blocker.execute("SELECT pg_advisory_unlock(hashtext('qbsync.migrate'))")
        for t in threads:
            t.join(60)
    assert sorted(results, key=str) == sorted([len(discover()), 0, 0, 0], key=str)
