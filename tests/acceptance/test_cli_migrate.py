"""`qbsync migrate` through its real entry point, from the checkout and from a wheel."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
QBSYNC = str(Path(sys.executable).with_name("qbsync"))


def run(*args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)  # type: ignore[call-overload]


def test_migrate_twice(empty_db_url: str) -> None:
    first = run(QBSYNC, "migrate", "--database-url", empty_db_url)
    assert first.returncode == 0, first.stderr
    assert "applying 0001_core.sql" in first.stdout
    second = run(QBSYNC, "migrate", "--database-url", empty_db_url)
    assert second.returncode == 0
    assert "database is up to date" in second.stdout


def test_migrate_reads_env(empty_db_url: str) -> None:
    env = {**os.environ, "QBSYNC_DATABASE_URL": empty_db_url}
    assert run(QBSYNC, "migrate", env=env).returncode == 0


def test_unreachable_database_exit_code() -> None:
    result = run(QBSYNC, "migrate", "--database-url",
                 "postgresql://postgres@127.0.0.1:1/x?connect_timeout=2")
    assert result.returncode == 3
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_help_explains() -> None:
    result = run(QBSYNC, "--help")
    assert result.returncode == 0
    assert "migrate" in result.stdout
    assert "Exit codes" in result.stdout


@pytest.mark.slow
def test_migrate_from_installed_wheel(empty_db_url: str, tmp_path: Path) -> None:
    """The wheel ships sql/: build it, install it alone into a fresh venv, migrate."""
    wheels = tmp_path / "wheels"
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                "-w", str(wheels), str(ROOT))
    assert built.returncode == 0, built.stderr
    wheel = next(wheels.glob("qbsync-*.whl"))
    with zipfile.ZipFile(wheel) as zipped:
        shipped = set(zipped.namelist())
    assert {"qbsync/sql/queries.sql", "qbsync/sql/cli_queries.sql",
            "qbsync/systemd/qbsync.service", "qbsync/systemd/qbsync.toml.example"} <= shipped
    data = next(n.split("/", 1)[0] for n in shipped if n.endswith(".data/data/share/doc/"
                                                                    "qbsync/README.md"))
    assert f"{data}/data/share/doc/qbsync/CHANGELOG.md" in shipped
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in shipped)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    # Dependencies come from this venv (read-only, via a .pth); qbsync itself only from the wheel.
    site = Path(run(str(env_dir / "bin" / "python"), "-c",
                    "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = run(sys.executable, "-m", "pip", "--python", str(env_dir / "bin" / "python"),
                    "install", "--no-deps", "--no-index", str(wheel))
    assert installed.returncode == 0, installed.stderr
    where = run(str(env_dir / "bin" / "python"), "-c",
                "import qbsync.resources as r; print(r.sql_root())", cwd=tmp_path)
    assert str(env_dir) in where.stdout, where.stdout + where.stderr
    result = run(str(env_dir / "bin" / "qbsync"), "migrate", "--database-url", empty_db_url,
                 cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    # the unit and the example configuration come from the wheel, and the unit's
    # Documentation= names the README the wheel installed
    example = run(str(env_dir / "bin" / "qbsync"), "config", "example", cwd=tmp_path)
    assert example.stdout == (ROOT / "systemd" / "qbsync.toml.example").read_text()
    unit = run(str(env_dir / "bin" / "qbsync"), "systemd-unit", cwd=tmp_path).stdout
    assert f"ExecStart={env_dir / 'bin' / 'qbsync'} run" in unit.splitlines()
    readme = env_dir / "share" / "doc" / "qbsync" / "README.md"
    assert f"Documentation=file://{readme.resolve()}" in unit.splitlines()
    assert readme.read_text() == (ROOT / "README.md").read_text()
    with psycopg.connect(empty_db_url) as conn:
        count = conn.execute("SELECT count(*) FROM qbsync.schema_migrations").fetchone()
    assert count == (len(list((ROOT / "sql" / "migrations").glob("*.sql"))),)
