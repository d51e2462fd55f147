"""`qbsync reconcile` and `drift`: where QuickBooks and the shop disagree. reconcile asks the
daemon to compare a period's documents with the shop's ledger (and waits; Ctrl-C withdraws
the request); drift lists the changes made in QuickBooks to objects qbsync pushed, and
resolves them."""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import click
import psycopg

from .cli_common import (
    EXIT_FAILURE,
    cell,
    connect_rows,
    database_option,
    exit_failed,
    json_option,
    money,
    operator_errors,
    print_json,
    table,
    wait_for_request,
)
from .queries import load_cli

Q = load_cli()


# --- drift and reconciliation -----------------------------------------------------------------

@click.command("drift")
@click.option("--resolve", "resolve", type=int, metavar="ID", help="Resolve drift ID.")
@click.option("--push", "action", flag_value="push",
              help="With --resolve: push the shop's version to QuickBooks again.")
@click.option("--accept", "action", flag_value="accept",
              help="With --resolve: keep QuickBooks' version and record it.")
@json_option
@database_option
@operator_errors
def drift_command(resolve: int | None, action: str | None, as_json: bool,
                  database_url: str | None) -> None:
    """Changes made in QuickBooks outside qbsync (qbsync.drift); --resolve ID --push|--accept.

    --push queues the shop's version again (a deleted object is re-created); --accept keeps
    QuickBooks' version (qbsync.entity_map takes it, the shop row is told, nothing is pushed).
    """
    if (resolve is None) != (action is None):
        raise click.UsageError("--resolve ID goes with --push or --accept")
    with connect_rows(database_url) as conn:
        if resolve is not None:
            row = conn.execute(Q.resolve_drift, (resolve, action)).fetchone()
            click.echo(f"drift {resolve} {row['r'] if row else action}"
                       + ("; the daemon pushes the shop's version" if action == "push" else ""))
            return
        rows = conn.execute(Q.open_drift).fetchall()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no open drift")
        return
    click.echo(table(("id", "entity", "key", "QuickBooks", "id", "change", "what changed",
                      "detected"),
                     [(r["id"], r["entity"], r["key"], r["qbo_type"], r["qbo_id"], r["change"],
                       _what_changed(r["fields"] or {}), r["detected_at"]) for r in rows],
                     max_width=90))
    click.echo(f"{len(rows)} open drift(s); resolve with --resolve ID --push or --accept")


def _what_changed(fields: dict[str, Any]) -> str:
    """"TotalAmt: 55.3 → 42.4; Lines changed": values in full when they are short."""
    parts = []
    for name in sorted(fields, key=lambda n: (isinstance((fields[n] or {}).get("qbsync"),
                                                         (dict, list)), n)):
        change = fields[name] or {}
        ours, theirs = change.get("qbsync"), change.get("quickbooks")
        if isinstance(ours, (dict, list)) or isinstance(theirs, (dict, list)):
            parts.append(f"{name} changed")
        else:
            parts.append(f"{name}: {cell(ours) or '-'} → {cell(theirs) or '-'}")
    return "; ".join(parts)


def reconciliation(conn: psycopg.Connection[dict[str, Any]], run_id: int
                   ) -> dict[str, Any]:
    """A finished reconciliation: the run, its totals and its differences."""
    run = conn.execute(Q.reconcile_run, (run_id,)).fetchone()
    if run is None:
        exit_failed(f"reconciliation {run_id} does not exist")
    assert run is not None
    return {"run_id": run_id, **run,
            "totals": conn.execute(Q.reconcile_totals, (run_id,)).fetchall(),
            "problems": conn.execute(Q.reconcile_problems, (run_id,)).fetchall()}


def print_reconciliation(conn: psycopg.Connection[dict[str, Any]], run_id: int) -> int:
    """Prints a finished reconciliation; returns how many documents differ."""
    found = reconciliation(conn, run_id)
    run, totals, problems = found, found["totals"], found["problems"]
    click.echo(f"Reconciliation {run['from_date']} .. {run['to_date']}, company "
               f"{run['realm_id']} (run {run_id})")
    click.echo(table(
        ("", "QuickBooks type", "shop", "shop total", "QuickBooks", "QuickBooks total",
         "difference", "ok", "missing in QB", "missing in shop", "amount differs",
         "date differs"),
        [(t["what"], t["qbo_type"], t["shop_count"], money(t["shop_total"]), t["qbo_count"],
          money(t["qbo_total"]), money(t["difference"]), t["ok"],
          t["missing_in_quickbooks"], t["missing_in_shop"], t["amount_differs"],
          t["date_differs"]) for t in totals]))
    if not problems:
        click.echo("\nno differences")
        return 0
    click.echo()
    click.echo(table(("status", "type", "entity", "key", "number", "QuickBooks id", "shop",
                      "QuickBooks", "date", "note", "fix"),
                     [(p["status"], p["qbo_type"], p["entity"], p["key"], p["doc_number"],
                       p["qbo_id"], money(p["shop_amount"]), money(p["qbo_amount"]),
                       p["txn_date"], p["note"], p["fix"]) for p in problems], max_width=80))
    click.echo(f"{len(problems)} difference(s)")
    return len(problems)


@click.command("reconcile")
@click.option("--from", "from_date", type=click.DateTime(("%Y-%m-%d",)), required=True,
              help="First day (TxnDate, inclusive).")
@click.option("--to", "to_date", type=click.DateTime(("%Y-%m-%d",)), required=True,
              help="Last day (inclusive).")
@click.option("--fix", is_flag=True,
              help="Queue the fixes: push again (forced) what is missing or different in "
                   "QuickBooks, re-creating what was deleted there.")
@click.option("--wait", type=click.FloatRange(0), default=120.0, show_default=True,
              metavar="SECONDS",
              help="How long to wait for the daemon to read QuickBooks (exit 4 on timeout; "
                   "Ctrl-C withdraws the request).")
@json_option
@database_option
@operator_errors
def reconcile_command(from_date: datetime, to_date: datetime, fix: bool, wait: float,
                      as_json: bool, database_url: str | None) -> None:
    """Compare the shop's invoices, payments and refunds of a period with QuickBooks'.

    Counts, totals, documents missing on either side, amounts and dates that differ. Exit 0
    when everything matches (or --fix queued the fixes), 1 when differences remain.
    """
    if from_date > to_date:
        raise click.UsageError("--from is after --to")
    with connect_rows(database_url) as conn:
        row = conn.execute(Q.request_reconcile, (from_date.date(), to_date.date())).fetchone()
        assert row is not None
        request_id = int(row["id"])
        done = wait_for_request(conn, request_id, wait, "reconciliation", database_url)
        if done["state"] == "failed":
            exit_failed(f"reconciliation failed: {done['error']}")
        run_id = int((done["result"] or {})["run_id"])
        if as_json:
            found = reconciliation(conn, run_id)
            differences = len(found["problems"])
            found["fixes_queued"] = None
            if fix and differences:
                fixed = conn.execute(Q.reconcile_fix, (run_id,)).fetchone()
                found["fixes_queued"] = int(fixed["n"]) if fixed else 0
            print_json(found)
            left = differences - (found["fixes_queued"] or 0) if fix else differences
            if left > 0:
                sys.exit(EXIT_FAILURE)
            return
        differences = print_reconciliation(conn, run_id)
        if fix and differences:
            fixed = conn.execute(Q.reconcile_fix, (run_id,)).fetchone()
            n = int(fixed["n"]) if fixed else 0
            click.echo(f"queued {n} fix(es): the daemon pushes them"
                       + (f"; {differences - n} left to a human (see the notes)"
                          if differences > n else ""))
            if differences > n:
                sys.exit(EXIT_FAILURE)
            return
    if differences:
        sys.exit(EXIT_FAILURE)


COMMANDS: tuple[click.Command, ...] = (drift_command, reconcile_command)
