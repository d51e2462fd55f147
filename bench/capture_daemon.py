"""Capture overhead with a real daemon beside the shop, busy and idle.

    python bench/capture_daemon.py               # full: 3 rounds x 6 s per run (~5 min)
    python bench/capture_daemon.py --short       # seconds; what the tests run
    python bench/capture_daemon.py --json out.json --markdown

capture.py measures the two states capture can be in with stand-ins: nobody waiting (no
NOTIFY) and a daemon waiting (every capturing transaction NOTIFYs). This runs the real
thing, `qbsync run` (default settings) against an emulated QuickBooks company served by
this process (limits off, zero latency), on the same Dixis databases as capture.py, with
capture.py's order_mix (a checkout: a completed order, 3 lines, 3 stock updates; its
single_insert order has no lines, which the Dixis mapping refuses to invoice):

* busy - pgbench at full speed (4 clients) on `plain`, on `capture` with no daemon (the
  changes pile up) and on `daemon`: capture with the daemon pushing every order while the
  shop writes, waiting (so transactions NOTIFY) whenever it has caught up. Reported: shop
  tps ÷ plain's, the CPU that the daemon, its PostgreSQL backends and the emulator used
  meanwhile (on a small machine they take cores from the shop: most of what the shop loses
  here is that, not capture), the drain after pgbench stops, and that every order got its
  invoice.
* idle - pgbench at a low fixed rate (1 client, --rate), so the daemon is idle between
  transactions and every order wakes it: the shop's average transaction latency on
  `plain` and on `daemon`.

Rounds rotate the order of the configurations; every run starts from the same state
(capture.py's reset: the previous run's orders removed, tables vacuumed, CHECKPOINT; for
`daemon` only once it has drained).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture import SCRIPTS, TARGETS, Database, reset, setup  # bench/ is not a package
from common import (
    add_common_options,
    as_url,
    command_line,
    drop_database,
    machine_info,
    markdown_table,
    report_out,
    run_pgbench,
    text_table,
)
from throughput import CpuSample, Rig, daemon_backends

WORKLOADS = ("order_mix",)
LABELS = {"plain": "plain (no capture)", "capture": "capture, no daemon",
          "daemon": "capture, `qbsync run` pushing"}


@dataclass
class Run:
    phase: str                   # busy | idle
    round: int
    workload: str
    config: str
    tps: float
    transactions: int
    latency_ms: float | None
    daemon_cpu_s: float | None = None
    postgres_cpu_s: float | None = None    # the daemon's backends
    emulator_cpu_s: float | None = None
    drain_s: float | None = None           # after pgbench returned, until the backlog was 0
    orders: int = 0
    invoiced: int = 0                      # orders of the run with quickbooks_invoice_id


def _count(db: Database) -> tuple[int, int]:
    with psycopg.connect(db.url) as conn:
        row = conn.execute(
            "SELECT count(*)::int, count(quickbooks_invoice_id)::int FROM dixis.orders "
            "WHERE id > %s", (db.max_order,)).fetchone()
    assert row is not None
    return row[0], row[1]


def one_run(phase: str, round_: int, workload: str, db: Database, rig: Rig | None,
            script: Path, ranges: dict[str, int], args: argparse.Namespace) -> Run:
    if rig is not None:
        rig.wait_drained(within=600)
    reset(db)
    before = None
    if rig is not None and rig.daemon_pid is not None:
        with psycopg.connect(db.url) as conn:
            before = CpuSample.take(rig.daemon_pid, daemon_backends(conn))
    idle = phase == "idle"
    result = run_pgbench(db.url, script, clients=1 if idle else args.clients,
                         seconds=args.seconds, defines=ranges, rate=args.rate if idle else None)
    run = Run(phase, round_, workload, db.config, result.tps, result.transactions,
              result.latency_ms)
    if rig is not None and before is not None and rig.daemon_pid is not None:
        with psycopg.connect(db.url) as conn:
            used = CpuSample.take(rig.daemon_pid, daemon_backends(conn)).minus(before)
        started = time.monotonic()
        rig.wait_drained(within=600)
        run.drain_s = round(time.monotonic() - started, 2)
        run.daemon_cpu_s = used["daemon_cpu_s"]
        run.postgres_cpu_s = used["postgres_cpu_s"]
        run.emulator_cpu_s = used["emulator_cpu_s"]
        run.orders, run.invoiced = _count(db)
    return run


def measure(databases: Sequence[Database], rig: Rig, ranges: dict[str, int],
            args: argparse.Namespace, log: Any) -> list[Run]:
    runs: list[Run] = []
    by_config = {db.config: db for db in databases}
    with tempfile.TemporaryDirectory(prefix="qbsync-bench-") as tmp:
        scripts = {}
        for workload in WORKLOADS:
            scripts[workload] = Path(tmp) / f"{workload}.sql"
            scripts[workload].write_text(SCRIPTS[workload], encoding="utf-8")
        for phase, configs in (("busy", ["plain", "capture", "daemon"]),
                               ("idle", ["plain", "daemon"])):
            for r in range(args.rounds):
                order = configs[r % len(configs):] + configs[:r % len(configs)]
                for workload in WORKLOADS:
                    for config in order:
                        run = one_run(phase, r + 1, workload, by_config[config],
                                      rig if config == "daemon" else None, scripts[workload],
                                      ranges, args)
                        runs.append(run)
                        print(f"{phase} {r + 1}/{args.rounds} {workload:<13} {config:<8} "
                              f"{run.tps:8.1f} tps  latency {run.latency_ms} ms", file=log,
                              flush=True)
    return runs


def summarize(runs: Sequence[Run], seconds: float) -> list[dict[str, Any]]:
    """Medians per phase x workload x configuration; `seconds` = one run's pgbench -T."""
    out = []
    for phase in ("busy", "idle"):
        for workload in WORKLOADS:
            mine = [r for r in runs if r.phase == phase and r.workload == workload]
            plain = statistics.median(r.tps for r in mine if r.config == "plain")
            plain_latency = statistics.median(
                r.latency_ms or 0.0 for r in mine if r.config == "plain")
            for config in LABELS:
                these = [r for r in mine if r.config == config]
                if not these:
                    continue
                tps = statistics.median(r.tps for r in these)
                latency = statistics.median(r.latency_ms or 0.0 for r in these)
                txns = sum(r.transactions for r in these)
                side_cpu = [(r.daemon_cpu_s or 0) + (r.postgres_cpu_s or 0)
                            + (r.emulator_cpu_s or 0) for r in these]
                wall = seconds * len(these)
                out.append({
                    "phase": phase, "workload": workload, "config": config,
                    "label": LABELS[config], "median_tps": round(tps, 1),
                    "ratio": round(tps / plain, 3) if plain else None,
                    "latency_ms": round(latency, 3),
                    "latency_delta_ms": round(latency - plain_latency, 3),
                    "daemon_side_cores": round(sum(side_cpu) / wall, 2)
                    if config == "daemon" and wall else None,
                    "drain_s_max": max((r.drain_s or 0.0) for r in these)
                    if config == "daemon" else None,
                    "orders": sum(r.orders for r in these) if config == "daemon" else None,
                    "invoiced": sum(r.invoiced for r in these) if config == "daemon" else None,
                    "transactions": txns,
                    # the target is capture's own cost; beside a daemon on the same cores
                    # the shop also loses the CPU the daemon side takes (next column)
                    "target": TARGETS[workload] if phase == "busy" and config == "capture"
                    else None,
                })
    return out


HEADERS_BUSY = ["workload", "configuration", "median tps", "ratio vs plain", "tps target",
                "daemon-side CPU (cores)", "drain after (s, max)", "orders invoiced"]
HEADERS_IDLE = ["workload", "configuration", "tps (scheduled)", "avg latency ms",
                "vs plain ms", "orders invoiced"]


def _rows(summary: Sequence[dict[str, Any]], phase: str) -> list[list[object]]:
    rows: list[list[object]] = []
    for s in summary:
        if s["phase"] != phase:
            continue
        invoiced = f"{s['invoiced']} / {s['orders']}" if s["orders"] is not None else "—"
        if phase == "busy":
            rows.append([s["workload"], s["label"], s["median_tps"], f"{s['ratio']:.3f}",
                         f"≥ {s['target']}" if s["target"] else "—",
                         s["daemon_side_cores"] if s["daemon_side_cores"] is not None else "—",
                         s["drain_s_max"] if s["drain_s_max"] is not None else "—", invoiced])
        else:
            rows.append([s["workload"], s["label"], s["median_tps"], s["latency_ms"],
                         f"{s['latency_delta_ms']:+.3f}" if s["config"] != "plain" else "—",
                         invoiced])
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Shop tps and latency with qbsync capture and a real daemon running "
                    "(busy: pgbench at full speed; idle: pgbench at a low rate).",
        epilog="Databases <prefix>_<config> are created on the server and dropped at the end.")
    parser.add_argument("--short", action="store_true",
                        help="a few seconds in all (2 clients, 1 round of 2 s); for the tests")
    parser.add_argument("--clients", type=int, help="pgbench clients, busy (default 4)")
    parser.add_argument("--seconds", type=int, help="seconds per run (default 6; short 2)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; short 1)")
    parser.add_argument("--rate", type=int, default=20,
                        help="transactions/s in the idle phase (default %(default)s)")
    parser.add_argument("--orders", type=int, help="base orders generated (default 1000)")
    add_common_options(parser, "qbsync_bench_capd")
    args = parser.parse_args(argv)
    args.clients = args.clients or (2 if args.short else 4)
    args.seconds = args.seconds or (2 if args.short else 6)
    args.rounds = args.rounds or (1 if args.short else 3)
    args.orders = args.orders or (200 if args.short else 1000)
    if min(args.clients, args.seconds, args.rounds, args.orders, args.rate) < 1:
        parser.error("--clients, --seconds, --rounds, --orders and --rate must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    with psycopg.connect(args.url) as conn:
        machine = machine_info(conn)
    databases, ranges = setup(args.url, args.prefix, args.orders,
                              ["plain", "capture", "variant"], None)
    daemon_db = databases[-1]
    daemon_db.config = "daemon"
    rig = Rig.attach(args.url, daemon_db.name, as_url(daemon_db.url), keep=True)
    try:
        rig.start_daemon()
        runs = measure(databases, rig, ranges, args, sys.stderr)
    finally:
        rig.close()
        if not args.keep:
            for db in databases:
                drop_database(args.url, db.name)
    report: dict[str, Any] = {
        "command": command_line(__file__, argv).rstrip(),
        "params": {"clients": args.clients, "seconds": args.seconds, "rounds": args.rounds,
                   "rate": args.rate, "orders": args.orders, "short": args.short},
        "machine": machine,
        "summary": summarize(runs, args.seconds),
        "runs": [asdict(r) for r in runs],
    }
    busy, idle = _rows(report["summary"], "busy"), _rows(report["summary"], "idle")
    m = machine
    section = (f"Measured {m['date']} on {m['nproc']} cores, {m['memory_gib']} GiB RAM, "
               f"PostgreSQL {m['server_version']} (synchronous_commit="
               f"{m['synchronous_commit']}), load average {m['load_avg_1m']} at start; busy: "
               f"{args.clients} clients, idle: 1 client at {args.rate} tps; {args.rounds} rounds "
               f"of {args.seconds} s; {args.orders} base orders.\n\n    {report['command']}\n\n"
               f"{markdown_table(HEADERS_BUSY, busy)}\n\n{markdown_table(HEADERS_IDLE, idle)}")
    report_out(args, f"{text_table(HEADERS_BUSY, busy)}\n\n{text_table(HEADERS_IDLE, idle)}",
               section, report)
    return report


if __name__ == "__main__":
    main()
