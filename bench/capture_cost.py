"""Capture overhead in CPU instructions: what one shop transaction costs the server with
qbsync capture ÷ without, counted by callgrind. Unlike tps, the count does not depend on
what else the machine is doing.

    python bench/capture_cost.py                 # 100 and 600 transactions per run (~2 min)
    python bench/capture_cost.py --short         # seconds; what the tests run
    python bench/capture_cost.py --json out.json --markdown

The same Dixis databases as bench/capture.py (plain: no triggers; capture: track.sql;
floor: track.sql's triggers calling empty functions, bench/capture_floor.sql; or
--variant FILE instead of the floor), built in a throwaway cluster of this run's own
(initdb in a temp folder, run as the postgres user when root). The cluster is then stopped
and every database runs each workload in `postgres --single` under
`valgrind --tool=callgrind`, once with N1 and once with N2 transactions; instructions per
transaction = (I(N2) - I(N1)) / (N2 - N1), so start-up and shut-down cancel out.

Workloads, as in capture.py but with fixed ids (prepared statements, one backend):
single_insert - one completed order; order_mix - BEGIN, a completed order, its 3 lines, 3
stock updates, COMMIT.

What it leaves out: the client, the network round trips, the WAL flush and the waits a
commit makes, and how fast the instructions run: trigger calls, PL/pgSQL and executor
set-up run at fewer instructions per cycle than the plain insert path, so on this machine
pgbench (capture.py, the throughput itself) has shown capture's share of the time at 2-3x
its share of the instructions. Use the count to compare two versions of the triggers
exactly; use capture.py for the throughput.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from capture import BILLING, ORDER_COLUMNS, TARGETS, setup  # bench/ is not a package
from common import command_line, machine_info, markdown_table, report_out, text_table

FLOOR_SQL = Path(__file__).resolve().parent / "capture_floor.sql"
LABELS = {"plain": "plain (no capture)", "capture": "qbsync capture",
          "variant": "floor: empty trigger functions"}
# capture.py's completed order, with a fixed customer
ORDER = (f"INSERT INTO dixis.orders ({ORDER_COLUMNS}) "
         f"VALUES ({{cust}}, 'completed', 'card', {BILLING}, 25.00, 4.90, 29.90, now())")
LINE = ("INSERT INTO dixis.order_items (order_id, product_id, product_name, quantity, "
        "unit_price, vat_rate, line_total) SELECT currval(pg_get_serial_sequence("
        "'dixis.orders', 'id')), p.id, p.name, 1, p.price, p.vat_rate, p.price "
        "FROM dixis.products AS p WHERE p.id = $1")
STOCK = ("UPDATE dixis.products SET stock_quantity = stock_quantity - 1, updated_at = now() "
         "WHERE id = $1")


@dataclass
class Count:
    workload: str
    config: str
    n1: int
    n2: int
    instructions_n1: int
    instructions_n2: int

    @property
    def per_txn(self) -> float:
        return (self.instructions_n2 - self.instructions_n1) / (self.n2 - self.n1)


def script(workload: str, n: int, ids: dict[str, int]) -> str:
    """Statements for postgres --single: one per line."""
    lines = [f"PREPARE o AS {ORDER.format(cust=ids['cmin'])}",
             f"PREPARE l(int) AS {LINE}", f"PREPARE s(int) AS {STOCK}"]
    products = [ids["pmin"], ids["pmin"] + ids["band"], ids["pmin"] + 2 * ids["band"]]
    for _ in range(n):
        if workload == "single_insert":
            lines.append("EXECUTE o")
        else:
            lines += ["BEGIN", "EXECUTE o", *(f"EXECUTE l({p})" for p in products),
                      *(f"EXECUTE s({p})" for p in products), "COMMIT"]
    return "\n".join(lines) + "\n"


def count_instructions(cluster: Any, dbname: str, text: str, workdir: Path) -> int:
    path = workdir / "statements.sql"
    path.write_text(text, encoding="utf-8")
    cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
           str(cluster.bindir / "postgres"), "--single", "-D", str(cluster.datadir),
           "-c", "fsync=off", dbname]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    with path.open("rb") as stdin:
        done = subprocess.run(cmd, stdin=stdin, capture_output=True, text=True, check=False)
    errors = [line for line in done.stdout.splitlines() if "ERROR" in line]
    if done.returncode != 0 or errors:
        raise RuntimeError(f"postgres --single on {dbname} failed: "
                           f"{(errors or [done.stderr.strip()[-2000:]])[0]}")
    found = re.search(r"Collected : (\d+)", done.stderr)
    if not found:
        raise RuntimeError(f"no instruction count from callgrind: {done.stderr[-2000:]}")
    return int(found.group(1))


def measure(args: argparse.Namespace, variant_sql: str, log: Any) -> tuple[list[Count], dict]:
    from qbsync.pgcluster import TempCluster

    configs = ["plain", "capture", "variant"]
    counts: list[Count] = []
    with TempCluster() as cluster:
        admin = cluster.url("postgres")
        databases, ids = setup(admin, "cost", args.orders, configs, variant_sql)
        with psycopg.connect(admin) as conn:
            machine = machine_info(conn)
        cluster.stop()
        for workload in ("single_insert", "order_mix"):
            for db in databases:
                per_n = [count_instructions(cluster, db.name, script(workload, n, ids),
                                            cluster.root) for n in (args.n1, args.n2)]
                counts.append(Count(workload, db.config, args.n1, args.n2, *per_n))
                print(f"{workload:13} {db.config:8} {counts[-1].per_txn:12,.0f} "
                      "instructions/txn", file=log, flush=True)
    return counts, machine


HEADERS = ["workload", "configuration", "instructions / txn", "above plain",
           "plain ÷ this", "tps target"]


def summarize(counts: Sequence[Count], variant_label: str) -> list[dict[str, Any]]:
    plain = {c.workload: c.per_txn for c in counts if c.config == "plain"}
    return [{"workload": c.workload, "config": c.config,
             "label": variant_label if c.config == "variant" else LABELS[c.config],
             "per_txn": round(c.per_txn), "above_plain": round(c.per_txn - plain[c.workload]),
             "ratio": round(plain[c.workload] / c.per_txn, 3),
             "target": TARGETS[c.workload] if c.config == "capture" else None}
            for c in counts]


def _rows(summary: Sequence[dict[str, Any]]) -> list[list[object]]:
    return [[s["workload"], s["label"], f"{s['per_txn']:,}",
             f"+{s['above_plain']:,} ({s['above_plain'] / (s['per_txn'] - s['above_plain']):.1%})"
             if s["config"] != "plain" else "—",
             f"{s['ratio']:.3f}", f"≥ {s['target']}" if s["target"] else "—"]
            for s in summary]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Server instructions per Dixis shop transaction with qbsync capture ÷ "
                    "without (callgrind, postgres --single, a throwaway cluster).")
    parser.add_argument("--short", action="store_true",
                        help="20 and 80 transactions, 100 base orders; for the tests")
    parser.add_argument("--n1", type=int, help="transactions in the first run (default 100)")
    parser.add_argument("--n2", type=int, help="transactions in the second run (default 600)")
    parser.add_argument("--orders", type=int, help="base orders generated (default 1000)")
    parser.add_argument("--variant", type=Path, metavar="SQL",
                        help="third configuration: capture + this SQL "
                             "(default: bench/capture_floor.sql, empty trigger functions)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the full report here")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the BENCHMARKS.md section (machine, command, table)")
    args = parser.parse_args(argv)
    args.n1 = args.n1 or (20 if args.short else 100)
    args.n2 = args.n2 or (80 if args.short else 600)
    args.orders = args.orders or (100 if args.short else 1000)
    if not 0 < args.n1 < args.n2 or args.orders < 10:
        parser.error("need 0 < --n1 < --n2 and --orders >= 10")
    if shutil.which("valgrind") is None:
        parser.error("valgrind is not installed (Debian: apt-get install valgrind)")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    variant = args.variant or FLOOR_SQL
    label = LABELS["variant"] if args.variant is None else f"variant ({variant.name})"
    counts, machine = measure(args, variant.read_text(encoding="utf-8"), sys.stderr)
    report: dict[str, Any] = {
        "command": command_line(__file__, argv).rstrip(),
        "params": {"n1": args.n1, "n2": args.n2, "orders": args.orders, "short": args.short,
                   "variant": str(variant)},
        "machine": machine,
        "summary": summarize(counts, label),
        "counts": [asdict(c) for c in counts],
    }
    m = machine
    section = (f"Measured {m['date']} on {m['nproc']} cores, PostgreSQL {m['server_version']}; "
               f"callgrind instruction counts in `postgres --single`, {args.n2} − {args.n1} "
               f"transactions, {args.orders} base orders.\n\n    {report['command']}\n\n"
               f"{markdown_table(HEADERS, _rows(report['summary']))}")
    report_out(args, text_table(HEADERS, _rows(report["summary"])), section, report)
    return report


if __name__ == "__main__":
    main()
