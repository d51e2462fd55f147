"""`qbsync keygen` and `rotate-key`: a new entry for the token key ring (`qbsync.vault`), and
every stored company's tokens re-encrypted under the ring's primary key
(`qbsync.rotate_key`)."""

from __future__ import annotations

import sys

import click

from . import rotate_key
from .cli_common import EXIT_FAILURE, database_option, operator_errors, require_schema, run_async
from .config import load_settings
from .vault import VaultError, generate_key, vault_for


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

    primary = vault_for(settings).primary

    def progress(done: int, total: int, realm: str, old: str) -> None:
        click.echo(f"[{done}/{total}] realm {realm}: {old} -> {primary}")

    result = run_async(rotate_key.rotate(settings, new_key_id=new_key_id, dry_run=dry_run,
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


COMMANDS: tuple[click.Command, ...] = (keygen_command, rotate_key_command)
