"""`qbsync config show|example` and `qbsync systemd-unit`: the settings in effect and where
each came from, and the two files an installation starts from, printed from the package."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import click

from .cli_common import database_option, json_option, operator_errors, print_json
from .config import MASK, load_settings, setting_sources
from .resources import doc_path, systemd_path


@click.group("config")
def config_group() -> None:
    """The settings: the effective ones (show) and the documented example file (example)."""


@config_group.command("show")
@json_option
@database_option
@operator_errors
def config_show(as_json: bool, database_url: str | None) -> None:
    """Every setting's effective value and where it came from (command-line option,
    environment QBSYNC_*, systemd credential, the TOML file, default); secrets and a
    password in database_url are shown as ********."""
    overrides = {"database_url": database_url}
    settings = load_settings(**overrides)
    values = settings.redacted()
    sources = setting_sources(overrides)
    if as_json:
        print_json({name: {"value": values[name], "source": sources[name]} for name in values})
        return
    width = max(map(len, values))
    for name, value in values.items():
        click.echo(f"{name.ljust(width)} = {_toml(value)}  # {sources[name]}")


def _toml(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"' \
            if value != MASK else MASK
    return str(value)


@config_group.command("example")
def config_example() -> None:
    """Print the example configuration file, every setting documented with its default:
    qbsync config example > /etc/qbsync/qbsync.toml."""
    click.echo(systemd_path("qbsync.toml.example").read_text(encoding="utf-8"), nl=False)


@click.command("systemd-unit")
@click.option("--as-shipped", is_flag=True,
              help="Print the file exactly as shipped (ExecStart=/usr/bin/qbsync).")
def systemd_unit(as_shipped: bool) -> None:
    """Print the hardened systemd unit for this installation:
    qbsync systemd-unit > /etc/systemd/system/qbsync.service.

    ExecStart= runs this qbsync and Documentation= names its installed README (both as
    shipped with --as-shipped); the comments at the top say how to install it.
    """
    text = systemd_path("qbsync.service").read_text(encoding="utf-8")
    if not as_shipped:
        text = for_this_installation(text)
    click.echo(text, nl=False)


def for_this_installation(unit: str) -> str:
    """The unit with ExecStart= pointing at this qbsync and Documentation= at its README."""
    exe = shutil.which("qbsync", path=str(Path(sys.executable).parent)) \
        or shutil.which("qbsync")
    lines = []
    for line in unit.splitlines(keepends=True):
        if line.startswith("ExecStart=") and exe:
            line = f"ExecStart={Path(exe).absolute()} run\n"
        elif line.startswith("Documentation="):
            line = f"Documentation=file://{doc_path('README.md').resolve()}\n"
        lines.append(line)
    return "".join(lines)


COMMANDS: tuple[click.Command, ...] = (config_group, systemd_unit)
