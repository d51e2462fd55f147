"""What the metrics endpoint says while `qbsync run` starts: the phase, /readyz's reason,
/healthz going by the start-up's steps, QuickBooks' answers counted as steps, and the
database's gauges left out until there is a pool to read them from."""

from __future__ import annotations

from prometheus_client import generate_latest

from qbsync.metrics import Metrics
from qbsync.startup import PHASES, Startup, stall_limit
from tests.clock import Clock
from tests.metrics_support import parse, total


def phases(metrics: Metrics) -> dict[str, float]:
    return {s.labels["phase"]: s.value
            for s in parse(generate_latest(metrics.registry).decode())
            if s.name == "qbsync_startup_phase"}


def test_start_up_begins_waiting_for_the_database() -> None:
    metrics = Metrics(process=False)
    startup = Startup(on_phase=metrics.enter_phase)
    assert startup.not_ready() == "starting: waiting for the database"
    assert phases(metrics) == {"database": 1, "connection": 0, "quickbooks": 0, "running": 0}


def test_the_phase_gauge_names_one_phase_at_a_time() -> None:
    metrics = Metrics(process=False)
    startup = Startup(on_phase=metrics.enter_phase)
    for phase in PHASES:
        startup.enter(phase, f"in {phase}")
        assert phases(metrics) == {p: float(p == phase) for p in PHASES}
        assert startup.not_ready() == f"starting: in {phase}"


def test_readyz_gives_the_last_reason_on_one_line() -> None:
    startup = Startup()
    startup.enter("connection", "QuickBooks company 9341 needs reconnecting: run `qbsync connect`")
    startup.step("QuickBooks company 9341 is disconnected:\n run `qbsync connect`")
    assert startup.not_ready() == \
        "starting: QuickBooks company 9341 is disconnected: run `qbsync connect`"
    startup.step()  # a try with nothing new to say keeps the reason
    assert startup.not_ready().endswith("is disconnected: run `qbsync connect`")


def test_healthz_goes_by_the_start_ups_last_step() -> None:
    clock = Clock()
    startup = Startup(stall_after=150, clock=clock)
    clock.now += 149
    assert startup.stalled() is None
    startup.step("waiting for the database (OSError: connection refused)")
    clock.now += 149
    assert startup.stalled() is None
    clock.now += 2
    assert startup.stalled() == (
        "start-up has taken no step for 151 s (limit 150 s) in phase database (waiting for "
        "the database (OSError: connection refused))")
    startup.enter("connection", "no QuickBooks company is active: run `qbsync connect`")
    assert startup.stalled() is None


def test_the_stall_limit_covers_a_database_operation_a_request_and_a_pause() -> None:
    assert stall_limit(60) == 60 + 60 + 30
    assert stall_limit(300) == 60 + 300 + 30


def test_quickbooks_requests_permits_and_refreshes_are_steps_and_still_counted() -> None:
    clock = Clock()
    metrics = Metrics(process=False)
    startup = Startup(stall_after=10, clock=clock)
    observer = startup.observing(metrics)
    for event in (lambda: observer.request("query", 503, 0.2),
                  lambda: observer.permit("9341", "request"),
                  lambda: observer.token_refresh("refreshed")):
        clock.now += 11
        assert startup.stalled() is not None
        event()
        assert startup.stalled() is None
    clock.now += 11
    observer.throttled("9341")  # a 429 is a request too: that one is the step
    assert startup.stalled() is not None
    s = parse(generate_latest(metrics.registry).decode())
    assert total(s, "qbsync_quickbooks_requests_total", status="503") == 1
    assert total(s, "qbsync_rate_limit_permits_total", kind="request") == 1
    assert total(s, "qbsync_token_refreshes_total", outcome="refreshed") == 1
    assert total(s, "qbsync_throttled_total", realm="9341") == 1


async def test_before_the_database_answers_a_scrape_reads_nothing_from_it() -> None:
    metrics = Metrics(process=False)
    s = parse((await metrics.exposition(None)).decode())
    assert total(s, "qbsync_database_up") == 0
    assert not [x for x in s if x.name == "qbsync_outbox_rows"]
    assert total(s, "qbsync_build_info") == 1
    assert total(s, "qbsync_startup_phase", phase="database") == 1
