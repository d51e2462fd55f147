"""bench/dashboard.py in short mode: it builds its data, every query runs and the dashboard
sees that data (no timing asserts: the 50 ms target is for the full benchmark)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import url_for

ROOT = Path(__file__).resolve().parents[2]


def test_dashboard_bench_short(tmp_path: Path) -> None:
    out = tmp_path / "dashboard.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "dashboard.py"), "--short", "--markdown",
         "--json", str(out), "--url", url_for("postgres"),
         "--dbname", f"qbsync_bench_dash_t{os.getpid()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    assert set(report["queries"]) >= {"dashboard", "recent_activity", "queue_health"}
    for name, r in report["queries"].items():
        assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["max_ms"], name
    data = report["data"]
    assert data["log_rows"] >= 50_000
    dash = data["dashboard"]
    assert dash["connection_status"] == "connected"
    assert int(dash["orders_synced_total"]) == 50_000 // 4
    assert int(dash["queue_depth"]) == 2000
    assert int(dash["dead"]) == 50
    assert int(dash["orders_pending"]) > 0
    assert "| dashboard |" in done.stdout
