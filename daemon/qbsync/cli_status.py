"""`qbsync status`, `logs`, `notices` and `failed`: what the sync did and what it needs, read
from the admin surface (the views of migration 0004 and later) as psql users read it. Each
takes --json."""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import click
import psycopg

from .cli_common import (
    POLL,
    cell,
    connect_rows,
    database_option,
    json_line,
    json_option,
    operator_errors,
    print_json,
    table,
)
from .queries import load_cli

Q = load_cli()
PAGE_SIZE = 50
COUNT_CAP = 50_000  # logs: rows counted at most for "page N of M"
LOG_STATUSES = ("success", "failed", "retry", "dead", "skipped", "info")


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
    with connect_rows(database_url) as conn:
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
    with connect_rows(database_url) as conn:
        if follow:
            for row in _follow(conn, filters, since):
                click.echo(json_line(row) if as_json else _log_line(row))
            return
        rows = conn.execute(Q.sync_logs_page, {**filters, "limit": PAGE_SIZE,
                                               "offset": (page - 1) * PAGE_SIZE}).fetchall()
        counted = (None if as_json else
                   conn.execute(Q.sync_logs_count, {**filters, "cap": COUNT_CAP + 1}).fetchone())
    if as_json:
        for row in rows:
            click.echo(json_line(row))
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
    return (f"{cell(row['at'])}  {row['entity']} {row['key']}  {row['operation']} "
            f"{row['status']}{code}{ms}  {cell(row['message'])}").rstrip()



# --- failed -----------------------------------------------------------------------------------

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
    with connect_rows(database_url) as conn:
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
    with connect_rows(database_url) as conn:
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


COMMANDS: tuple[click.Command, ...] = (status_command, logs_command, failed_command,
                                       notices_command)
