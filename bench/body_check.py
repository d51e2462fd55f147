"""What reading and checking a mapping's output costs the daemon, per body: the step every
push takes before it resolves references (`sync.parse_body`, then `refs.collect`: JSON
parse, numbers QuickBooks cannot take exactly, references of the wrong shape), against
orjson's bare parse of the same text, in one run.

    python bench/body_check.py               # 300 Dixis orders (~560 bodies), 7 rounds
    python bench/body_check.py --short       # seconds; what the tests run
    python bench/body_check.py --json out.json --markdown

The bodies are the Dixis mapping's real output (`qbsync.map(entity, key)::text`, as the
daemon reads it) for the orders, customers and products of a generated shop. Rounds
interleave the two measurements; each times every body `--repeat` times, in this process's
CPU time (the step is pure CPU; a shared machine's other load does not count). The report:
the median microseconds per body of each, and the median and min–max of the per-round
ratio (check ÷ bare parse). To compare two versions of the daemon, run the same command with
each on PYTHONPATH (it uses only `parse_body` and `collect`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
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
from qbsync.decide import parse_body
from qbsync.migrate import migrate
from qbsync.refs import collect

TABLES = {"order": "orders", "customer": "customers", "product": "products"}


def bodies(url: str, orders: int) -> list[str]:
    """The mapping output of a generated Dixis shop's orders, customers and products."""
    migrate(url)
    with psycopg.connect(url) as conn:
        shop.install_shop(conn, "dixis", track=True)
        conn.execute("SELECT dixis.generate(%s, 0.9)", (orders,))
        conn.commit()
        texts: list[str] = []
        for entity, table in TABLES.items():
            keys = [r[0] for r in conn.execute(f"SELECT id::text FROM dixis.{table} ORDER BY id")]
            for key in keys:
                try:
                    with conn.transaction():
                        row = conn.execute("SELECT qbsync.map(%s, %s)::text",
                                           (entity, key)).fetchone()
                except psycopg.Error:  # a row the mapping refuses (QB001)
                    continue
                if row and row[0] is not None:
                    texts.append(row[0])
        return texts


def timed(step: Callable[[str], Any], texts: Sequence[str], repeat: int) -> float:
    """CPU seconds per body, over `repeat` passes."""
    started = time.process_time()
    for _ in range(repeat):
        for text in texts:
            step(text)
    return (time.process_time() - started) / (repeat * len(texts))


def bare(text: str) -> Any:
    return orjson.loads(text)


def checked(text: str) -> Any:
    body = parse_body("bench 1", text)
    return collect(body)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=20, help="passes over the bodies a round")
    parser.add_argument("--short", action="store_true", help="60 orders, 3 rounds, 3 passes")
    add_common_options(parser, "qbsync_bench_body_check")
    args = parser.parse_args(argv)
    if args.short:
        args.orders, args.rounds, args.repeat = 60, 3, 3
    url = with_dbname(args.url, args.prefix)
    create_database(args.url, args.prefix)
    try:
        texts = bodies(url, args.orders)
        with psycopg.connect(url) as conn:
            machine = machine_info(conn)
    finally:
        if not args.keep:
            drop_database(args.url, args.prefix)
    rounds: list[tuple[float, float]] = []
    for n in range(args.rounds):
        steps = [bare, checked] if n % 2 == 0 else [checked, bare]  # alternate who goes first
        took = {step: timed(step, texts, args.repeat) for step in steps}
        rounds.append((took[bare], took[checked]))
    plain = Spread.of([b * 1e6 for b, _ in rounds])
    check = Spread.of([c * 1e6 for _, c in rounds])
    ratio = Spread.of([c / b for b, c in rounds])
    sizes = [len(t.encode()) for t in texts]
    headers = ["step", "µs/body (median)", "min–max"]
    rows = [["orjson.loads", f"{plain.median:.1f}", f"{plain.min:.1f}–{plain.max:.1f}"],
            ["parse_body + collect", f"{check.median:.1f}", f"{check.min:.1f}–{check.max:.1f}"],
            ["ratio", f"{ratio.median:.2f}", f"{ratio.min:.2f}–{ratio.max:.2f}"]]
    table = (f"{len(texts)} bodies, {statistics.mean(sizes):.0f} bytes on average "
             f"(max {max(sizes)}), {args.rounds} rounds x {args.repeat} passes\n"
             + text_table(headers, rows))
    section = (f"`{command_line(__file__, argv)}` ({machine['date']}, {machine['nproc']} "
               f"cores, load {machine['load_avg_1m']})\n\n" + markdown_table(headers, rows))
    report_out(args, table, section, {
        "command": command_line(__file__, argv), "machine": machine,
        "params": {"orders": args.orders, "rounds": args.rounds, "repeat": args.repeat},
        "bodies": len(texts), "mean_bytes": statistics.mean(sizes),
        "rounds": [{"bare_us": b * 1e6, "checked_us": c * 1e6} for b, c in rounds],
        "ratio": ratio.__dict__, "bare_us": plain.__dict__, "checked_us": check.__dict__})
    return 0


if __name__ == "__main__":
    sys.exit(main())
