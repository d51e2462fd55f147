"""Capture overhead: Dixis shop transactions/second with qbsync capture ÷ without.

    python bench/capture.py                 # full run (~4 min), table on stdout
    python bench/capture.py --short         # a few seconds, every row (used by the tests)
    python bench/capture.py --json out.json --markdown

Four (five with --variant) databases with identical Dixis schemas and base data, measured
side by side in one run with pgbench custom scripts:

* plain    - the shop without capture triggers (the qbsync schema is migrated but unused);
* capture  - track.sql installed; a daemon is registered but busy (not waiting), so
             triggers never NOTIFY: the steady state under load;
* naive    - no qbsync triggers; an AFTER INSERT OR UPDATE trigger per tracked table that
             inserts every change into a plain outbox table and calls pg_notify('x', '')
             (one NOTIFY per transaction, a listener attached): the pattern of the queues
             that came before (DESIGN.md, "Lessons");
* waiting  - like capture, but the daemon announced it is waiting (qbsync.announce_waiting,
             for a day), so every transaction that captures a change also NOTIFYs a
             listener on qbsync_wakeup: the idle-daemon case;
* variant  - (--variant FILE) like capture, with FILE's SQL run after track.sql, to measure
             a change to the capture trigger against the rest in the same run.

Workloads (pgbench -n -M prepared -c N -j 2 -T S -f script):

* single_insert - one INSERT of a completed order (no lines) by a registered customer: the
  orders trigger runs its full path (one trigger call for the order and payment rules, the
  compiled `when` predicates and keys, one qbsync.changes insert).
* order_mix - a checkout that completes at once (card paid at checkout): INSERT of a
  completed order with its totals, 3 order_items (each captures the parent order, which the
  transaction already captured: no insert), and an UPDATE of products.stock_quantity (and
  updated_at) per line. Stock is not a tracked column, so the updates capture nothing,
  although every product is "synced" (has a quickbooks_item_id). One outbox row per order
  once a claim collects the changes (the report counts them after qbsync.collect_changes).

Rounds interleave the configurations (the order rotates each round, so no configuration
always runs first); before every run the bench orders, order lines and outboxes are removed
and the tables vacuumed, the same for every database, then CHECKPOINT. Each run is paired
with plain's run of the same round (each configuration's tps over plain's tps): the report
gives the median tps per configuration and the median and min-max of those per-round
ratios. On a shared machine a run's tps moves by ±10 % from one minute to the next, so
rounds matter more than seconds: `--configs plain,capture --rounds 10` measures the
targeted ratio alone, more precisely.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # bench/ is not a package
    DEFAULT_URL,
    Spread,
    command_line,
    create_database,
    drop_database,
    machine_info,
    markdown_table,
    run_pgbench,
    text_table,
    with_dbname,
)

CONFIGS: dict[str, str] = {
    "plain": "plain (no capture)",
    "capture": "qbsync capture, daemon busy",
    "naive": "naive notify-per-txn trigger",
    "waiting": "qbsync capture, daemon waiting",
    "variant": "qbsync capture variant (--variant)",
}
WORKLOADS: dict[str, str] = {
    "single_insert": "single-row insert (completed order)",
    "order_mix": "order mix (order + 3 lines + 3 stock updates)",
}
# Minimum tps ratio vs plain, per workload, for the qbsync capture configurations under load.
TARGETS: dict[str, float] = {"single_insert": 0.85, "order_mix": 0.93}
TARGETED = ("capture", "variant")
# A daemon stand-in listens in every capturing database (a busy daemon keeps its LISTEN
# connection too), so the report shows which configurations notify.
LISTEN_CHANNEL = {"capture": "qbsync_wakeup", "naive": "x", "waiting": "qbsync_wakeup",
                  "variant": "qbsync_wakeup"}

ORDER_COLUMNS = ("customer_id, status, payment_method, billing_first_name, billing_last_name, "
                  "billing_email, billing_city, billing_postcode, subtotal, shipping_fee, total, "
                  "completed_at")
BILLING = "'Maria', 'Papadopoulou', 'maria.papadopoulou@example.gr', 'Athina', '10563'"

SCRIPTS: dict[str, str] = {
    "single_insert": f"""\
\\set cust random(:cmin, :cmax)
INSERT INTO dixis.orders ({ORDER_COLUMNS})
VALUES (:cust, 'completed', 'card', {BILLING}, 25.00, 4.90, 29.90, now());
""",
    # p1 < p2 < p3 (three disjoint bands of the catalogue): every transaction locks its
    # products in ascending id order, so concurrent checkouts never deadlock.
    "order_mix": f"""\
\\set cust random(:cmin, :cmax)
\\set p1 random(:pmin, :pmin + :band - 1)
\\set p2 random(:pmin + :band, :pmin + 2 * :band - 1)
\\set p3 random(:pmin + 2 * :band, :pmin + 3 * :band - 1)
BEGIN;
INSERT INTO dixis.orders ({ORDER_COLUMNS})
SELECT :cust, 'completed', 'card', {BILLING}, s.subtotal, 4.90, s.subtotal + 4.90, now()
FROM (SELECT sum(price) AS subtotal FROM dixis.products WHERE id IN (:p1, :p2, :p3)) AS s
RETURNING id AS order_id \\gset
""" + "".join(f"""\
INSERT INTO dixis.order_items (order_id, product_id, product_name, quantity, unit_price,
                               vat_rate, line_total)
SELECT :order_id, p.id, p.name, 1, p.price, p.vat_rate, p.price
FROM dixis.products AS p WHERE p.id = :p{i};
""" for i in (1, 2, 3)) + "".join(f"""\
UPDATE dixis.products SET stock_quantity = stock_quantity - 1, updated_at = now()
WHERE id = :p{i};
""" for i in (1, 2, 3)) + "END;\n",
}

# The naive capture: one function per tracked table (key as track.sql has it), no filter.
_NAIVE_KEYS = {"orders": "id", "order_items": "order_id", "customers": "id", "products": "id"}
NAIVE_SQL = """
CREATE SCHEMA naive;
CREATE TABLE naive.outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tbl        text NOT NULL,
    key        text NOT NULL,
    op         text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
""" + "".join(f"""
CREATE FUNCTION naive.capture_{t}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO naive.outbox (tbl, key, op) VALUES (TG_TABLE_NAME, NEW.{k}::text, TG_OP);
    PERFORM pg_notify('x', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER naive_capture AFTER INSERT OR UPDATE ON dixis.{t}
    FOR EACH ROW EXECUTE FUNCTION naive.capture_{t}();
""" for t, k in _NAIVE_KEYS.items())

BENCH_WORKER = "bench-daemon"


@dataclass
class Database:
    config: str
    name: str
    url: str
    max_order: int = 0
    max_item: int = 0


@dataclass
class Run:
    round: int
    workload: str
    config: str
    position: int                 # 0 = first configuration run in its round
    tps: float
    transactions: int
    failed: int
    orders_inserted: int
    items_inserted: int
    stock_decrements: int         # units taken off products.stock_quantity
    outbox: dict[str, int] = field(default_factory=dict)        # qbsync.outbox rows by entity
    naive_outbox: dict[str, int] = field(default_factory=dict)  # naive.outbox rows by table
    notifications: int | None = None                            # received by the listener


class Listener:
    """A daemon stand-in: LISTENs on a channel in a thread and counts the notifications."""

    def __init__(self, url: str, channel: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        self.count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            for _ in self.conn.notifies(timeout=0.2):
                self.count += 1

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.count += sum(1 for _ in self.conn.notifies(timeout=0.2))
        self.conn.close()
        return self.count


def _one(conn: psycopg.Connection, query: str, params: Sequence[Any] = ()) -> Any:
    row = conn.execute(query, params).fetchone()  # type: ignore[arg-type]  # our literals
    assert row is not None
    return row[0]


def setup(admin_url: str, prefix: str, orders: int, configs: Sequence[str],
          variant_sql: str | None) -> tuple[list[Database], dict[str, int]]:
    """Build one base database (migrated, Dixis without capture, generated data), then clone
    it once per configuration and install that configuration's triggers."""
    from qbsync import shop
    from qbsync.migrate import migrate

    base = f"{prefix}_base"
    create_database(admin_url, base)
    base_url = with_dbname(admin_url, base)
    migrate(base_url)
    with psycopg.connect(base_url) as conn:
        shop.install_shop(conn, "dixis", track=False)
        shop.generate(conn, orders)
        # A synced catalogue: product capture rules apply to every product, so the order
        # mix's stock updates would enqueue if stock were (wrongly) a tracked column.
        conn.execute("UPDATE dixis.products SET quickbooks_item_id = 'bench-' || id")
        conn.commit()
        ranges: dict[str, int] = {}
        for table, prefix_ in (("customers", "c"), ("products", "p")):
            lo, hi, n = conn.execute(
                sql.SQL("SELECT min(id), max(id), count(*) FROM dixis.{}").format(
                    sql.Identifier(table))).fetchone() or (None, None, None)
            if n is None or n == 0 or hi - lo + 1 != n:
                raise RuntimeError(f"dixis.{table} ids are not contiguous ({lo}..{hi}, {n})")
            ranges[f"{prefix_}min"], ranges[f"{prefix_}max"] = lo, hi
        ranges["band"] = (ranges["pmax"] - ranges["pmin"] + 1) // 3
    with psycopg.connect(base_url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE)")

    databases = []
    try:
        for config in configs:
            name = f"{prefix}_{config}"
            db = Database(config, name, with_dbname(admin_url, name))
            create_database(admin_url, db.name, template=base)
            databases.append(db)
            with psycopg.connect(db.url) as conn:
                if config in ("capture", "waiting", "variant"):
                    shop.install_shop(conn, "dixis", track=True)
                    conn.execute("INSERT INTO qbsync.workers (worker_id, hostname, pid) "
                                 "VALUES (%s, 'bench', 0)", (BENCH_WORKER,))
                if config == "waiting":
                    conn.execute("SELECT qbsync.announce_waiting(%s, '1 day')", (BENCH_WORKER,))
                if config == "variant" and variant_sql:
                    conn.execute(variant_sql)  # type: ignore[arg-type]  # the user's file
                if config == "naive":
                    conn.execute(NAIVE_SQL)  # type: ignore[arg-type]  # our literal
                db.max_order = _one(conn, "SELECT coalesce(max(id), 0) FROM dixis.orders")
                db.max_item = _one(conn, "SELECT coalesce(max(id), 0) FROM dixis.order_items")
    finally:
        drop_database(admin_url, base)
    return databases, ranges


def reset(db: Database) -> int:
    """Remove what the previous run added (same work for every configuration), vacuum,
    checkpoint; returns the catalogue's total stock."""
    with psycopg.connect(db.url, autocommit=True) as conn:
        conn.execute("TRUNCATE qbsync.outbox, qbsync.changes")
        if db.config == "naive":
            conn.execute("TRUNCATE naive.outbox")
        with conn.transaction():
            conn.execute("SET LOCAL session_replication_role = replica")  # no triggers, no RI
            conn.execute("DELETE FROM dixis.order_items WHERE id > %s", (db.max_item,))
            conn.execute("DELETE FROM dixis.orders WHERE id > %s", (db.max_order,))
        conn.execute("VACUUM (ANALYZE) dixis.orders, dixis.order_items, dixis.products")
        conn.execute("CHECKPOINT")
        return int(_one(conn, "SELECT sum(stock_quantity) FROM dixis.products"))


def collect(db: Database, run: Run, stock_before: int) -> None:
    with psycopg.connect(db.url) as conn:
        conn.execute("SELECT qbsync.collect_changes(NULL)")  # what a daemon's claim would do
        run.outbox = dict(conn.execute(  # type: ignore[arg-type]
            "SELECT entity, count(*)::int FROM qbsync.outbox GROUP BY entity").fetchall())
        if db.config == "naive":
            run.naive_outbox = dict(conn.execute(  # type: ignore[arg-type]
                "SELECT tbl, count(*)::int FROM naive.outbox GROUP BY tbl").fetchall())
        run.orders_inserted = _one(conn, "SELECT count(*)::int FROM dixis.orders WHERE id > %s",
                                   (db.max_order,))
        run.items_inserted = _one(
            conn, "SELECT count(*)::int FROM dixis.order_items WHERE id > %s", (db.max_item,))
        run.stock_decrements = stock_before - int(
            _one(conn, "SELECT sum(stock_quantity) FROM dixis.products"))


def measure(databases: Sequence[Database], ranges: dict[str, int], *, clients: int,
            seconds: int, rounds: int, log: Any) -> list[Run]:
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="qbsync-bench-") as tmp:
        scripts = {}
        for workload, text in SCRIPTS.items():
            scripts[workload] = Path(tmp) / f"{workload}.sql"
            scripts[workload].write_text(text, encoding="utf-8")
        for r in range(rounds):
            order = [databases[(i + r) % len(databases)] for i in range(len(databases))]
            for workload in WORKLOADS:
                for position, db in enumerate(order):
                    stock_before = reset(db)
                    channel = LISTEN_CHANNEL.get(db.config)
                    listener = Listener(db.url, channel) if channel else None
                    try:
                        result = run_pgbench(db.url, scripts[workload], clients=clients,
                                             seconds=seconds, defines=ranges)
                    finally:
                        notified = listener.stop() if listener else None
                    run = Run(r + 1, workload, db.config, position, result.tps,
                              result.transactions, result.failed, 0, 0, 0,
                              notifications=notified)
                    collect(db, run, stock_before)
                    runs.append(run)
                    print(f"round {r + 1}/{rounds} {workload:<13} {db.config:<8} "
                          f"{result.tps:9.1f} tps", file=log, flush=True)
    return runs


def summarize(runs: Sequence[Run], configs: Sequence[str]) -> list[dict[str, Any]]:
    summary = []
    for workload in WORKLOADS:
        plain = {r.round: r.tps for r in runs if r.workload == workload and r.config == "plain"}
        for config in configs:
            mine = [r for r in runs if r.workload == workload and r.config == config]
            if not mine:
                continue
            tps = Spread.of([r.tps for r in mine])
            row: dict[str, Any] = {
                "workload": workload, "config": config, "label": CONFIGS[config],
                "median_tps": round(tps.median, 1), "min_tps": round(tps.min, 1),
                "max_tps": round(tps.max, 1), "rounds": len(mine),
                "ratio": None, "ratio_min": None, "ratio_max": None,
                "target": TARGETS[workload] if config in TARGETED else None, "pass": None,
            }
            if plain:
                # each run against plain's run of the same round (minutes apart at most):
                # drifts of the machine's speed over the run cancel out
                paired = [r.tps / plain[r.round] for r in mine if plain.get(r.round)]
                row["ratio"] = round(Spread.of(paired).median, 3)
                row["ratio_min"], row["ratio_max"] = round(min(paired), 3), round(max(paired), 3)
                if row["target"] is not None:
                    row["pass"] = row["ratio"] >= row["target"]
            summary.append(row)
    return summary


def _rows(summary: Sequence[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for s in summary:
        ratio = "—" if s["ratio"] is None else f"{s['ratio']:.3f}"
        spread = "—" if s["ratio_min"] is None else f"{s['ratio_min']:.2f}–{s['ratio_max']:.2f}"
        target = "—" if s["target"] is None else f"≥ {s['target']:.2f}"
        verdict = {True: "pass", False: "MISS", None: "—"}[s["pass"]]
        rows.append([s["workload"], s["label"], f"{s['median_tps']:.0f}",
                     f"{s['min_tps']:.0f}–{s['max_tps']:.0f}", ratio, spread, target, verdict])
    return rows


HEADERS = ("workload", "configuration", "median tps", "tps min–max", "ratio vs plain",
           "ratio min–max", "target", "result")


def markdown(report: dict[str, Any]) -> str:
    m, p = report["machine"], report["params"]
    return "\n".join([
        f"Measured {m['date']} on {m['nproc']} cores, {m['memory_gib']} GiB RAM, "
        f"PostgreSQL {m['server_version']} (synchronous_commit={m['synchronous_commit']}, "
        f"fsync={m['fsync']}, shared_buffers={m['shared_buffers']}), "
        f"load average {m['load_avg_1m']} at start; {p['clients']} clients, "
        f"{p['rounds']} rounds of {p['seconds']} s per configuration, {p['orders']} base orders.",
        "",
        f"    {report['command']}",
        "",
        markdown_table(HEADERS, _rows(report["summary"])),
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Dixis shop tps with qbsync capture ÷ without (pgbench, side by side).",
        epilog="Databases <prefix>_<config> are created on the server and dropped at the end.")
    parser.add_argument("--short", action="store_true",
                        help="a few seconds in all (2 clients, 1 round of 1 s); for the tests")
    parser.add_argument("--clients", type=int, help="pgbench clients (default 4; short 2)")
    parser.add_argument("--seconds", type=int, help="seconds per run (default 6; short 1)")
    parser.add_argument("--rounds", type=int,
                        help="rounds (default 4: with 4 configurations each runs once in each "
                             "position; short 1)")
    parser.add_argument("--orders", type=int, help="base orders generated (default 1000)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the full report here")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the BENCHMARKS.md section (machine, command, table)")
    parser.add_argument("--url", default=DEFAULT_URL,
                        help="server to use, any database "
                             "(default $QBSYNC_BENCH_URL or %(default)s)")
    parser.add_argument("--prefix", default="qbsync_bench_capture",
                        help="database name prefix (default %(default)s)")
    parser.add_argument("--variant", type=Path, metavar="SQL",
                        help="add configuration 'variant': capture + this SQL after track.sql")
    parser.add_argument("--keep", action="store_true", help="keep the databases afterwards")
    parser.add_argument("--configs", metavar="LIST",
                        help="comma-separated configurations to run (default all: plain, "
                             "capture, naive, waiting, and variant with --variant)")
    args = parser.parse_args(argv)
    short = args.short
    args.clients = args.clients or (2 if short else 4)
    args.seconds = args.seconds or (1 if short else 6)
    args.rounds = args.rounds or (1 if short else 4)
    args.orders = args.orders or (200 if short else 1000)
    if min(args.clients, args.seconds, args.rounds, args.orders) < 1:
        parser.error("--clients, --seconds, --rounds and --orders must be positive")
    every = [c for c in CONFIGS if c != "variant" or args.variant]
    args.configs = args.configs.split(",") if args.configs else every
    unknown = sorted(set(args.configs) - set(every))
    if unknown:
        parser.error(f"--configs: unknown {', '.join(unknown)} (known: {', '.join(every)})")
    if "plain" not in args.configs:
        parser.error("--configs: plain is required (the ratios' base)")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    configs = args.configs
    variant_sql = args.variant.read_text(encoding="utf-8") if args.variant else None
    command = command_line(__file__, argv)
    with psycopg.connect(args.url) as conn:
        machine = machine_info(conn)
    databases, ranges = setup(args.url, args.prefix, args.orders, configs, variant_sql)
    try:
        runs = measure(databases, ranges, clients=args.clients, seconds=args.seconds,
                       rounds=args.rounds, log=sys.stderr)
    finally:
        if not args.keep:
            for db in databases:
                drop_database(args.url, db.name)
    report: dict[str, Any] = {
        "command": command.rstrip(),
        "params": {"clients": args.clients, "seconds": args.seconds, "rounds": args.rounds,
                   "orders": args.orders, "short": args.short, "ranges": ranges},
        "machine": machine,
        "targets": TARGETS,
        "summary": summarize(runs, configs),
        "runs": [asdict(r) for r in runs],
    }
    print(text_table(HEADERS, _rows(report["summary"])))
    if args.markdown:
        print()
        print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    return report


if __name__ == "__main__":
    os.environ.setdefault("PGAPPNAME", "qbsync-bench-capture")
    main()
