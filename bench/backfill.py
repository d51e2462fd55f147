"""Backfill against QuickBooks' real limits: 10,000 completed orders enqueued at once, pushed
by the daemon (batch mode) to an emulator that enforces the limits on a shrunk clock.

    python bench/backfill.py                    # full: 10,000 orders, time scale 2 (~5 min)
    python bench/backfill.py --short            # seconds; what the tests run
    python bench/backfill.py --json out.json --markdown

Setup: a fresh database with the Dixis shop (qbsync migrated, capture on for orders,
customers and products only), `dixis.generate` run with capture suppressed, then ONE
transaction enqueues N completed orders (`qbsync.enqueue_all`, origin 'backfill'). Nothing
is in QuickBooks yet: the realistic backfill is "everything at once", so the daemon creates
every customer and item the orders use (as dependencies) and then the invoices. The
emulated company is served over a socket by this process (uvicorn thread) with its limits
ON — 500 requests/min, 10/s, 10 in flight, 40 batch requests/min, per realm — on a clock
running `--time-scale` times faster than real time; the daemon (`qbsync run`, a real
subprocess) runs its shared limiter with the same `rate_time_scale`.

The minimum (from first principles). Let O = C + P + I be the QuickBooks operations the
backfill needs: C customer creates, P item creates, I invoice creates (counted after the run
from qbsync.entity_map, and checked against the emulator's objects: no duplicates). Per
realm and emulated minute QuickBooks allows R = 500 requests and B = 40 batch requests of up
to S = 30 operations each, and a batch request also counts as a request (Intuit's "Limits
and throttles" and batch pages, developer.intuit.com/app/developer/qbo/docs/learn/
limits-and-throttles; the emulator counts it that way). So in one minute at most B requests carry S
operations and the other R - B carry one each:

    ops/min   <=  B*S + (R - B)  =  40*30 + 460  =  1,660
    T_min      =  O / (B*S + R - B)     (emulated minutes)

Batch-only pushing would reach ceil(O/S)/B minutes (1,200 ops/min), 38 % longer; were batches
outside the 500/min budget the bound would be O / (B*S + R) (1,700 ops/min, 2.4 % lower).
Dependencies must exist before the invoices that use them (a batch cannot chain), which
pipelining hides, so T_min ignores it. It is a rate bound: sliding windows would also let a
client spend one window's worth in a burst at the very start, which no client pacing its
requests evenly (as qbsync does, to never meet a 429) can use.

Time scale: 2 by default (a QuickBooks minute lasts 30 s); 5 makes a QuickBooks second
200 ms of real time. The per-second limit is then the hard one: pacing at 490 a minute puts
11 consecutive requests ~240 ms apart, so any stall of ~40 ms that holds one request back
and lets the next ten go squeezes 11 into one emulated second (a 429, and a 60-s pause). The
daemon's limiter checks each request against its slot right before the socket write; the
emulator freezes its heap once a second (`EmulatorServer(freeze_heap=...)`), since a full
garbage collection over its ~15,000 entities held its loop 100-300 ms and stamped everything
that arrived meanwhile as one burst. `--busy N` runs N CPU-bound loops beside the run.

Measured: total = COMMIT of the enqueue -> the last outcome the daemon recorded (wall and
emulated = wall x scale); ratio = total / T_min (target <= 1.15); budget used = requests the
emulator accepted / (R x total) (target >= 95 %) and batch budget used = batches / (B x total);
the fullest 60-s window of each (emulated clock, must stay within the limit); 429s answered
(target 0); tries burnt (failed or retried attempts); ops per batch; CPU seconds of the
daemon, its PostgreSQL backends and this process (emulator) against the 2 cores x wall, to
tell a CPU-bound run from a limit-bound one. Correctness at the end: outbox empty, no dead
row, every order exactly one invoice (entity_map, the order's write-back, the emulator's
invoices by DocNumber), customers and items each exactly once in the emulated company.
"""

from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # bench/ is not a package
    add_common_options,
    as_url,
    command_line,
    create_database,
    machine_info,
    markdown_table,
    report_out,
    text_table,
    with_dbname,
)
from throughput import Arrivals, CpuSample, Rig, _save_connection, daemon_backends

TARGET_RATIO = 1.15          # total <= 1.15 x T_min
TARGET_BUDGET = 0.95         # >= 95 % of the request budget
PER_MINUTE = 500             # QuickBooks limits per realm (Intuit's limits-and-throttles page)
PER_SECOND = 10
IN_FLIGHT = 10
BATCH_PER_MINUTE = 40
BATCH_SIZE = 30
COMPLETED_SHARE = 0.85       # dixis.generate: ~88 % of orders end completed


def ops_per_minute(per_minute: int = PER_MINUTE, batch_per_minute: int = BATCH_PER_MINUTE,
                   batch_size: int = BATCH_SIZE) -> int:
    """Most operations one emulated minute can carry: B full batches + (R - B) singles."""
    return batch_per_minute * batch_size + (per_minute - batch_per_minute)


def minimum_minutes(ops: int) -> dict[str, float]:
    """T_min (emulated minutes) and, for comparison, the batch-only bound."""
    return {"combined": ops / ops_per_minute(),
            "batch_only": math.ceil(ops / BATCH_SIZE) / BATCH_PER_MINUTE}


# -- the emulator side: every request's arrival on the emulated clock ------------------------

@dataclass
class Arrival:
    at: float        # emulated epoch seconds, when the request reached the emulator
    batch: bool
    status: int = 0
    took: float = 0.0  # real seconds the emulator spent on it (its event loop is blocked)


class RequestLog:
    """ASGI middleware in front of the emulator (outside its limit gate): when each API
    request arrived on the emulated clock, whether it was a batch, and its status."""

    def __init__(self, app: Any, clock: Any) -> None:
        self.app = app
        self.clock = clock
        self.arrivals: list[Arrival] = []
        self.hits: Counter[str] = Counter()   # 429s by the limit they hit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v3/company/"):
            await self.app(scope, receive, send)
            return
        arrival = Arrival(self.clock.now(), scope["path"].endswith("/batch"))
        self.arrivals.append(arrival)

        async def send_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                arrival.status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        await self.app(scope, receive, send_status)
        arrival.took = time.perf_counter() - started


def fullest_window(times: Sequence[float], window: float) -> int:
    """Most instants inside any half-open window (t - window, t]."""
    ts = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ts):
        while ts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def requests_per_minute(times: Sequence[float], start: float) -> list[int]:
    """Instants counted in consecutive 60-s windows from `start` (the last one partial)."""
    counts: list[int] = []
    for t in times:
        minute = max(int((t - start) // 60), 0)
        counts.extend([0] * (minute + 1 - len(counts)))
        counts[minute] += 1
    return counts


# -- the rig -----------------------------------------------------------------------------------

def create_rig(admin_url: str, name: str, *, time_scale: float, keep: bool
               ) -> tuple[Rig, RequestLog]:
    """throughput's rig, with the emulator's limits on and its clock `time_scale` faster."""
    import asyncio
    import tempfile

    from qbsync import shop
    from qbsync.emulator import Emulator
    from qbsync.emulator.server import EmulatorServer
    from qbsync.migrate import migrate
    from qbsync.qbo.oauth import TokenSet
    from qbsync.vault import Vault, generate_key

    create_database(admin_url, name)
    url = as_url(with_dbname(admin_url, name))
    migrate(url)
    with psycopg.connect(url) as conn:
        shop.install_shop(conn, "dixis", track=True)
        # A backfill of invoices: payments and refunds are not part of it.
        conn.execute("SELECT qbsync.untrack(tbl::text, entity) FROM qbsync.tracked "
                     "WHERE entity NOT IN ('order', 'customer', 'product')")
        conn.commit()
    emu = Emulator(time_scale=time_scale)   # limits on: QuickBooks' defaults
    log = RequestLog(emu.app, emu.clock)
    emu.app = log
    acquire = emu.limits.acquire

    def counted(realm: str, is_batch: bool) -> str | None:
        hit = acquire(realm, is_batch)
        if hit is not None:
            log.hits[hit] += 1
        return hit

    emu.limits.acquire = counted  # type: ignore[method-assign]  # which limit a 429 hit
    # the emulator's heap frozen once a second: its full garbage collections would otherwise
    # hold its event loop 100-300 ms and stamp the requests that arrived meanwhile as one
    # burst (EmulatorServer says more)
    server = EmulatorServer(emu, freeze_heap=1.0).start()
    realm_id = emu.create_company("Dixis Α.Ε.", custom_txn_numbers=True)
    keys = generate_key("k1")
    tokens = TokenSet.from_response(emu.issue_tokens(realm_id))
    asyncio.run(_save_connection(url, Vault.parse(keys), realm_id, tokens, server.base_url))
    workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    # Rig wants throughput's invoice-POST recorder; this bench reads RequestLog instead.
    return Rig(admin_url, name, url, emu, server, Arrivals(None), realm_id, keys, workdir,
               keep=keep), log


def prepare_orders(url: str, n: int) -> list[str]:
    """Shop data with capture suppressed (as a loader would), then the keys of the first
    `n` completed orders; the catalogue and the customers are generated with them."""
    with psycopg.connect(url) as conn:
        conn.execute("SET LOCAL qbsync.origin = 'daemon'")
        conn.execute("SELECT dixis.generate(%s)", (math.ceil(n / COMPLETED_SHARE) + 50,))
        conn.commit()
        keys = [str(r[0]) for r in conn.execute(
            "SELECT id FROM dixis.orders WHERE status = 'completed' ORDER BY id LIMIT %s",
            (n,)).fetchall()]
    if len(keys) < n:
        raise RuntimeError(f"dixis.generate made only {len(keys)} completed orders, not {n}")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return keys


# -- the run -----------------------------------------------------------------------------------

@dataclass
class Result:
    orders: int
    time_scale: float
    wall_s: float
    emulated_min: float
    ops: dict[str, int]                  # customers, items, invoices (what was needed)
    minimum_min: dict[str, float]
    ratio: float
    requests: dict[str, int]             # accepted requests: total, batch, single
    throttled: int                       # 429s the emulator answered
    throttled_by: dict[str, int]         # ... by the limit hit
    budget_used: float                   # accepted requests / (R x total)
    batch_budget_used: float             # batches / (B x total)
    fullest_minute: dict[str, int]       # requests and batches in the fullest 60-s window
    fullest_second: int
    per_minute: dict[str, list[int]]     # accepted requests and batches in each emulated
                                         # minute from the commit (the last one partial):
                                         # where the budget went unused
    ops_per_batch: float
    tries_burnt: int
    logs: dict[str, int]
    cpu: dict[str, float]
    checks: dict[str, Any] = field(default_factory=dict)


def run(rig: Rig, log: RequestLog, keys: list[str], *, time_scale: float, timeout: float,
        concurrency: int) -> Result:
    rig.start_daemon(concurrency=concurrency, rate_limits="true", rate_time_scale=time_scale,
                     log_level="WARNING")
    with psycopg.connect(rig.url, autocommit=True) as conn:
        backends = daemon_backends(conn)
    assert rig.daemon_pid is not None
    before = len(log.arrivals)
    cpu0 = CpuSample.take(rig.daemon_pid, backends)
    with psycopg.connect(rig.url) as conn:
        conn.execute("SELECT qbsync.enqueue_all('order', %s, 'backfill')", (keys,))
        conn.commit()
        committed = time.time()
        started_em = rig.emu.clock.now()
    rig.wait_drained(timeout, poll=0.1)
    with psycopg.connect(rig.url, autocommit=True) as conn:
        backends = sorted(set(backends) | set(daemon_backends(conn)))
    cpu1 = CpuSample.take(rig.daemon_pid, backends)
    with psycopg.connect(rig.url, autocommit=True) as conn:
        end, = conn.execute("SELECT extract(epoch FROM max(created_at))::float8 "
                            "FROM qbsync.integration_logs").fetchone() or (None,)
        logs = dict(conn.execute(  # type: ignore[arg-type]
            "SELECT status, count(*)::int FROM qbsync.integration_logs "
            "WHERE created_at >= to_timestamp(%s) GROUP BY 1", (committed,)).fetchall())
        burnt, batch_ops = conn.execute(
            # a try is burnt when the row's next attempt counts up (a 429 never does)
            "SELECT (coalesce(sum(attempt - 1) FILTER (WHERE status = 'success'), 0) "
            "        + count(*) FILTER (WHERE status = 'dead'))::int, "
            "       count(*) FILTER (WHERE status = 'success' "
            "                         AND operation LIKE '%%(batch)')::int "
            "FROM qbsync.integration_logs WHERE created_at >= to_timestamp(%s)",
            (committed,)).fetchone() or (0, 0)
        mapped = dict(conn.execute(  # type: ignore[arg-type]
            "SELECT entity, count(*)::int FROM qbsync.entity_map GROUP BY 1").fetchall())
    wall = max((end or committed) - committed, 1e-6)
    emulated_min = wall * time_scale / 60
    ops = {"customers": mapped.get("customer", 0), "items": mapped.get("product", 0),
           "invoices": mapped.get("order", 0)}
    minimum = minimum_minutes(sum(ops.values()))
    run_arrivals = [a for a in log.arrivals[before:] if a.at >= started_em]
    ok = [a for a in run_arrivals if a.status == 200]
    batches = sum(1 for a in ok if a.batch)
    cpu = cpu1.minus(cpu0)
    cpu["capacity_s"] = round(wall * (os.cpu_count() or 1), 3)
    cpu["used_share"] = round((cpu["daemon_cpu_s"] + cpu["postgres_cpu_s"]
                               + cpu["emulator_cpu_s"]) / cpu["capacity_s"], 3)
    return Result(
        orders=len(keys), time_scale=time_scale, wall_s=round(wall, 3),
        emulated_min=round(emulated_min, 3), ops=ops,
        minimum_min={k: round(v, 3) for k, v in minimum.items()},
        ratio=round(emulated_min / minimum["combined"], 3),
        requests={"total": len(ok), "batch": batches, "single": len(ok) - batches},
        throttled=sum(1 for a in run_arrivals if a.status == 429),
        throttled_by=dict(log.hits),
        budget_used=round(len(ok) / (PER_MINUTE * emulated_min), 4),
        batch_budget_used=round(batches / (BATCH_PER_MINUTE * emulated_min), 4),
        fullest_minute={"requests": fullest_window([a.at for a in ok], 60.0),
                        "batches": fullest_window([a.at for a in ok if a.batch], 60.0)},
        fullest_second=fullest_window([a.at for a in ok], 1.0),
        per_minute={"requests": requests_per_minute([a.at for a in ok], started_em),
                    "batches": requests_per_minute([a.at for a in ok if a.batch], started_em)},
        ops_per_batch=round(batch_ops / max(batches, 1), 2),
        tries_burnt=int(burnt), logs=logs, cpu=cpu)


def verify(rig: Rig, keys: list[str]) -> dict[str, Any]:
    """Every order exactly one invoice; customers and items exactly once; nothing left."""
    realm = rig.realm_id
    invoices = rig.emu.entities(realm, "Invoice")
    by_doc = Counter(str(i.get("DocNumber")) for i in invoices)
    with psycopg.connect(rig.url, autocommit=True) as conn:
        left, dead = conn.execute(
            "SELECT count(*)::int, count(*) FILTER (WHERE state = 'dead')::int "
            "FROM qbsync.outbox").fetchone() or (0, 0)
        orders = conn.execute(
            "SELECT o.id::text, o.quickbooks_invoice_id, m.qbo_id, m.doc_number "
            "FROM dixis.orders o LEFT JOIN qbsync.entity_map m "
            "  ON m.entity = 'order' AND m.key = o.id::text "
            "WHERE o.id = ANY(%s::bigint[])", (keys,)).fetchall()
        mapped = dict(conn.execute(  # type: ignore[arg-type]
            "SELECT entity, count(*)::int FROM qbsync.entity_map GROUP BY 1").fetchall())
    invoice_ids = {str(i["Id"]) for i in invoices}
    unmapped = [o[0] for o in orders if o[2] is None]
    not_written_back = [o[0] for o in orders if o[2] is not None and str(o[1]) != str(o[2])]
    missing_in_qbo = [o[0] for o in orders if o[2] is not None and str(o[2]) not in invoice_ids]
    twice = [doc for doc, n in by_doc.items() if n > 1]
    counts = {"orders": len(keys), "emulator_invoices": len(invoices),
              "emulator_customers": len(rig.emu.entities(realm, "Customer")),
              "emulator_items": len([i for i in rig.emu.entities(realm, "Item")
                                     if i.get("Type") != "Category"]),
              "mapped_customers": mapped.get("customer", 0),
              "mapped_items": mapped.get("product", 0),
              "mapped_orders": mapped.get("order", 0)}
    checks = {
        "outbox_left": left, "dead": dead,
        "orders_without_invoice": len(unmapped), "not_written_back": len(not_written_back),
        "invoice_missing_in_emulator": len(missing_in_qbo), "doc_numbers_twice": len(twice),
        **counts,
    }
    checks["ok"] = (left == 0 and dead == 0 and not unmapped and not not_written_back
                    and not missing_in_qbo and not twice and len(invoices) == len(keys)
                    and counts["mapped_orders"] == len(keys)
                    and counts["emulator_customers"] == counts["mapped_customers"]
                    and counts["emulator_items"] == counts["mapped_items"])
    return checks


# -- report --------------------------------------------------------------------------------

HEADERS = ("orders", "ops (cust + items + inv)", "time scale", "total wall s",
           "total emulated min", "T_min min", "ratio", "requests (batch + single)",
           "budget used", "batch budget used", "fullest minute req / batch", "429s",
           "tries burnt", "ops/batch", "CPU used", "result")


def _row(r: dict[str, Any]) -> list[object]:
    o, q = r["ops"], r["requests"]
    passed = (r["ratio"] <= TARGET_RATIO and r["budget_used"] >= TARGET_BUDGET
              and r["throttled"] == 0)
    return [r["orders"], f"{sum(o.values())} ({o['customers']} + {o['items']} + "
            f"{o['invoices']})", r["time_scale"], r["wall_s"], r["emulated_min"],
            r["minimum_min"]["combined"], f"{r['ratio']:.3f}",
            f"{q['total']} ({q['batch']} + {q['single']})", f"{100 * r['budget_used']:.1f} %",
            f"{100 * r['batch_budget_used']:.1f} %",
            f"{r['fullest_minute']['requests']} / {r['fullest_minute']['batches']}",
            r["throttled"], r["tries_burnt"], r["ops_per_batch"],
            f"{100 * r['cpu']['used_share']:.0f} %",
            "pass" if passed else "MISS"]


def _per_minute(per_minute: dict[str, list[int]]) -> str:
    pairs = zip_longest(per_minute["requests"], per_minute["batches"], fillvalue=0)
    return ", ".join(f"{n} ({b})" for n, b in pairs)


def markdown(report: dict[str, Any]) -> str:
    m, r = report["machine"], report["result"]
    cpu = r["cpu"]
    return "\n".join([
        f"Measured {m['date']} on {m['nproc']} cores, {m['memory_gib']} GiB RAM, "
        f"PostgreSQL {m['server_version']} (synchronous_commit={m['synchronous_commit']}, "
        f"fsync={m['fsync']}), load average {m['load_avg_1m']} at start; daemon = `qbsync "
        f"run` subprocess (batch mode, concurrency {report['params']['concurrency']}, shared "
        f"limiter at rate_time_scale {r['time_scale']}); emulator over a socket in the "
        f"benchmark process, limits on (500/min, 10/s, 10 in flight, 40 batches/min), clock "
        f"{r['time_scale']}x; {report['params']['busy']} busy loop(s) beside it, load "
        f"average {report['load_avg_1m_after']} at the end. Nothing in QuickBooks at the "
        f"start: customers, items and invoices are all created. T_min = ops / (40 x 30 + "
        f"460) emulated minutes "
        f"(batch-only bound: {r['minimum_min']['batch_only']} min).",
        "",
        f"    {report['command']}",
        "",
        markdown_table(HEADERS, [_row(r)]),
        "",
        f"CPU over the run (s): daemon {cpu['daemon_cpu_s']}, PostgreSQL backends "
        f"{cpu['postgres_cpu_s']}, emulator + bench {cpu['emulator_cpu_s']}, of "
        f"{cpu['capacity_s']} available. Requests (of them batches) per emulated minute "
        f"from the commit, the last partial: "
        f"{_per_minute(r['per_minute'])}. "
        f"Fullest emulated second: {r['fullest_second']} "
        f"requests; 429s by limit: {r['throttled_by'] or 'none'}. Targets: ratio ≤ "
        f"{TARGET_RATIO}, budget ≥ {100 * TARGET_BUDGET:.0f} %, zero 429s. "
        f"Checks: {report['checks']}.",
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="A backfill of N completed orders (customers, items and invoices all "
                    "new) against an emulator enforcing QuickBooks' limits on a shrunk "
                    "clock: total vs the limits' minimum, budget used, 429s.")
    parser.add_argument("--short", action="store_true",
                        help="seconds in all (300 orders, time scale 2); for the tests")
    parser.add_argument("--orders", type=int, help="completed orders (default 10000; "
                        "short 300)")
    parser.add_argument("--time-scale", type=float,
                        help="emulated minutes per real minute (default 2; short 2)")
    parser.add_argument("--concurrency", type=int, default=10,
                        help="daemon concurrency (default %(default)s, the maximum)")
    parser.add_argument("--busy", type=int, default=0, metavar="N",
                        help="N CPU-bound busy loops (processes) running beside the backfill, "
                             "to see the pacing hold on a loaded machine (default 0)")
    add_common_options(parser, "qbsync_bench_backfill")
    args = parser.parse_args(argv)
    args.orders = args.orders or (300 if args.short else 10000)
    args.time_scale = args.time_scale or 2.0
    if args.orders < 1 or args.time_scale <= 0 or args.concurrency < 1:
        parser.error("--orders, --time-scale and --concurrency must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    command = command_line(__file__, argv)
    with psycopg.connect(args.url) as conn:
        machine = machine_info(conn)
    rig, log = create_rig(args.url, args.prefix, time_scale=args.time_scale, keep=args.keep)
    try:
        keys = prepare_orders(rig.url, args.orders)
        # Generous: 3x the batch-only bound in real seconds, at least two minutes.
        bound = 60 * minimum_minutes(args.orders * 2)["batch_only"] / args.time_scale
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
                for _ in range(args.busy)]
        try:
            result = run(rig, log, keys, time_scale=args.time_scale,
                         concurrency=args.concurrency, timeout=max(120.0, 3 * bound))
        finally:
            for proc in busy:
                proc.kill()
                proc.wait()
        load_after = round(os.getloadavg()[0], 2)
        result.checks = verify(rig, keys)
        exit_code = rig.stop_daemon()
        daemon_log = rig.log()
    finally:
        rig.close()
    report: dict[str, Any] = {
        "command": command.rstrip(),
        "params": {"orders": args.orders, "time_scale": args.time_scale, "short": args.short,
                   "concurrency": args.concurrency, "busy": args.busy},
        "load_avg_1m_after": load_after,
        "machine": machine,
        "targets": {"ratio": TARGET_RATIO, "budget_used": TARGET_BUDGET, "throttled": 0},
        "limits": {"per_minute": PER_MINUTE, "per_second": PER_SECOND,
                   "in_flight": IN_FLIGHT, "batch_per_minute": BATCH_PER_MINUTE,
                   "batch_size": BATCH_SIZE, "ops_per_minute": ops_per_minute()},
        "result": vars(result),
        "checks": result.checks,
        "pass": {"ratio": result.ratio <= TARGET_RATIO,
                 "budget_used": result.budget_used >= TARGET_BUDGET,
                 "throttled": result.throttled == 0, "correct": result.checks["ok"]},
        "daemon_exit_code": exit_code,
        "daemon_log_tail": daemon_log[-2000:],
    }
    report_out(args, text_table(HEADERS, [_row(vars(result))]), markdown(report), report)
    return report


if __name__ == "__main__":
    os.environ.setdefault("PGAPPNAME", "qbsync-bench-backfill")
    main()
