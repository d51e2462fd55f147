"""The `qbsync` command line: the same operations a DBA has in SQL, for operators."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click
import psycopg

from . import __version__, shop
from .config import load_settings
from .emulator.cli import emulator_command
from .errors import QbsyncError
from .migrate import Migration, migrate

F = TypeVar("F", bound=Callable[..., Any])

# Exit codes scripts can rely on.
EXIT_OK = 0
EXIT_FAILURE = 1  # the operation ran and failed (e.g. a migration error)
EXIT_USAGE = 2  # click's own code for bad arguments
EXIT_UNAVAILABLE = 3  # the database could not be reached


def database_option(fn: F) -> F:
    return click.option(
        "--database-url",
        envvar="QBSYNC_DATABASE_URL",
        show_envvar=True,
        help="Shop database (libpq URL or key=value string). Default: the config file, "
        "else libpq's defaults (PGHOST, PGDATABASE, ...).",
    )(fn)


def operator_errors(fn: F) -> F:
    """Turn expected failures into one clear line and a stable exit code, no traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except psycopg.OperationalError as exc:
            click.secho(f"qbsync: cannot reach the database: {exc}".rstrip(), fg="red", err=True)
            sys.exit(EXIT_UNAVAILABLE)
        except (QbsyncError, psycopg.Error) as exc:
            click.secho(f"qbsync: {exc}".rstrip(), fg="red", err=True)
            sys.exit(EXIT_FAILURE)

    return wrapper  # type: ignore[return-value]


def conninfo(database_url: str | None) -> str:
    return load_settings(database_url=database_url).database_url


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="qbsync")
def main() -> None:
    """qbsync keeps a shop's PostgreSQL database and its QuickBooks Online company in step.

    Triggers capture shop changes into qbsync.outbox; `qbsync run` pushes them to
    QuickBooks and records every outcome in qbsync.integration_logs.

    Exit codes: 0 ok, 1 the operation failed, 2 usage error, 3 database unreachable.
    """


@main.command("migrate")
@database_option
@operator_errors
def migrate_command(database_url: str | None) -> None:
    """Create or upgrade the qbsync schema (safe to run twice, or concurrently)."""

    def announce(m: Migration) -> None:
        click.echo(f"applying {m.name}")

    done = migrate(conninfo(database_url), on_apply=announce)
    click.echo(f"{len(done)} migration(s) applied" if done else "database is up to date")


@main.command("run")
@database_option
@operator_errors
def run_command(database_url: str | None) -> None:
    """Run the sync daemon until SIGTERM/SIGINT (systemd: Type=notify, watchdog).

    Settings come from QBSYNC_* variables, systemd credentials and the TOML file
    (QBSYNC_CONFIG, default /etc/qbsync/qbsync.toml); see systemd/qbsync.toml.example.
    """
    from .daemon import main as run_daemon  # the daemon's imports are not needed elsewhere

    sys.exit(run_daemon(load_settings(database_url=database_url)))


@main.group("shop")
def shop_group() -> None:
    """Sample shops (the Dixis marketplace, a Medusa store) for demos, tests and benchmarks."""


@shop_group.command("install")
@click.argument("name", type=click.Choice(shop.SHOPS), default="dixis")
@click.option("--no-track", is_flag=True, help="Install without the capture triggers.")
@database_option
@operator_errors
def shop_install(name: str, no_track: bool, database_url: str | None) -> None:
    """Install a sample shop's schema, mapping functions and tracking rules."""
    with psycopg.connect(conninfo(database_url)) as conn:
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
    with psycopg.connect(conninfo(database_url)) as conn:
        counts = shop.generate(conn, orders, seed=seed, name=name)
    click.echo(", ".join(f"{n} {what}" for what, n in counts.items()))


main.add_command(emulator_command)

from .cli_ops import COMMANDS as _OPS_COMMANDS  # noqa: E402 - needs the names above

for _command in _OPS_COMMANDS:
    main.add_command(_command)

from .cli_admin import ADMIN_COMMANDS  # noqa: E402  # uses the helpers defined above

for _admin_command in ADMIN_COMMANDS:
    main.add_command(_admin_command)
