"""The queue alone, side by side: qbsync's outbox vs Procrastinate vs PgQueuer, on the same
PostgreSQL, in one run.

    python bench/queue_compare.py                # full: 3 rounds x 10,000 jobs, 100 latency samples
    python bench/queue_compare.py --short        # seconds; what the tests run
    python bench/queue_compare.py --json out.json --markdown

Needs the `bench` extra (`pip install procrastinate pgqueuer`). Each system gets its own
database on the server; the worker and the client that enqueues run in this process, as
asyncio tasks on one event loop (the same footing for all three).

* qbsync      - the daemon's real `qbsync.worker.Worker` loop (claim free slots with
  `qbsync.claim`, which first collects captured changes into the outbox; one task per row;
  the idle protocol: announce_waiting + LISTEN) with a stub pusher whose push is a no-op, so
  every row is finished as skipped, the outcomes of rows that finished together in one
  `qbsync.skip_many` call (held-lease check, an integration_logs row each, DELETE): the
  no-op job, through the real SQL functions. `--finish complete` finishes them as pushed
  instead (`qbsync.complete_many`: entity_map upsert, write-back lookup, log, outcome
  NOTIFY: what a real push records). Concurrency 10 (the daemon's default and maximum),
  batch mode off (the batch path is about QuickBooks requests, not the queue). Enqueue:
  one INSERT of N rows into `qbsync.changes` (what N capture triggers add); latency jobs
  append one change and NOTIFY the waiting worker, as a capture trigger does.
* procrastinate - `App.run_worker_async(concurrency=10)` (otherwise default worker
  settings: LISTEN/NOTIFY, 5 s polling, jobs kept as succeeded), `batch_defer_async`.
* pgqueuer     - `QueueManager.run()` with its defaults (batch_size 10, no concurrency cap,
  NOTIFY on enqueue), `Queries.enqueue` with lists.

Drain: N jobs pre-enqueued (timed: enqueue rate), then a worker starts and the clock runs
until the N-th no-op job has run and the queue is empty (jobs/s). Rounds rotate the order
of the systems; before each run the tables are emptied and vacuumed. Latency: with the
worker idle, one job is enqueued (its own transaction) every `--pause` s; job start - time
the enqueue call began, and - time it returned (COMMIT done).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import asyncpg
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # bench/ is not a package
    Spread,
    add_common_options,
    as_url,
    command_line,
    create_database,
    drop_database,
    machine_info,
    markdown_table,
    percentiles,
    report_out,
    text_table,
    with_dbname,
)

SYSTEMS = ("qbsync", "procrastinate", "pgqueuer")
# What each system reaches with its own defaults on a 2-core machine of this kind, printed
# beside this run's rates for reference; the target is relative: qbsync at least PgQueuer's
# rate, measured in the same run.
REFERENCE_JOBS_PER_S = {"procrastinate": 490.0, "pgqueuer": 4800.0}


class Probe:
    """What the no-op jobs report: how many ran, and when each one started."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.started: dict[str, float] = {}
        self.done = asyncio.Event()

    def hit(self, key: str | None = None) -> None:
        self.count += 1
        if key is not None:
            self.started.setdefault(key, time.perf_counter())
        if self.target and self.count >= self.target:
            self.done.set()

    def reset(self, target: int) -> None:
        self.count, self.target = 0, target
        self.started.clear()
        self.done = asyncio.Event()


# -- the three systems --------------------------------------------------------------------

class System:
    name = ""

    def __init__(self, url: str, probe: Probe) -> None:
        self.url = url
        self.probe = probe

    async def setup(self) -> None: ...
    async def reset(self) -> None: ...
    async def enqueue_many(self, n: int) -> None: ...
    async def enqueue_one(self, key: str) -> None: ...
    async def start_worker(self) -> None: ...
    async def stop_worker(self) -> None: ...
    async def pending(self) -> int:
        return 0
    async def close(self) -> None: ...

    async def _vacuum(self, tables: str) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(f"VACUUM (ANALYZE) {tables}")
        finally:
            await conn.close()


class NoopPusher:
    """Stands in for qbsync.sync.Pusher: every push is a no-op."""

    def __init__(self, probe: Probe, finish: str) -> None:
        self.probe = probe
        self.finish = finish
        self.realm = SimpleNamespace(realm_id="bench-realm")
        self.client = SimpleNamespace(limiter=None)  # no QuickBooks, no rate limits
        self.entities: dict[str, Any] = {}
        self.in_flight: dict[Any, Any] = {}

    async def push(self, row: Any) -> Any:
        from qbsync.model import Pushed, Skipped

        self.probe.hit(row.key)
        if self.finish == "complete":
            return Pushed({"qbo_type": "Item", "qbo_id": row.key, "sync_token": "0",
                           "operation": "create", "response_time_ms": 0})
        return Skipped("no-op")


class Qbsync(System):
    name = "qbsync"

    def __init__(self, url: str, probe: Probe, finish: str) -> None:
        super().__init__(url, probe)
        self.finish = finish
        self.pool: asyncpg.Pool | None = None
        self.task: asyncio.Task[None] | None = None
        self.stop: asyncio.Event | None = None
        self.conn: asyncpg.Connection | None = None

    async def setup(self) -> None:
        from qbsync.migrate import migrate

        await asyncio.to_thread(migrate, self.url)
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute("SELECT qbsync.define_entity('noop', 'Item')")
            await conn.execute("SELECT qbsync.register_worker('bench-queue', 'bench', 0)")
        finally:
            await conn.close()
        self.conn = await asyncpg.connect(self.url)

    async def reset(self) -> None:
        assert self.conn is not None
        await self.conn.execute("TRUNCATE qbsync.changes, qbsync.outbox, "
                                "qbsync.integration_logs, qbsync.entity_map")
        await self._vacuum("qbsync.changes, qbsync.outbox, qbsync.integration_logs, "
                           "qbsync.entity_map")

    # Enqueue = what a capture trigger does: append the change, NOTIFY only a waiting
    # daemon. The worker's claims collect the changes into the outbox.
    async def enqueue_many(self, n: int) -> None:
        assert self.conn is not None
        await self.conn.execute("INSERT INTO qbsync.changes (entity, key) "
                                "SELECT 'noop', g::text FROM generate_series(1, $1) AS g", n)

    async def enqueue_one(self, key: str) -> None:
        assert self.conn is not None
        await self.conn.execute(
            "WITH change AS (INSERT INTO qbsync.changes (entity, key) VALUES ('noop', $1)) "
            "SELECT pg_notify('qbsync_wakeup', '') WHERE qbsync_capture.daemon_waiting()", key)

    async def start_worker(self) -> None:
        from qbsync.db import Listener, create_pool
        from qbsync.worker import Worker, WorkerConfig

        self.pool = await create_pool(self.url, size=14)  # as the daemon: concurrency + 4
        config = WorkerConfig(worker_id="bench-queue", concurrency=10, batch_threshold=None)
        worker = Worker(self.pool, Listener(self.url), NoopPusher(self.probe, self.finish),  # type: ignore[arg-type]
                        config)
        self.stop = asyncio.Event()
        self.worker = worker
        self.task = asyncio.create_task(worker.run(self.stop))

    async def stop_worker(self) -> None:
        assert self.stop is not None
        assert self.task is not None
        assert self.pool is not None
        self.stop.set()
        await asyncio.wait_for(self.task, 30)
        await self.worker.listener.close()
        await self.pool.close()

    async def pending(self) -> int:
        assert self.conn is not None
        return int(await self.conn.fetchval("SELECT qbsync.backlog()"))

    async def close(self) -> None:
        if self.conn is not None:
            await self.conn.close()


class Procrastinate(System):
    name = "procrastinate"

    async def setup(self) -> None:
        import procrastinate

        self.app = procrastinate.App(connector=procrastinate.PsycopgConnector(
            conninfo=self.url))
        probe = self.probe

        @self.app.task(name="noop")
        async def noop(key: str | None = None) -> None:
            probe.hit(key)

        self.noop = noop
        await self.app.open_async()
        await self.app.schema_manager.apply_schema_async()
        self.conn = await asyncpg.connect(self.url)
        self.task: asyncio.Task[None] | None = None

    async def reset(self) -> None:
        await self.conn.execute("TRUNCATE procrastinate_jobs, procrastinate_events "
                                "RESTART IDENTITY CASCADE")
        await self._vacuum("procrastinate_jobs, procrastinate_events")

    async def enqueue_many(self, n: int) -> None:
        for start in range(0, n, 5000):
            await self.noop.batch_defer_async(*({} for _ in range(min(5000, n - start))))

    async def enqueue_one(self, key: str) -> None:
        await self.noop.defer_async(key=key)

    async def start_worker(self) -> None:
        self.task = asyncio.create_task(self.app.run_worker_async(
            concurrency=10, install_signal_handlers=False))

    async def stop_worker(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    async def pending(self) -> int:
        return int(await self.conn.fetchval(
            "SELECT count(*) FROM procrastinate_jobs WHERE status IN ('todo', 'doing')"))

    async def close(self) -> None:
        await self.conn.close()
        await self.app.close_async()


class PgQueuer(System):
    name = "pgqueuer"

    async def setup(self) -> None:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.queries import Queries

        conn = await asyncpg.connect(self.url)
        try:
            await Queries(AsyncpgDriver(conn)).install()
        finally:
            await conn.close()
        self.conn = await asyncpg.connect(self.url)
        self.queries = Queries(AsyncpgDriver(self.conn))
        self.task: asyncio.Task[None] | None = None

    async def reset(self) -> None:
        await self.conn.execute("TRUNCATE pgqueuer, pgqueuer_log, pgqueuer_statistics")
        await self._vacuum("pgqueuer, pgqueuer_log, pgqueuer_statistics")

    async def enqueue_many(self, n: int) -> None:
        for start in range(0, n, 5000):
            m = min(5000, n - start)
            await self.queries.enqueue(["noop"] * m, [None] * m, [0] * m)

    async def enqueue_one(self, key: str) -> None:
        await self.queries.enqueue("noop", key.encode())

    async def start_worker(self) -> None:
        from pgqueuer.db import AsyncpgDriver
        from pgqueuer.qm import QueueManager
        from pgqueuer.queries import Queries

        self.worker_conn = await asyncpg.connect(self.url)
        self.qm = QueueManager(Queries(AsyncpgDriver(self.worker_conn)))
        probe = self.probe

        @self.qm.entrypoint("noop")
        async def noop(job: Any) -> None:
            probe.hit(job.payload.decode() if job.payload else None)

        self.task = asyncio.create_task(self.qm.run())

    async def stop_worker(self) -> None:
        assert self.task is not None
        self.qm.shutdown.set()
        try:
            await asyncio.wait_for(self.task, 30)
        finally:
            with contextlib.suppress(Exception):
                await self.worker_conn.close()

    async def pending(self) -> int:
        return int(await self.conn.fetchval("SELECT count(*) FROM pgqueuer"))

    async def close(self) -> None:
        await self.conn.close()


# -- measurements -------------------------------------------------------------------------

@dataclass
class Drain:
    round: int
    system: str
    position: int
    jobs: int
    enqueue_s: float
    enqueue_per_s: float
    drain_s: float
    jobs_per_s: float
    ran: int                      # no-op jobs that ran (== jobs, each exactly once)
    left: int                     # jobs still queued after the drain (0)


async def wait_for(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError(f"{what} not reached within {within} s")


async def drain(system: System, probe: Probe, n: int, round_: int, position: int,
                within: float) -> Drain:
    await system.reset()
    started = time.perf_counter()
    await system.enqueue_many(n)
    enqueue_s = time.perf_counter() - started
    probe.reset(n)
    started = time.perf_counter()
    await system.start_worker()
    try:
        await asyncio.wait_for(probe.done.wait(), within)

        async def empty() -> bool:
            return await system.pending() == 0

        await wait_for(empty, within, f"{system.name}: empty queue")
        drain_s = time.perf_counter() - started
    finally:
        await system.stop_worker()
    await asyncio.sleep(0.2)
    return Drain(round_, system.name, position, n, round(enqueue_s, 4),
                 round(n / enqueue_s, 1), round(drain_s, 4), round(n / drain_s, 1),
                 probe.count, await system.pending())


async def latency(system: System, probe: Probe, samples: int, pause: float
                  ) -> list[dict[str, float]]:
    await system.reset()
    probe.reset(0)
    await system.start_worker()
    rng = random.Random(5)
    out: list[dict[str, float]] = []
    try:
        await asyncio.sleep(1.0)  # the worker settles into its idle wait
        for _ in range(samples):
            await asyncio.sleep(pause * rng.uniform(0.75, 1.25))
            key = uuid.uuid4().hex
            before = time.perf_counter()
            await system.enqueue_one(key)
            returned = time.perf_counter()

            async def ran(key: str = key) -> bool:
                return key in probe.started

            await wait_for(ran, 10, f"{system.name}: job start")
            began = probe.started[key]
            out.append({"from_enqueue_ms": round(1000 * (began - before), 3),
                        "from_commit_return_ms": round(1000 * (began - returned), 3)})
    finally:
        await system.stop_worker()
    return out


@dataclass
class Results:
    drains: list[Drain] = field(default_factory=list)
    latencies: dict[str, list[dict[str, float]]] = field(default_factory=dict)


async def measure(urls: dict[str, str], args: argparse.Namespace, log: Any) -> Results:
    probe = Probe()
    systems: dict[str, System] = {
        "qbsync": Qbsync(urls["qbsync"], probe, args.finish),
        "procrastinate": Procrastinate(urls["procrastinate"], probe),
        "pgqueuer": PgQueuer(urls["pgqueuer"], probe),
    }
    results = Results()
    try:
        for s in systems.values():
            await s.setup()
        for r in range(args.rounds):
            order = [SYSTEMS[(i + r) % len(SYSTEMS)] for i in range(len(SYSTEMS))]
            for position, name in enumerate(order):
                d = await drain(systems[name], probe, args.jobs, r + 1, position,
                                within=max(120.0, args.jobs / 50))
                results.drains.append(d)
                print(f"round {r + 1}/{args.rounds} {name:<13} enqueue {d.enqueue_per_s:9.0f}/s"
                      f"  drain {d.jobs_per_s:8.0f} jobs/s", file=log, flush=True)
        for name in SYSTEMS:
            results.latencies[name] = await latency(systems[name], probe, args.samples,
                                                    args.pause)
            p = percentiles([x["from_enqueue_ms"] for x in results.latencies[name]])
            print(f"latency {name:<13} p50 {p['p50']:.2f} ms p99 {p['p99']:.2f} ms", file=log,
                  flush=True)
    finally:
        for s in systems.values():
            with contextlib.suppress(Exception):
                await s.close()
    return results


def summarize(results: Results) -> list[dict[str, Any]]:
    out = []
    pgq = [d.jobs_per_s for d in results.drains if d.system == "pgqueuer"]
    pgq_median = Spread.of(pgq).median if pgq else None
    for name in SYSTEMS:
        mine = [d for d in results.drains if d.system == name]
        if not mine:
            continue
        rate = Spread.of([d.jobs_per_s for d in mine])
        enq = Spread.of([d.enqueue_per_s for d in mine])
        lat = results.latencies.get(name) or []
        row: dict[str, Any] = {
            "system": name, "rounds": len(mine), "jobs": sum(d.jobs for d in mine),
            "ran": sum(d.ran for d in mine), "left": sum(d.left for d in mine),
            "median_jobs_per_s": rate.median, "min_jobs_per_s": rate.min,
            "max_jobs_per_s": rate.max, "median_enqueue_per_s": enq.median,
            "ratio_vs_pgqueuer": round(rate.median / pgq_median, 3) if pgq_median else None,
            "latency": {}, "reference_jobs_per_s": REFERENCE_JOBS_PER_S.get(name),
            "pass": None,
        }
        for key in ("from_enqueue_ms", "from_commit_return_ms"):
            if lat:
                row["latency"][key] = {k: round(v, 2) for k, v in
                                       percentiles([x[key] for x in lat]).items()}
        if name == "qbsync" and row["ratio_vs_pgqueuer"] is not None:
            row["pass"] = row["ratio_vs_pgqueuer"] >= 1.0
        out.append(row)
    return out


HEADERS = ("system", "rounds × jobs", "median jobs/s", "min–max", "ratio vs PgQueuer",
           "enqueue/s", "start latency p50 / p99 ms (from enqueue)",
           "p50 / p99 ms (from COMMIT return)", "target", "result")


def _rows(summary: Sequence[dict[str, Any]], jobs: int) -> list[list[object]]:
    rows: list[list[object]] = []
    for s in summary:
        lat = s["latency"].get("from_enqueue_ms")
        ret = s["latency"].get("from_commit_return_ms")
        rows.append([
            s["system"], f"{s['rounds']} × {jobs}", f"{s['median_jobs_per_s']:.0f}",
            f"{s['min_jobs_per_s']:.0f}–{s['max_jobs_per_s']:.0f}",
            "—" if s["ratio_vs_pgqueuer"] is None else f"{s['ratio_vs_pgqueuer']:.2f}",
            f"{s['median_enqueue_per_s']:.0f}",
            f"{lat['p50']:.2f} / {lat['p99']:.2f}" if lat else "—",
            f"{ret['p50']:.2f} / {ret['p99']:.2f}" if ret else "—",
            "≥ PgQueuer" if s["system"] == "qbsync" else "—",
            {True: "pass", False: f"MISS ({s['ratio_vs_pgqueuer']:.2f}×)", None: "—"}[s["pass"]],
        ])
    return rows


def markdown(report: dict[str, Any]) -> str:
    m, p = report["machine"], report["params"]
    return "\n".join([
        f"Measured {m['date']} on {m['nproc']} cores, {m['memory_gib']} GiB RAM, "
        f"PostgreSQL {m['server_version']} (synchronous_commit={m['synchronous_commit']}, "
        f"fsync={m['fsync']}), load average {m['load_avg_1m']} at start; procrastinate "
        f"{p['versions']['procrastinate']}, pgqueuer {p['versions']['pgqueuer']}; "
        f"{p['rounds']} rounds of {p['jobs']} no-op jobs per system (order rotating), "
        f"{p['samples']} latency samples {p['pause']} s apart; qbsync finishes with "
        f"`qbsync.{'skip_many' if p['finish'] == 'skip' else 'complete_many'}` (outcomes "
        "of rows that finished together in one call).",
        "",
        f"    {report['command']}",
        "",
        markdown_table(HEADERS, _rows(report["summary"], p["jobs"])),
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="qbsync's outbox vs Procrastinate vs PgQueuer: no-op jobs/s and "
                    "commit → start latency, side by side on one server.")
    parser.add_argument("--short", action="store_true",
                        help="seconds in all (1 round of 300 jobs, 10 latency samples)")
    parser.add_argument("--jobs", type=int, help="jobs per drain (default 10000; short 300)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3; short 1)")
    parser.add_argument("--samples", type=int, help="latency samples (default 100; short 10)")
    parser.add_argument("--pause", type=float, default=0.1,
                        help="seconds between latency samples (default %(default)s)")
    parser.add_argument("--finish", choices=("skip", "complete"), default="skip",
                        help="how qbsync finishes a no-op row (default %(default)s)")
    add_common_options(parser, "qbsync_bench_queue")
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (300 if args.short else 10000)
    args.rounds = args.rounds or (1 if args.short else 3)
    args.samples = args.samples or (10 if args.short else 100)
    if min(args.jobs, args.rounds, args.samples) < 1 or args.pause < 0:
        parser.error("--jobs, --rounds and --samples must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    from importlib.metadata import version

    args = parse_args(argv)
    command = command_line(__file__, argv)
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    with psycopg.connect(args.url) as conn:
        machine = machine_info(conn)
    names = {s: f"{args.prefix}_{s}" for s in SYSTEMS}
    for name in names.values():
        create_database(args.url, name)
    urls = {s: as_url(with_dbname(args.url, n)) for s, n in names.items()}
    try:
        results = asyncio.run(measure(urls, args, sys.stderr))
    finally:
        if not args.keep:
            for name in names.values():
                drop_database(args.url, name)
    report: dict[str, Any] = {
        "command": command.rstrip(),
        "params": {"jobs": args.jobs, "rounds": args.rounds, "samples": args.samples,
                   "pause": args.pause, "finish": args.finish, "short": args.short,
                   "qbsync_concurrency": 10, "procrastinate_concurrency": 10,
                   "pgqueuer_batch_size": 10,
                   "versions": {p: version(p) for p in ("procrastinate", "pgqueuer")}},
        "machine": machine,
        "summary": summarize(results),
        "drains": [vars(d) for d in results.drains],
        "latencies": results.latencies,
    }
    report_out(args, text_table(HEADERS, _rows(report["summary"], args.jobs)), markdown(report),
               report)
    return report


if __name__ == "__main__":
    os.environ.setdefault("PGAPPNAME", "qbsync-bench-queue")
    main()
