"""How long `qbsync check-mapping --sample N` takes on a big shop: a DBA's CI runs it on a
copy of production. A sample shop (Dixis, or Medusa with --shop medusa) with 100,000
generated orders; the command run as a DBA runs it (the installed `qbsync`, a process of
its own), against mapping the very same keys with `qbsync.map_many` and nothing else, in
the same run, as a ratio: what the checks cost on top of the mapping any check must run.

    python bench/check_mapping.py               # 100,000 orders, --sample 1000, 3 rounds
    python bench/check_mapping.py --shop medusa # the same on the Medusa sample shop
    python bench/check_mapping.py --short       # 2,000 orders, --sample 200, 2 rounds
    python bench/check_mapping.py --json out.json --markdown

Each round: the command (wall time of the process, and the seconds it reports itself), then
map_many over the keys it mapped (every entity's sample and the dependencies), entity by
entity in one round trip each. The report: the medians and min–max, keys mapped, and the
ratio check ÷ mapping alone. A sample skips the checks against the shop's whole ledger
(check-mapping's default with --sample): they map every document of the period.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # bench/ is not a package
    Spread,
    add_common_options,
    command_line,
    create_database,
    drop_database,
    machine_info,
    markdown_table,
    report_out,
    text_table,
    with_dbname,
)
from qbsync import shop
from qbsync.migrate import migrate

QBSYNC = str(Path(sys.executable).with_name("qbsync"))


SHOPS = ("dixis", "medusa")


def build(url: str, orders: int, name: str = "dixis") -> dict[str, int]:
    migrate(url)
    with psycopg.connect(url) as conn:
        shop.install_shop(conn, name, track=True)
        conn.commit()
        # generated rows are history, not changes to push: the capture triggers stay quiet
        conn.execute("SET qbsync.origin = 'daemon'")
        counts = shop.generate(conn, orders, seed=0.42, name=name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return counts


def run_check(url: str, sample: int) -> tuple[float, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
    env["QBSYNC_CONFIG"] = ""
    started = time.perf_counter()
    done = subprocess.run([QBSYNC, "check-mapping", "--sample", str(sample), "--json",
                           "--database-url", url], env=env, capture_output=True, text=True,
                          check=False, timeout=3600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"check-mapping exited {done.returncode}:\n{done.stderr[-3000:]}"
                           f"\n{done.stdout[-3000:]}")
    report: dict[str, Any] = json.loads(done.stdout)
    return wall, report


def map_alone(url: str, report: dict[str, Any]) -> float:
    """map_many over the keys the check mapped, one round trip per entity."""
    keys: dict[str, list[str]] = defaultdict(list)
    for k in report["keys"]:
        keys[k["entity"]].append(k["key"])
    with psycopg.connect(url, autocommit=True) as conn:
        started = time.perf_counter()
        for entity, some in sorted(keys.items()):
            conn.execute("SELECT count(body) FROM qbsync.map_many(%s, %s)",
                         (entity, some)).fetchone()
        return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shop", choices=SHOPS, default="dixis", help="the sample shop")
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--sample", type=int, default=1000, help="check-mapping --sample")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--short", action="store_true",
                        help="2,000 orders, --sample 200, 2 rounds")
    add_common_options(parser, "qbsync_bench_check_mapping")
    args = parser.parse_args(argv)
    if args.short:
        args.orders, args.sample, args.rounds = 2000, 200, 2
    url = with_dbname(args.url, args.prefix)
    create_database(args.url, args.prefix)
    rounds: list[dict[str, Any]] = []
    try:
        started = time.perf_counter()
        counts = build(url, args.orders, args.shop)
        build_s = time.perf_counter() - started
        with psycopg.connect(url) as conn:
            machine = machine_info(conn)
        for _ in range(args.rounds):
            wall, report = run_check(url, args.sample)
            alone = map_alone(url, report)
            rounds.append({"wall_s": wall, "reported_s": report["summary"]["seconds"],
                           "map_alone_s": alone, "keys": report["summary"]["keys"],
                           "errors": report["summary"]["errors"],
                           "warnings": report["summary"]["warnings"], "ratio": wall / alone})
    finally:
        if not args.keep:
            drop_database(args.url, args.prefix)
    wall = Spread.of([r["wall_s"] for r in rounds])
    reported = Spread.of([r["reported_s"] for r in rounds])
    alone = Spread.of([r["map_alone_s"] for r in rounds])
    ratio = Spread.of([r["ratio"] for r in rounds])
    keys = rounds[0]["keys"]
    headers = ["measure", "median", "min–max"]
    rows = [["check-mapping, wall (s)", f"{wall.median:.2f}", f"{wall.min:.2f}–{wall.max:.2f}"],
            ["check-mapping, as it reports (s)", f"{reported.median:.2f}",
             f"{reported.min:.2f}–{reported.max:.2f}"],
            ["map_many of the same keys (s)", f"{alone.median:.2f}",
             f"{alone.min:.2f}–{alone.max:.2f}"],
            ["ratio check ÷ mapping alone", f"{ratio.median:.2f}",
             f"{ratio.min:.2f}–{ratio.max:.2f}"]]
    intro = (f"{args.shop.capitalize()}, {counts.get('orders', args.orders):,} orders "
             f"({counts.get('customers', 0):,} customers, {counts.get('refunds', 0):,} "
             f"refunds), check-mapping --sample {args.sample}: {keys:,} keys mapped and "
             f"checked, {args.rounds} rounds")
    table = intro + "\n" + text_table(headers, rows)
    section = (f"`{command_line(__file__, argv)}` ({machine['date']}, {machine['nproc']} "
               f"cores, load {machine['load_avg_1m']})\n\n{intro}\n\n"
               + markdown_table(headers, rows))
    report_out(args, table, section, {
        "command": command_line(__file__, argv), "machine": machine,
        "params": {"shop": args.shop, "orders": args.orders, "sample": args.sample,
                   "rounds": args.rounds},
        "shop": counts, "build_s": build_s, "keys": keys, "rounds": rounds,
        "wall_s": wall.__dict__, "reported_s": reported.__dict__,
        "map_alone_s": alone.__dict__, "ratio": ratio.__dict__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
