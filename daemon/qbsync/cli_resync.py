"""`qbsync resync`, `sync` and `retry-dead`: shop rows queued for a push again, through the
admin surface's functions (qbsync.resync, sync_all_customers, sync_catalog, retry_dead)."""

from __future__ import annotations

import sys
import time

import click

from .cli_common import (
    EXIT_TIMEOUT,
    POLL,
    connect_rows,
    database_option,
    operator_errors,
)
from .queries import load_cli

Q = load_cli()


# --- resync, bulk syncs, retry-dead -----------------------------------------------------------

@click.command("resync")
@click.argument("entity")
@click.argument("keys", nargs=-1, required=True)
@click.option("--force", is_flag=True,
              help="Push even when already in QuickBooks (e.g. an order that has an invoice).")
@database_option
@operator_errors
def resync_command(entity: str, keys: tuple[str, ...], force: bool,
                   database_url: str | None) -> None:
    """Queue shop rows for a new push: qbsync resync order 1001 1002 [--force].

    Every key must be known to the shop's mapping; if one is not, nothing is queued, the
    unknown keys are named and the exit code is 1.
    """
    with connect_rows(database_url) as conn:
        if len(keys) == 1:
            row = conn.execute(Q.resync, (entity, keys[0], force)).fetchone()
        else:
            row = conn.execute(Q.resync_many, (entity, list(keys), force)).fetchone()
    queued = int(row["n"]) if row else 0
    distinct = len(set(keys))
    click.echo(f"queued {queued} of {distinct} {entity} key(s)"
               + (f"; {distinct - queued} already pending" if queued < distinct else "")
               + (" (forced)" if force else ""))


# what -> (query name in cli_queries.sql, QuickBooks type)
_SYNC_KINDS = {"customers": ("sync_all_customers", "Customer"),
               "catalog": ("sync_catalog", "Item")}


@click.command("sync")
@click.argument("what", type=click.Choice(sorted(_SYNC_KINDS)))
@click.option("--wait", type=click.FloatRange(0), default=None, metavar="SECONDS",
              help="Then show the daemon's progress until the queue of these entities is "
                   "empty (exit 4 if it is not within SECONDS).")
@database_option
@operator_errors
def sync_command(what: str, wait: float | None, database_url: str | None) -> None:
    """Queue every customer not yet in QuickBooks (customers) or the whole catalogue (catalog)."""
    query, qbo_type = _SYNC_KINDS[what]
    with connect_rows(database_url) as conn:
        click.echo("queueing " + ("customers missing from QuickBooks" if what == "customers"
                                  else "the catalogue") + "…")
        row = conn.execute(getattr(Q, query)).fetchone()
        queued = int(row["n"]) if row else 0
        click.echo(f"queued {queued} row(s)")
        if wait is None or queued == 0:
            return
        deadline = time.monotonic() + wait
        while True:
            p = conn.execute(Q.sync_progress, (qbo_type,)).fetchone()
            assert p is not None
            done = max(queued - int(p["left"]), 0)
            click.echo(f"\r  {done}/{queued} pushed, {p['left']} left, {p['dead']} dead   ",
                       nl=False)
            if p["left"] == 0:
                click.echo()
                return
            if time.monotonic() >= deadline:
                click.echo()
                click.secho(f"qbsync: {p['left']} row(s) still queued after {wait:g} s",
                            fg="yellow", err=True)
                sys.exit(EXIT_TIMEOUT)
            time.sleep(POLL)



@click.command("retry-dead")
@click.option("--entity", help="Only this entity's dead rows.")
@click.option("--key", help="Only this key's dead rows.")
@database_option
@operator_errors
def retry_dead_command(entity: str | None, key: str | None, database_url: str | None) -> None:
    """Put dead rows (qbsync.failed) back in the queue with their tries reset."""
    with connect_rows(database_url) as conn:
        row = conn.execute(Q.retry_dead, (entity, key)).fetchone()
    n = int(row["n"]) if row else 0
    click.echo(f"{n} dead row(s) queued again" if n else "no dead rows matched")


COMMANDS: tuple[click.Command, ...] = (resync_command, sync_command, retry_dead_command)
