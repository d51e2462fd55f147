"""Small helpers shared by the benchmarks in bench/: databases, pgbench, statistics, output.

Benchmarks are plain scripts (`python bench/<name>.py --help`); they import this module by
path, so `bench/` needs no package install.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_URL = os.environ.get("QBSYNC_BENCH_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def emulator_env(base_url: str) -> dict[str, str]:
    """The settings (QBSYNC_* variables) that point a `qbsync run` process at a local
    emulator: its API and discovery document, and loopback http allowed (qbsync sends a
    token over http to a loopback address only with allow_local_quickbooks)."""
    return {
        "QBSYNC_API_BASE_URL": base_url,
        "QBSYNC_OAUTH_DISCOVERY_URL": f"{base_url}/.well-known/openid_configuration",
        "QBSYNC_ALLOW_LOCAL_QUICKBOOKS": "1",
    }


def with_dbname(url: str, dbname: str) -> str:
    """The same server and user as `url`, another database."""
    return make_conninfo(url, dbname=dbname)


def create_database(admin_url: str, name: str, template: str | None = None) -> None:
    """(Re)create database `name`, optionally as a copy of `template`."""
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))
        query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        admin.execute(query)


def drop_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(name)))


@dataclass(frozen=True)
class PgbenchResult:
    tps: float           # without initial connection time
    transactions: int    # transactions actually processed
    failed: int          # PostgreSQL 15+ reports serialization/deadlock failures separately
    latency_ms: float | None = None   # average (with --rate: from the scheduled start)


_TPS = re.compile(r"^tps = ([0-9.]+) \(without initial connection time\)", re.M)
_TXNS = re.compile(r"^number of transactions actually processed: (\d+)", re.M)
_FAILED = re.compile(r"^number of failed transactions: (\d+)", re.M)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.M)


def parse_pgbench(output: str) -> PgbenchResult:
    tps, txns = _TPS.search(output), _TXNS.search(output)
    if not tps or not txns:
        raise RuntimeError(f"cannot parse pgbench output:\n{output}")
    failed, latency = _FAILED.search(output), _LATENCY.search(output)
    return PgbenchResult(float(tps[1]), int(txns[1]), int(failed[1]) if failed else 0,
                         float(latency[1]) if latency else None)


def run_pgbench(url: str, script: Path, *, clients: int, seconds: int,
                defines: dict[str, int] | None = None, protocol: str = "prepared",
                rate: int | None = None) -> PgbenchResult:
    """`pgbench -n -M prepared -c clients -j min(2, clients) -T seconds -f script` on `url`
    (with `rate`: `--rate`, transactions/s scheduled at random)."""
    params = conninfo_to_dict(url)
    cmd = ["pgbench", "-n", "-M", protocol, "-c", str(clients), "-j", str(min(2, clients)),
           "-T", str(seconds), "-f", str(script), *(["--rate", str(rate)] if rate else [])]
    for flag, key in (("-h", "host"), ("-p", "port"), ("-U", "user")):
        if params.get(key):
            cmd += [flag, str(params[key])]
    for name, value in (defines or {}).items():
        cmd += ["-D", f"{name}={value}"]
    cmd.append(str(params["dbname"]))
    env = dict(os.environ)
    if params.get("password"):
        env["PGPASSWORD"] = str(params["password"])
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pgbench failed ({done.returncode}): {' '.join(cmd)}\n"
                           f"{done.stdout}\n{done.stderr}")
    return parse_pgbench(done.stdout)


@dataclass(frozen=True)
class Spread:
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """How the run was started, for the report: `python bench/<script> <args>`."""
    args = list(argv) if argv is not None else sys.argv[1:]
    return f"python bench/{Path(script).name} " + shlex.join(args)


def machine_info(conn: psycopg.Connection) -> dict[str, Any]:
    """What a benchmark result depends on: cores, memory, server version and durability."""
    settings = {name: conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
                for name in ("server_version", "synchronous_commit", "fsync", "shared_buffers",
                             "wal_level")}
    mem_kib = 0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        match = re.search(r"^MemTotal:\s+(\d+) kB", meminfo.read_text(), re.M)
        mem_kib = int(match[1]) if match else 0
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        **{name: row[0] if row else None for name, row in settings.items()},
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [list(headers), *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (0.0 if it is gone or not visible)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int | None:
    """Resident set size (VmRSS) of a process in KiB, or None if it is gone."""
    try:
        match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return None
    return int(match[1]) if match else None


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 90, 99)
                ) -> dict[str, float]:
    """p50/p90/p99 (nearest rank on the sorted values) plus min, max and count."""
    ordered = sorted(values)
    out: dict[str, float] = {}
    for p in points:
        rank = max(1, min(len(ordered), round(p / 100 * len(ordered) + 0.5)))
        out[f"p{p:g}"] = ordered[rank - 1]
    out.update(min=ordered[0], max=ordered[-1], n=len(ordered))
    return out


def as_url(conninfo: str) -> str:
    """A postgresql:// URL for a conninfo string or URL (asyncpg and the daemon take URLs)."""
    from urllib.parse import quote

    params = conninfo_to_dict(conninfo)
    auth = quote(str(params.get("user") or ""), safe="")
    if params.get("password"):
        auth += ":" + quote(str(params["password"]), safe="")
    host = str(params.get("host") or "localhost")
    port = f":{params['port']}" if params.get("port") else ""
    return f"postgresql://{auth + '@' if auth else ''}{host}{port}/{params.get('dbname') or ''}"


def add_common_options(parser: argparse.ArgumentParser, prefix: str) -> None:
    """The options every benchmark takes: where to run, what to keep, where to report."""
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the full report here")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the BENCHMARKS.md section (machine, command, table)")
    parser.add_argument("--url", default=DEFAULT_URL,
                        help="server to use, any database (default $QBSYNC_BENCH_URL or "
                             "%(default)s)")
    parser.add_argument("--prefix", default=prefix,
                        help="name (prefix) of the databases it creates (default %(default)s)")
    parser.add_argument("--keep", action="store_true", help="keep its databases afterwards")


def report_out(args: argparse.Namespace, table: str, section: str, report: object) -> None:
    """Print the table (and the BENCHMARKS.md section with --markdown); --json writes it all."""
    print(table)
    if args.markdown:
        print()
        print(section)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n",
                             encoding="utf-8")
