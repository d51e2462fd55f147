"""bench/chaos.py in short mode with a fixed seed: orders flow while two daemons are killed,
QuickBooks fails, a 429 storm passes, tokens expire and rotate and PostgreSQL restarts (a
throwaway cluster of the run's own), with the shop's own tries; every check of the run must
pass."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SEED = 7


def test_short_chaos_run_keeps_every_promise(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "chaos.py"), "--short", "--seed", str(SEED),
         "--json", str(out), "--markdown"],
        cwd=ROOT, capture_output=True, text=True, timeout=180, check=False)
    assert out.exists(), done.stdout + done.stderr[-4000:]
    report = json.loads(out.read_text(encoding="utf-8"))
    failed = [c for c in report["checks"] if not c["ok"]]
    assert failed == [], done.stdout + done.stderr[-4000:]
    assert done.returncode == 0
    d, log = report["details"], report["log"]
    # the promises, counted
    assert d["invoices"] == d["expected_invoices"] > 150
    assert d["missing"] == d["duplicated"] == d["extra"] == d["wrong_total"] == []
    assert d["queue"] == {}  # drained: no row left, dead or alive
    assert d["burnt"] == []
    # the shipped tries, and kills that cost none
    assert report["params"]["max_attempts"] is None
    assert d["tries_given"] == {"order": 3, "customer": 3, "product": 3}
    assert d["short_dead_rows"] == []
    assert sum(d["tries_per_row"].values()) > 0
    assert d["limits"]["peak_in_flight"] <= 10
    assert d["limits"]["peak_per_minute"] <= 500
    # the chaos happened
    assert log["kills"] == 5
    assert log["pg_restarts"] == 1
    assert d["token_endpoint_200"] >= 1
    assert d["requests_by_status"].get("dropped", 0) >= 1  # writes applied, answers lost
    assert "| check | value | target | result |" in done.stdout
