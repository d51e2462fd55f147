"""Operator commands: connect, disconnect, keygen, rotate-key, demo (added to `qbsync`)."""

from __future__ import annotations

import asyncio
import os
import re
import sys
import webbrowser
from collections.abc import Coroutine
from typing import Any, TypeVar

import asyncpg
import click
from click.core import ParameterSource

from . import connect as connecting
from . import demo as demo_mod
from . import rotate_key as keys
from .cli import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    database_option,
    operator_errors,
    require_schema,
)
from .config import check_conninfo, load_settings
from .errors import ConfigError, describe_db_error
from .vault import VaultError, generate_key

T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; an unreachable database exits 3 and a database error exits 1, with
    one line each (like `operator_errors` does for psycopg)."""
    try:
        return asyncio.run(coro)
    except connecting.DatabaseUnavailable as exc:
        click.secho(f"qbsync: cannot reach the database: {exc}", fg="red", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except asyncpg.PostgresError as exc:
        click.secho(f"qbsync: {describe_db_error(exc)}", fg="red", err=True)
        sys.exit(EXIT_FAILURE)


def _has_gui() -> bool:
    """A graphical browser is likely (never start a console browser in the terminal)."""
    return sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@click.command("connect")
@click.option("--sandbox", "where", flag_value="sandbox", help="Intuit's sandbox companies.")
@click.option("--production", "where", flag_value="production", help="Intuit production.")
@click.option("--emulator", metavar="URL", help="A local emulator (`qbsync emulator`) on a "
              "loopback address, e.g. http://127.0.0.1:8765; its default client id/secret "
              "are used when none is set, its time scale unless rate_time_scale is set.")
@click.option("--port", type=click.IntRange(0, 65535), default=connecting.DEFAULT_PORT,
              show_default=True, help="Local port of the redirect http://localhost:PORT/callback "
              "(register that exact URI in the Intuit app; 0 = any free port).")
@click.option("--no-browser", is_flag=True, help="Only print the authorization URL.")
@click.option("--wait", "wait_seconds", type=click.IntRange(10, 3600), default=300,
              show_default=True, help="Seconds to wait for the authorization.")
@database_option
@operator_errors
def connect_command(where: str | None, emulator: str | None, port: int, no_browser: bool,
                    wait_seconds: int, database_url: str | None) -> None:
    """Connect a QuickBooks company (OAuth 2.0) and store its tokens encrypted.

    Without --sandbox/--production/--emulator the configured api_base_url and
    oauth_discovery_url are used. Needs client_id, client_secret and token_keys. Open the
    printed URL, sign in and choose the company; the browser is sent back to
    http://localhost:PORT/callback. When that browser runs on another machine, forward the
    port (ssh -L PORT:localhost:PORT) or paste the address it was sent to here.
    """
    if where and emulator:
        raise click.UsageError("--emulator cannot be combined with --sandbox/--production")
    require_schema(database_url)
    settings = load_settings(database_url=database_url,
                             **emulator_settings(emulator, database_url))
    target = connecting.target_for(settings, sandbox=where == "sandbox",
                                   production=where == "production", emulator=emulator)

    def announce(url: str) -> None:
        click.echo(f"Connecting a QuickBooks company ({target.environment}). Open this URL, "
                   "sign in and choose the company:")
        click.echo(f"\n  {url}\n")
        tail = " (or paste the address your browser was sent to, then Enter)" \
            if sys.stdin.isatty() else ""
        click.echo(f"Waiting for the redirect to localhost{tail}...", err=True)

    def open_url(url: str) -> None:
        if not no_browser and _has_gui():
            webbrowser.open(url)

    company = run_async(connecting.connect(
        settings, target, open_url=open_url, port=port, wait_seconds=wait_seconds,
        announce=announce, read_pasted=sys.stdin.readline if sys.stdin.isatty() else None))
    click.echo(f"connected {company.company_name or 'company'} (realm {company.realm_id}, "
               f"{company.environment}); tokens stored encrypted; it is now the active company "
               "((re)start `qbsync run` to sync to it)")


def emulator_settings(url: str | None, database_url: str | None) -> dict[str, Any]:
    """The overrides of ``--emulator URL`` (none without it); a URL that is not on a
    loopback address is a usage error."""
    if not url:
        return {}
    try:
        connecting.emulator_base(url)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--emulator") from None
    return connecting.emulator_overrides(url, load_settings(database_url=database_url))


@click.command("disconnect")
@click.option("--realm", "realm_id", help="Company (realm ID); default: the active one.")
@click.option("--no-revoke", is_flag=True, help="Only mark it disconnected here, without "
              "revoking the grant at Intuit (e.g. Intuit unreachable or keys lost).")
@click.option("--emulator", metavar="URL", help="The company is on a local emulator on a "
              "loopback address (what `qbsync connect --emulator URL` connected).")
@database_option
@operator_errors
def disconnect_command(realm_id: str | None, no_revoke: bool, emulator: str | None,
                       database_url: str | None) -> None:
    """Revoke a company's grant at Intuit and mark it disconnected (the row stays for
    history; its tokens are replaced by an encrypted empty payload)."""
    require_schema(database_url)
    settings = load_settings(database_url=database_url,
                             **emulator_settings(emulator, database_url))
    result = run_async(connecting.disconnect(settings, realm_id=realm_id,
                                               revoke=not no_revoke))
    click.echo(f"company {result.company_name or ''} (realm {result.realm_id}): "
               f"{result.note}; marked disconnected".replace("  ", " "))


@click.command("keygen")
@click.option("--key-id", help="Key id (A-Z a-z 0-9 _ . -); default k<YYYYMMDD>.")
@operator_errors
def keygen_command(key_id: str | None) -> None:
    """Print a new token key entry `id:base64key` (AES-256) for token_keys.

    To rotate, put it FIRST in the ring, keep the old key after it:
    QBSYNC_TOKEN_KEYS=new:…,old:… ; see `qbsync rotate-key --help`.
    """
    try:
        entry = generate_key(key_id)
    except VaultError as exc:
        raise click.BadParameter(str(exc), param_hint="--key-id") from None
    click.echo(entry)
    if sys.stdout.isatty():
        click.echo("Keep it secret: store it as the systemd credential qbsync-token-keys.",
                   err=True)


@click.command("rotate-key")
@click.option("--new-key-id", metavar="ID", help="The new key's id: refuse unless it is the "
              "ring's primary (first) key.")
@click.option("--dry-run", is_flag=True, help="Check every row decrypts and every running "
              "daemon holds the new key; change nothing.")
@click.option("--force", is_flag=True, help="Re-encrypt even while running daemons lack the "
              "new key (they pause their company, losing no try, until restarted with it).")
@database_option
@operator_errors
def rotate_key_command(new_key_id: str | None, dry_run: bool, force: bool,
                       database_url: str | None) -> None:
    """Re-encrypt every company's tokens under the primary (first) token key.

    \b
    Order of operations (a running daemon keeps syncing):
    1. qbsync keygen                    -> new:base64
    2. deploy QBSYNC_TOKEN_KEYS=new:…,old:… (new FIRST) to every daemon, restart them,
       and to this command's environment
    3. qbsync rotate-key --new-key-id new
    4. once it reports every row under `new`, drop the old key from the ring, restart.

    Each row is re-encrypted under the realm's refresh lock and row lock, token_generation
    unchanged. Refuses (changing nothing) when a row's key is not in the ring, a row does
    not decrypt, or a running daemon does not hold the new key (it records its key ids in
    qbsync.workers at start; --force overrides, naming them). Exit 0: every row is under
    the new key; 1: refused or incomplete.
    """
    require_schema(database_url)
    settings = load_settings(database_url=database_url)

    primary = connecting.vault_for(settings).primary

    def progress(done: int, total: int, realm: str, old: str) -> None:
        click.echo(f"[{done}/{total}] realm {realm}: {old} -> {primary}")

    result = run_async(keys.rotate(settings, new_key_id=new_key_id, dry_run=dry_run,
                                     force=force, progress=progress))
    for daemon in result.lacking:
        click.secho(f"warning (--force): daemon {daemon} does not hold key {primary!r}: it "
                    "pauses its company with a tokens_unreadable notice until restarted with "
                    "the new ring", fg="yellow", err=True)
    for daemon in result.not_primary:
        click.echo(f"note: daemon {daemon} holds {primary!r} but encrypts with another key: "
                   f"restart it with {primary!r} first in its ring, or its refreshes undo the "
                   "rotation", err=True)
    by_key = ", ".join(f"{k}: {n}" for k, n in result.by_key.items()) or "no rows"
    if dry_run:
        click.echo(f"dry run: {result.total} connection(s), all decrypt; "
                   f"{result.total - result.already} to re-encrypt under {result.primary!r} "
                   f"(rows by key: {by_key}); {len(result.live_daemons)} running daemon(s)"
                   + (f", {len(result.lacking)} without the new key" if result.lacking else
                      ", all holding the new key"))
        return
    click.echo(f"re-encrypted {result.reencrypted} of {result.total} connection(s) under key "
               f"{result.primary!r} ({result.already} already were); rows by key: {by_key}")
    if not result.complete:
        click.secho("some rows are under another key (a daemon with the old key first in its "
                    "ring refreshed meanwhile?): fix its ring and run rotate-key again",
                    fg="red", err=True)
        sys.exit(EXIT_FAILURE)


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


COMMANDS = (connect_command, disconnect_command, keygen_command, rotate_key_command,
            demo_command)
