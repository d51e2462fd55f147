"""Full-path throughput: outbox rows/s through claim, map, push and record, against a local
zero-latency emulator (limits off), with a breakdown of where the time goes.

    python bench/throughput.py               # full: 3 rounds x 5,000 orders per phase
    python bench/throughput.py --short       # seconds; what the tests run
    python bench/throughput.py --json out.json --markdown --py-spy
    python bench/throughput.py --metrics both   # the cost of the Prometheus metrics

Setup: a database with the Dixis shop (qbsync migrated, capture on), an emulated QuickBooks
company served over a real socket by this process (uvicorn thread), and the daemon as a
real subprocess (`qbsync run`, default settings: concurrency 10, rate limits off because the
emulator's are). The daemon stays up, idle on LISTEN, for the whole run. Each round has two
phases, each one shop transaction that enqueues N orders at once:

* deps     - `dixis.generate(N)`: new customers (about N/3) and orders; the daemon creates
             every new customer (and, in round 1, the catalogue's items) as a dependency of
             its first invoice: 1 outbox row can cost up to 1 + 1 + lines QBO creates;
* invoices - N completed orders (2 lines each) for customers and products that are already
             in QuickBooks: one invoice create per outbox row.

Timing: from the client-side return of COMMIT to the last `integration_logs` row written
by the drain (the daemon's own clock_timestamp of its last record), rows/s = outbox rows
enqueued by the transaction / that time. The breakdown samples the CPU time (utime+stime
from /proc) of the daemon process, of the PostgreSQL backends serving the daemon and of
this process (the emulator) during each phase; server-side time per qbsync/mapping SQL
function comes from pg_stat_user_functions (track_functions = all on the bench database),
and `--py-spy` starts the daemon under `py-spy record` for a flame summary (top frames).

Metrics: the daemon serves /metrics (metrics_listen, on a free port) and this process
scrapes it every `--scrape-interval` seconds (1 s: fifteen times Prometheus' default) while
a phase runs. `--metrics both` measures their cost in one run: every phase of every round
twice, with a daemon started with metrics off and one with metrics on (which goes first
alternates by round; an unmeasured deps phase first creates the catalogue's items), and
reports the ratio of the two rates per round and its median.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # bench/ is not a package
    Spread,
    add_common_options,
    as_url,
    command_line,
    cpu_seconds,
    create_database,
    drop_database,
    emulator_env,
    machine_info,
    markdown_table,
    report_out,
    text_table,
    with_dbname,
)

TARGET_ROWS_PER_S = 1000.0
QBSYNC = str(Path(sys.executable).with_name("qbsync"))
PY_SPY = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))


# -- the rig: shop database + emulator over a socket + `qbsync run` --------------------------

class Arrivals:
    """ASGI middleware in front of the emulator: when each invoice POST arrived (time.time()
    at the request's start, keyed by the DocNumber in its body)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.times: dict[str, float] = {}
        self.posts = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not (scope["type"] == "http" and scope["method"] == "POST"
                and scope["path"].endswith("/invoice")):
            await self.app(scope, receive, send)
            return
        arrived = time.time()
        chunks: list[bytes] = []

        async def recv() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
            return message

        await self.app(scope, recv, send)
        self.posts += 1
        with contextlib.suppress(ValueError, AttributeError):
            doc = json.loads(b"".join(chunks)).get("DocNumber")
            if doc:
                self.times.setdefault(str(doc), arrived)


@dataclass
class Rig:
    """A Dixis shop database connected to an emulated company served by this process, and
    the daemon as a subprocess. Build with :func:`Rig.create`; :meth:`close` drops it all."""

    admin_url: str
    name: str
    url: str
    emu: Any
    server: Any
    arrivals: Arrivals
    realm_id: str
    token_keys: str
    workdir: Path
    proc: subprocess.Popen[bytes] | None = None
    daemon_pid: int | None = None
    keep: bool = False

    @classmethod
    def create(cls, admin_url: str, name: str, *, keep: bool = False,
               variant_sql: str | None = None) -> Rig:
        from qbsync import shop
        from qbsync.migrate import migrate

        create_database(admin_url, name)
        url = as_url(with_dbname(admin_url, name))
        migrate(url)
        with psycopg.connect(url) as conn:
            shop.install_shop(conn, "dixis", track=True)
            # The benchmarks measure the order path (orders, their customers and items):
            # capture rules for any other entity the sample shop may grow are removed.
            conn.execute("SELECT qbsync.untrack(tbl::text, entity) FROM qbsync.tracked "
                         "WHERE entity NOT IN ('order', 'customer', 'product')")
            if variant_sql:
                conn.execute(variant_sql)  # type: ignore[arg-type]  # the user's file
            conn.commit()
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'ALTER DATABASE "{name}" SET track_functions = \'all\'')
        return cls.attach(admin_url, name, url, keep=keep)

    @classmethod
    def attach(cls, admin_url: str, name: str, url: str, *, keep: bool = False) -> Rig:
        """An emulated company for the migrated shop database `name` (the daemon's
        connection saved in it); :meth:`close` drops the database unless `keep`."""
        from qbsync.emulator import Emulator
        from qbsync.emulator.server import EmulatorServer
        from qbsync.qbo.oauth import TokenSet
        from qbsync.vault import Vault, generate_key

        emu = Emulator(limits=False)
        arrivals = Arrivals(emu.app)
        emu.app = arrivals
        server = EmulatorServer(emu).start()
        realm_id = emu.create_company("Dixis Α.Ε.", custom_txn_numbers=True)
        keys = generate_key("k1")
        tokens = TokenSet.from_response(emu.issue_tokens(realm_id))
        asyncio.run(_save_connection(url, Vault.parse(keys), realm_id, tokens,
                                     server.base_url))
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        return cls(admin_url, name, url, emu, server, arrivals, realm_id, keys, workdir,
                   keep=keep)

    def env(self, **settings: object) -> dict[str, str]:
        from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

        env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
        env.update({
            "QBSYNC_DATABASE_URL": self.url,
            "QBSYNC_CLIENT_ID": DEFAULT_CLIENT_ID,
            "QBSYNC_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "QBSYNC_TOKEN_KEYS": self.token_keys,
            **emulator_env(self.server.base_url),
            "QBSYNC_RATE_LIMITS": "false",   # the emulator's limits are off too
            "QBSYNC_LOG_LEVEL": "WARNING",
            "QBSYNC_WORKER_NAME": "bench-daemon",
            "QBSYNC_CONFIG": "",
        })
        env.update({f"QBSYNC_{k.upper()}": str(v) for k, v in settings.items()})
        return env

    def start_daemon(self, *, py_spy: Path | None = None, **settings: object) -> int:
        """Starts `qbsync run` (under `py-spy record` with py_spy) and waits until it is
        idle: registered and waiting on LISTEN. Returns the daemon's pid."""
        cmd = [QBSYNC, "run"]
        if py_spy is not None:
            cmd = [PY_SPY, "record", "--format", "raw", "--rate", "250", "--nonblocking",
                   "-o", str(py_spy), "--", *cmd]
        log = (self.workdir / "daemon.log").open("ab")
        self.proc = subprocess.Popen(cmd, env=self.env(**settings), stdout=log,
                                     stderr=subprocess.STDOUT)
        log.close()
        self.daemon_pid = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited ({self.proc.returncode}):\n{self.log()}")
            with psycopg.connect(self.url, autocommit=True) as conn:
                row = conn.execute("SELECT pid FROM qbsync.workers WHERE worker_id = "
                                   "'bench-daemon' AND waiting_until > now()").fetchone()
            if row:
                self.daemon_pid = int(row[0])
                return self.daemon_pid
            time.sleep(0.05)
        raise TimeoutError(f"daemon not idle within 60 s:\n{self.log()}")

    def stop_daemon(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        if self.daemon_pid and self.daemon_pid != self.proc.pid:
            os.kill(self.daemon_pid, signal.SIGTERM)  # under py-spy: stop the daemon itself
        else:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(10)

    def log(self) -> str:
        path = self.workdir / "daemon.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def wait_drained(self, within: float, poll: float = 0.02) -> None:
        deadline = time.monotonic() + within
        with psycopg.connect(self.url, autocommit=True) as conn:
            while time.monotonic() < deadline:
                row = conn.execute("SELECT qbsync.backlog()").fetchone()
                if row == (0,):
                    return
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"daemon exited:\n{self.log()}")
                time.sleep(poll)
        raise TimeoutError(f"queue not drained within {within} s\n{self.log()}")

    def close(self) -> None:
        self.stop_daemon()
        self.server.stop()
        if not self.keep:
            drop_database(self.admin_url, self.name)
            shutil.rmtree(self.workdir, ignore_errors=True)


async def _save_connection(url: str, vault: Any, realm_id: str, tokens: Any,
                           base_url: str) -> None:
    import asyncpg

    from qbsync.connect import save_connection

    conn = await asyncpg.connect(url)
    try:
        await save_connection(conn, vault, realm_id, tokens, api_base_url=base_url,
                              company_name="Dixis Α.Ε.", environment="emulator")
    finally:
        await conn.close()


# SQL that adds `n` completed orders (2 lines each) for customers and products that are
# already mapped to QuickBooks objects, in the caller's transaction: one invoice each.
INVOICES_ONLY_SQL = """
DO $$
DECLARE
    cust bigint[] := (SELECT array_agg(key::bigint ORDER BY key::bigint)
                      FROM qbsync.entity_map WHERE entity = 'customer' AND key ~ '^[0-9]+$');
    prod bigint[] := (SELECT array_agg(key::bigint ORDER BY key::bigint)
                      FROM qbsync.entity_map WHERE entity = 'product' AND key ~ '^[0-9]+$');
    v_order bigint;
    v_cust bigint;
    p1 bigint;
    p2 bigint;
BEGIN
    IF cardinality(cust) IS NULL OR cardinality(prod) IS NULL THEN
        RAISE EXCEPTION 'no synced customers or products yet';
    END IF;
    FOR g IN 1..%(n)s LOOP
        v_cust := cust[1 + (g * 7919) %% cardinality(cust)];
        p1 := prod[1 + (g * 31) %% cardinality(prod)];
        p2 := prod[1 + (g * 17 + 5) %% cardinality(prod)];
        INSERT INTO dixis.orders (customer_id, status, payment_method, billing_first_name,
            billing_last_name, billing_email, billing_city, billing_postcode, subtotal,
            shipping_fee, total, completed_at)
        SELECT c.id, 'completed', 'card', c.first_name, c.last_name, c.email,
               c.billing_city, c.billing_postcode, s.sub, 4.90, s.sub + 4.90, now()
        FROM dixis.customers c,
             (SELECT sum(price) AS sub FROM dixis.products p
              JOIN unnest(ARRAY[p1, p2]) AS w(id) ON w.id = p.id) AS s
        WHERE c.id = v_cust
        RETURNING id INTO v_order;
        INSERT INTO dixis.order_items (order_id, product_id, product_name, quantity,
                                       unit_price, vat_rate, line_total)
        SELECT v_order, p.id, p.name, 1, p.price, p.vat_rate, p.price
        FROM dixis.products p JOIN unnest(ARRAY[p1, p2]) AS w(id) ON w.id = p.id;
    END LOOP;
END
$$
"""


def add_invoice_orders(conn: psycopg.Connection, n: int) -> None:
    conn.execute(INVOICES_ONLY_SQL % {"n": int(n)})  # type: ignore[arg-type]  # our literal


# -- CPU accounting --------------------------------------------------------------------------

def daemon_backends(conn: psycopg.Connection) -> list[int]:
    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name LIKE "
                        "'qbsync%' AND datname = current_database()").fetchall()
    return [int(r[0]) for r in rows]


@dataclass
class CpuSample:
    daemon: float
    postgres: dict[int, float]   # per backend pid
    bench: float

    @classmethod
    def take(cls, daemon_pid: int, backends: Sequence[int]) -> CpuSample:
        return cls(cpu_seconds(daemon_pid), {p: cpu_seconds(p) for p in backends},
                   time.process_time())

    def minus(self, other: CpuSample) -> dict[str, float]:
        """CPU used since `other`; backends that appeared since count from zero."""
        pg = sum(v - other.postgres.get(p, 0.0) for p, v in self.postgres.items())
        return {"daemon_cpu_s": round(self.daemon - other.daemon, 3),
                "postgres_cpu_s": round(pg, 3),
                "emulator_cpu_s": round(self.bench - other.bench, 3)}


def function_times(conn: psycopg.Connection) -> dict[str, tuple[int, float, float]]:
    """calls, total ms, self ms per qbsync / qbsync_map / dixis function."""
    rows = conn.execute(
        "SELECT schemaname || '.' || funcname, sum(calls)::bigint, sum(total_time), "
        "sum(self_time) FROM pg_stat_user_functions "
        "WHERE schemaname IN ('qbsync', 'qbsync_map', 'dixis') GROUP BY 1").fetchall()
    return {r[0]: (int(r[1]), float(r[2]), float(r[3])) for r in rows}


FINISHERS = ("qbsync.complete", "qbsync.skip", "qbsync.fail")


def wait_function_stats(conn: psycopg.Connection, before: dict[str, tuple[int, float, float]],
                        rows: int, within: float = 12.0) -> None:
    """An idle backend flushes its function statistics up to 10 s late (PostgreSQL 15's
    PGSTAT_IDLE_INTERVAL): wait until every row's finishing call is counted."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        now = function_times(conn)
        done = sum(now.get(f, (0, 0, 0))[0] - before.get(f, (0, 0, 0))[0] for f in FINISHERS)
        if done >= rows:
            return
        time.sleep(0.25)


def function_delta(before: dict[str, tuple[int, float, float]],
                   after: dict[str, tuple[int, float, float]], rows: int) -> list[dict[str, Any]]:
    out = []
    for name, (calls, total, own) in after.items():
        c0, t0, s0 = before.get(name, (0, 0.0, 0.0))
        if calls - c0 <= 0:
            continue
        out.append({"function": name, "calls": calls - c0,
                    "total_ms": round(total - t0, 1), "self_ms": round(own - s0, 1),
                    "total_ms_per_row": round((total - t0) / max(rows, 1), 3)})
    return sorted(out, key=lambda f: -f["total_ms"])


# -- one phase -------------------------------------------------------------------------------

@dataclass
class Phase:
    round: int
    kind: str                    # deps | invoices
    rows: int                    # outbox rows the transaction enqueued
    seconds: float               # COMMIT returned -> last integration_logs row of the drain
    rows_per_s: float
    http_posts: dict[str, int]   # POSTs the emulator answered 200, per route
    logs: dict[str, int]         # integration_logs by status
    dead: int
    cpu: dict[str, float] = field(default_factory=dict)
    functions: list[dict[str, Any]] = field(default_factory=list)
    http_ms_p50: float | None = None  # QuickBooks response time the daemon logged
    metrics: bool = True         # the daemon served /metrics, scraped during the phase
    scrapes: int = 0


def vacuum_hot_tables(url: str) -> None:
    """What autovacuum does between phases on a default server (this machine's server runs
    with autovacuum off): the outbox, the counter deltas and the shop's orders churn."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM qbsync.outbox, qbsync.changes, qbsync.log_count_deltas, "
                     "qbsync.map_count_deltas, dixis.orders")


def run_phase(rig: Rig, round_: int, kind: str, n: int, *, timeout: float) -> Phase:
    with psycopg.connect(rig.url, autocommit=True) as conn:
        last_log = conn.execute("SELECT coalesce(max(id), 0) FROM qbsync.integration_logs"
                                ).fetchone()
        assert last_log is not None
        backends = daemon_backends(conn)
        funcs0 = function_times(conn)
    posts0 = Counter(rig.emu.counter_snapshot())
    assert rig.daemon_pid is not None
    cpu0 = CpuSample.take(rig.daemon_pid, backends)
    with psycopg.connect(rig.url) as conn:
        if kind == "deps":
            conn.execute("SELECT dixis.generate(%s, %s)", (n, round(0.1 + 0.07 * round_, 3)))
        else:
            add_invoice_orders(conn, n)
        # the outbox rows these changes will coalesce into (the claim collects them)
        row = conn.execute("SELECT count(DISTINCT (entity, key)) FROM qbsync.changes"
                           ).fetchone()
        rows = int(row[0]) if row else 0
        conn.commit()
        committed = time.time()
    rig.wait_drained(timeout)
    with psycopg.connect(rig.url, autocommit=True) as conn:
        backends = sorted(set(backends) | set(daemon_backends(conn)))
    cpu1 = CpuSample.take(rig.daemon_pid, backends)
    with psycopg.connect(rig.url, autocommit=True) as conn:
        wait_function_stats(conn, funcs0, rows)
        end, = conn.execute(
            "SELECT extract(epoch FROM max(created_at))::float8 FROM qbsync.integration_logs "
            "WHERE id > %s", last_log).fetchone() or (None,)
        logs = dict(conn.execute(  # type: ignore[arg-type]
            "SELECT status, count(*)::int FROM qbsync.integration_logs WHERE id > %s "
            "GROUP BY 1", last_log).fetchall())
        # skipped rows by why (operation 'skip': nothing to push; 'skip.unchanged': the
        # body QuickBooks already has) and successes by entity and operation (a second
        # push of one key shows up as an update)
        logs.update({f"{status} {entity} {op}": n for status, entity, op, n in conn.execute(
            "SELECT status, model_type, operation, count(*)::int FROM qbsync.integration_logs"
            " WHERE id > %s AND status IN ('success', 'skipped') GROUP BY 1, 2, 3",
            last_log).fetchall()})
        http = conn.execute(
            "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY response_time_ms) "
            "FROM qbsync.integration_logs WHERE id > %s AND status = 'success'",
            last_log).fetchone()
        dead = conn.execute("SELECT count(*)::int FROM qbsync.outbox WHERE state = 'dead'"
                            ).fetchone()
        funcs1 = function_times(conn)
    posts = Counter(rig.emu.counter_snapshot())
    posts.subtract(posts0)
    http_posts = {k.split(" ")[1].rsplit("/", 1)[-1]: v for k, v in posts.items()
                  if v and k.startswith("POST ") and k.endswith(" 200")}
    seconds = max((end or committed) - committed, 1e-6)
    return Phase(round_, kind, rows, round(seconds, 3), round(rows / seconds, 1), http_posts,
                 logs, int(dead[0]) if dead else 0, cpu1.minus(cpu0),
                 function_delta(funcs0, funcs1, rows),
                 float(http[0]) if http and http[0] is not None else None)


class Scraper:
    """Scrapes a daemon's /metrics every `interval` seconds in a thread, as Prometheus
    would, while a phase runs."""

    def __init__(self, url: str | None, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.scrapes = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        if self.url:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)

    def _run(self) -> None:
        assert self.url is not None
        with httpx.Client(timeout=10) as http:
            while not self._stop.wait(self.interval):
                try:
                    ok = http.get(self.url).status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.scrapes += ok
                self.failures += not ok


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- py-spy summary -----------------------------------------------------------------------

def summarize_py_spy(path: Path, top: int = 25) -> dict[str, Any]:
    """From py-spy's raw (collapsed stacks) output: the share of samples in which each
    function appears anywhere on the stack (inclusive) and at the top (self)."""
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {"samples": 0, "inclusive": [], "self": []}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [f.split(" (")[0] + " (" + f.split(" (")[1].split(":")[0].rsplit("/", 1)[-1]
                  + ")" if " (" in f else f for f in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    def share(c: Counter[str]) -> list[list[object]]:
        return [[f, round(100 * v / max(total, 1), 1)] for f, v in c.most_common(top)]
    return {"samples": total, "inclusive": share(inclusive), "self": share(own)}


_LIBRARIES = (("asyncpg", "asyncpg"), ("httpx", "httpx"), ("httpcore", "httpx"),
              ("h11", "httpx"), ("anyio", "httpx"), ("/json/", "json"),
              ("/logging/", "logging"), ("uuid", "uuid"), ("qbsync/", "qbsync code"),
              ("asyncio/", "asyncio loop"))


def _library(frames: Sequence[str]) -> str:
    for frame in reversed(frames):
        hit = next((label for needle, label in _LIBRARIES if needle in frame), None)
        if hit:
            return hit
    return "other"


def categorize_py_spy(path: Path) -> dict[str, float]:
    """Share of the daemon's samples by the innermost library on the stack; socket writes
    (where a 2-core box preempts the writer for the PostgreSQL backend or the emulator it
    just woke) and the epoll wait are their own buckets, split by which library wrote."""
    buckets: Counter[str] = Counter()
    total = 0
    if not path.exists():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = stack.split(";")
        inner = frames[-1]
        if "_bootstrap" in stack and "importlib" in stack:
            where = "imports (start-up)"
        elif "SocketTransport.write" in inner or "sock_sendall" in inner:
            where = f"socket send ({_library(frames[:-1])})"
        elif "select (selectors.py" in inner:
            where = "epoll wait"
        else:
            where = _library(frames)
        buckets[where] += n
    return {k: round(100 * v / max(total, 1), 1) for k, v in buckets.most_common()}


# -- report --------------------------------------------------------------------------------

def summarize(phases: Sequence[Phase]) -> list[dict[str, Any]]:
    out = []
    both = len({p.metrics for p in phases}) > 1
    for kind, on in ((k, m) for k in ("invoices", "deps") for m in (True, False)):
        mine = [p for p in phases if p.kind == kind and p.metrics == on]
        if not mine:
            continue
        rates = Spread.of([p.rows_per_s for p in mine])
        rows = sum(p.rows for p in mine)
        cpu = {k: sum(p.cpu.get(k, 0.0) for p in mine) for k in mine[0].cpu}
        secs = sum(p.seconds for p in mine)
        posts = sum(sum(p.http_posts.values()) for p in mine)
        out.append({
            "kind": f"{kind}, metrics {'on' if on else 'off'}" if both else kind,
            "metrics": on, "rounds": len(mine), "rows": rows,
            "median_rows_per_s": rates.median, "min_rows_per_s": rates.min,
            "max_rows_per_s": rates.max,
            "qbo_posts_per_row": round(posts / max(rows, 1), 2),
            "daemon_cpu_ms_per_row": round(1000 * cpu["daemon_cpu_s"] / max(rows, 1), 3),
            "postgres_cpu_ms_per_row": round(1000 * cpu["postgres_cpu_s"] / max(rows, 1), 3),
            "emulator_cpu_ms_per_row": round(1000 * cpu["emulator_cpu_s"] / max(rows, 1), 3),
            "wall_ms_per_row": round(1000 * secs / max(rows, 1), 3),
            "dead": sum(p.dead for p in mine),
            "target": TARGET_ROWS_PER_S,
            "pass": rates.median >= TARGET_ROWS_PER_S,
        })
    return out


def metrics_cost(phases: Sequence[Phase]) -> list[dict[str, Any]]:
    """Per phase kind: rows/s with metrics on / rows/s with them off, paired by round (both
    ran the same kind of work in the same round), and the median of those ratios."""
    out = []
    for kind in ("invoices", "deps"):
        ratios = []
        for r in sorted({p.round for p in phases}):
            on = [p for p in phases if (p.round, p.kind, p.metrics) == (r, kind, True)]
            off = [p for p in phases if (p.round, p.kind, p.metrics) == (r, kind, False)]
            if on and off:
                ratios.append(on[0].rows_per_s / off[0].rows_per_s)
        if ratios:
            spread = Spread.of(ratios)
            out.append({"kind": kind, "ratios": [round(x, 4) for x in ratios],
                        "median_ratio": round(spread.median, 4),
                        "min_ratio": round(spread.min, 4), "max_ratio": round(spread.max, 4),
                        "cost_percent": round(100 * (1 - spread.median), 2)})
    return out


COST_HEADERS = ("phase", "rounds", "on/off rows/s per round", "median", "cost")


def _cost_rows(cost: Sequence[dict[str, Any]]) -> list[list[object]]:
    return [[c["kind"], len(c["ratios"]), " ".join(f"{x:.3f}" for x in c["ratios"]),
             f"{c['median_ratio']:.3f}", f"{c['cost_percent']:+.1f} %"] for c in cost]


HEADERS = ("phase", "rounds", "rows", "median rows/s", "min–max", "QBO POSTs/row",
           "daemon CPU ms/row", "PG CPU ms/row", "emulator CPU ms/row", "target", "result")


def _rows(summary: Sequence[dict[str, Any]]) -> list[list[object]]:
    return [[s["kind"], s["rounds"], s["rows"], f"{s['median_rows_per_s']:.0f}",
             f"{s['min_rows_per_s']:.0f}–{s['max_rows_per_s']:.0f}", s["qbo_posts_per_row"],
             s["daemon_cpu_ms_per_row"], s["postgres_cpu_ms_per_row"],
             s["emulator_cpu_ms_per_row"], f"≥ {s['target']:.0f}",
             "pass" if s["pass"] else f"MISS ({s['median_rows_per_s'] / s['target']:.2f}×)"]
            for s in summary]


def function_table(phases: Sequence[Phase], kind: str, top: int = 12) -> list[list[object]]:
    merged: dict[str, list[float]] = {}
    rows = sum(p.rows for p in phases if p.kind == kind)
    for p in phases:
        if p.kind != kind:
            continue
        for f in p.functions:
            m = merged.setdefault(f["function"], [0, 0.0, 0.0])
            m[0] += f["calls"]
            m[1] += f["total_ms"]
            m[2] += f["self_ms"]
    ordered = sorted(merged.items(), key=lambda kv: -kv[1][1])[:top]
    return [[name, int(c), round(t / max(rows, 1), 3), round(s / max(rows, 1), 3)]
            for name, (c, t, s) in ordered]


def markdown(report: dict[str, Any]) -> str:
    m, p = report["machine"], report["params"]
    parts = [
        f"Measured {m['date']} on {m['nproc']} cores, {m['memory_gib']} GiB RAM, "
        f"PostgreSQL {m['server_version']} (synchronous_commit={m['synchronous_commit']}, "
        f"fsync={m['fsync']}), load average {m['load_avg_1m']} at start; daemon = `qbsync run` "
        f"subprocess (concurrency {p['concurrency']}, rate limits off), emulator over a "
        f"socket in the benchmark process, limits off, zero latency; {p['rounds']} rounds "
        f"of {p['orders']} orders per phase; metrics {p.get('metrics', 'on')} (scraped "
        f"every {p.get('scrape_interval', 1.0)} s when on).",
        "",
        f"    {report['command']}",
        "",
        markdown_table(HEADERS, _rows(report["summary"])),
    ]
    if report.get("metrics_cost"):
        parts += ["", "Cost of the metrics (rows/s with metrics on divided by rows/s with them "
                  "off, each round's phases paired; cost = 1 - median):", "",
                  markdown_table(COST_HEADERS, _cost_rows(report["metrics_cost"]))]
    for kind in ("invoices", "deps"):
        table = function_table([Phase(**ph) for ph in report["phases"]], kind)
        if table:
            parts += ["", f"Server-side time per outbox row, `{kind}` phase "
                      "(pg_stat_user_functions; total includes nested calls):", "",
                      markdown_table(("function", "calls", "total ms/row", "self ms/row"),
                                     table)]
    if report.get("py_spy", {}).get("categories"):
        cats = report["py_spy"]["categories"]
        parts += ["", "Daemon process, py-spy samples by innermost library frame "
                  "(whole run, idle excluded): " + ", ".join(f"{k} {v} %"
                                                             for k, v in cats.items())]
    return "\n".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Daemon throughput (rows/s) through the whole path against a "
                    "zero-latency local emulator, with a CPU and SQL-function breakdown.")
    parser.add_argument("--short", action="store_true",
                        help="seconds in all (1 round of 150 orders); for the tests")
    parser.add_argument("--orders", type=int, help="orders per phase (default 5000; short 150)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; short 1)")
    parser.add_argument("--concurrency", type=int, default=10,
                        help="daemon concurrency (default %(default)s, the maximum)")
    parser.add_argument("--metrics", choices=("on", "off", "both"), default="on",
                        help="the daemon's /metrics: on (the default, as `qbsync run`), off, "
                             "or both: every phase with each, to measure their cost")
    parser.add_argument("--scrape-interval", type=float, default=1.0,
                        help="seconds between two scrapes of /metrics (default %(default)s)")
    parser.add_argument("--py-spy", action="store_true",
                        help="run the daemon under py-spy record and summarize the profile")
    add_common_options(parser, "qbsync_bench_throughput")
    parser.add_argument("--variant", type=Path, metavar="SQL",
                        help="run this SQL file after the shop is installed (to measure a "
                             "change to the qbsync SQL without editing sql/)")
    args = parser.parse_args(argv)
    args.orders = args.orders or (150 if args.short else 5000)
    args.rounds = args.rounds or (1 if args.short else 3)
    if min(args.orders, args.rounds, args.concurrency) < 1:
        parser.error("--orders, --rounds and --concurrency must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    command = command_line(__file__, argv)
    with psycopg.connect(args.url) as conn:
        machine = machine_info(conn)
    variant_sql = args.variant.read_text(encoding="utf-8") if args.variant else None
    rig = Rig.create(args.url, args.prefix, keep=args.keep, variant_sql=variant_sql)
    spy = rig.workdir / "py-spy.txt" if args.py_spy else None
    phases: list[Phase] = []
    port = free_port()
    modes = {"on": [True], "off": [False], "both": [False, True]}[args.metrics]

    def start(on: bool) -> None:
        rig.start_daemon(py_spy=spy, concurrency=args.concurrency,
                         metrics_listen=f"127.0.0.1:{port}" if on else "")

    try:
        timeout = max(120.0, args.orders / 20)
        if len(modes) == 1:
            start(modes[0])
        else:
            # unmeasured: the first deps phase also creates the catalogue's items, which
            # would favour whichever mode came second in round 1
            start(False)
            vacuum_hot_tables(rig.url)
            run_phase(rig, 0, "deps", args.orders, timeout=timeout)
        for r in range(1, args.rounds + 1):
            for kind in ("deps", "invoices"):
                # both: one daemon with metrics off, one with them on, first one then the
                # other (alternating by round), each started afresh for its phase
                for on in (modes if r % 2 else modes[::-1]):
                    if len(modes) > 1:
                        rig.stop_daemon()
                        start(on)
                    vacuum_hot_tables(rig.url)
                    url = f"http://127.0.0.1:{port}/metrics" if on else None
                    with Scraper(url, args.scrape_interval) as scraper:
                        phase = run_phase(rig, r, kind, args.orders, timeout=timeout)
                    phase.metrics, phase.scrapes = on, scraper.scrapes
                    phases.append(phase)
                    print(f"round {r}/{args.rounds} {kind:<8} metrics {'on ' if on else 'off'} "
                          f"{phase.rows:6d} rows {phase.seconds:7.2f} s "
                          f"{phase.rows_per_s:8.1f} rows/s scrapes {scraper.scrapes} "
                          f"cpu {phase.cpu}", file=sys.stderr, flush=True)
        exit_code = rig.stop_daemon()
        py_spy: dict[str, Any] = {}
        if spy is not None:
            for _ in range(100):  # py-spy writes its file after the daemon exits
                if spy.exists():
                    break
                time.sleep(0.1)
            py_spy = {**summarize_py_spy(spy), "categories": categorize_py_spy(spy)}
    finally:
        rig.close()
    report: dict[str, Any] = {
        "command": command.rstrip(),
        "params": {"orders": args.orders, "rounds": args.rounds, "short": args.short,
                   "concurrency": args.concurrency, "metrics": args.metrics,
                   "scrape_interval": args.scrape_interval,
                   "variant": str(args.variant) if args.variant else None},
        "machine": machine,
        "target_rows_per_s": TARGET_ROWS_PER_S,
        "summary": summarize(phases),
        "metrics_cost": metrics_cost(phases),
        "phases": [vars(p) for p in phases],
        "daemon_exit_code": exit_code,
        "py_spy": py_spy,
        "http_ms_p50": statistics.median([p.http_ms_p50 for p in phases
                                          if p.http_ms_p50 is not None] or [0.0]),
    }
    table = text_table(HEADERS, _rows(report["summary"]))
    if report["metrics_cost"]:
        table += "\n\n" + text_table(COST_HEADERS, _cost_rows(report["metrics_cost"]))
    report_out(args, table, markdown(report), report)
    return report


if __name__ == "__main__":
    os.environ.setdefault("PGAPPNAME", "qbsync-bench-throughput")
    main()
