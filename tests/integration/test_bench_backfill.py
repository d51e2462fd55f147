"""bench/backfill.py in short mode: a backfill against the emulator's real limits finishes
correct (every order exactly one invoice, customers and items once each) with zero 429s, and
every number of the report is computed. No timing asserts: the machine is shared and noisy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import url_for

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "backfill.py"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "backfill.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--short", "--markdown", "--json", str(out),
         "--url", url_for("postgres"), "--prefix", f"qbsync_bench_t{os.getpid()}_backfill"],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    data["stdout"] = done.stdout
    return data


def test_help() -> None:
    done = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stderr
    for option in ("--short", "--orders", "--time-scale", "--json", "--markdown", "--url",
                   "--prefix"):
        assert option in done.stdout


def test_backfill_is_correct_and_never_throttled(report: dict[str, Any]) -> None:
    r, checks = report["result"], report["checks"]
    orders = report["params"]["orders"]
    assert r["orders"] == orders
    assert checks["ok"], checks
    assert checks["emulator_invoices"] == checks["mapped_orders"] == orders
    assert checks["doc_numbers_twice"] == checks["orders_without_invoice"] == 0
    assert checks["outbox_left"] == checks["dead"] == 0
    # everything was new: customers and items were created, each exactly once
    assert r["ops"]["customers"] == checks["emulator_customers"] > 0
    assert r["ops"]["items"] == checks["emulator_items"] > 0
    assert r["ops"]["invoices"] == orders
    assert r["throttled"] == 0, r["throttled_by"]
    assert r["tries_burnt"] == 0
    assert report["daemon_exit_code"] == 0


def test_numbers_are_computed(report: dict[str, Any]) -> None:
    r = report["result"]
    ops = sum(r["ops"].values())
    assert report["limits"]["ops_per_minute"] == 40 * 30 + 460
    assert r["minimum_min"]["combined"] == pytest.approx(ops / 1660, abs=1e-3)
    assert r["minimum_min"]["batch_only"] >= r["minimum_min"]["combined"]
    assert r["wall_s"] > 0
    assert r["emulated_min"] == pytest.approx(r["wall_s"] * r["time_scale"] / 60, abs=1e-3)
    # the ratio is total / minimum; nothing beats the limits' minimum
    assert r["ratio"] == pytest.approx(r["emulated_min"] / r["minimum_min"]["combined"],
                                       rel=1e-2)
    assert r["ratio"] > 0.9
    assert 0 < r["budget_used"] <= 1.0
    assert 0 < r["batch_budget_used"] <= 1.0
    # the emulator's windows never held more than its limits (it would have said 429)
    assert r["fullest_minute"]["requests"] <= 500
    assert r["fullest_minute"]["batches"] <= 40
    assert r["fullest_second"] <= 10
    # every accepted request falls in one minute from the commit, no minute over the limit
    assert sum(r["per_minute"]["requests"]) == r["requests"]["total"]
    assert sum(r["per_minute"]["batches"]) == r["requests"]["batch"]
    assert max(r["per_minute"]["requests"]) <= 500
    assert max(r["per_minute"]["batches"]) <= 40
    assert r["requests"]["batch"] > 0       # batch mode was used ...
    assert r["requests"]["single"] > 0      # ... with single requests beside it
    assert 1 <= r["ops_per_batch"] <= 30
    assert set(report["pass"]) == {"ratio", "budget_used", "throttled", "correct"}
    assert "| orders | ops (cust + items + inv) |" in report["stdout"]
