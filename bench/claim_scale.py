"""Claim cost at 1,000,000 pending rows vs 1,000; daemon memory while it drains a large
backlog; the outbox's size after the drain.

    python bench/claim_scale.py             # full: 1M vs 1k claims, 10,000-order drain
    python bench/claim_scale.py --short     # seconds (100k vs 1k, 300-order drain)
    python bench/claim_scale.py --json out.json --markdown

1. Claim cost: two databases with only the qbsync schema, one holding `--big` pending
   outbox rows and one `--small` (ANALYZEd). Blocks of claims alternate between them: each
   iteration times `SELECT * FROM qbsync.claim(worker, 10, 120 s)` (client round trip,
   prepared statement), then deletes the claimed rows and enqueues 10 new ones, so the
   backlog stays constant and dead tuples pile up as they do under a real drain. Reported:
   p50/p90/p99 per size and the ratio of the medians (target ≤ 2×).
2. Daemon RSS: the Dixis rig of throughput.py (`qbsync run` subprocess, emulator over a
   socket, zero latency): `dixis.generate(N)` in one transaction, VmRSS from
   /proc/<pid>/status every 0.5 s until the queue is empty (target ≤ 150 MB, flat).
3. Outbox size: pg_total_relation_size('qbsync.outbox') (table + indexes + TOAST) empty,
   at the full backlog, right after the drain, after a manual VACUUM; and the big claim
   database's outbox at 1M rows.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # bench/ is not a package
    add_common_options,
    as_url,
    command_line,
    create_database,
    drop_database,
    machine_info,
    markdown_table,
    percentiles,
    rss_kib,
    text_table,
    with_dbname,
)
from throughput import Rig  # the shop + emulator + `qbsync run` rig

CLAIM_RATIO_TARGET = 2.0
RSS_TARGET_MB = 150.0

CLAIM = "SELECT id FROM qbsync.claim('bench', 10, make_interval(secs => 120))"
CONSUME = "DELETE FROM qbsync.outbox WHERE id = ANY (%s)"
REFILL = ("INSERT INTO qbsync.outbox (entity, key) SELECT 'noop', 'r' || g || '-' || %s "
          "FROM generate_series(1, %s) AS g")


def outbox_size(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_total_relation_size('qbsync.outbox') "
                       "+ pg_total_relation_size('qbsync.changes')").fetchone()
    return int(row[0]) if row else 0


def claim_db(admin_url: str, name: str, rows: int) -> tuple[str, int]:
    from qbsync.migrate import migrate

    create_database(admin_url, name)
    url = as_url(with_dbname(admin_url, name))
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT qbsync.define_entity('noop', 'Item')")
        conn.execute("INSERT INTO qbsync.outbox (entity, key) "
                     "SELECT 'noop', g::text FROM generate_series(1, %s) AS g", (rows,))
        conn.execute("VACUUM (ANALYZE) qbsync.outbox")
        return url, outbox_size(conn)


def claim_costs(urls: dict[str, str], iterations: int, block: int, log: Any
                ) -> dict[str, list[float]]:
    """Claim round-trip times in ms per database; blocks alternate between them."""
    conns = {k: psycopg.connect(u, autocommit=True, prepare_threshold=0)
             for k, u in urls.items()}
    times: dict[str, list[float]] = {k: [] for k in urls}
    seq = 0
    try:
        for b in range(0, iterations, block):
            for k in (list(urls) if (b // block) % 2 == 0 else list(reversed(urls))):
                conn = conns[k]
                for _ in range(min(block, iterations - b)):
                    started = time.perf_counter()
                    ids = [r[0] for r in conn.execute(CLAIM).fetchall()]
                    times[k].append(1000 * (time.perf_counter() - started))
                    conn.execute(CONSUME, (ids,))
                    seq += 1
                    conn.execute(REFILL, (seq, len(ids)))
            if (b // block) % 5 == 4:
                print(f"claims {b + block}/{iterations}", file=log, flush=True)
    finally:
        for c in conns.values():
            c.close()
    return times


class RssSampler:
    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid = pid
        self.every = every
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            kib = rss_kib(self.pid)
            if kib is not None:
                self.samples.append((round(time.monotonic() - self._t0, 2), kib))
            self._stop.wait(self.every)

    def stop(self) -> list[tuple[float, int]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def drain_memory(admin_url: str, name: str, orders: int, log: Any) -> dict[str, Any]:
    rig = Rig.create(admin_url, name)
    try:
        pid = rig.start_daemon()
        with psycopg.connect(rig.url, autocommit=True) as conn:
            size_empty = outbox_size(conn)
        sampler = RssSampler(pid)
        time.sleep(1.0)
        with psycopg.connect(rig.url) as conn:
            conn.execute("SELECT dixis.generate(%s, 0.61)", (orders,))
            row = conn.execute("SELECT count(DISTINCT (entity, key)) FROM qbsync.changes"
                               ).fetchone()
            backlog = int(row[0]) if row else 0
            size_backlog = outbox_size(conn)
            conn.commit()
        started = time.monotonic()
        rig.wait_drained(max(300.0, orders / 10), poll=0.2)
        seconds = time.monotonic() - started
        time.sleep(1.0)
        samples = sampler.stop()
        print(f"drained {backlog} rows in {seconds:.1f} s", file=log, flush=True)
        with psycopg.connect(rig.url, autocommit=True) as conn:
            size_drained = outbox_size(conn)
            stats = conn.execute(
                "SELECT n_dead_tup, n_live_tup, autovacuum_count, "
                "last_autovacuum IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relid = 'qbsync.outbox'::regclass").fetchone()
            conn.execute("VACUUM qbsync.outbox")
            size_vacuumed = outbox_size(conn)
            dead = conn.execute("SELECT count(*) FROM qbsync.outbox").fetchone()
        exit_code = rig.stop_daemon()
    finally:
        rig.close()
    kib = [s[1] for s in samples]
    third = max(1, len(kib) // 3)
    return {
        "orders": orders, "backlog_rows": backlog, "drain_s": round(seconds, 2),
        "rows_left": int(dead[0]) if dead else None,
        "rss_mb": {"start": round(kib[0] / 1024, 1), "max": round(max(kib) / 1024, 1),
                   "end": round(kib[-1] / 1024, 1),
                   "first_third_median": round(sorted(kib[:third])[len(kib[:third]) // 2]
                                               / 1024, 1),
                   "last_third_median": round(sorted(kib[-third:])[len(kib[-third:]) // 2]
                                              / 1024, 1)},
        "rss_samples": samples,
        "outbox_bytes": {"empty": size_empty, "backlog": size_backlog,
                         "drained": size_drained, "vacuumed": size_vacuumed},
        "outbox_stats_after_drain": {
            "n_dead_tup": stats[0] if stats else None, "n_live_tup": stats[1] if stats else None,
            "autovacuum_count": stats[2] if stats else None,
            "autovacuumed": stats[3] if stats else None},
        "daemon_exit_code": exit_code,
    }


def summarize(claims: dict[str, list[float]], sizes: dict[str, int],
              drain: dict[str, Any]) -> dict[str, Any]:
    stats = {k: {m: round(v, 3) for m, v in percentiles(t).items()} for k, t in claims.items()}
    ratio = stats["big"]["p50"] / stats["small"]["p50"]
    rss = drain["rss_mb"]
    return {
        "claim": stats,
        "claim_ratio_p50": round(ratio, 2),
        "claim_ratio_p90": round(stats["big"]["p90"] / stats["small"]["p90"], 2),
        "claim_pass": ratio <= CLAIM_RATIO_TARGET,
        "rss_max_mb": rss["max"],
        "rss_growth_mb": round(rss["last_third_median"] - rss["first_third_median"], 1),
        "rss_pass": rss["max"] <= RSS_TARGET_MB,
        "outbox_bytes_claim_dbs": sizes,
        "outbox_bytes_drain": drain["outbox_bytes"],
    }


def _mb(b: int) -> str:
    return f"{b / 1024 / 1024:.2f} MB" if b >= 1024 * 1024 else f"{b / 1024:.0f} kB"


def tables(report: dict[str, Any]) -> list[tuple[Sequence[str], list[list[object]]]]:
    s, p = report["summary"], report["params"]
    c = s["claim"]
    claim_rows: list[list[object]] = [
        [f"{p[k]:,} pending", int(c[k]["n"]), c[k]["p50"], c[k]["p90"], c[k]["p99"],
         c[k]["max"]] for k in ("small", "big")]
    claim_rows.append([f"ratio {p['big']:,} ÷ {p['small']:,}", "—", s["claim_ratio_p50"],
                       s["claim_ratio_p90"], "—",
                       f"target ≤ {CLAIM_RATIO_TARGET:g}×: "
                       + ("pass" if s["claim_pass"] else "MISS")])
    d = report["drain"]
    rss = d["rss_mb"]
    rss_rows: list[list[object]] = [[
        f"{d['backlog_rows']:,} rows in {d['drain_s']} s", rss["start"], rss["max"],
        rss["end"], s["rss_growth_mb"],
        f"≤ {RSS_TARGET_MB:g} MB: " + ("pass" if s["rss_pass"] else "MISS")]]
    ob = d["outbox_bytes"]
    size_rows: list[list[object]] = [
        ["Dixis drain", _mb(ob["empty"]), _mb(ob["backlog"]), _mb(ob["drained"]),
         _mb(ob["vacuumed"]), d["outbox_stats_after_drain"]["autovacuumed"]],
        [f"claim db, {p['big']:,} pending", "—", _mb(s["outbox_bytes_claim_dbs"]["big"]), "—",
         "—", "—"]]
    return [
        (("backlog", "claims", "p50 ms", "p90 ms", "p99 ms", "max ms"), claim_rows),
        (("drain", "RSS start MB", "RSS max MB", "RSS end MB",
          "growth MB (last third − first third)", "target"), rss_rows),
        (("outbox", "empty", "at backlog", "after drain", "after VACUUM",
          "autovacuum ran"), size_rows),
    ]


def markdown(report: dict[str, Any]) -> str:
    m, p = report["machine"], report["params"]
    parts = [
        f"Measured {m['date']} on {m['nproc']} cores, {m['memory_gib']} GiB RAM, "
        f"PostgreSQL {m['server_version']} (synchronous_commit={m['synchronous_commit']}, "
        f"fsync={m['fsync']}), load average {m['load_avg_1m']} at start; "
        f"{p['iterations']} claims of 10 per backlog size (blocks of {p['block']} "
        f"alternating), daemon = `qbsync run` subprocess draining `dixis.generate"
        f"({p['orders']})` against the zero-latency emulator.",
        "",
        f"    {report['command']}",
    ]
    for headers, rows in tables(report):
        parts += ["", markdown_table(headers, rows)]
    return "\n".join(parts)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Claim cost at a large vs small backlog, daemon RSS while draining, "
                    "outbox size after the drain.")
    parser.add_argument("--short", action="store_true",
                        help="seconds in all (100,000 vs 1,000 rows, 200 claims, 300-order "
                             "drain); for the tests")
    parser.add_argument("--big", type=int, help="large backlog (default 1000000; short 100000)")
    parser.add_argument("--small", type=int, default=1000,
                        help="small backlog (default %(default)s)")
    parser.add_argument("--iterations", type=int,
                        help="claims per backlog size (default 2000; short 200)")
    parser.add_argument("--block", type=int, default=100,
                        help="claims in a row before switching database (default %(default)s)")
    parser.add_argument("--orders", type=int,
                        help="orders generated for the drain (default 10000; short 300)")
    add_common_options(parser, "qbsync_bench_claim")
    args = parser.parse_args(argv)
    args.big = args.big or (100_000 if args.short else 1_000_000)
    args.iterations = args.iterations or (200 if args.short else 2000)
    args.orders = args.orders or (300 if args.short else 10_000)
    if min(args.big, args.small, args.iterations, args.block, args.orders) < 1:
        parser.error("sizes, --iterations, --block and --orders must be positive")
    if args.small < 20:
        parser.error("--small must be at least 20 (two claims of 10)")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    command = command_line(__file__, argv)
    with psycopg.connect(args.url) as conn:
        machine = machine_info(conn)
    names = {"small": f"{args.prefix}_small", "big": f"{args.prefix}_big"}
    try:
        urls, sizes = {}, {}
        for key, rows in (("small", args.small), ("big", args.big)):
            urls[key], sizes[key] = claim_db(args.url, names[key], rows)
        claims = claim_costs(urls, args.iterations, args.block, sys.stderr)
    finally:
        if not args.keep:
            for name in names.values():
                drop_database(args.url, name)
    drain = drain_memory(args.url, f"{args.prefix}_drain", args.orders, sys.stderr)
    report: dict[str, Any] = {
        "command": command.rstrip(),
        "params": {"big": args.big, "small": args.small, "iterations": args.iterations,
                   "block": args.block, "orders": args.orders, "short": args.short},
        "machine": machine,
        "summary": summarize(claims, sizes, drain),
        "drain": drain,
        "claim_ms": claims,
    }
    for headers, rows in tables(report):
        print(text_table(headers, rows))
        print()
    if args.markdown:
        print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
    return report


if __name__ == "__main__":
    os.environ.setdefault("PGAPPNAME", "qbsync-bench-claim")
    main()
