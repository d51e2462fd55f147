"""Dashboard latency: SELECT * FROM qbsync.dashboard (and recent_activity, queue_health...)
on a database holding N integration_logs rows spread over ~13 months.

    python bench/dashboard.py                  # 10,000,000 log rows (~3 min to build)
    python bench/dashboard.py --short          # 50,000 rows, a few seconds (used by the tests)
    python bench/dashboard.py --rows 2000000 --runs 300 --json out.json --markdown

Builds a throwaway database (migrated, Dixis shop installed): monthly log partitions for the
last 13 months, N log rows (set-based INSERT ... SELECT generate_series, a realistic mix of
entities, operations, statuses, errors and response times), an entity_map of N/4 orders +
N/50 customers + the catalogue, an outbox with a backlog, dead rows and leases, two workers,
and a shop whose completed orders are mostly invoiced. The bulk load runs with triggers off
(session_replication_role = replica) and the dashboard counters are then rebuilt with
qbsync.rebuild_stats() (timed). It also measures what the counter triggers add to one log
insert. Then every query runs `--runs` times warm; the report gives p50 / p95 / max in ms,
measured by the client (round trip included). Target: dashboard p95 <= 50 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # bench/ is not a package
    DEFAULT_URL,
    create_database,
    drop_database,
    machine_info,
    markdown_table,
    text_table,
    with_dbname,
)

QUERIES: dict[str, str] = {
    "dashboard": "SELECT * FROM qbsync.dashboard",
    "recent_activity": "SELECT * FROM qbsync.recent_activity",
    "queue_health": "SELECT * FROM qbsync.queue_health",
    "failed": "SELECT * FROM qbsync.failed",
    "sync_logs page 1": "SELECT * FROM qbsync.sync_logs LIMIT 50",
    "sync_logs one key": ("SELECT * FROM qbsync.sync_logs WHERE entity = 'order' AND key = '4242'"
                          " LIMIT 50"),
    "open_notices": "SELECT * FROM qbsync.open_notices",
}
TARGET_MS = 50.0

# N log rows, created_at uniform over the last 395 days (13 months). Mix: 70 % order, 20 %
# customer, 10 % product; 88 % success, 5 % retry, 1 % dead, 1 % failed, 4 % skipped, 1 % info.
LOGS_SQL = """
INSERT INTO qbsync.integration_logs
    (created_at, operation, model_type, model_id, status, error_message, error_code,
     response_time_ms, request_id, qbo_id, realm_id, attempt, actor)
SELECT at, op, entity, key, status,
       CASE WHEN status IN ('retry', 'dead', 'failed')
            THEN (ARRAY['QuickBooks 6240 Duplicate Name Exists Error: The name already exists.',
                        'QuickBooks HTTP 503 Service Unavailable',
                        'QuickBooks 6000 A business validation error has occurred',
                        'order ' || key || ': the order has no lines'])[1 + (g %% 4)]
            WHEN status = 'skipped' THEN 'order already has an invoice' END,
       CASE WHEN status IN ('retry', 'dead', 'failed')
            THEN (ARRAY['6240', NULL, '6000', 'QB001'])[1 + (g %% 4)] END,
       CASE WHEN status <> 'info' THEN 80 + (g * 7919 %% 900) END,
       gen_random_uuid(),
       CASE WHEN status = 'success' THEN (g %% 5000000)::text END,
       %(realm)s, 1 + (g %% 3), CASE WHEN status = 'info' THEN 'alice' ELSE 'daemon' END
FROM (
    SELECT g,
           now() - (random() * interval '395 days') AS at,
           CASE WHEN g %% 10 < 7 THEN 'order' WHEN g %% 10 < 9 THEN 'customer' ELSE 'product' END
               AS entity,
           (g %% 1000000)::text AS key,
           CASE WHEN g %% 100 < 88 THEN 'success' WHEN g %% 100 < 93 THEN 'retry'
                WHEN g %% 100 < 94 THEN 'dead' WHEN g %% 100 < 95 THEN 'failed'
                WHEN g %% 100 < 99 THEN 'skipped' ELSE 'info' END AS status,
           CASE WHEN g %% 13 = 0 THEN 'update' WHEN g %% 97 = 0 THEN 'void' ELSE 'create' END AS op
    FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
) x
"""

MAP_SQL = """
INSERT INTO qbsync.entity_map (realm_id, entity, key, qbo_type, qbo_id, sync_token, doc_number,
                               created_at, synced_at)
SELECT %(realm)s, e.entity, g::text, e.qbo_type, g::text, '0',
       CASE WHEN e.entity = 'order' THEN 'DX-2025-' || lpad(g::text, 6, '0') END,
       now() - (random() * interval '395 days'), now() - (random() * interval '30 days')
FROM (VALUES ('order', 'Invoice', %(orders)s::bigint), ('customer', 'Customer', %(customers)s),
             ('product', 'Item', %(products)s)) AS e(entity, qbo_type, n)
CROSS JOIN LATERAL generate_series(1, e.n) AS g
"""

# one statement per state, the state a literal: it works whatever type outbox.state has
OUTBOX_SQL = """
INSERT INTO qbsync.outbox (entity, key, state, attempts, next_attempt_at, lease_owner,
                           lease_expires_at, request_id, enqueued_at, last_attempt_at,
                           last_error, last_error_code)
SELECT (ARRAY['order', 'order', 'order', 'customer', 'product'])[1 + g %% 5],
       (%(base)s + g)::text, {state},
       CASE WHEN {state} = 'dead' THEN 3 WHEN g %% 7 = 0 THEN 1 ELSE 0 END,
       now() + (g %% 60) * interval '1 second',
       CASE WHEN {state} = 'running' THEN 'bench-worker-' || (g %% 2) END,
       CASE WHEN {state} = 'running' THEN now() + interval '30 seconds' END,
       gen_random_uuid(), now() - (g %% 3600) * interval '1 second',
       CASE WHEN {state} <> 'pending' THEN now() - interval '5 minutes' END,
       CASE WHEN {state} = 'dead' THEN 'QuickBooks 6000 A business validation error' END,
       CASE WHEN {state} = 'dead' THEN '6000' END
FROM generate_series(1, %(n)s) AS g
"""


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def build(url: str, rows: int, shop_orders: int) -> dict[str, float]:
    """Fill the database; returns how long each step took (seconds)."""
    from qbsync import shop
    from qbsync.migrate import migrate

    took: dict[str, float] = {}
    t = time.perf_counter()
    migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        shop.install_shop(conn, "dixis", track=True)
        shop.generate(conn, shop_orders, seed=0.42)
        took["schema_and_shop"] = time.perf_counter() - t
        realm = "9341000000000001"
        conn.execute("UPDATE qbsync.settings SET value = '14' WHERE name = 'log_retention_months'")
        conn.execute(
            "INSERT INTO qbsync.connections (realm_id, api_base_url, company_name, tokens, key_id,"
            " access_expires_at, refresh_expires_at, refreshed_at)"
            " VALUES (%s, 'http://qbo.emulator', 'Dixis Α.Ε.', '\\x00', 'bench',"
            " now() + interval '40 minutes', now() + interval '90 days', now())", (realm,))
        # monthly partitions back to 13 months ago (maintain_log_partitions makes the future ones)
        conn.execute("""
            DO $$
            DECLARE m date;
            BEGIN
                FOR i IN 1..13 LOOP
                    m := (date_trunc('month', now()) - make_interval(months => i))::date;
                    EXECUTE format('CREATE TABLE IF NOT EXISTS qbsync.%I PARTITION OF '
                                   'qbsync.integration_logs FOR VALUES FROM (%L) TO (%L)',
                                   'integration_logs_' || to_char(m, 'YYYY_MM'), m,
                                   (m + interval '1 month')::date);
                END LOOP;
            END $$""")
        # most completed orders are invoiced; the rest is the backlog the dashboard counts
        conn.execute("SET qbsync.origin = 'daemon'")
        conn.execute("UPDATE dixis.orders SET quickbooks_invoice_id = id::text,"
                     " quickbooks_sync_status = 'synced'"
                     " WHERE status = 'completed' AND id % 10 <> 0")
        conn.execute("RESET qbsync.origin")
        conn.execute("DELETE FROM qbsync.changes")
        conn.execute("DELETE FROM qbsync.outbox")

        conn.execute("SET session_replication_role = replica")  # bulk load: no triggers
        t = time.perf_counter()
        chunk = 1_000_000
        for first in range(1, rows + 1, chunk):
            conn.execute(LOGS_SQL, {"realm": realm, "first": first,
                                    "last": min(first + chunk - 1, rows)})
        took["logs_insert"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute(MAP_SQL, {"realm": realm, "orders": rows // 4,
                               "customers": max(rows // 50, 10), "products": 2000})
        took["entity_map_insert"] = time.perf_counter() - t
        for base, (state, n) in enumerate((("dead", 50), ("running", 10), ("pending", 2000))):
            conn.execute(OUTBOX_SQL.format(state=f"'{state}'"),
                         {"base": 2_000_000 + base * 100_000, "n": n})
        conn.execute("RESET session_replication_role")
        conn.execute("INSERT INTO qbsync.workers (worker_id, hostname, pid, waiting_until)"
                     " VALUES ('bench-worker-0', 'bench', 1, NULL),"
                     " ('bench-worker-1', 'bench', 2, now() + interval '1 minute')")
        conn.execute("SELECT qbsync.raise_notice('critical', 'dead_row', 'bench notice',"
                     " NULL, NULL, 'order', '2000001')")
        t = time.perf_counter()
        conn.execute("SELECT qbsync.rebuild_stats()")
        took["rebuild_stats"] = time.perf_counter() - t
        t = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        took["vacuum_analyze"] = time.perf_counter() - t
    return took


def trigger_cost(url: str, calls: int, rounds: int) -> dict[str, float]:
    """Microseconds per qbsync.log() call (one log row, its own transaction, as the daemon
    writes them) with and without the counter trigger; median of alternating rounds, with
    synchronous_commit off so that WAL flushes do not drown the difference."""
    samples: dict[str, list[float]] = {"with_counters": [], "without_counters": []}
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET synchronous_commit = off")
        for _ in range(rounds):
            for label, role in (("with_counters", "origin"), ("without_counters", "replica")):
                conn.execute(f"SET session_replication_role = {role}")
                t = time.perf_counter()
                for i in range(calls):
                    conn.execute("SELECT qbsync.log('create', 'order', %s, 'success', 'bench',"
                                 " '{}'::jsonb)", (str(i),))
                samples[label].append((time.perf_counter() - t) / calls * 1e6)
        conn.execute("RESET session_replication_role")
    out = {k: round(statistics.median(v), 1) for k, v in samples.items()}
    out["added_per_log_row_us"] = round(out["with_counters"] - out["without_counters"], 1)
    return out


def time_queries(url: str, runs: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for name, query in QUERIES.items():
            for _ in range(5):  # warm up: caches, plans
                conn.execute(query).fetchall()
            samples = []
            for _ in range(runs):
                t = time.perf_counter()
                conn.execute(query).fetchall()
                samples.append(time.perf_counter() - t)
            results[name] = {"p50_ms": _ms(percentile(samples, 0.5)),
                             "p95_ms": _ms(percentile(samples, 0.95)),
                             "max_ms": _ms(max(samples))}
    return results


def counts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM qbsync.integration_logs),"
            " (SELECT count(*) FROM qbsync.entity_map),"
            " (SELECT pg_size_pretty(pg_total_relation_size('qbsync.integration_logs')"
            "  + coalesce((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits"
            "              WHERE inhparent = 'qbsync.integration_logs'::regclass), 0)))").fetchone()
        dash = conn.execute("SELECT * FROM qbsync.dashboard").fetchone()
        cols = [c.name for c in conn.execute("SELECT * FROM qbsync.dashboard LIMIT 0").description
                or []]
    assert row is not None
    assert dash is not None
    return {"log_rows": row[0], "entity_map_rows": row[1], "log_size": row[2],
            "dashboard": {c: (str(v) if v is not None else None) for c, v in zip(cols, dash,
                                                                                strict=True)}}


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    rows = [[name, r["p50_ms"], r["p95_ms"], r["max_ms"]] for name, r in report["queries"].items()]
    tc = report["trigger_cost"]
    return "\n".join([
        f"{report['data']['log_rows']:,} log rows ({report['data']['log_size']}), "
        f"{report['data']['entity_map_rows']:,} entity_map rows; {report['runs']} warm runs "
        f"per query; {m['date']}, {m['nproc']} cores, {m['memory_gib']} GiB, PostgreSQL "
        f"{m['server_version']}, shared_buffers {m['shared_buffers']}.",
        "",
        markdown_table(["query", "p50 ms", "p95 ms", "max ms"], rows),
        "",
        f"Counter triggers: one qbsync.log() call (own transaction, client round trip "
        f"included) {tc['without_counters']} µs without, {tc['with_counters']} µs with "
        f"(+{tc['added_per_log_row_us']} µs). rebuild_stats(): "
        f"{report['build_seconds']['rebuild_stats']:.1f} s.",
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL,
                        help="a database on the server to use (the bench creates its own)")
    parser.add_argument("--rows", type=int, default=10_000_000, help="integration_logs rows")
    parser.add_argument("--runs", type=int, default=200, help="timed runs per query")
    parser.add_argument("--short", action="store_true",
                        help="50,000 rows, 20 runs: checks that everything works")
    parser.add_argument("--dbname", default=f"qbsync_bench_dashboard_{os.getpid()}")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--json", type=Path, help="write the full report here")
    parser.add_argument("--markdown", action="store_true", help="also print a markdown table")
    args = parser.parse_args(argv)
    if args.short:
        args.rows, args.runs = 50_000, 20
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    url = with_dbname(args.url, args.dbname)
    create_database(args.url, args.dbname)
    try:
        took = build(url, args.rows, 300 if args.short else 5000)
        report: dict[str, Any] = {
            "command": "python bench/dashboard.py " + " ".join(sys.argv[1:] if argv is None
                                                               else argv),
            "rows": args.rows,
            "runs": args.runs,
            "build_seconds": {k: round(v, 2) for k, v in took.items()},
            "trigger_cost": trigger_cost(url, 200 if args.short else 2000, 3 if args.short else 7),
            "queries": time_queries(url, args.runs),
            "data": counts(url),
        }
        with psycopg.connect(url) as conn:
            report["machine"] = machine_info(conn)
    finally:
        if not args.keep:
            drop_database(args.url, args.dbname)
    dash = report["queries"]["dashboard"]
    report["target_met"] = dash["p95_ms"] <= TARGET_MS
    print(text_table(["query", "p50 ms", "p95 ms", "max ms"],
                     [[n, r["p50_ms"], r["p95_ms"], r["max_ms"]]
                      for n, r in report["queries"].items()]))
    print(f"\ndashboard p95 {dash['p95_ms']} ms (target <= {TARGET_MS:g} ms): "
          + ("met" if report["target_met"] else "MISSED"))
    print("build:", json.dumps(report["build_seconds"]), "| trigger cost:",
          json.dumps(report["trigger_cost"]))
    if args.markdown:
        print()
        print(markdown(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return report


if __name__ == "__main__":
    main()
