"""Prometheus metrics of `qbsync run` (served by `metrics_server`).

Two kinds of numbers:

* What the database knows, read at each scrape with one query (`metrics_gauges` in
  sql/queries.sql): rows per entity and state, the oldest pending change, dead rows, open
  notices and drift, each company's connection status and request budget. These are the
  same from every daemon of a database, whichever one Prometheus asks (aggregate them with
  max, not sum). While the database does not answer (or, at start-up, before it has
  answered and its schema passed) they are left out and ``qbsync_database_up`` is 0.
* What this process did, counted as it happens: pushes by outcome (as the outcome is
  recorded, so they agree with qbsync.integration_logs), QuickBooks requests and their
  durations, 429s, token refreshes, rate-limit permits, the time from the shop's commit to
  QuickBooks accepting the push, the last success per entity. Sum these over the daemons.
* Where this process's start-up stands, ``qbsync_startup_phase{phase}`` (`startup`): the
  endpoint listens while start-up waits for the database, a connected company or
  QuickBooks, so that alerts see a daemon that cannot start as one, not as one that is down.

Labels stay few and bounded: entity, operation, outcome, endpoint (a QuickBooks entity type
or ``query``, ``batch``, ...), HTTP status, realm, kind, phase. Never a key, an id or a message.

`Metrics` is the observer the QuickBooks client, the rate limiter and the token store call
(`qbo.observer.Observer`) and the one the worker and the pusher tell of every recorded
outcome (`model.OutcomeObserver`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from . import __version__
from .db import CONNECTION_ERRORS
from .model import SUCCESS_OUTCOMES
from .queries import load as load_queries
from .startup import PHASES

log = logging.getLogger(__name__)
Q = load_queries()

SUCCESSES = frozenset({*SUCCESS_OUTCOMES.values(), "pushed"})
# QuickBooks answers in tens of milliseconds to seconds; a batch of 30 takes longer.
REQUEST_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# From a change in the shop to QuickBooks accepting it: a second when idle, minutes or
# hours behind a backlog, a throttle or a company waiting to be reconnected.
COMMIT_TO_PUSH_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                          4 * 3600.0, 24 * 3600.0)
SCRAPE_TIMEOUT = 5.0  # seconds the database query of a scrape may take
SCRAPE_REUSE = 1.0  # seconds a database read serves further scrapes (several scrapers)


class DatabaseGauges(Collector):
    """The gauges read from the database: `refresh` before each exposition."""

    def __init__(self) -> None:
        self._rows: list[asyncpg.Record] | None = None
        self._read_at = 0.0
        self._seconds = 0.0
        self._error: str | None = None
        self._lock = asyncio.Lock()

    async def refresh(self, pool: asyncpg.Pool | None) -> None:
        """Read the gauges (None: no database to ask yet, start-up waits for it)."""
        if pool is None:
            self._rows, self._seconds = None, 0.0
            return
        async with self._lock:  # concurrent scrapes share one query
            if self._rows is not None and time.monotonic() - self._read_at < SCRAPE_REUSE:
                return
            started = time.monotonic()
            try:
                self._rows = await pool.fetch(Q.metrics_gauges, timeout=SCRAPE_TIMEOUT)
                self._error = None
            except CONNECTION_ERRORS as exc:
                if self._error is None:  # once per outage, not at every scrape
                    log.warning("metrics: reading the database's numbers failed: %s", exc)
                self._rows, self._error = None, str(exc) or type(exc).__name__
            self._read_at = time.monotonic()
            self._seconds = self._read_at - started

    def describe(self) -> Iterable[Metric]:
        return [*self._own(), *self._families([])]

    def collect(self) -> Iterable[Metric]:
        yield from self._own()
        if self._rows is not None:
            yield from self._families(self._rows)

    def _own(self) -> list[Metric]:
        up = GaugeMetricFamily("qbsync_database_up",
                               "1 when the last scrape's database query answered")
        up.add_metric([], 0.0 if self._rows is None else 1.0)
        took = GaugeMetricFamily("qbsync_database_scrape_seconds",
                                 "Time the last scrape's database query took")
        took.add_metric([], self._seconds)
        return [up, took]

    @staticmethod
    def _families(rows: Iterable[asyncpg.Record]) -> Iterator[Metric]:
        rows_ = GaugeMetricFamily(
            "qbsync_outbox_rows", "Rows of the queue per entity and state (pending includes "
            "changes not collected into the outbox yet)", labels=["entity", "state"])
        oldest = GaugeMetricFamily(
            "qbsync_oldest_pending_age_seconds",
            "Age of the oldest pending change per entity (0: none)", labels=["entity"])
        dead = GaugeMetricFamily("qbsync_dead_rows", "Dead rows per entity (out of tries or "
                                 "unfixable: see qbsync.failed)", labels=["entity"])
        notices = GaugeMetricFamily("qbsync_open_notices",
                                    "Notices nobody acknowledged (qbsync.open_notices)")
        drift = GaugeMetricFamily("qbsync_open_drift",
                                  "Changes made in QuickBooks outside qbsync, unresolved "
                                  "(qbsync.drift)")
        connection = GaugeMetricFamily(
            "qbsync_connection_status", "1 for each company's current connection status "
            "(connected, needs_reconnect, disconnected)", labels=["realm", "status"])
        budget = GaugeMetricFamily(
            "qbsync_rate_limit_budget", "QuickBooks requests allowed per (real) minute, per "
            "company and kind (request, batch)", labels=["realm", "kind"])
        for family, a, b, value in rows:
            if family == "outbox_rows":
                rows_.add_metric([a, b], value)
                if b == "dead":
                    dead.add_metric([a], value)
            elif family == "oldest_pending":
                oldest.add_metric([a], value)
            elif family == "open_notices":
                notices.add_metric([], value)
            elif family == "open_drift":
                drift.add_metric([], value)
            elif family == "connection":
                connection.add_metric([a, b], value)
            elif family == "budget":
                budget.add_metric([a, b], value)
        yield from (rows_, oldest, dead, notices, drift, connection, budget)


class Metrics:
    """The daemon's metric families in their own registry (several daemons may share a
    test process)."""

    def __init__(self, *, process: bool = True, clock: Callable[[], float] = time.time
                 ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.clock = clock
        r = self.registry
        if process:  # process_* (CPU, memory, open files, start time), python_*
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.pushes = Counter(
            "qbsync_pushes", "Outcomes recorded, as integration_logs has them: outcome "
            "created, updated, adopted, voided, deleted (successes), skipped, failed (a try "
            "failed; the row comes back), waiting, dead", ["entity", "operation", "outcome"],
            registry=r)
        self.requests = Counter(
            "qbsync_quickbooks_requests", "HTTP requests to QuickBooks' API by endpoint and "
            "status (none: no answer)", ["endpoint", "status"], registry=r)
        self.request_seconds = Histogram(
            "qbsync_quickbooks_request_duration_seconds", "Time QuickBooks took to answer, "
            "from the request leaving (after its permit) to the answer read",
            ["endpoint"], buckets=REQUEST_BUCKETS, registry=r)
        self.commit_to_push = Histogram(
            "qbsync_commit_to_push_seconds", "From the shop's change (its oldest one not "
            "pushed yet) to QuickBooks accepting the push, per entity", ["entity"],
            buckets=COMMIT_TO_PUSH_BUCKETS, registry=r)
        self.throttles = Counter("qbsync_throttled", "429 answers from QuickBooks",
                                 ["realm"], registry=r)
        self.token_refreshes = Counter(
            "qbsync_token_refreshes", "Token refreshes by outcome: refreshed, shared (another "
            "process had refreshed), rejected (the company must be reconnected), failed",
            ["outcome"], registry=r)
        self.permits = Counter(
            "qbsync_rate_limit_permits", "Rate-limit permits this process took, per company "
            "and kind (compare with qbsync_rate_limit_budget)", ["realm", "kind"], registry=r)
        self.last_success = Gauge(
            "qbsync_last_success_timestamp_seconds", "When this process last recorded a "
            "successful push of the entity (Unix time)", ["entity"], registry=r)
        build = Gauge("qbsync_build_info", "qbsync's version (always 1)", ["version"],
                      registry=r)
        build.labels(__version__).set(1)
        self.startup_phase = Gauge(
            "qbsync_startup_phase", "1 for the phase this process's start-up is in: database "
            "(waits for it), connection (waits for a connected company: qbsync connect), "
            "quickbooks (reads the company's settings), running (started)", ["phase"],
            registry=r)
        self.enter_phase(PHASES[0])
        self.database = DatabaseGauges()
        r.register(self.database)
        # the children by label values: labels() takes a lock and builds a key each call
        self._children: dict[tuple[Any, ...], Any] = {}
        self._requests: dict[tuple[str, int | None], tuple[Any, Any]] = {}
        self._outcomes: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def enter_phase(self, phase: str) -> None:
        """Start-up reached `phase` (one of startup.PHASES)."""
        for name in PHASES:
            self.startup_phase.labels(name).set(1 if name == phase else 0)

    # -- qbo.observer.Observer --------------------------------------------------------

    def request(self, endpoint: str, status: int | None, seconds: float) -> None:
        # one look-up per request for both children (this runs for every HTTP exchange)
        children = self._requests.get((endpoint, status))
        if children is None:
            children = self._requests[(endpoint, status)] = (
                self.requests.labels(endpoint, "none" if status is None else str(status)),
                self.request_seconds.labels(endpoint))
        children[0].inc()
        children[1].observe(seconds)

    def throttled(self, realm_id: str) -> None:
        self._child(self.throttles, realm_id).inc()

    def permit(self, realm_id: str, kind: str) -> None:
        self._child(self.permits, realm_id, kind).inc()

    def token_refresh(self, outcome: str) -> None:
        self._child(self.token_refreshes, outcome).inc()

    # -- model.OutcomeObserver --------------------------------------------------------

    def outcome(self, entity: str, operation: str, outcome: str,
                enqueued_at: datetime | None = None) -> None:
        children = self._outcomes.get((entity, operation, outcome))
        if children is None:
            success = outcome in SUCCESSES
            children = self._outcomes[(entity, operation, outcome)] = (
                self.pushes.labels(entity, operation, outcome),
                self.last_success.labels(entity) if success else None,
                self.commit_to_push.labels(entity) if success else None)
        pushes, last_success, commit_to_push = children
        pushes.inc()
        if last_success is not None:
            now = self.clock()
            last_success.set(now)
            if enqueued_at is not None and commit_to_push is not None:
                commit_to_push.observe(max(0.0, now - enqueued_at.timestamp()))

    # -- exposition -------------------------------------------------------------------

    async def exposition(self, pool: asyncpg.Pool | None) -> bytes:
        """The text format, the database's gauges read now (left out without a pool)."""
        await self.database.refresh(pool)
        return generate_latest(self.registry)
