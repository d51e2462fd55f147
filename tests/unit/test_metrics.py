"""The metric families (names, kinds and labels that dashboards and alerts rely on), what the
observers count, the worker's outcomes as counted, the HTTP endpoint, and the shipped alert
rules and dashboard (promtool, where it is installed; every metric they name exists)."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase

from qbsync import daemon, metrics_server
from qbsync.config import Settings, listen_address
from qbsync.metrics import Metrics
from qbsync.metrics_server import MetricsServer
from qbsync.model import Pushed, PushFailed, Row, Skipped
from qbsync.worker import Worker, WorkerConfig
from tests.metrics_support import Sample, parse, total
from tests.unit.test_worker_loop import Pusher, Queue, until

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "qbsync.rules.yml"
RULES_TEST = ROOT / "contrib" / "prometheus" / "qbsync.rules.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "qbsync.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not installed (Debian package prometheus)")

# the families README "Observability" documents, by kind and labels
FAMILIES = {
    "qbsync_outbox_rows": ("gauge", {"entity", "state"}),
    "qbsync_oldest_pending_age_seconds": ("gauge", {"entity"}),
    "qbsync_dead_rows": ("gauge", {"entity"}),
    "qbsync_open_notices": ("gauge", set()),
    "qbsync_open_drift": ("gauge", set()),
    "qbsync_pushes": ("counter", {"entity", "operation", "outcome"}),
    "qbsync_quickbooks_requests": ("counter", {"endpoint", "status"}),
    "qbsync_quickbooks_request_duration_seconds": ("histogram", {"endpoint"}),
    "qbsync_commit_to_push_seconds": ("histogram", {"entity"}),
    "qbsync_throttled": ("counter", {"realm"}),
    "qbsync_token_refreshes": ("counter", {"outcome"}),
    "qbsync_rate_limit_permits": ("counter", {"realm", "kind"}),
    "qbsync_rate_limit_budget": ("gauge", {"realm", "kind"}),
    "qbsync_last_success_timestamp_seconds": ("gauge", {"entity"}),
    "qbsync_build_info": ("gauge", {"version"}),
    "qbsync_startup_phase": ("gauge", {"phase"}),
}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
            "gauge": ("",)}


def families(metrics: Metrics) -> dict[str, tuple[str, set[str]]]:
    """Every family the registry describes (the database's too, before any scrape): name ->
    (kind, label names)."""
    out: dict[str, tuple[str, set[str]]] = {}
    for collector in [*metrics.registry._collector_to_names]:
        if isinstance(collector, MetricWrapperBase):  # the process's own families
            out[collector._name] = (collector._type, set(collector._labelnames))
            continue
        describe = getattr(collector, "describe", None) or collector.collect
        for family in describe():
            out[family.name] = (family.type, DATABASE_LABELS.get(family.name, set()))
    return out


# the labels of the database's gauges (GaugeMetricFamily keeps none until it has samples)
DATABASE_LABELS = {"qbsync_outbox_rows": {"entity", "state"},
                   "qbsync_oldest_pending_age_seconds": {"entity"},
                   "qbsync_dead_rows": {"entity"},
                   "qbsync_connection_status": {"realm", "status"},
                   "qbsync_rate_limit_budget": {"realm", "kind"}}


def exposed_names(metrics: Metrics) -> set[str]:
    """Sample names the exposition can carry."""
    return {name + suffix for name, (kind, _) in families(metrics).items()
            for suffix in SUFFIXES.get(kind, ("",))}


def samples(metrics: Metrics) -> list[Sample]:
    return parse(generate_latest(metrics.registry).decode())


def test_the_families_have_the_names_kinds_and_labels_dashboards_rely_on() -> None:
    found = families(Metrics(process=False))
    for name, (kind, labels) in FAMILIES.items():
        assert name in found, name
        assert found[name] == (kind, labels), name


def test_the_observers_count_requests_throttles_permits_and_refreshes() -> None:
    m = Metrics(process=False)
    m.request("invoice", 200, 0.12)
    m.request("invoice", 429, 0.01)
    m.request("batch", None, 5.0)
    m.throttled("9341")
    m.permit("9341", "request")
    m.permit("9341", "request")
    m.permit("9341", "batch")
    m.token_refresh("refreshed")
    s = samples(m)
    assert total(s, "qbsync_quickbooks_requests_total", endpoint="invoice") == 2
    assert total(s, "qbsync_quickbooks_requests_total", status="none") == 1
    assert total(s, "qbsync_quickbooks_request_duration_seconds_count") == 3
    assert total(s, "qbsync_quickbooks_request_duration_seconds_bucket", endpoint="invoice",
                 le="0.025") == 1
    assert total(s, "qbsync_throttled_total", realm="9341") == 1
    assert total(s, "qbsync_rate_limit_permits_total", kind="request") == 2
    assert total(s, "qbsync_rate_limit_permits_total", kind="batch") == 1
    assert total(s, "qbsync_token_refreshes_total", outcome="refreshed") == 1
    assert total(s, "qbsync_build_info") == 1
    assert total(s, "qbsync_database_up") == 0  # no scrape of the database yet


def test_a_success_sets_the_last_success_and_the_time_since_the_commit() -> None:
    now = 1_800_000_000.0
    m = Metrics(process=False, clock=lambda: now)
    m.outcome("order", "create", "created",
              datetime.fromtimestamp(now, UTC) - timedelta(seconds=7))
    m.outcome("order", "skip", "skipped")
    m.outcome("order", "create", "failed")
    m.outcome("customer", "create", "created")  # a dependency: no commit time of its own
    s = samples(m)
    assert total(s, "qbsync_pushes_total", entity="order") == 3
    assert total(s, "qbsync_last_success_timestamp_seconds", entity="order") == now
    assert total(s, "qbsync_commit_to_push_seconds_count", entity="order") == 1
    assert total(s, "qbsync_commit_to_push_seconds_sum", entity="order") == 7
    assert total(s, "qbsync_commit_to_push_seconds_count", entity="customer") == 0
    assert total(s, "qbsync_last_success_timestamp_seconds", entity="customer") == now


async def test_the_worker_counts_each_outcome_as_it_is_recorded() -> None:
    """Successes by what they did, skips, failed tries, dead rows: each once, with its
    row's commit time for the successes."""
    def outcome(row: Row) -> Pushed | Skipped | PushFailed:
        return {"1": Pushed({"operation": "create"}),
                "2": Pushed({"operation": "update (batch)"}),
                "3": Skipped("nothing", "skip.unchanged"),
                "4": PushFailed("retry", "try again", operation="create"),
                "5": PushFailed("permanent", "no", operation="create"),
                "6": PushFailed("waiting", "its order first", operation="wait")}[row.key]

    queue = Queue(max_attempts=3, backoff=60)
    metrics = Metrics(process=False)
    worker = Worker(None, queue.listener, Pusher(outcome),  # type: ignore[arg-type]
                    WorkerConfig(worker_id=queue.worker_id, concurrency=4,
                                 batch_threshold=None, poll_interval=0.05),
                    store=queue, observer=metrics)
    for key in "123456":
        queue.capture("order", key)
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: total(samples(metrics), "qbsync_pushes_total") == 6)
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
    s = samples(metrics)
    counted = {(x.labels["operation"], x.labels["outcome"]): x.value for x in s
               if x.name == "qbsync_pushes_total"}
    assert counted == {("create", "created"): 1, ("update", "updated"): 1,
                       ("skip.unchanged", "skipped"): 1, ("create", "failed"): 1,
                       ("create", "dead"): 1, ("wait", "waiting"): 1}
    assert total(s, "qbsync_commit_to_push_seconds_count", entity="order") == 2


# -- the endpoint ----------------------------------------------------------------------------

async def test_the_endpoint_serves_metrics_health_and_readiness() -> None:
    metrics = Metrics(process=False)
    state: dict[str, str | None] = {"health": None, "ready": None}

    async def exposition() -> bytes:
        return generate_latest(metrics.registry)

    async def ready() -> str | None:
        return state["ready"]

    server = MetricsServer("127.0.0.1", 0, exposition=exposition,
                           health=lambda: state["health"], ready=ready)
    await server.start()
    host, port = server.address
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}:{port}") as http:
            resp = await http.get("/metrics")
            assert resp.status_code == 200
            assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
            assert total(parse(resp.text), "qbsync_build_info") == 1
            assert (await http.head("/metrics")).content == b""
            assert ((await http.get("/healthz")).status_code,
                    (await http.get("/readyz")).text) == (200, "ready\n")
            state["health"] = "the worker loop has not turned for 99 s"
            state["ready"] = "database: connection refused\nsecond line"
            resp = await http.get("/healthz")
            assert (resp.status_code, resp.text) == (
                503, "the worker loop has not turned for 99 s\n")
            resp = await http.get("/readyz?verbose=1")
            assert (resp.status_code, resp.text) == (
                503, "database: connection refused second line\n")
            assert (await http.get("/nope")).status_code == 404
            assert (await http.post("/metrics")).status_code == 405
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\x16\x03\x01 not http\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
        writer.close()
    finally:
        await server.close()


async def test_a_request_that_never_finishes_is_dropped(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_server, "REQUEST_TIMEOUT", 0.2)

    async def exposition() -> bytes:
        return b""

    async def ready() -> str | None:
        return None

    server = MetricsServer("127.0.0.1", 0, exposition=exposition, health=lambda: None,
                           ready=ready)
    await server.start()
    host, port = server.address
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"GET /metrics HTTP/1.1\r\n")  # and never the blank line
        assert await asyncio.wait_for(reader.read(), 10) == b""
        writer.close()
    finally:
        await server.close()


@pytest.mark.parametrize(("value", "address"), [
    ("127.0.0.1:9464", ("127.0.0.1", 9464)), ("[::1]:9464", ("::1", 9464)),
    ("10.0.0.5:80", ("10.0.0.5", 80)), ("localhost:9000", ("localhost", 9000)), ("", None)])
def test_metrics_listen_is_host_and_port(value: str, address: tuple[str, int] | None) -> None:
    assert listen_address(value) == address
    assert Settings(metrics_listen=value).metrics_listen == value


@pytest.mark.parametrize("value", ["9464", ":9464", "::1:9464", "127.0.0.1:", "host:99999",
                                   "host:http"])
def test_a_wrong_metrics_listen_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="metrics_listen"):
        Settings(metrics_listen=value)


def test_metrics_listen_defaults_to_loopback() -> None:
    assert Settings.model_fields["metrics_listen"].default == "127.0.0.1:9464"


# -- contrib/: alert rules and dashboard ---------------------------------------------------

@needs_promtool
def test_the_alert_rules_pass_promtool() -> None:
    assert PROMTOOL is not None
    check = subprocess.run([PROMTOOL, "check", "rules", str(RULES)], capture_output=True,
                           text=True, timeout=60, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = subprocess.run([PROMTOOL, "test", "rules", str(RULES_TEST)], capture_output=True,
                           text=True, timeout=60, check=False, cwd=RULES_TEST.parent)
    assert tests.returncode == 0, tests.stdout + tests.stderr


def test_every_alert_rule_has_a_promtool_test() -> None:
    """Each alert the rules define is the subject of a case in the promtool test file."""
    alerts = set(re.findall(r"- alert: (\w+)", RULES.read_text()))
    tested = set(re.findall(r"alertname: (\w+)", RULES_TEST.read_text()))
    assert alerts >= {"QbsyncDeadRows", "QbsyncBacklogOld", "QbsyncNeedsReconnect",
                      "QbsyncThrottled", "QbsyncNoSuccessfulPush", "QbsyncDown",
                      "QbsyncStartupStuck"}
    assert alerts == tested


@pytest.mark.parametrize("path", [RULES, RULES_TEST, DASHBOARD], ids=lambda p: p.name)
def test_contrib_names_only_metrics_that_exist(path: Path) -> None:
    named = set(re.findall(r"\b(qbsync_[a-z_]+)", path.read_text()))
    named -= {"qbsync_daemon", "qbsync_outbox"}  # roles and tables in descriptions
    unknown = named - exposed_names(Metrics(process=False))
    assert unknown == set()
    assert named


def test_the_dashboard_is_grafana_json_over_a_datasource_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "qbsync"
    targets = [t for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(targets) >= 15
    assert all(t["datasource"]["uid"] == "${datasource}" for t in targets)
    assert all('job=~"$job"' in t["expr"] for t in targets)


class AwayPool:
    """A pool whose database does not answer."""

    def __init__(self) -> None:
        self.calls = 0

    async def fetch(self, query: str, *args: object, **options: object) -> list:
        self.calls += 1
        raise ConnectionRefusedError("connection refused")


async def test_without_its_database_a_scrape_says_so_and_leaves_the_gauges_out(
        caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics(process=False)
    pool = AwayPool()
    s = parse((await metrics.exposition(pool)).decode())  # type: ignore[arg-type]
    assert total(s, "qbsync_database_up") == 0
    assert not [x for x in s if x.name == "qbsync_outbox_rows"]
    assert total(s, "qbsync_build_info") == 1
    await metrics.exposition(pool)  # type: ignore[arg-type]
    assert pool.calls == 2  # a failed read is not reused
    assert len([r for r in caplog.records if "reading the database" in r.message]) == 1


def test_healthz_goes_by_the_watchdog_interval() -> None:
    """/healthz and WATCHDOG=1: the worker loop turned within poll_interval * 3 + 30 s."""
    now = time.monotonic()
    fake = SimpleNamespace(settings=SimpleNamespace(poll_interval=2.0),
                           worker=SimpleNamespace(loop_alive=now - 5))
    assert daemon.loop_stalled(fake) is None  # type: ignore[arg-type]
    fake.worker.loop_alive = now - 40
    reason = daemon.loop_stalled(fake)  # type: ignore[arg-type]
    assert reason is not None
    assert reason.startswith("the worker loop has not turned for 40 s (limit 36 s)")
