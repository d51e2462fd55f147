"""`qbsync demo`: the Dixis sample shop syncing to an emulated QuickBooks, with no setup.

PostgreSQL: ``--database-url`` (must answer), else QBSYNC_DATABASE_URL / the config file,
libpq's defaults, 127.0.0.1:5432 as postgres; when none answers, a throwaway cluster
(`TempCluster`). On that server the demo (re)creates its own database (``qbsync_demo``,
marked by a comment; a database of that name without the mark is never dropped), migrates
it, installs the shop, starts the emulator on a real socket (limits on, time scaled), connects
the company through the real OAuth flow (a headless browser), generates orders, runs the
daemon in this process until the queue drains, prints the dashboard and cleans up, also on
Ctrl-C. The token key is generated in memory and never written anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import asyncpg
import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from . import daemon, logs, shop
from .config import Settings, load_settings
from .connect import EMULATOR_DISCOVERY, Target, connect, headless_browser
from .errors import ConfigError, QbsyncError
from .local_qbo import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, EXTRA_HINT
from .migrate import migrate
from .pgcluster import TempCluster
from .queries import load_cli
from .vault import generate_key

if TYPE_CHECKING:
    from .emulator import Emulator
    from .emulator.server import EmulatorServer

DEMO_DB = "qbsync_demo"
DEMO_MARK = "qbsync demo database: dropped and recreated by `qbsync demo`"
COMPANY = "Dixis Α.Ε."
EXIT_INTERRUPTED = 130
STALL_SECONDS = 30  # no change in synced/queued/dead for this long: report what is stuck
Q = load_cli()
Echo = Callable[[str], None]


class Interrupted(QbsyncError):
    """Ctrl-C or SIGTERM."""


@dataclass
class DemoOptions:
    orders: int = 300
    time_scale: float = 60.0
    limits: bool = True
    database_url: str | None = None  # a server to use (its database is only the way in)
    strict: bool = False  # database_url was given explicitly: no fallback
    demo_db: str = DEMO_DB
    keep: bool = False
    timeout: float = 300.0
    seed: float = 0.42


# --- PostgreSQL ---------------------------------------------------------------------------

def as_url(conninfo: str, dbname: str) -> str:
    """A ``postgresql://`` URL (psycopg and asyncpg both read it) for ``dbname`` on the server
    of ``conninfo`` (a URL or key=value string; empty = libpq defaults)."""
    params = {k: str(v) for k, v in conninfo_to_dict(conninfo).items() if v is not None}
    params.pop("dbname", None)
    user, password = params.pop("user", ""), params.pop("password", "")
    host, port = params.pop("host", ""), params.pop("port", "")
    if host.startswith("/") or "," in host:
        params["host"] = host
        host = ""
    auth = quote(user, safe="") + (":" + quote(password, safe="") if password else "")
    netloc = (auth + "@" if auth else "") + host + (":" + port if port and host else "")
    if port and not host:
        params["port"] = port
    query = ("?" + urlencode(params)) if params else ""
    return f"postgresql://{netloc}/{quote(dbname, safe='')}{query}"


def _answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3, autocommit=True) as conn:
            conn.execute(Q.ping)
        return True
    except psycopg.Error:
        return False


def describe(url: str) -> str:
    """``user@host:port`` of a server (libpq fills in what the URL leaves out)."""
    with psycopg.connect(url, connect_timeout=3) as conn:
        info = conn.info
        version = info.server_version // 10000
        return f"{info.user}@{info.host}:{info.port} (PostgreSQL {version})"


def find_server(opts: DemoOptions) -> str | None:
    """The URL of the ``postgres`` database on the first server that answers."""
    if opts.database_url and opts.strict:
        url = as_url(opts.database_url, "postgres")
        with psycopg.connect(url, connect_timeout=5):  # OperationalError -> exit code 3
            return url
    candidates = [opts.database_url or ""]
    with contextlib.suppress(ConfigError):
        candidates.append(load_settings().database_url)
    candidates += ["", "host=127.0.0.1 port=5432 user=postgres"]
    seen: set[str] = set()
    for conninfo in candidates:
        url = as_url(conninfo, "postgres")
        if url not in seen and _answers(url):
            return url
        seen.add(url)
    return None


def recreate_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        row = conn.execute(Q.database_comment, (name,)).fetchone()
        if row is not None:
            if row[0] != DEMO_MARK:
                raise QbsyncError(f"database {name} exists and was not created by `qbsync "
                                  "demo`; it is left alone: choose another name with --demo-db")
            # composed here: a database name is an identifier (no parameters in DDL)
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS {}").format(
            sql.Identifier(name), sql.Literal(DEMO_MARK)))


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        # composed here: a database name is an identifier (no parameters in DDL)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@contextlib.contextmanager
def postgres(opts: DemoOptions, echo: Echo) -> Iterator[str]:
    """The admin URL of a server: found, or a throwaway cluster for the duration."""
    url = find_server(opts)
    if url is not None:
        echo(f"  PostgreSQL    {describe(url)}")
        yield url
        return
    echo("  PostgreSQL    none answered: starting a throwaway cluster (initdb)...")
    with TempCluster(keep=opts.keep) as cluster:
        echo(f"  PostgreSQL    {describe(cluster.url())}, files in {cluster.root}")
        yield cluster.url("postgres")
        if opts.keep:
            echo(f"  kept the cluster's files in {cluster.datadir} (start it with pg_ctl -D)")


# --- the run -----------------------------------------------------------------------------

def demo_settings(url: str, srv: EmulatorServer, opts: DemoOptions) -> Settings:
    return Settings(
        database_url=url, client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET,
        token_keys=generate_key("demo"),  # in memory only
        api_base_url=srv.base_url, oauth_discovery_url=srv.base_url + EMULATOR_DISCOVERY,
        allow_local_quickbooks=True,  # the emulator listens on 127.0.0.1, over http
        rate_limits=opts.limits, rate_time_scale=opts.time_scale, worker_name="qbsync-demo",
        poll_interval=0.5, shutdown_grace=5, log_level="WARNING", realm_id=None,
        metrics_listen="")


async def _progress(url: str, stop: asyncio.Event, runner: asyncio.Task[int],
                    opts: DemoOptions, echo_line: Callable[[str, bool], None]) -> bool:
    """Show synced/total until the queue drains; True when it drained."""
    started = time.monotonic()
    conn = await asyncpg.connect(url)
    try:
        total = await conn.fetchval(Q.demo_completed_orders)
        last_change, last = started, None
        while True:
            synced, queued, dead = await conn.fetchrow(Q.demo_progress)
            elapsed = time.monotonic() - started
            if (synced, queued, dead) != last:
                last_change, last = time.monotonic(), (synced, queued, dead)
            done = queued == 0
            width = 30
            filled = width * synced // total if total else width
            text = (f"  syncing       [{'#' * filled}{'.' * (width - filled)}] {synced}/{total} "
                    f"invoices · queue {queued} · dead {dead} · {elapsed:.1f} s")
            echo_line(text, done)
            if done:
                return True
            if stop.is_set():
                raise Interrupted("interrupted")
            if runner.done():
                runner.result()
                raise QbsyncError("the daemon stopped before the queue drained")
            stalled = time.monotonic() - last_change > STALL_SECONDS
            if elapsed > opts.timeout or stalled:
                echo_line(text, True)
                stuck = [f"{r['entity']} {r['key']}: {r['last_error'] or r['state']}"
                         for r in await conn.fetch(Q.demo_stuck)]
                why = (f"no progress for {STALL_SECONDS} s" if stalled else
                       f"the queue did not drain within {opts.timeout:.0f} s")
                raise QbsyncError(f"{why}; {queued} row(s) left, e.g. " + "; ".join(stuck))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    finally:
        await conn.close()


def _line_printer(echo: Echo) -> Callable[[str, bool], None]:
    tty = sys.stdout.isatty()
    last = [0.0]

    def show(text: str, final: bool) -> None:
        if tty:
            sys.stdout.write("\r" + text + ("\n" if final else ""))
            sys.stdout.flush()
        elif final or time.monotonic() - last[0] >= 2:
            echo(text)
            last[0] = time.monotonic()
    return show


async def _run_daemon(settings: Settings, stop: asyncio.Event, opts: DemoOptions,
                      echo: Echo) -> bool:
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    runner = asyncio.create_task(daemon.run(settings, stop=stop, on_ready=ready.set_result))
    try:
        done, _ = await asyncio.wait({runner, ready}, timeout=60,
                                     return_when=asyncio.FIRST_COMPLETED)
        if runner in done:
            runner.result()
            _check(stop)
            raise QbsyncError("the daemon stopped before it was ready")
        if not done:
            raise QbsyncError("the daemon was not ready within 60 s")
        _install_signals(stop)  # the daemon replaced them with its own stop.set
        return await _progress(settings.database_url, stop, runner, opts, _line_printer(echo))
    finally:
        stop.set()
        await asyncio.wait_for(runner, 60)


def _install_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)


def _check(stop: asyncio.Event) -> None:
    if stop.is_set():
        raise Interrupted("interrupted")


async def run_demo(opts: DemoOptions, echo: Echo) -> int:
    """The whole demo; returns the exit code (0: every order synced, none dead)."""
    try:  # the extra qbsync[emulator]; checked before anything is created
        from .emulator import Emulator
        from .emulator.server import EmulatorServer
    except ImportError as exc:
        raise QbsyncError(f"{EXTRA_HINT} ({exc})") from None
    stop = asyncio.Event()
    _install_signals(stop)
    logs.configure("ERROR", "text")  # the daemon's warnings would drown the progress line
    echo("qbsync demo: the Dixis sample shop syncing to an emulated QuickBooks Online")
    with contextlib.ExitStack() as stack:
        admin = stack.enter_context(postgres(opts, echo))
        recreate_database(admin, opts.demo_db)
        url = as_url(admin, opts.demo_db)
        if opts.keep:
            echo(f"  database      {opts.demo_db} (recreated; kept afterwards)")
        else:
            stack.callback(drop_database, admin, opts.demo_db)
            echo(f"  database      {opts.demo_db} (recreated; dropped at the end, --keep "
                 "keeps it)")
        applied = migrate(url)
        with psycopg.connect(url) as conn:
            shop.install_shop(conn, "dixis", track=True)
        echo(f"  ✓ qbsync schema migrated ({len(applied)} migrations), Dixis shop installed")
        _check(stop)
        emu = Emulator(time_scale=opts.time_scale, limits=opts.limits)
        realm = emu.create_company(COMPANY, custom_txn_numbers=True)
        srv = stack.enter_context(EmulatorServer(emu))
        echo(f"  ✓ QuickBooks emulator on {srv.base_url} (limits "
             f"{'on' if opts.limits else 'off'}, time ×{opts.time_scale:g})")
        settings = demo_settings(url, srv, opts)
        company = await connect(settings, Target("emulator", srv.base_url,
                                                 srv.base_url + EMULATOR_DISCOVERY),
                                open_url=headless_browser(), port=0, wait_seconds=30)
        assert company.realm_id == realm
        echo(f"  ✓ connected {company.company_name} (realm {company.realm_id}) through OAuth "
             "2.0: authorize → localhost callback → code exchange; tokens encrypted")
        _check(stop)
        with psycopg.connect(url) as conn:
            counts = shop.generate(conn, opts.orders, seed=opts.seed)
        echo("  ✓ generated " + ", ".join(f"{n} {what}" for what, n in counts.items()))
        settings = settings.model_copy(update={"realm_id": company.realm_id})
        _check(stop)
        drained = await _run_daemon(settings, stop, opts, echo)
        echo("")
        ok = await report(url, emu, company.realm_id, echo)
        return 0 if drained and ok else 1


# --- the dashboard ------------------------------------------------------------------------

# table -> query name in cli_queries.sql (the summary when qbsync.dashboard is missing)
_GROUPS = {
    "entity_map": "demo_entity_map_counts",
    "outbox": "demo_outbox_counts",
    "integration_logs": "demo_integration_logs_counts",
}


def _table(rows: list[asyncpg.Record], echo: Echo) -> None:
    if not rows:
        echo("  (no rows)")
        return
    cols = list(rows[0].keys())
    if len(rows) == 1:
        width = max(len(c) for c in cols)
        for c in cols:
            echo(f"  {c:<{width}}  {rows[0][c]}")
        return
    cells = [[("" if r[c] is None else str(r[c])) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    echo("  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        echo("  " + "  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


async def report(url: str, emu: Emulator, realm: str, echo: Echo) -> bool:
    """Print the dashboard (qbsync.dashboard when it exists, else a summary of entity_map,
    outbox and integration_logs) and what QuickBooks holds; True when every completed order
    became exactly one invoice and nothing is dead."""
    conn = await asyncpg.connect(url)
    try:
        echo("Dashboard")
        if await conn.fetchval(Q.dashboard_exists):
            _table(await conn.fetch(Q.dashboard), echo)
        else:
            for name, query in _GROUPS.items():
                parts = [f"{k} {n}" for k, n in await conn.fetch(getattr(Q, query))]
                echo(f"  {name:<17} {', '.join(parts) or '(empty)'}")
        s = await conn.fetchrow(Q.demo_summary)
        samples = await conn.fetch(Q.demo_samples)
    finally:
        await conn.close()
    held = {t: len(emu.entities(realm, t)) for t in ("Invoice", "Customer", "Item")}
    echo("")
    later = s["invoiced"] - s["synced"]
    echo(f"Orders: {s['orders']} generated, {s['completed']} completed, {s['synced']} synced; "
         f"{s['invoiced']} invoiced in all"
         + (f" ({later} of them cancelled or refunded since)" if later else "")
         + f"; QuickBooks holds {held['Invoice']} invoices, {held['Customer']} customers, "
         f"{held['Item']} items")
    if samples:
        echo("Sample invoices (order -> QuickBooks invoice):")
        for number, qbo_id, doc, total, name in samples:
            echo(f"  {number}  invoice #{doc or '?'} (Id {qbo_id})  {total} EUR  {name}")
    ok = (s["completed"] == s["synced"] and s["invoiced"] == held["Invoice"]
          and s["dead"] == 0 and s["queued"] == 0)
    echo("Every completed order is in QuickBooks, one invoice per order." if ok else
         f"Not everything synced: {s['queued']} change(s) still queued, {s['dead']} "
         "dead; see qbsync.failed or qbsync.outbox.last_error.")
    return ok
