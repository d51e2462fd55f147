"""`qbsync run`: the sync daemon in the foreground, until SIGTERM/SIGINT (the daemon itself
is `qbsync.daemon`)."""

from __future__ import annotations

import sys

import click

from .cli_common import database_option
from .cli_connect import emulator_settings
from .config import load_settings
from .errors import ConfigError


@click.command("run")
@click.option("--emulator", metavar="URL", help="Sync to a local emulator on a loopback "
              "address (what `qbsync connect --emulator URL` connected): its API, OAuth "
              "endpoints and time scale, and its client id/secret when none is set.")
@database_option
def run_command(emulator: str | None, database_url: str | None) -> None:
    """Run the sync daemon until SIGTERM/SIGINT (systemd: Type=notify, watchdog).

    Settings come from QBSYNC_* variables, systemd credentials and the TOML file
    (QBSYNC_CONFIG, default /etc/qbsync/qbsync.toml); see `qbsync config example`. Every
    line it writes is a log record (log_format json: every line is JSON, the last one
    included when it cannot run). It refuses to start on a schema it was not built for,
    and stops (exit 5) when the schema changes under it.
    """
    # the daemon's imports are not needed elsewhere
    from .daemon import main as run_daemon
    from .daemon import refuse_settings

    try:
        settings = load_settings(database_url=database_url,
                                 **emulator_settings(emulator, database_url))
    except ConfigError as exc:
        sys.exit(refuse_settings(exc))
    sys.exit(run_daemon(settings))


COMMANDS: tuple[click.Command, ...] = (run_command,)
