"""The `qbsync` console script: for `qbsync run`, SIGTERM/SIGINT are a stop request before
the command line's modules are imported (`stopsignal`); then the command line."""

from __future__ import annotations

import sys

from .stopsignal import STOP


def main() -> None:
    if sys.argv[1:2] == ["run"]:  # `--version` is the group's only option, and it exits
        STOP.install()
    from .cli import main as cli

    cli()
