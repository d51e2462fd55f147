"""The `qbsync` command line: the same operations a DBA has in SQL, for operators.

This module assembles the group; each command lives in the `cli_*` module named after it,
and what they share (exit codes, options, error handling, the schema check) in
`cli_common`. Every command that uses the database checks its schema version first
(`qbsync.schema`); every expected failure is one line on stderr and a stable exit code (the
list is in `qbsync --help`); Ctrl-C exits 130. Reading commands take ``--json``.
"""

from __future__ import annotations

import platform
from importlib import import_module
from typing import Any

import click

from . import (
    __version__,
    cli_check_mapping,
    cli_config,
    cli_connect,
    cli_migrate,
    cli_reconcile,
    cli_report,
    cli_resync,
    cli_run,
    cli_settings,
    cli_shop,
    cli_status,
    cli_token_keys,
)
from .cli_common import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SCHEMA,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    warn,
)
from .config import environment_warnings
from .migrate import discover

__all__ = ["main"]

# Commands whose modules load the emulator: imported only when they run (or are asked for
# by name), so that the other commands, `qbsync run` and `qbsync --help` never load it. The
# summary is what `qbsync --help` lists for them (each command's first sentence; a test holds
# them equal).
LAZY_COMMANDS = {
    "demo": ("qbsync.cli_demo", "demo_command",
             "Watch the Dixis sample shop sync to an emulated QuickBooks: no setup needed."),
    "emulator": ("qbsync.emulator.cli", "emulator_command",
                 "Run the local QuickBooks Online emulator (API v3 + OAuth 2.0; needs "
                 "qbsync[emulator])."),
}

EXIT_CODES = f"""\b
Exit codes:
  {EXIT_OK}    ok
  {EXIT_FAILURE}    the operation ran and failed (a database or QuickBooks error, differences
       found by reconcile, a refused migration)
  {EXIT_USAGE}    usage error: a wrong option or argument, an unparsable --database-url,
       --from after --to, an invalid setting
  {EXIT_UNAVAILABLE}    the database could not be reached
  {EXIT_TIMEOUT}    --wait ran out before the daemon answered
  {EXIT_SCHEMA}    no qbsync schema, or not the version this qbsync needs (run `qbsync
       migrate`, or upgrade qbsync); `qbsync run` also exits 5 when the schema
       changes under it
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C); a request the command waited on is withdrawn
"""


class QbsyncGroup(click.Group):
    """Ctrl-C anywhere: one line and exit 130 (click's default is "Aborted!" and exit 1);
    the commands of `LAZY_COMMANDS` are imported when they run, and listed by their
    summary."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *LAZY_COMMANDS})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
            module, name, _ = LAZY_COMMANDS[cmd_name]
            self.add_command(getattr(import_module(module), name), cmd_name)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """As click's, but a lazy command not loaded yet is listed by its summary rather
        than imported (click asks each listed command for its short help)."""
        rows: list[tuple[str, click.Command]] = []
        for cmd_name in self.list_commands(ctx):
            if cmd_name in LAZY_COMMANDS and cmd_name not in self.commands:
                rows.append((cmd_name, click.Command(cmd_name, help=LAZY_COMMANDS[cmd_name][2])))
            elif (command := self.get_command(ctx, cmd_name)) and not command.hidden:
                rows.append((cmd_name, command))
        if rows:
            limit = formatter.width - 6 - max(len(cmd_name) for cmd_name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(cmd_name, command.get_short_help_str(limit))
                                    for cmd_name, command in rows])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("\nqbsync: interrupted", err=True)
            raise click.exceptions.Exit(EXIT_INTERRUPTED) from None


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    shipped = discover()
    click.echo(f"qbsync {__version__} (schema version {shipped[-1].version if shipped else 0}, "
               f"{len(shipped)} migrations; Python {platform.python_version()})")
    ctx.exit()


@click.group(cls=QbsyncGroup, context_settings={"help_option_names": ["-h", "--help"]},
             epilog=EXIT_CODES)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True,
              callback=_print_version, help="Show qbsync's version and schema version.")
@click.pass_context
def main(ctx: click.Context) -> None:
    """qbsync keeps a shop's PostgreSQL database and its QuickBooks Online company in step.

    Triggers capture shop changes into qbsync.outbox; `qbsync run` pushes them to
    QuickBooks and records every outcome in qbsync.integration_logs.

    Settings: QBSYNC_* environment variables, systemd credentials and the TOML file
    (QBSYNC_CONFIG, default /etc/qbsync/qbsync.toml); `qbsync config show` prints them.
    """
    if ctx.invoked_subcommand != "run":  # the daemon logs them, in its log format
        for message in environment_warnings():
            warn(message)


for _module in (cli_migrate, cli_run, cli_shop, cli_connect, cli_token_keys, cli_status,
                cli_resync, cli_report, cli_reconcile, cli_settings, cli_config,
                cli_check_mapping):
    for _command in _module.COMMANDS:
        main.add_command(_command)
