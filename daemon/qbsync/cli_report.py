"""`qbsync report` and `test-connection`: admin requests the running daemon answers from
QuickBooks (a Profit and Loss next to the shop's revenue; CompanyInfo and Preferences). The
command waits for the answer and withdraws its request on Ctrl-C (exit 130), so that no
daemon runs it later."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from .cli_common import (
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


# --- requests answered by the daemon ----------------------------------------------------------

def print_comparison(row: dict[str, Any]) -> None:
    click.echo(f"ProfitAndLoss {row['start_date']} .. {row['end_date']} ({row['period']}), "
               f"company {row['realm_id']}")
    click.echo(table(("", "QuickBooks", "shop"), [
        ("income, net of VAT", money(row["qbo_income"]), money(row["shop_revenue_net"])),
        ("difference", money(row["difference"]), row["verdict"]),
        ("sales incl. VAT", "", money(row["shop_revenue_gross"])),
        ("orders", "", row["shop_orders"]),
    ]))


@click.command("report")
@click.option("--period", type=click.Choice(("week", "month", "quarter", "year")),
              help="The current week (Mon-Sun), month, quarter or year.")
@click.option("--from", "from_date", type=click.DateTime(("%Y-%m-%d",)),
              help="First day (with --to, instead of --period).")
@click.option("--to", "to_date", type=click.DateTime(("%Y-%m-%d",)), help="Last day.")
@click.option("--wait", type=click.FloatRange(0), default=None, metavar="SECONDS",
              help="Wait for the daemon to fetch it and print QuickBooks vs the shop "
                   "(exit 4 if it does not within SECONDS, 1 if QuickBooks refused; Ctrl-C "
                   "withdraws the request).")
@json_option
@database_option
@operator_errors
def report_command(period: str | None, from_date: datetime | None, to_date: datetime | None,
                   wait: float | None, as_json: bool, database_url: str | None) -> None:
    """Ask the daemon for QuickBooks' ProfitAndLoss and compare its income with the shop's.

    The result lands in qbsync.report_comparison (both sides net of VAT).
    """
    if (period is None) == (from_date is None and to_date is None):
        raise click.UsageError("give either --period or --from and --to")
    if period is None and (from_date is None or to_date is None):
        raise click.UsageError("--from and --to go together")
    if from_date is not None and to_date is not None and from_date > to_date:
        raise click.UsageError("--from is after --to")
    with connect_rows(database_url) as conn:
        if period is not None:
            row = conn.execute(Q.request_report_period, (period,)).fetchone()
        else:
            assert from_date is not None
            assert to_date is not None
            row = conn.execute(Q.request_report_dates,
                               (from_date.date(), to_date.date())).fetchone()
        assert row is not None
        request_id = int(row["id"])
        if wait is None:
            if as_json:
                print_json({"request_id": request_id})
                return
            click.echo(f"report requested (admin request {request_id}); the daemon fetches it: "
                       "SELECT * FROM qbsync.report_comparison")
            return
        done = wait_for_request(conn, request_id, wait, "report", database_url)
        if done["state"] == "failed":
            exit_failed(f"report failed: {done['error']}")
        report_id = (done["result"] or {}).get("report_id")
        comparison = conn.execute(Q.report_comparison, (report_id,)).fetchone()
    if comparison is None:
        exit_failed(f"report {report_id} is not in qbsync.report_comparison")
    elif as_json:
        print_json({"request_id": request_id, **comparison})
    else:
        print_comparison(comparison)


@click.command("test-connection")
@click.option("--wait", type=click.FloatRange(0), default=30.0, show_default=True,
              metavar="SECONDS",
              help="How long to wait for the daemon's answer (0: just ask; exit 4 on timeout; "
                   "Ctrl-C withdraws the request).")
@json_option
@database_option
@operator_errors
def test_connection_command(wait: float, as_json: bool, database_url: str | None) -> None:
    """Ask the daemon to call QuickBooks (CompanyInfo, Preferences) and show the round trip."""
    with connect_rows(database_url) as conn:
        row = conn.execute(Q.request_connection_test).fetchone()
        assert row is not None
        request_id = int(row["id"])
        if wait == 0:
            if as_json:
                print_json({"request_id": request_id})
                return
            click.echo(f"connection test requested (admin request {request_id})")
            return
        done = wait_for_request(conn, request_id, wait, "connection test", database_url)
    if done["state"] == "failed":
        exit_failed(f"connection test failed: {done['error']}")
    r = done["result"] or {}
    if as_json:
        print_json({"request_id": request_id, **r})
        return
    click.echo(f"QuickBooks answered: {r.get('company_name')} (realm {r.get('realm_id')}), "
               f"{r.get('round_trip_ms')} ms round trip"
               + (f", home currency {r['home_currency']}" if r.get("home_currency") else ""))


COMMANDS: tuple[click.Command, ...] = (report_command, test_connection_command)
