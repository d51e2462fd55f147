"""bench/body_check.py in short mode: it runs on the Dixis mapping's real output and
writes a complete report. No timing asserts (noisy machines)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_bench_short import check_machine, run_short

pytestmark = pytest.mark.slow


def test_body_check_short(tmp_path: Path) -> None:
    report = run_short(tmp_path, "body_check")
    check_machine(report)
    assert report["bodies"] >= 60  # orders, customers and products
    assert report["mean_bytes"] > 100
    assert len(report["rounds"]) == report["params"]["rounds"] == 3
    for spread in (report["ratio"], report["bare_us"], report["checked_us"]):
        assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    assert "| parse_body + collect |" in report["stdout"]
