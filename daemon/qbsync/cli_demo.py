"""`qbsync demo`: the Dixis sample shop syncing to an emulated QuickBooks (the demo itself is
`qbsync.demo`). `qbsync` loads this module only when the command runs or is listed, as it
loads the emulator."""

from __future__ import annotations

import re
import sys

import click
from click.core import ParameterSource

from . import demo as demo_mod
from .cli_common import EXIT_OK, database_option, operator_errors, run_async
from .config import check_conninfo
from .errors import ConfigError


@click.command("demo")
@click.option("--orders", type=click.IntRange(1, 100_000), default=300, show_default=True,
              help="Sample orders to generate.")
@click.option("--time-scale", type=click.FloatRange(1, 3600), default=60.0, show_default=True,
              help="Emulated seconds per real second (QuickBooks' per-minute limits and the "
              "1-hour access token run this much faster).")
@click.option("--no-limits", is_flag=True, help="Turn QuickBooks' rate limits off.")
@click.option("--demo-db", default=demo_mod.DEMO_DB, show_default=True,
              help="The demo's own database (dropped and recreated; never one it did not "
              "create).")
@click.option("--keep", is_flag=True, help="Keep the database (and a throwaway cluster's "
              "files) afterwards.")
@click.option("--timeout", type=click.FloatRange(10), default=300.0, show_default=True,
              help="Seconds to wait for the queue to drain.")
@database_option
@operator_errors
def demo_command(orders: int, time_scale: float, no_limits: bool, demo_db: str, keep: bool,
                 timeout: float, database_url: str | None) -> None:
    """Watch the Dixis sample shop sync to an emulated QuickBooks: no setup needed.

    Uses the PostgreSQL server of --database-url, else QBSYNC_DATABASE_URL, libpq's
    defaults or 127.0.0.1:5432, else starts a throwaway cluster. Creates the database
    --demo-db there, installs the Dixis shop, starts the QuickBooks emulator, connects to it
    through the OAuth flow, generates orders, runs the daemon until every order is synced,
    prints the dashboard and cleans up (also on Ctrl-C).

    Exit codes: 0 every order synced, 1 something did not, 3 database unreachable,
    130 interrupted.
    """
    if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", demo_db):
        raise click.BadParameter("use lower-case letters, digits and _", param_hint="--demo-db")
    if database_url:  # unparsable: exit 2, as every command says it
        try:
            check_conninfo(database_url)
        except ValueError as exc:
            raise ConfigError(f"invalid configuration: database_url: {exc} (command-line "
                              "option)") from None
    source = click.get_current_context().get_parameter_source("database_url")
    opts = demo_mod.DemoOptions(
        orders=orders, time_scale=time_scale, limits=not no_limits, database_url=database_url,
        strict=source == ParameterSource.COMMANDLINE, demo_db=demo_db, keep=keep,
        timeout=timeout)
    try:
        code = run_async(demo_mod.run_demo(opts, click.echo))
    except (demo_mod.Interrupted, KeyboardInterrupt):
        click.echo("\ninterrupted: daemon, emulator and database cleaned up", err=True)
        sys.exit(demo_mod.EXIT_INTERRUPTED)
    sys.exit(code or EXIT_OK)
