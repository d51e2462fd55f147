"""bench/capture.py in short mode: every workload x configuration gets a tps, and the
databases really did what their configuration says (no timing asserts: noisy machines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import url_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "capture.py"
CONFIGS = ("plain", "capture", "naive", "waiting")
WORKLOADS = ("single_insert", "order_mix")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "capture.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--short", "--markdown", "--json", str(out),
         "--url", url_for("postgres"), "--prefix", f"qbsync_bench_t{os.getpid()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    data["stdout"] = done.stdout
    return data


def runs(report: dict[str, Any], config: str, workload: str) -> list[dict[str, Any]]:
    found = [r for r in report["runs"] if r["config"] == config and r["workload"] == workload]
    assert found, (config, workload)
    return found


def test_help() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0
    for option in ("--short", "--clients", "--seconds", "--rounds", "--json", "--markdown"):
        assert option in done.stdout


def test_every_workload_and_configuration_has_a_tps(report: dict[str, Any]) -> None:
    rows = {(s["workload"], s["config"]): s for s in report["summary"]}
    assert set(rows) == {(w, c) for w in WORKLOADS for c in CONFIGS}
    for (workload, config), row in rows.items():
        assert row["median_tps"] > 0, (workload, config)
        assert row["ratio"] is not None
        assert (row["target"] is not None) == (config == "capture")
    assert rows["single_insert", "capture"]["target"] == 0.85
    assert rows["order_mix", "capture"]["target"] == 0.93
    assert "| workload | configuration |" in report["stdout"]
    assert report["machine"]["synchronous_commit"]


def test_plain_enqueues_nothing(report: dict[str, Any]) -> None:
    for workload in WORKLOADS:
        for run in runs(report, "plain", workload):
            assert run["transactions"] > 0
            assert run["outbox"] == {}
            assert run["naive_outbox"] == {}


@pytest.mark.parametrize("config", ["capture", "waiting"])
def test_capture_enqueues_one_order_per_transaction(report: dict[str, Any], config: str) -> None:
    for workload in WORKLOADS:
        for run in runs(report, config, workload):
            # every transaction adds one completed order; its lines coalesce into that row
            assert run["outbox"] == {"order": run["transactions"]}, (workload, run)
            assert run["orders_inserted"] == run["transactions"]


def test_stock_updates_enqueue_nothing(report: dict[str, Any]) -> None:
    for config in ("capture", "waiting"):
        for run in runs(report, config, "order_mix"):
            assert run["items_inserted"] == 3 * run["transactions"]
            # the stock updates happened, on synced products, and enqueued no product
            assert run["stock_decrements"] == 3 * run["transactions"]
            assert "product" not in run["outbox"]
    for run in runs(report, "naive", "order_mix"):
        # the naive trigger has no column filter: every stock update lands in its outbox
        assert run["naive_outbox"] == {"orders": run["transactions"],
                                       "order_items": 3 * run["transactions"],
                                       "products": 3 * run["transactions"]}
        assert run["outbox"] == {}


def test_only_waiting_daemons_and_naive_triggers_notify(report: dict[str, Any]) -> None:
    for workload in WORKLOADS:
        for run in runs(report, "capture", workload):
            assert run["notifications"] == 0  # daemon busy: no NOTIFY at all
        for config in ("waiting", "naive"):
            for run in runs(report, config, workload):
                # at most one per transaction (NOTIFY folds duplicates within a transaction)
                assert 0 < run["notifications"] <= run["transactions"], (config, run)
