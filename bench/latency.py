"""Commit → QuickBooks request latency with an idle daemon and a local emulator.

    python bench/latency.py                 # full: 200 sequential orders (~1.5 min)
    python bench/latency.py --short         # seconds; what the tests run
    python bench/latency.py --json out.json --markdown

Setup (the honest one): the daemon is a real `qbsync run` subprocess with its default
settings (poll interval 2 s, concurrency 10, LISTEN wake-ups; rate limits off because the
emulator's are off); the emulator is served over a real socket (uvicorn) by this process,
behind a tiny ASGI middleware that records when each invoice POST arrives (time.time() at
the start of the request, keyed by the DocNumber in its body). A warm-up drains a few
generated orders first, so customers and products are already in QuickBooks: each sample
costs exactly one invoice create.

Each sample: wait `--pause` seconds (± 25 % jitter) so that the daemon is idle (waiting on
LISTEN, `qbsync.workers.waiting_until` set), then one shop transaction inserts a completed
order with 2 lines for a synced customer, reads `clock_timestamp()` as its last statement
and commits. Two latencies per sample, both on this host's clock:

* from_commit_start - clock_timestamp() just before COMMIT (inside the transaction) →
  invoice POST arrival: includes the COMMIT itself (WAL flush); the figure the targets
  apply to;
* from_commit_return - the client's time.time() once COMMIT returned → arrival: excludes
  the commit's own cost (a lower bound; the daemon may be woken before the client is).
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # bench/ is not a package
    add_common_options,
    command_line,
    machine_info,
    markdown_table,
    percentiles,
    report_out,
    text_table,
)
from throughput import Rig  # the shop + emulator + `qbsync run` rig

TARGETS_MS = {"p50": 8.0, "p99": 25.0}

ORDER_SQL = """
WITH p AS (SELECT id, name, price, vat_rate FROM dixis.products WHERE id = ANY (%(products)s)),
o AS (
    INSERT INTO dixis.orders (customer_id, status, payment_method, billing_first_name,
        billing_last_name, billing_email, billing_city, billing_postcode, subtotal,
        shipping_fee, total, completed_at)
    SELECT c.id, 'completed', 'card', c.first_name, c.last_name, c.email, c.billing_city,
           c.billing_postcode, s.sub, 4.90, s.sub + 4.90, now()
    FROM dixis.customers c, (SELECT sum(price) AS sub FROM p) AS s
    WHERE c.id = %(customer)s
    RETURNING id, created_at)
INSERT INTO dixis.order_items (order_id, product_id, product_name, quantity, unit_price,
                               vat_rate, line_total)
SELECT o.id, p.id, p.name, 1, p.price, p.vat_rate, p.price FROM o, p
RETURNING order_id
"""


def synced(conn: psycopg.Connection, entity: str) -> list[int]:
    rows = conn.execute("SELECT key::bigint FROM qbsync.entity_map WHERE entity = %s "
                        "AND key ~ '^[0-9]+$' ORDER BY 1", (entity,)).fetchall()
    return [int(r[0]) for r in rows]


def idle(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT qbsync.backlog() = 0 AND NOT EXISTS (SELECT 1 FROM qbsync.outbox) "
                       "AND EXISTS (SELECT 1 "
                       "FROM qbsync.workers WHERE waiting_until > clock_timestamp())"
                       ).fetchone()
    return bool(row and row[0])


def sample(rig: Rig, conn: psycopg.Connection, customer: int, products: list[int],
           timeout: float = 10.0) -> dict[str, Any]:
    with conn.transaction():
        row = conn.execute(ORDER_SQL, {"customer": customer, "products": products}).fetchone()
        assert row is not None
        order_id = int(row[0])
        number, before = conn.execute(
            "SELECT dixis.order_number(id, created_at), "
            "extract(epoch FROM clock_timestamp())::float8 FROM dixis.orders WHERE id = %s",
            (order_id,)).fetchone() or (None, None)
    returned = time.time()
    assert number is not None
    assert before is not None
    deadline = time.monotonic() + timeout
    while number not in rig.arrivals.times:
        if time.monotonic() > deadline:
            raise TimeoutError(f"invoice {number} not received within {timeout} s\n{rig.log()}")
        time.sleep(0.0005)
    arrived = rig.arrivals.times[number]
    return {"order_id": order_id, "doc_number": number,
            "from_commit_start_ms": round(1000 * (arrived - before), 3),
            "from_commit_return_ms": round(1000 * (arrived - returned), 3)}


def measure(rig: Rig, samples: int, pause: float, warmup_orders: int, log: Any
            ) -> list[dict[str, Any]]:
    with psycopg.connect(rig.url) as conn:
        conn.execute("SELECT dixis.generate(%s, 0.3)", (warmup_orders,))
        conn.commit()
    rig.wait_drained(120)
    results: list[dict[str, Any]] = []
    rng = random.Random(11)
    with psycopg.connect(rig.url, autocommit=True) as conn:
        customers, products = synced(conn, "customer"), synced(conn, "product")
        if not customers or len(products) < 2:
            raise RuntimeError("warm-up synced no customer or too few products")
        for i in range(samples):
            time.sleep(pause * rng.uniform(0.75, 1.25))
            waited = 0
            while not idle(conn):
                waited += 1
                if waited > 1000:
                    raise RuntimeError("the daemon never became idle")
                time.sleep(0.01)
            result = sample(rig, conn, customers[i % len(customers)],
                            rng.sample(products, 2))
            results.append(result)
            if (i + 1) % 50 == 0:
                print(f"{i + 1}/{samples} samples", file=log, flush=True)
    return results


def summarize(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for key, label in (("from_commit_start_ms", "clock_timestamp() before COMMIT → POST"),
                       ("from_commit_return_ms", "COMMIT returned (client) → POST")):
        stats = percentiles([r[key] for r in results])
        row: dict[str, Any] = {"measure": key, "label": label,
                               **{k: round(v, 2) for k, v in stats.items()}}
        row["n"] = int(stats["n"])
        if key == "from_commit_start_ms":
            row["targets"] = TARGETS_MS
            row["pass"] = {k: stats[k] <= t for k, t in TARGETS_MS.items()}
        out.append(row)
    return out


HEADERS = ("from", "n", "p50 ms", "p90 ms", "p99 ms", "max ms", "min ms", "targets", "result")


def _rows(summary: Sequence[dict[str, Any]]) -> list[list[object]]:
    rows: list[list[object]] = []
    for s in summary:
        if "targets" in s:
            targets = ", ".join(f"{k} ≤ {v:g}" for k, v in s["targets"].items())
            verdict = ", ".join(
                f"{k} pass" if ok else f"{k} MISS ({s[k] / s['targets'][k]:.1f}×)"
                for k, ok in s["pass"].items())
        else:
            targets, verdict = "—", "—"
        rows.append([s["label"], s["n"], s["p50"], s["p90"], s["p99"], s["max"], s["min"],
                     targets, verdict])
    return rows


def markdown(report: dict[str, Any]) -> str:
    m, p = report["machine"], report["params"]
    return "\n".join([
        f"Measured {m['date']} on {m['nproc']} cores, {m['memory_gib']} GiB RAM, "
        f"PostgreSQL {m['server_version']} (synchronous_commit={m['synchronous_commit']}, "
        f"fsync={m['fsync']}), load average {m['load_avg_1m']} at start; daemon = `qbsync run` "
        f"subprocess with default settings, emulator over a socket in the benchmark "
        f"process; {p['samples']} sequential orders, {p['pause']} s (± 25 %) apart, one "
        "invoice POST each.",
        "",
        f"    {report['command']}",
        "",
        markdown_table(HEADERS, _rows(report["summary"])),
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Commit → invoice POST latency with an idle `qbsync run` daemon.")
    parser.add_argument("--short", action="store_true",
                        help="seconds in all (20 samples, 0.1 s apart); for the tests")
    parser.add_argument("--samples", type=int, help="orders measured (default 200; short 20)")
    parser.add_argument("--pause", type=float,
                        help="seconds between orders (default 0.3; short 0.1)")
    parser.add_argument("--warmup-orders", type=int, default=30,
                        help="generated orders drained first (default %(default)s)")
    add_common_options(parser, "qbsync_bench_latency")
    args = parser.parse_args(argv)
    args.samples = args.samples or (20 if args.short else 200)
    args.pause = args.pause if args.pause is not None else (0.1 if args.short else 0.3)
    if args.samples < 1 or args.pause < 0 or args.warmup_orders < 3:
        parser.error("--samples must be positive, --pause >= 0, --warmup-orders >= 3")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    command = command_line(__file__, argv)
    with psycopg.connect(args.url) as conn:
        machine = machine_info(conn)
    rig = Rig.create(args.url, args.prefix, keep=args.keep)
    try:
        rig.start_daemon()
        results = measure(rig, args.samples, args.pause, args.warmup_orders, sys.stderr)
        posts = rig.arrivals.posts
        exit_code = rig.stop_daemon()
    finally:
        rig.close()
    report: dict[str, Any] = {
        "command": command.rstrip(),
        "params": {"samples": args.samples, "pause": args.pause, "short": args.short,
                   "warmup_orders": args.warmup_orders, "daemon": "qbsync run subprocess",
                   "emulator": "uvicorn over 127.0.0.1 in the benchmark process"},
        "machine": machine,
        "summary": summarize(results),
        "samples": results,
        "invoice_posts": posts,
        "daemon_exit_code": exit_code,
    }
    report_out(args, text_table(HEADERS, _rows(report["summary"])), markdown(report), report)
    return report


if __name__ == "__main__":
    os.environ.setdefault("PGAPPNAME", "qbsync-bench-latency")
    main()
