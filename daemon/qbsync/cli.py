"""The `qbsync` command line: the same operations a DBA has in SQL, for operators.

Every command that uses the database checks its schema version first (`qbsync.schema`);
every expected failure is one line on stderr and a stable exit code (the list is in
`qbsync --help`); Ctrl-C exits 130. Reading commands take ``--json``.
"""

from __future__ import annotations

import json
import platform
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn, TypeVar

import click
import psycopg

from . import __version__, schema, shop
from .config import environment_warnings, load_settings
from .emulator.cli import emulator_command
from .errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SCHEMA,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    ConfigError,
    DatabaseUnreachable,
    QbsyncError,
    describe_db_error,
    exit_code,
    one_line,
)
from .migrate import LiveDaemon, Migration, discover, migrate, refuse_live_daemons

F = TypeVar("F", bound=Callable[..., Any])

__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SCHEMA", "EXIT_TIMEOUT",
           "EXIT_UNAVAILABLE", "EXIT_USAGE", "main"]

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


# --- options shared by the commands ------------------------------------------------------------

def database_option(fn: F) -> F:
    return click.option(
        "--database-url",
        envvar="QBSYNC_DATABASE_URL",
        show_envvar=True,
        help="Shop database (libpq URL or key=value string). Default: the config file, "
        "else libpq's defaults (PGHOST, PGDATABASE, ...).",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (for scripts) instead of a table.")(fn)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=jsonable))


def jsonable(value: Any) -> Any:
    """JSON for what the database returns: intervals in seconds, times in ISO 8601."""
    from datetime import date, timedelta
    from decimal import Decimal

    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


# --- errors: one line, a stable exit code -------------------------------------------------------

# SQLSTATE classes of a connection that failed or was refused (psycopg gives none for a
# connection libpq could not open at all)
_UNREACHABLE = ("08", "28", "3D", "57P01", "57P02", "57P03", "53300")


def unreachable(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseUnreachable):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        return state is None or state.startswith(_UNREACHABLE)
    return False


def fail(exc: BaseException) -> NoReturn:
    """Print `exc` as one line and exit with its code."""
    if unreachable(exc):
        message, code = f"cannot reach the database: {describe_db_error(exc)}", EXIT_UNAVAILABLE
    elif isinstance(exc, QbsyncError):
        message, code = one_line(exc), exit_code(exc)
    else:
        message, code = describe_db_error(exc), EXIT_FAILURE
    click.secho(f"qbsync: {message}", fg="red", err=True)
    sys.exit(code)


def operator_errors(fn: F) -> F:
    """Turn expected failures into one clear line and a stable exit code, no traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (QbsyncError, psycopg.Error) as exc:
            fail(exc)

    return wrapper  # type: ignore[return-value]


def warn(message: str) -> None:
    click.secho(f"qbsync: warning: {message}", fg="yellow", err=True)


# --- the database, its schema checked -----------------------------------------------------------

def conninfo(database_url: str | None) -> str:
    """The effective database conninfo (an unparsable one is a usage error, exit 2)."""
    return load_settings(database_url=database_url).database_url


def connect_checked(database_url: str | None, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection to a database whose schema is this qbsync's (`SchemaError`, exit 5,
    otherwise)."""
    conn = psycopg.connect(conninfo(database_url), **kwargs)
    try:
        schema.check(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def require_schema(database_url: str | None) -> str:
    """Check the schema first (for commands that open their own connections); returns the
    conninfo."""
    url = conninfo(database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        schema.check(conn)
    return url


# --- the group ----------------------------------------------------------------------------------

class QbsyncGroup(click.Group):
    """Ctrl-C anywhere: one line and exit 130 (click's default is "Aborted!" and exit 1)."""

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


# --- migrate ------------------------------------------------------------------------------------

@main.command("migrate")
@click.option("--status", "show_status", is_flag=True,
              help="List applied, pending and changed migrations and apply nothing (exit 0 "
                   "when the schema is this qbsync's, 5 otherwise).")
@click.option("--force", is_flag=True,
              help="Migrate even while daemons are registered as running (they stop by "
                   "themselves once they see the new schema).")
@json_option
@database_option
@operator_errors
def migrate_command(show_status: bool, force: bool, as_json: bool,
                    database_url: str | None) -> None:
    """Create or upgrade the qbsync schema (safe to run twice, or concurrently).

    \b
    Upgrades are stop, migrate, start:
      systemctl stop qbsync      (every daemon, on every host)
      qbsync migrate             (refuses while a daemon heartbeats; --force)
      systemctl start qbsync     (a daemon refuses a schema it was not built for)
    """
    if show_status:
        sys.exit(_migration_status(conninfo(database_url), as_json))

    def announce(m: Migration) -> None:
        if not as_json:
            click.echo(f"applying {m.name}")

    def forced(alive: list[LiveDaemon]) -> None:
        warn(f"migrating while {len(alive)} daemon(s) run (--force): "
             f"{'; '.join(map(str, alive))}; each stops claiming once it sees the new schema")

    done = migrate(conninfo(database_url), on_apply=announce,
                   before_apply=refuse_live_daemons(force, forced))
    if as_json:
        print_json({"applied": [m.name for m in done]})
    else:
        click.echo(f"{len(done)} migration(s) applied" if done else "database is up to date")


def _migration_status(url: str, as_json: bool) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        status = schema.read_status(conn)
    problem = status.problem()
    changed = {m.version: a for m, a in status.changed}
    rows: list[dict[str, Any]] = []
    for m in status.shipped:
        a = status.applied.get(m.version)
        state = "pending" if a is None else "changed" if m.version in changed else "applied"
        rows.append({"version": m.version, "name": m.name, "state": state,
                     "checksum": m.checksum, "database_checksum": a.checksum if a else None,
                     "applied_at": a.applied_at if a else None,
                     "applied_by": a.applied_by if a else None,
                     "qbsync_version": a.qbsync_version if a else None})
    for a in status.unknown:
        rows.append({"version": a.version, "name": a.name, "state": "unknown",
                     "checksum": None, "database_checksum": a.checksum,
                     "applied_at": a.applied_at, "applied_by": a.applied_by,
                     "qbsync_version": a.qbsync_version})
    if as_json:
        print_json({"qbsync_version": __version__, "code_version": status.code_version,
                    "database_version": status.database_version, "migrations": rows,
                    "problem": str(problem) if problem else None})
    else:
        from .cli_status import table  # the admin commands' table printer

        click.echo(table(("state", "migration", "applied", "by", "qbsync", "note"), [
            (r["state"], r["name"], r["applied_at"], r["applied_by"], r["qbsync_version"],
             f"database checksum {r['database_checksum'][:12]}, file {r['checksum'][:12]}"
             if r["state"] == "changed" else
             "not shipped with this qbsync" if r["state"] == "unknown" else "")
            for r in rows]))
        click.echo(f"qbsync: {problem}" if problem else
                   f"up to date: schema version {status.code_version}")
    return EXIT_OK if problem is None else EXIT_SCHEMA


# --- run ----------------------------------------------------------------------------------------

@main.command("run")
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
    from .cli_connect import emulator_settings
    from .daemon import main as run_daemon
    from .daemon import refuse_settings

    try:
        settings = load_settings(database_url=database_url,
                                 **emulator_settings(emulator, database_url))
    except ConfigError as exc:
        sys.exit(refuse_settings(exc))
    sys.exit(run_daemon(settings))


# --- sample shops -------------------------------------------------------------------------------

@main.group("shop")
def shop_group() -> None:
    """Sample shops (the Dixis marketplace, a Medusa store) for demos, tests and benchmarks;
    `new`: a starting mapping for a shop of your own."""


@shop_group.command("install")
@click.argument("name", type=click.Choice(shop.SHOPS), default="dixis")
@click.option("--no-track", is_flag=True, help="Install without the capture triggers.")
@database_option
@operator_errors
def shop_install(name: str, no_track: bool, database_url: str | None) -> None:
    """Install a sample shop's schema, mapping functions and tracking rules."""
    with connect_checked(database_url) as conn:
        shop.install_shop(conn, name, track=not no_track)
    click.echo(f"shop {name} installed" + ("" if no_track else " with capture triggers"))


@shop_group.command("generate")
@click.argument("name", type=click.Choice(shop.SHOPS), default="dixis")
@click.option("--orders", type=click.IntRange(1, 10_000_000), default=300, show_default=True)
@click.option("--seed", type=float, default=0.42, show_default=True)
@database_option
@operator_errors
def shop_generate(name: str, orders: int, seed: float, database_url: str | None) -> None:
    """Fill an installed sample shop with realistic customers, products and orders."""
    with connect_checked(database_url) as conn:
        counts = shop.generate(conn, orders, seed=seed, name=name)
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()))


main.add_command(emulator_command)

from .cli_connect import COMMANDS as _OPS_COMMANDS  # noqa: E402 - needs the names above

for _command in _OPS_COMMANDS:
    main.add_command(_command)

from .cli_status import ADMIN_COMMANDS  # noqa: E402  # uses the helpers defined above

for _admin_command in ADMIN_COMMANDS:
    main.add_command(_admin_command)

from .cli_settings import settings_command  # noqa: E402  # uses the helpers defined above

main.add_command(settings_command)

from .cli_config import CONFIG_COMMANDS  # noqa: E402  # uses the helpers defined above

for _config_command in CONFIG_COMMANDS:
    main.add_command(_config_command)

from .cli_check_mapping import KIT_COMMANDS  # noqa: E402  # uses the helpers defined above

for _kit_command in KIT_COMMANDS:
    main.add_command(_kit_command)
