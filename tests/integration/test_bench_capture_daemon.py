"""bench/capture_daemon.py in short mode: the real daemon beside pgbench pushed every order
the shop wrote, busy and idle (no timing asserts: noisy machines)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support import url_for

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "capture_daemon.py"


def test_short_run_pushes_every_order(tmp_path: Path) -> None:
    out = tmp_path / "capture_daemon.json"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--short", "--markdown", "--json", str(out),
         "--url", url_for("postgres"), "--prefix", f"qbsync_bench_capd{os.getpid()}"],
        cwd=ROOT, capture_output=True, text=True, timeout=400, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    rows = {(s["phase"], s["config"]): s for s in report["summary"]}
    assert set(rows) == {("busy", "plain"), ("busy", "capture"), ("busy", "daemon"),
                         ("idle", "plain"), ("idle", "daemon")}
    for key, row in rows.items():
        assert row["median_tps"] > 0, key
        assert row["latency_ms"] > 0, key
    for phase in ("busy", "idle"):
        daemon = rows[phase, "daemon"]
        assert daemon["orders"] == daemon["transactions"] > 0, phase  # one order per txn
        assert daemon["invoiced"] == daemon["orders"], phase           # each got its invoice
    assert rows["busy", "daemon"]["daemon_side_cores"] > 0
    assert rows["busy", "capture"]["target"] == 0.93
    assert "| order_mix | capture, `qbsync run` pushing |" in done.stdout
