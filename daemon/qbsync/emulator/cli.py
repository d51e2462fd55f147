"""``qbsync emulator`` / ``python -m qbsync.emulator``: run the emulator with uvicorn.

The command is part of every `qbsync`; the emulator itself (Starlette, uvicorn: the
``qbsync[emulator]`` extra) is imported only when it runs.
"""

from __future__ import annotations

import json

import click

from ..local_qbo import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EXTRA_HINT


@click.command("emulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8765, show_default=True, type=int, help="TCP port.")
@click.option(
    "--time-scale",
    default=1.0,
    show_default=True,
    type=float,
    help="Emulated seconds per real second (60: a minute lasts one second).",
)
@click.option(
    "--snapshot",
    "snapshot",
    default=None,
    type=click.Path(dir_okay=False),
    help="JSON state file: loaded at start if present, saved on shutdown.",
)
@click.option(
    "--client-id",
    default=DEFAULT_CLIENT_ID,
    show_default=True,
    help="OAuth client id accepted by the token endpoint.",
)
@click.option(
    "--client-secret",
    default=DEFAULT_CLIENT_SECRET,
    show_default=True,
    help="OAuth client secret accepted by the token endpoint.",
)
@click.option(
    "--realm",
    default=None,
    is_flag=False,
    flag_value="auto",
    help="Create a company at start (optionally with this realm id) and print it.",
)
@click.option(
    "--custom-txn-numbers/--auto-txn-numbers",
    default=False,
    show_default=True,
    help="Preferences.SalesFormsPrefs.CustomTxnNumbers of the --realm company.",
)
@click.option(
    "--tax-mode",
    type=click.Choice(["global", "us"]),
    default="global",
    show_default=True,
    help="Tax model of the --realm company.",
)
@click.option("--print-tokens", is_flag=True, help="With --realm: also print a token pair.")
@click.option("--no-limits", is_flag=True, help="Disable throttling (for benchmarks).")
@click.option("--log-level", default="warning", show_default=True)
def emulator_command(
    host: str,
    port: int,
    time_scale: float,
    snapshot: str | None,
    client_id: str,
    client_secret: str,
    realm: str | None,
    custom_txn_numbers: bool,
    tax_mode: str,
    print_tokens: bool,
    no_limits: bool,
    log_level: str,
) -> None:
    """Run the local QuickBooks Online emulator (API v3 + OAuth 2.0; needs qbsync[emulator])."""
    try:
        import uvicorn

        from .core import Emulator
    except ImportError as exc:
        raise click.ClickException(f"{EXTRA_HINT} ({exc})") from None
    emu = Emulator(
        time_scale=time_scale,
        client_id=client_id,
        client_secret=client_secret,
        limits=not no_limits,
        snapshot_path=snapshot,
    )
    if realm is not None:
        realm_id = None if realm == "auto" else realm
        if realm_id is None or realm_id not in emu.companies:
            realm_id = emu.create_company(
                realm_id=realm_id, tax_mode=tax_mode, custom_txn_numbers=custom_txn_numbers
            )
        click.echo(f"realm_id={realm_id}")
        if print_tokens:
            click.echo(json.dumps(emu.issue_tokens(realm_id)))
    click.echo(
        f"QBO emulator on http://{host}:{port} "
        f"(discovery: /.well-known/openid_sandbox_configuration)",
        err=True,
    )
    uvicorn.run(emu.app, host=host, port=port, log_level=log_level)
