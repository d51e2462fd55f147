"""What the `qbsync` commands share: the exit codes (listed in `qbsync --help`), the
--database-url and --json options, expected failures as one line and a stable exit code, the
connection whose schema is checked first (`qbsync.schema`), plain tables, and waiting for an
admin request the daemon answers (withdrawn on Ctrl-C)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from functools import wraps
from typing import Any, NoReturn, TypeVar

import asyncpg
import click
import psycopg
from psycopg.rows import dict_row

from . import schema
from .config import load_settings
from .errors import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SCHEMA,
    EXIT_TIMEOUT,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    DatabaseUnreachable,
    QbsyncError,
    describe_db_error,
    exit_code,
    one_line,
)
from .operator_db import DatabaseUnavailable
from .queries import load_cli

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

# the exit codes, for the command modules to import from here
__all__ = ["EXIT_FAILURE", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_SCHEMA", "EXIT_TIMEOUT",
           "EXIT_UNAVAILABLE", "EXIT_USAGE"]

POLL = 0.5  # seconds between two looks at what the daemon did
Q = load_cli()


# --- options shared by the commands ------------------------------------------------------------

def database_option(fn: F) -> F:
    return click.option(
        "--database-url",
        envvar="QBSYNC_DATABASE_URL",
        show_envvar=True,
        help="Shop database (libpq URL or key=value string). Default: the config file, "
        "else libpq's defaults (PGHOST, PGDATABASE, ...).",
    )(fn)


def json_option(fn: F) -> F:
    return click.option("--json", "as_json", is_flag=True,
                        help="Print JSON (for scripts) instead of a table.")(fn)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2, default=jsonable))


def jsonable(value: Any) -> Any:
    """JSON for what the database returns: intervals in seconds, times in ISO 8601."""
    from datetime import date, timedelta
    from decimal import Decimal

    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, date):  # datetime too
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return str(value)


# --- errors: one line, a stable exit code -------------------------------------------------------

# SQLSTATE classes of a connection that failed or was refused (psycopg gives none for a
# connection libpq could not open at all)
_UNREACHABLE = ("08", "28", "3D", "57P01", "57P02", "57P03", "53300")


def unreachable(exc: BaseException) -> bool:
    if isinstance(exc, DatabaseUnreachable):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = exc.sqlstate
        return state is None or state.startswith(_UNREACHABLE)
    return False


def fail(exc: BaseException) -> NoReturn:
    """Print `exc` as one line and exit with its code."""
    if unreachable(exc):
        message, code = f"cannot reach the database: {describe_db_error(exc)}", EXIT_UNAVAILABLE
    elif isinstance(exc, QbsyncError):
        message, code = one_line(exc), exit_code(exc)
    else:
        message, code = describe_db_error(exc), EXIT_FAILURE
    click.secho(f"qbsync: {message}", fg="red", err=True)
    sys.exit(code)


def operator_errors(fn: F) -> F:
    """Turn expected failures into one clear line and a stable exit code, no traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (QbsyncError, psycopg.Error) as exc:
            fail(exc)

    return wrapper  # type: ignore[return-value]


def warn(message: str) -> None:
    click.secho(f"qbsync: warning: {message}", fg="yellow", err=True)


# --- the database, its schema checked -----------------------------------------------------------

def conninfo(database_url: str | None) -> str:
    """The effective database conninfo (an unparsable one is a usage error, exit 2)."""
    return load_settings(database_url=database_url).database_url


def connect_checked(database_url: str | None, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection to a database whose schema is this qbsync's (`SchemaError`, exit 5,
    otherwise)."""
    conn = psycopg.connect(conninfo(database_url), **kwargs)
    try:
        schema.check(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def require_schema(database_url: str | None) -> str:
    """Check the schema first (for commands that open their own connections); returns the
    conninfo."""
    url = conninfo(database_url)
    with psycopg.connect(url, autocommit=True) as conn:
        schema.check(conn)
    return url


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; an unreachable database exits 3 and a database error exits 1, with
    one line each (like `operator_errors` does for psycopg)."""
    try:
        return asyncio.run(coro)
    except DatabaseUnavailable as exc:
        click.secho(f"qbsync: cannot reach the database: {exc}", fg="red", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    except asyncpg.PostgresError as exc:
        click.secho(f"qbsync: {describe_db_error(exc)}", fg="red", err=True)
        sys.exit(EXIT_FAILURE)


def connect_rows(database_url: str | None) -> psycopg.Connection[dict[str, Any]]:
    """An autocommit connection returning dicts, to a database whose schema is this qbsync's
    (else exit 5)."""
    return connect_checked(database_url, autocommit=True, row_factory=dict_row)


# --- plain tables ---------------------------------------------------------------------------

def cell(value: Any) -> str:
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
        texts = [cell(c) for c in row]
        cells.append([t if len(t) <= max_width else t[: max_width - 1] + "…" for t in texts])
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def json_line(row: dict[str, Any]) -> str:
    return json.dumps(row, ensure_ascii=False, default=jsonable)


# --- admin requests the daemon answers -------------------------------------------------------

def wait_for_request(conn: psycopg.Connection[dict[str, Any]], request_id: int,
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


def exit_failed(message: str) -> None:
    click.secho(f"qbsync: {message}", fg="red", err=True)
    sys.exit(EXIT_FAILURE)



def money(value: Any) -> str:
    return "" if value is None else f"{Decimal(str(value)):,.2f}"
