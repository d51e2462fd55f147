"""bench/{latency,throughput,queue_compare,claim_scale}.py in short mode: each runs, writes
complete JSON with every field, and the counts add up. No timing asserts (noisy machines)."""

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
BENCH = ROOT / "bench"


def run_short(tmp_path: Path, script: str, *extra: str) -> dict[str, Any]:
    out = tmp_path / f"{script}.json"
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{script}.py"), "--short", "--markdown", "--json",
         str(out), "--url", url_for("postgres"),
         "--prefix", f"qbsync_bench_t{os.getpid()}_{script}", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=280, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    data["stdout"] = done.stdout
    return data


def check_machine(report: dict[str, Any]) -> None:
    for key in ("date", "nproc", "memory_gib", "server_version", "synchronous_commit"):
        assert report["machine"][key], key
    assert report["command"].startswith("python bench/")


@pytest.mark.parametrize("script", ["latency", "throughput", "queue_compare", "claim_scale"])
def test_help(script: str) -> None:
    done = subprocess.run([sys.executable, str(BENCH / f"{script}.py"), "--help"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    for option in ("--short", "--json", "--markdown", "--url", "--prefix"):
        assert option in done.stdout


def test_latency_short(tmp_path: Path) -> None:
    report = run_short(tmp_path, "latency")
    check_machine(report)
    samples = report["samples"]
    assert len(samples) == report["params"]["samples"] == 20
    assert len({s["doc_number"] for s in samples}) == 20  # one invoice per order
    assert report["invoice_posts"] >= 20
    for s in samples:
        assert s["from_commit_start_ms"] > 0
        assert s["from_commit_start_ms"] >= s["from_commit_return_ms"]
    measures = {s["measure"]: s for s in report["summary"]}
    assert set(measures) == {"from_commit_start_ms", "from_commit_return_ms"}
    for s in measures.values():
        assert s["n"] == 20
        assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert set(measures["from_commit_start_ms"]["pass"]) == {"p50", "p99"}
    assert report["daemon_exit_code"] == 0
    assert "| from | n | p50 ms |" in report["stdout"]


def test_throughput_short(tmp_path: Path) -> None:
    report = run_short(tmp_path, "throughput")
    check_machine(report)
    phases = report["phases"]
    assert [p["kind"] for p in phases] == ["deps", "invoices"]
    for p in phases:
        assert p["rows"] > 0
        assert p["dead"] == 0
        assert p["rows_per_s"] > 0
        assert set(p["cpu"]) == {"daemon_cpu_s", "postgres_cpu_s", "emulator_cpu_s"}
        # every outbox row finished exactly once, as a success
        assert p["logs"].get("success", 0) >= p["rows"]
        calls = {f["function"]: f["calls"] for f in p["functions"]}
        assert calls.get("qbsync.claim", 0) > 0
    deps, invoices = phases
    assert invoices["rows"] == report["params"]["orders"]
    # invoices only: one invoice per row (alone or in batches); deps also creates customers
    assert invoices["logs"]["success"] == invoices["rows"]
    assert deps["logs"]["success"] > deps["rows"]
    # each new customer is pushed once, as a dependency of its first invoice (a second push
    # of the same body would be an update, or skipped as unchanged)
    assert [k for k in deps["logs"] if k.startswith("success customer create")]
    assert not [k for k in deps["logs"] if k.startswith("success customer update")]
    kinds = {s["kind"] for s in report["summary"]}
    assert kinds == {"deps", "invoices"}
    for s in report["summary"]:
        assert s["target"] == 1000
        assert s["pass"] in (True, False)
    assert report["daemon_exit_code"] == 0


def test_queue_compare_short(tmp_path: Path) -> None:
    report = run_short(tmp_path, "queue_compare")
    check_machine(report)
    jobs = report["params"]["jobs"]
    assert {d["system"] for d in report["drains"]} == {"qbsync", "procrastinate", "pgqueuer"}
    for d in report["drains"]:
        assert d["ran"] == jobs, d   # every job ran once (no double start counted)
        assert d["left"] == 0, d
        assert d["jobs_per_s"] > 0
        assert d["enqueue_per_s"] > 0
    for name, lat in report["latencies"].items():
        assert len(lat) == report["params"]["samples"], name
    summary = {s["system"]: s for s in report["summary"]}
    assert summary["pgqueuer"]["ratio_vs_pgqueuer"] == 1.0
    assert summary["qbsync"]["pass"] in (True, False)
    for s in summary.values():
        for key in ("from_enqueue_ms", "from_commit_return_ms"):
            assert {"p50", "p99", "max"} <= set(s["latency"][key])


def test_claim_scale_short(tmp_path: Path) -> None:
    report = run_short(tmp_path, "claim_scale")
    check_machine(report)
    s = report["summary"]
    for key in ("small", "big"):
        assert s["claim"][key]["n"] == report["params"]["iterations"]
    assert s["claim_ratio_p50"] > 0
    assert s["claim_pass"] in (True, False)
    drain = report["drain"]
    assert drain["backlog_rows"] > 0
    assert drain["rows_left"] == 0
    assert len(drain["rss_samples"]) >= 2
    assert s["rss_max_mb"] > 0
    sizes = drain["outbox_bytes"]
    assert sizes["backlog"] > sizes["empty"] > 0
    assert sizes["vacuumed"] <= sizes["drained"]
    assert s["outbox_bytes_claim_dbs"]["big"] > s["outbox_bytes_claim_dbs"]["small"]
