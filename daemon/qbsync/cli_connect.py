"""`qbsync connect` and `disconnect`: a QuickBooks company connected through the OAuth flow,
or disconnected (the flow itself is `qbsync.connect`), and the settings `--emulator URL`
stands for (also `qbsync run`'s)."""

from __future__ import annotations

import os
import sys
import webbrowser
from typing import Any

import click

from . import connect as connecting
from .cli_common import database_option, operator_errors, require_schema, run_async
from .config import load_settings
from .errors import ConfigError


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


COMMANDS: tuple[click.Command, ...] = (connect_command, disconnect_command)
