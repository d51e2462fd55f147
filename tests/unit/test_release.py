"""What a release promises: released migrations never change, one version, a license and a
changelog, the exit codes documented, and the unit and example configuration in the package."""

from __future__ import annotations

import hashlib
import importlib
import re
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

import qbsync
from qbsync import errors
from qbsync.cli import LAZY_COMMANDS, main
from qbsync.resources import sql_path, systemd_path

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())

# qbsync 0.1.0's migrations. A database migrated by 0.1.0 recorded these checksums, and every
# later qbsync checks them: editing one of these files strands every such database (its
# checksum no longer matches). Every schema change goes into a new file.
RELEASED_0_1_0 = {
    "0001_core.sql": "27f916b18b9a7480049de61e927f1ea4ef49d3eeb171fbd68f9e66b26dd86b8f",
    "0002_daemon.sql": "cd97a821dbf768b75cec4b0717885210c4e01f5052563b223dcfb3bf421b1389",
    "0003_rate_limits.sql": "430690af11ddb25e86a3f5bf88eecaa2ed3d84677f78bb514ce10fc2355ed98f",
    "0004_admin.sql": "070f0657d5bcfde25083c7637bd8e2579b91c0fd7b7228121b7d9a75af8447f4",
    "0005_drift.sql": "dd2dcaeb422cf0e88d2632cf68e4c50927bc91edff0f7bbfda75a72bf2824329",
    "0006_reconcile.sql": "0ef0d4721db82fcc84e99198e98d7159d16a75383478d360545a927def16e6ed",
}
# The Dixis shop as 0.1.0 installed it: the upgrade test builds its database from these.
DIXIS_0_1_0 = {
    "schema.sql": "3fb03099ded549dd400224fab21607722495be3cda91e7cdf70ae441469b9614",
    "generate.sql": "026a54b9f82c45b4629ef06cfe87c2114869fe74cd796cbe78831e6c70044a82",
    "mapping.sql": "e70842d8795de22fe84c6b51b08cdde845d472c592e8ffe6da0a3a2c8382fe96",
    "admin.sql": "6cd6847fc4fc57ec5e850995204b99460ac0a043c5249aa7d11b39f88c5a40ea",
    "track.sql": "4690e53f7a7f8caff7ed14dc11ac1eac9e8a2f840b05d7529ed67aa14bf4cdc0",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(RELEASED_0_1_0))
def test_released_migrations_never_change(name: str) -> None:
    assert sha256(sql_path("migrations", name)) == RELEASED_0_1_0[name], (
        f"{name} was released in 0.1.0 and databases recorded its checksum: put the change "
        "in a new migration file instead"
    )


@pytest.mark.parametrize("name", sorted(DIXIS_0_1_0))
def test_the_upgrade_tests_0_1_0_shop_is_0_1_0s(name: str) -> None:
    assert sha256(ROOT / "tests" / "fixtures" / "dixis-0.1.0" / name) == DIXIS_0_1_0[name]


def test_later_migrations_come_after_the_released_ones() -> None:
    names = sorted(p.name for p in sql_path("migrations").glob("*.sql"))
    assert names[: len(RELEASED_0_1_0)] == sorted(RELEASED_0_1_0)


def test_one_version_source() -> None:
    """pyproject reads the version from the package: a release changes one line."""
    assert "version" not in PYPROJECT["project"]
    assert "version" in PYPROJECT["project"]["dynamic"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "daemon/qbsync/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+(\.dev\d+|rc\d+)?", qbsync.__version__)
    shown = CliRunner().invoke(main, ["--version"])
    assert shown.exit_code == 0
    assert shown.stdout.startswith(f"qbsync {qbsync.__version__} (schema version ")


def test_license_is_the_one_pyproject_names() -> None:
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License")
    assert "Permission is hereby granted, free of charge" in text


def test_changelog_keeps_a_changelog_from_0_1_0() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert "[Keep a Changelog](https://keepachangelog.com/" in text
    versions = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)
    assert versions[0] == "Unreleased"
    assert versions[-1] == "0.1.0"
    assert re.search(r"^## \[0\.1\.0\] - \d{4}-\d{2}-\d{2}$", text, re.MULTILINE)


def test_help_lists_every_exit_code() -> None:
    codes = {v for k, v in vars(errors).items() if k.startswith("EXIT_")}
    assert codes == {0, 1, 2, 3, 4, 5, 130}
    shown = CliRunner().invoke(main, ["--help"]).stdout
    listed = shown.split("Exit codes:", 1)[1]
    for code in codes:
        assert re.search(rf"^\s+{code}\s+\S", listed, re.MULTILINE), code


@pytest.mark.parametrize("name", sorted(LAZY_COMMANDS))
def test_help_lists_a_lazy_command_by_its_own_first_sentence(name: str) -> None:
    """`qbsync --help` lists `demo` and `emulator` without importing them (they load the
    emulator): by the summary in LAZY_COMMANDS, which must stay what the command says."""
    module, attribute, summary = LAZY_COMMANDS[name]
    command = getattr(importlib.import_module(module), attribute)
    assert summary == command.get_short_help_str(limit=1000)
    listed = CliRunner().invoke(main, ["--help"]).stdout
    assert f"  {name} " in listed


def test_the_unit_and_the_example_come_with_the_package() -> None:
    """The wheel ships systemd/ as qbsync/systemd (tests/acceptance/test_cli_migrate builds
    it); the commands print them."""
    assert PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"][
        "systemd"] == "qbsync/systemd"
    runner = CliRunner()
    example = runner.invoke(main, ["config", "example"])
    assert example.stdout == systemd_path("qbsync.toml.example").read_text()
    shipped = runner.invoke(main, ["systemd-unit", "--as-shipped"])
    assert shipped.stdout == systemd_path("qbsync.service").read_text()


def test_the_shipped_units_documentation_is_where_the_wheel_puts_the_readme() -> None:
    """The unit as shipped (ExecStart=/usr/bin/qbsync) names the README where a /usr install
    of the wheel puts it (its shared-data). That a built wheel installs the README and the
    printed unit names that copy is test_cli_migrate.py::test_migrate_from_installed_wheel."""
    unit = systemd_path("qbsync.service").read_text()
    shared = PYPROJECT["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["README.md"] == "share/doc/qbsync/README.md"
    assert f"Documentation=file:///usr/{shared['README.md']}" in unit.splitlines()
    assert "ExecStart=/usr/bin/qbsync run" in unit.splitlines()


def test_the_printed_unit_names_the_installed_readme_before_the_checkouts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An editable install has both the checkout's README and an installed copy: the unit
    names the installed one when there is one, else the checkout's; ExecStart= this qbsync."""
    def printed() -> tuple[str, str]:
        lines = CliRunner().invoke(main, ["systemd-unit"]).stdout.splitlines()
        [docs] = [x.split("=", 1)[1] for x in lines if x.startswith("Documentation=")]
        [start] = [x.split("=", 1)[1] for x in lines if x.startswith("ExecStart=")]
        return docs, start

    monkeypatch.setattr(sys, "prefix", str(tmp_path))  # nothing installed under it
    docs, start = printed()
    assert docs == f"file://{(ROOT / 'README.md').resolve()}"
    assert Path(start.removesuffix(" run")) == Path(sys.executable).with_name("qbsync")
    installed = tmp_path / "share" / "doc" / "qbsync" / "README.md"
    installed.parent.mkdir(parents=True)
    installed.write_text("# qbsync\n")
    assert printed()[0] == f"file://{installed.resolve()}"


def test_the_example_says_how_to_make_a_key() -> None:
    assert "qbsync keygen" in systemd_path("qbsync.toml.example").read_text()
