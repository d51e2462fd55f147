"""Admin commands of the `qbsync` CLI: the SQL admin surface (migration 0004) for operators.

Every command is a thin client of a view or function in schema qbsync, so psql users and CLI
users get the same behaviour. Every command that reads takes --json. A command waiting for
the daemon (report --wait, test-connection, reconcile) withdraws its request on Ctrl-C
(exit 130), so that no daemon runs it later. Exit codes: see `qbsync --help`.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import click
import psycopg
from psycopg.rows import dict_row

from .cli import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_TIMEOUT,
    connect_checked,
    conninfo,
    database_option,
    json_option,
    jsonable,
    operator_errors,
    print_json,
)
from .queries import load_cli

PAGE_SIZE = 50
COUNT_CAP = 50_000  # logs: rows counted at most for "page N of M"
LOG_STATUSES = ("success", "failed", "retry", "dead", "skipped", "info")
POLL = 0.5
Q = load_cli()


def _connect(database_url: str | None) -> psycopg.Connection[dict[str, Any]]:
    """A connection to a database whose schema is this qbsync's (else exit 5)."""
    return connect_checked(database_url, autocommit=True, row_factory=dict_row)


# --- formatting ---------------------------------------------------------------------------

def _fmt(value: Any) -> str:
    """One cell: readable, compact (intervals to the second, times without microseconds)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        days, rest = divmod(abs(seconds), 86400)
        hours, rest = divmod(rest, 3600)
        minutes, secs = divmod(rest, 60)
        text = f"{hours:d}:{minutes:02d}:{secs:02d}"
        return ("-" if seconds < 0 else "") + (f"{days}d {text}" if days else text)
    if isinstance(value, datetime):
        return value.astimezone().strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return " ".join(str(value).split())


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], *,
          max_width: int = 70) -> str:
    """A plain text table: header, dashes, one line per row; cells clipped to max_width."""
    cells = [[str(h) for h in headers]]
    for row in rows:
        texts = [_fmt(c) for c in row]
        cells.append([t if len(t) <= max_width else t[: max_width - 1] + "…" for t in texts])
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, default=jsonable)


def _wait_for_request(conn: psycopg.Connection[dict[str, Any]], request_id: int,
                      seconds: float, what: str, database_url: str | None
                      ) -> dict[str, Any]:
    """The finished admin request, or exit 4 when the daemon did not answer in time; on
    Ctrl-C the request is withdrawn (exit 130), so that no daemon runs it later."""
    try:
        click.echo(f"waiting for the daemon ({what}, admin request {request_id}; Ctrl-C "
                   "withdraws it)…", err=True)
        return _poll_request(conn, request_id, seconds, what)
    except KeyboardInterrupt:
        state = _withdraw(conn, request_id, database_url)
        click.echo("", err=True)
        if state == "withdrawn":
            click.echo(f"qbsync: interrupted; admin request {request_id} withdrawn (no daemon "
                       "had taken it)", err=True)
        else:
            click.echo(f"qbsync: interrupted; admin request {request_id} is {state}: a daemon "
                       "took it before the withdrawal and records its answer", err=True)
        sys.exit(EXIT_INTERRUPTED)


def _withdraw(conn: psycopg.Connection[dict[str, Any]], request_id: int,
              database_url: str | None) -> str:
    """qbsync.withdraw_request; on a fresh connection when the interrupted one is unusable
    (Ctrl-C during a query cancels it)."""
    try:
        row = conn.execute(Q.withdraw_request, (request_id,)).fetchone()
    except psycopg.Error:
        with psycopg.connect(conninfo(database_url), autocommit=True,
                             row_factory=dict_row) as fresh:
            row = fresh.execute(Q.withdraw_request, (request_id,)).fetchone()
    return str(row["state"]) if row else "gone"


def _poll_request(conn: psycopg.Connection[dict[str, Any]], request_id: int,
                  seconds: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while True:
        row = conn.execute(Q.admin_request_state, (request_id,)).fetchone()
        if row is None:
            raise click.ClickException(f"admin request {request_id} disappeared")
        if row["state"] in ("done", "failed"):
            return row
        if time.monotonic() >= deadline:
            click.secho(f"qbsync: no answer from the daemon within {seconds:g} s ({what}, "
                        f"request {request_id} is {row['state']}; is `qbsync run` running?)",
                        fg="yellow", err=True)
            sys.exit(EXIT_TIMEOUT)
        time.sleep(POLL)


def _failed(message: str) -> None:
    click.secho(f"qbsync: {message}", fg="red", err=True)
    sys.exit(EXIT_FAILURE)


# --- status -----------------------------------------------------------------------------------

_DASHBOARD_LABELS = (
    ("company_name", "company"),
    ("realm_id", "realm"),
    ("connection_status", "connection"),
    ("orders_synced_today", "orders synced today"),
    ("orders_synced_this_month", "orders synced this month"),
    ("orders_synced_total", "orders synced in total"),
    ("orders_pending", "orders without an invoice"),
    ("pushes_today", "successful pushes today"),
    ("errors_today", "errors today"),
    ("error_rate_today", "error rate today (%)"),
    ("queue_depth", "queue: pending"),
    ("queue_running", "queue: running"),
    ("oldest_pending_age", "oldest pending for"),
    ("dead", "dead rows"),
    ("daemons_alive", "daemons alive"),
    ("open_notices", "open notices"),
)


@click.command("status")
@click.option("--json", "as_json", is_flag=True,
              help="Print the dashboard row as JSON (with the per-entity queue as \"queue\").")
@database_option
@operator_errors
def status_command(as_json: bool, database_url: str | None) -> None:
    """The dashboard: connection, orders synced, errors, queue, open notices.

    Reads the view qbsync.dashboard (days in the setting dashboard_time_zone).
    """
    with _connect(database_url) as conn:
        row = conn.execute(Q.dashboard).fetchone()
        assert row is not None
        entities = conn.execute(Q.queue_health_entities).fetchall()
    if as_json:
        print_json({**row, "queue": entities})
        return
    # an unknown count says why (the mapping has no <entity>_unsynced_count(), or it failed)
    shown = {**row, "orders_pending": row["orders_pending"] if row["orders_pending"] is not None
             else row.get("orders_pending_note")}
    click.echo(table(("", "value"), [(label, shown[name]) for name, label in _DASHBOARD_LABELS]))
    if entities:
        click.echo()
        click.echo(table(("entity", "pending", "running", "dead", "ready now",
                          "expired leases", "oldest pending"),
                         [tuple(e.values()) for e in entities]))
    if row["open_notices"]:
        click.echo(f"\n{row['open_notices']} open notice(s): qbsync notices")


# --- logs -------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class Since(click.ParamType):
    """A time: "10m", "2h", "3d", "1w" ago, or an ISO date/time (local time when it has no
    offset)."""

    name = "TIME"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        relative = _DURATION.fullmatch(text)
        if relative:
            ago = float(relative[1]) * _UNITS[relative[2]]
            return datetime.now(UTC) - timedelta(seconds=ago)
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            self.fail(f"{text!r} is neither a duration (30s, 10m, 2h, 3d, 1w) nor an ISO date "
                      "or time (2025-01-31, 2025-01-31T08:00)", param, ctx)
        return moment if moment.tzinfo else moment.astimezone()


FOLLOW_BATCH = 1000
# Rows are stamped with their transaction's start: one that commits later than rows stamped
# after it is still shown if it commits within this many seconds.
FOLLOW_LOOKBACK = timedelta(seconds=10)


@click.command("logs")
@click.option("--status", type=click.Choice(LOG_STATUSES), help="Only rows with this status.")
@click.option("--operation", help="Only this operation (create, update, void, skip, resync...).")
@click.option("--entity", help="Only this entity (order, customer, product...).")
@click.option("--key", help="Only this key (with --entity: one shop row's history).")
@click.option("--since", type=Since(),
              help="Only rows from this time on: 30s, 10m, 2h, 3d, 1w ago, or an ISO date "
                   "or time.")
@click.option("--follow", "-f", is_flag=True,
              help="Print rows as they are written, oldest first, until Ctrl-C (from --since, "
                   "else the last 10).")
@click.option("--page", type=click.IntRange(1), default=1, show_default=True,
              help=f"Page of {PAGE_SIZE} rows, newest first.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object a line (so that --follow streams), for scripts.")
@database_option
@operator_errors
def logs_command(status: str | None, operation: str | None, entity: str | None,
                 key: str | None, since: datetime | None, follow: bool, page: int,
                 as_json: bool, database_url: str | None) -> None:
    """The sync log (qbsync.sync_logs), newest first, 50 rows a page; --follow to watch it."""
    filters = {"status": status, "operation": operation, "entity": entity, "key": key,
               "since": since}
    with _connect(database_url) as conn:
        if follow:
            for row in _follow(conn, filters, since):
                click.echo(_json_line(row) if as_json else _log_line(row))
            return
        rows = conn.execute(Q.sync_logs_page, {**filters, "limit": PAGE_SIZE,
                                               "offset": (page - 1) * PAGE_SIZE}).fetchall()
        counted = (None if as_json else
                   conn.execute(Q.sync_logs_count, {**filters, "cap": COUNT_CAP + 1}).fetchone())
    if as_json:
        for row in rows:
            click.echo(_json_line(row))
        return
    n = int(counted["n"]) if counted else 0
    pages = max(1, math.ceil(min(n, COUNT_CAP) / PAGE_SIZE))
    of = f"{pages}+" if n > COUNT_CAP else str(pages)
    if rows:
        rows = [{k: v for k, v in r.items() if k != "id"} for r in rows]
        click.echo(table(("at", "entity", "key", "operation", "status", "message", "code", "ms"),
                         [tuple(r.values()) for r in rows], max_width=60))
    else:
        click.echo("no log rows" + (" on this page" if page > 1 else ""))
    click.echo(f"page {page} of {of}")


def _follow(conn: psycopg.Connection[dict[str, Any]], filters: dict[str, Any],
            since: datetime | None) -> Iterator[dict[str, Any]]:
    """The log rows matching `filters`, oldest first, then each new one as it is written."""
    if since is None:  # like tail -f: the last 10 first
        last = conn.execute(Q.sync_logs_page, {**filters, "limit": 10, "offset": 0}).fetchall()
        yield from reversed(last)
        since = last[0]["at"] if last else datetime.now(UTC)
        seen = {r["id"]: r["at"] for r in last}
    else:
        seen = {}
    floor = since
    cursor: tuple[datetime, int] = (since, 0)
    while True:
        while True:  # until caught up
            rows = conn.execute(Q.sync_logs_after, {**filters, "after_at": cursor[0],
                                                    "after_id": cursor[1],
                                                    "limit": FOLLOW_BATCH}).fetchall()
            for row in rows:
                if row["id"] not in seen:
                    seen[row["id"]] = row["at"]
                    yield row
            if len(rows) < FOLLOW_BATCH:
                break
            cursor = (rows[-1]["at"], rows[-1]["id"])  # a full batch: page on, no lookback
        newest = max(seen.values(), default=floor)
        horizon = max(newest - FOLLOW_LOOKBACK, floor)
        seen = {i: at for i, at in seen.items() if at >= horizon}
        cursor = (horizon, 0)
        time.sleep(POLL)


def _log_line(row: dict[str, Any]) -> str:
    code = f" [{row['code']}]" if row.get("code") else ""
    ms = f" {row['ms']} ms" if row.get("ms") is not None else ""
    return (f"{_fmt(row['at'])}  {row['entity']} {row['key']}  {row['operation']} "
            f"{row['status']}{code}{ms}  {_fmt(row['message'])}").rstrip()


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
    with _connect(database_url) as conn:
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
    with _connect(database_url) as conn:
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


@click.command("failed")
@click.option("--entity", help="Only this entity's dead rows.")
@click.option("--limit", type=click.IntRange(1), default=200, show_default=True,
              help="At most this many rows, most recent first.")
@json_option
@database_option
@operator_errors
def failed_command(entity: str | None, limit: int, as_json: bool,
                   database_url: str | None) -> None:
    """Dead rows (qbsync.failed): out of tries or refused for good, with the error and the
    call that retries them (or: qbsync retry-dead --entity E --key K)."""
    with _connect(database_url) as conn:
        rows = conn.execute(Q.failed_rows, {"entity": entity, "limit": limit + 1}).fetchall()
    more = len(rows) > limit
    rows = rows[:limit]
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no dead rows")
        return
    click.echo(table(("entity", "key", "error", "code", "tries", "last try", "queued again"),
                     [(r["entity"], r["key"], r["last_error"], r["last_error_code"],
                       f"{r['attempts']}/{r['max_attempts'] or '?'}", r["last_attempt_at"],
                       r["queued_again"]) for r in rows], max_width=80))
    click.echo(f"{len(rows)}{'+' if more else ''} dead row(s); retry with qbsync retry-dead "
               "--entity E --key K (or all: qbsync retry-dead)")


@click.command("retry-dead")
@click.option("--entity", help="Only this entity's dead rows.")
@click.option("--key", help="Only this key's dead rows.")
@database_option
@operator_errors
def retry_dead_command(entity: str | None, key: str | None, database_url: str | None) -> None:
    """Put dead rows (qbsync.failed) back in the queue with their tries reset."""
    with _connect(database_url) as conn:
        row = conn.execute(Q.retry_dead, (entity, key)).fetchone()
    n = int(row["n"]) if row else 0
    click.echo(f"{n} dead row(s) queued again" if n else "no dead rows matched")


# --- requests answered by the daemon ----------------------------------------------------------

def _money(value: Any) -> str:
    return "" if value is None else f"{Decimal(str(value)):,.2f}"


def print_comparison(row: dict[str, Any]) -> None:
    click.echo(f"ProfitAndLoss {row['start_date']} .. {row['end_date']} ({row['period']}), "
               f"company {row['realm_id']}")
    click.echo(table(("", "QuickBooks", "shop"), [
        ("income, net of VAT", _money(row["qbo_income"]), _money(row["shop_revenue_net"])),
        ("difference", _money(row["difference"]), row["verdict"]),
        ("sales incl. VAT", "", _money(row["shop_revenue_gross"])),
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
    with _connect(database_url) as conn:
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
        done = _wait_for_request(conn, request_id, wait, "report", database_url)
        if done["state"] == "failed":
            _failed(f"report failed: {done['error']}")
        report_id = (done["result"] or {}).get("report_id")
        comparison = conn.execute(Q.report_comparison, (report_id,)).fetchone()
    if comparison is None:
        _failed(f"report {report_id} is not in qbsync.report_comparison")
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
    with _connect(database_url) as conn:
        row = conn.execute(Q.request_connection_test).fetchone()
        assert row is not None
        request_id = int(row["id"])
        if wait == 0:
            if as_json:
                print_json({"request_id": request_id})
                return
            click.echo(f"connection test requested (admin request {request_id})")
            return
        done = _wait_for_request(conn, request_id, wait, "connection test", database_url)
    if done["state"] == "failed":
        _failed(f"connection test failed: {done['error']}")
    r = done["result"] or {}
    if as_json:
        print_json({"request_id": request_id, **r})
        return
    click.echo(f"QuickBooks answered: {r.get('company_name')} (realm {r.get('realm_id')}), "
               f"{r.get('round_trip_ms')} ms round trip"
               + (f", home currency {r['home_currency']}" if r.get("home_currency") else ""))


# --- notices ----------------------------------------------------------------------------------

@click.command("notices")
@click.option("--ack", "ack", type=int, metavar="ID", help="Acknowledge notice ID.")
@click.option("--ack-all", is_flag=True, help="Acknowledge every open notice.")
@json_option
@database_option
@operator_errors
def notices_command(ack: int | None, ack_all: bool, as_json: bool,
                    database_url: str | None) -> None:
    """Open notices (dead rows, a company to reconnect, report differences); --ack to clear."""
    if ack is not None and ack_all:
        raise click.UsageError("--ack and --ack-all exclude each other")
    with _connect(database_url) as conn:
        if ack is not None:
            row = conn.execute(Q.acknowledge, (ack,)).fetchone()
            click.echo(f"notice {ack} acknowledged" if row and row["ok"]
                       else f"notice {ack} was acknowledged already")
            return
        if ack_all:
            row = conn.execute(Q.acknowledge_all).fetchone()
            click.echo(f"{row['n'] if row else 0} notice(s) acknowledged")
            return
        rows = conn.execute(Q.open_notices).fetchall()
    if as_json:
        print_json(rows)
        return
    if not rows:
        click.echo("no open notices")
        return
    click.echo(table(("id", "severity", "kind", "message", "times", "last seen"),
                     [(r["id"], r["severity"], r["kind"], r["message"], r["occurrences"],
                       r["last_seen_at"]) for r in rows], max_width=90))
    click.echo(f"{len(rows)} open notice(s); acknowledge with --ack ID or --ack-all")


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
    with _connect(database_url) as conn:
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
            parts.append(f"{name}: {_fmt(ours) or '-'} → {_fmt(theirs) or '-'}")
    return "; ".join(parts)


def reconciliation(conn: psycopg.Connection[dict[str, Any]], run_id: int
                   ) -> dict[str, Any]:
    """A finished reconciliation: the run, its totals and its differences."""
    run = conn.execute(Q.reconcile_run, (run_id,)).fetchone()
    if run is None:
        _failed(f"reconciliation {run_id} does not exist")
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
        [(t["what"], t["qbo_type"], t["shop_count"], _money(t["shop_total"]), t["qbo_count"],
          _money(t["qbo_total"]), _money(t["difference"]), t["ok"],
          t["missing_in_quickbooks"], t["missing_in_shop"], t["amount_differs"],
          t["date_differs"]) for t in totals]))
    if not problems:
        click.echo("\nno differences")
        return 0
    click.echo()
    click.echo(table(("status", "type", "entity", "key", "number", "QuickBooks id", "shop",
                      "QuickBooks", "date", "note", "fix"),
                     [(p["status"], p["qbo_type"], p["entity"], p["key"], p["doc_number"],
                       p["qbo_id"], _money(p["shop_amount"]), _money(p["qbo_amount"]),
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
    with _connect(database_url) as conn:
        row = conn.execute(Q.request_reconcile, (from_date.date(), to_date.date())).fetchone()
        assert row is not None
        request_id = int(row["id"])
        done = _wait_for_request(conn, request_id, wait, "reconciliation", database_url)
        if done["state"] == "failed":
            _failed(f"reconciliation failed: {done['error']}")
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


ADMIN_COMMANDS: tuple[click.Command, ...] = (
    status_command, logs_command, failed_command, resync_command, sync_command,
    retry_dead_command, report_command, test_connection_command, notices_command,
    drift_command, reconcile_command,
)
