"""bench/capture_cost.py in short mode: callgrind counts for every workload x configuration,
in a throwaway cluster. Instruction counts are deterministic, so the ordering is checked:
capture costs more than the empty-trigger floor, which costs more than no capture."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "capture_cost.py"

pytestmark = pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("bench") / "capture_cost.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--short", "--markdown", "--json",
                           str(out)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    data["stdout"] = done.stdout
    return data


def test_every_workload_and_configuration_is_counted(report: dict[str, Any]) -> None:
    rows = {(s["workload"], s["config"]): s for s in report["summary"]}
    assert set(rows) == {(w, c) for w in ("single_insert", "order_mix")
                         for c in ("plain", "capture", "variant")}
    for workload in ("single_insert", "order_mix"):
        plain, floor, capture = (rows[workload, c]["per_txn"]
                                 for c in ("plain", "variant", "capture"))
        assert 0 < plain < floor < capture, workload
    assert rows["single_insert", "capture"]["target"] == 0.85
    assert "| single_insert | qbsync capture |" in report["stdout"]


def test_an_order_costs_more_than_a_single_insert(report: dict[str, Any]) -> None:
    rows = {(s["workload"], s["config"]): s["per_txn"] for s in report["summary"]}
    assert rows["order_mix", "plain"] > 2 * rows["single_insert", "plain"]
