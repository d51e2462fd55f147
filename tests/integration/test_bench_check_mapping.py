"""bench/check_mapping.py in short mode: it runs check-mapping as a process on a generated
Dixis (or Medusa) shop, finds nothing wrong, and writes a complete report. No timing
asserts."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_bench_short import check_machine, run_short

pytestmark = pytest.mark.slow


def test_check_mapping_short(tmp_path: Path) -> None:
    report = run_short(tmp_path, "check_mapping")
    check_machine(report)
    assert report["shop"]["orders"] == report["params"]["orders"] == 2000
    assert len(report["rounds"]) == report["params"]["rounds"] == 2
    for r in report["rounds"]:
        assert r["errors"] == 0
        # every entity's sample (orders, customers, payments, refunds: 200 each where there
        # are so many; every product) and the dependencies
        assert r["keys"] >= 4 * 200
        assert r["wall_s"] > 0
        assert r["map_alone_s"] > 0
    for spread in (report["wall_s"], report["ratio"], report["map_alone_s"]):
        assert 0 < spread["min"] <= spread["median"] <= spread["max"]
    assert "| ratio check ÷ mapping alone |" in report["stdout"]


def test_check_mapping_short_medusa(tmp_path: Path) -> None:
    report = run_short(tmp_path, "check_mapping", "--shop", "medusa")
    assert report["params"]["shop"] == "medusa"
    assert report["shop"]["orders"] == 2000
    assert report["shop"]["captures"] > 0
    for r in report["rounds"]:
        assert r["errors"] == 0
        assert r["keys"] >= 4 * 200
    assert "Medusa, 2,000 orders" in report["stdout"]
