"""Commands operators can script, through the real `qbsync` entry point: --json from every
reading command, one-line errors, exit 2 for usage errors, Ctrl-C exiting 130 and withdrawing
the request it waited on, misspelled settings reported, `logs --since/--follow`, and neither
`qbsync run` nor the CLI loading the emulator."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from qbsync import drift
from qbsync.admin_requests import handle_pending_requests
from qbsync.db import create_pool
from qbsync.emulator import Emulator
from qbsync.qbo.client import QboClient
from tests.daemon_support import EMULATOR_URL, Shop, connect_shop, drained, running
from tests.integration.test_after_invoice import new_order, products
from tests.integration.test_drift import cut_first_line, invoice_id
from tests.support import conn_url

QBSYNC = str(Path(sys.executable).with_name("qbsync"))


def clean_env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
    env["QBSYNC_CONFIG"] = ""
    env.update({f"QBSYNC_{k.upper()}": v for k, v in values.items()})
    return env


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QBSYNC, *args], capture_output=True, text=True, timeout=120,
                          env=env or clean_env(), stdin=subprocess.DEVNULL, check=False)


async def cli(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    proc = await asyncio.create_subprocess_exec(
        QBSYNC, *args, "--database-url", url, env=clean_env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


async def json_of(url: str, *args: str, code: int = 0) -> Any:
    done = await cli(url, *args, "--json")
    assert done.returncode == code, done.stdout + done.stderr
    return json.loads(done.stdout)


# --- --json -------------------------------------------------------------------------------------

@pytest.fixture
async def shop(dixis_db: psycopg.Connection) -> Shop:
    dixis_db.execute("UPDATE qbsync.entities SET backoff_seconds = '{0,0,0}'")
    dixis_db.commit()
    return await connect_shop(conn_url(dixis_db), Emulator(limits=False), rate_time_scale=600)


async def test_every_reading_command_prints_json(shop: Shop, dixis_db: psycopg.Connection
                                                 ) -> None:
    goods = products(dixis_db)
    orders = [new_order(dixis_db, goods) for _ in range(2)]
    # a key the mapping refuses (QB001): the row goes dead at once
    dixis_db.execute("SELECT qbsync.enqueue('customer', 'no-such-key')")
    bad = ("no-such-key",)
    dixis_db.commit()
    url = shop.url
    async with running(shop) as daemon:
        await drained(url)
        cut_first_line(shop, invoice_id(dixis_db, orders[0]))
        await drift.poll(daemon.pool, daemon.client, shop.realm_id)

        status = await json_of(url, "status")
        assert status["connection_status"] == "connected"
        assert status["dead"] == 1
        assert status["queue_depth"] == 0
        assert {q["name"] for q in status["queue"]} >= {"order", "customer"}

        logs = [json.loads(line) for line in (await cli(url, "logs", "--json", "--entity",
                                                        "order")).stdout.splitlines()]
        created = {r["key"] for r in logs if r["operation"] == "create"
                   and r["status"] == "success"}
        assert created == {str(o) for o in orders}
        assert all(r["at"].startswith("20") for r in logs)

        failed = await json_of(url, "failed")
        assert [(r["entity"], r["key"]) for r in failed] == [("customer", str(bad[0]))]
        assert failed[0]["retry_with"] == f"SELECT qbsync.retry_dead('customer', '{bad[0]}');"

        notices = await json_of(url, "notices")
        assert [(n["kind"], n["key"]) for n in notices] == [("dead_row", str(bad[0]))]

        drifts = await json_of(url, "drift")
        assert [(d["entity"], d["key"], d["change"]) for d in drifts] == [
            ("order", str(orders[0]), "updated")]
        assert drifts[0]["fields"]["TotalAmt"] == {"qbsync": 55.3, "quickbooks": 42.4}

        reconciled = await json_of(url, "reconcile", "--from", "2026-03-01", "--to",
                                   "2026-03-31", "--wait", "60", code=1)
        assert [(p["status"], p["key"]) for p in reconciled["problems"]] == [
            ("amount_differs", str(orders[0]))]
        invoices = next(t for t in reconciled["totals"] if t["qbo_type"] == "Invoice")
        assert invoices["shop_count"] == invoices["qbo_count"] == 2

        report = await json_of(url, "report", "--from", "2026-03-01", "--to", "2026-03-31",
                               "--wait", "60")
        assert report["start_date"] == "2026-03-01"
        assert report["shop_orders"] == 2
        assert report["qbo_income"] is not None

        answered = await json_of(url, "test-connection", "--wait", "60")
        assert answered["realm_id"] == shop.realm_id
        assert answered["company_name"] == "Dixis Α.Ε."

        company = await json_of(url, "settings")
        assert company["realm_id"] == shop.realm_id
        assert company["missing"] == []
        assert any(s["name"].startswith("tax_code:") for s in company["settings"])

        migrations = await json_of(url, "migrate", "--status")
        assert migrations["problem"] is None
        assert {m["state"] for m in migrations["migrations"]} == {"applied"}

    shown = run("config", "show", "--json", env=clean_env(database_url=url, concurrency="4",
                                                          client_secret="cs-hidden-99"))
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)
    assert settings["concurrency"] == {"value": 4, "source": "environment QBSYNC_CONCURRENCY"}
    assert settings["client_secret"]["value"] == "********"
    assert "cs-hidden-99" not in shown.stdout
    assert settings["lease_seconds"] == {"value": 120, "source": "default"}


# --- Ctrl-C -------------------------------------------------------------------------------------

async def _play_the_daemon(url: str, emu: Emulator, realm: str) -> int:
    """What a daemon started now would do with the pending requests."""
    pool = await create_pool(url, size=2)
    token = emu.issue_tokens(realm)["access_token"]

    class Tokens:
        async def access_token(self) -> str:
            return token

        async def refresh(self, rejected: str) -> str:
            return token

    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=emu.app))
    try:
        client = QboClient(http, base_url=EMULATOR_URL, realm_id=realm, tokens=Tokens())
        return await handle_pending_requests(pool, client, realm)
    finally:
        await http.aclose()
        await pool.close()


def _sigint_as_at_a_terminal() -> None:
    """In the child, before exec: SIGINT at its default, as a terminal's Ctrl-C finds it. A
    test run started in the background by a shell without job control (CI's) inherits
    SIGINT ignored, and Python leaves an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.parametrize("command", [
    ("test-connection", "--wait", "120"),
    ("report", "--period", "month", "--wait", "120"),
    ("reconcile", "--from", "2026-03-01", "--to", "2026-03-31", "--wait", "120"),
])
def test_ctrl_c_exits_130_and_withdraws_the_request(dixis_url: str,
                                                    command: tuple[str, ...]) -> None:
    emu = Emulator(limits=False)
    shop = asyncio.run(connect_shop(dixis_url, emu))
    proc = subprocess.Popen([QBSYNC, *command, "--database-url", dixis_url], env=clean_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_sigint_as_at_a_terminal)
    assert proc.stderr is not None
    waiting = proc.stderr.readline()  # the request is in; it waits for a daemon
    assert "waiting for the daemon" in waiting, waiting + proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "withdrawn (no daemon had taken it)" in err
    assert "Traceback" not in err
    with psycopg.connect(dixis_url) as conn:
        row = conn.execute("SELECT state, error FROM qbsync.admin_requests").fetchone()
    assert row is not None
    assert row[0] == "failed"
    assert row[1].startswith("withdrawn by ")
    assert asyncio.run(_play_the_daemon(dixis_url, emu, shop.realm_id)) == 0


def test_ctrl_c_while_following_the_log_exits_130(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT qbsync.log('create', 'order', 'old-1', 'success', NULL)")
    proc = subprocess.Popen([QBSYNC, "logs", "--follow", "--json", "--database-url", db_url],
                            env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=_sigint_as_at_a_terminal)
    assert proc.stdout is not None
    assert json.loads(proc.stdout.readline())["key"] == "old-1"  # the last rows first
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("SELECT qbsync.log('create', 'order', 'new-2', 'failed', NULL, "
                     "'{\"message\": \"boom\", \"code\": \"6000\"}')")
    row = json.loads(proc.stdout.readline())  # written after it started: it follows
    assert (row["key"], row["status"], row["message"], row["code"]) == (
        "new-2", "failed", "boom", "6000")
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in err


def test_logs_since(db_url: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO qbsync.integration_logs (created_at, operation, model_type, model_id,"
            " status) VALUES (now() - interval '3 hours', 'create', 'order', 'three-hours',"
            " 'success'), (now() - interval '5 minutes', 'create', 'order', 'five-minutes',"
            " 'success')")
    recent = run("logs", "--since", "1h", "--json", "--database-url", db_url)
    assert recent.returncode == 0, recent.stderr
    assert [json.loads(x)["key"] for x in recent.stdout.splitlines()] == ["five-minutes"]
    both = run("logs", "--since", "2000-01-01", "--database-url", db_url)
    assert "three-hours" in both.stdout
    assert "five-minutes" in both.stdout
    bad = run("logs", "--since", "yesterday-ish", "--database-url", db_url)
    assert bad.returncode == 2
    assert "neither a duration" in bad.stderr


# --- errors: one line, exit codes ---------------------------------------------------------------

@pytest.mark.parametrize("command", [("status",), ("migrate",), ("run",), ("logs", "-f"),
                                     ("shop", "install"), ("demo",)])
@pytest.mark.parametrize("url", ["postgresql://[bad", "port=notaport dbname=x", "http://x"])
def test_an_unparsable_database_url_is_a_usage_error(command: tuple[str, ...],
                                                     url: str) -> None:
    done = run(*command, "--database-url", url)
    assert done.returncode == 2, done.stderr
    assert "database_url" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", ["report", "reconcile"])
def test_from_after_to_is_a_usage_error(db_url: str, command: str) -> None:
    done = run(command, "--from", "2026-02-01", "--to", "2026-01-31", "--database-url", db_url)
    assert done.returncode == 2
    assert "--from is after --to" in done.stderr
    with psycopg.connect(db_url) as conn:
        assert conn.execute("SELECT count(*) FROM qbsync.admin_requests").fetchone() == (0,)


def test_database_errors_are_one_line_with_detail_and_hint(db_url: str) -> None:
    """A PL/pgSQL RAISE with a HINT: message and hint on one line, no CONTEXT, no LINE/caret."""
    done = run("resync", "invoice", "1", "--database-url", db_url)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("qbsync: ")
    assert "HINT: " in lines[0]
    assert "CONTEXT" not in lines[0]


def test_a_misspelled_variable_is_reported(db_url: str) -> None:
    done = run("status", "--database-url", db_url, env=clean_env(concurency="4"))
    assert done.returncode == 0, done.stderr
    assert ("qbsync: warning: environment variable QBSYNC_CONCURENCY is not a qbsync setting; "
            "ignored (did you mean QBSYNC_CONCURRENCY?)") in done.stderr


# --- the emulator is an extra -------------------------------------------------------------------

PROBE = """
import json, sys
from qbsync.cli import main
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
loaded = sorted(m for m in sys.modules
                if m.split(".")[0] in ("starlette", "uvicorn")
                or m == "qbsync.emulator" or m.startswith("qbsync.emulator."))
print(json.dumps({"code": code, "loaded": loaded}))
"""


@pytest.mark.parametrize("args", [
    ("run",),  # the daemon's whole module graph is imported before it meets the schema
    ("run", "--emulator", "http://127.0.0.1:9"),  # with the emulator's own client
    ("status",), ("logs",), ("connect", "--emulator", "http://127.0.0.1:9"), ("migrate",),
    ("--help",),  # it lists `demo` and `emulator`
])
def test_run_and_the_cli_never_import_the_emulator(empty_db_url: str,
                                                   args: tuple[str, ...]) -> None:
    """No module of qbsync.emulator loads, nor Starlette or uvicorn: what the commands need
    of the emulator (its client id and secret) is in qbsync.local_qbo."""
    client = {} if "--emulator" in args else {"client_secret": "s"}
    env = clean_env(token_keys="k1:" + "A" * 43 + "=", database_url=empty_db_url, **client)
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          timeout=120, env=env, check=False)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], done.stderr
    if args[0] == "run":
        assert result["code"] == 5  # it got as far as the schema check


BLOCKED = """
import sys
class NoEmulatorExtra:  # as if qbsync was installed without qbsync[emulator]
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("starlette", "uvicorn"):
            raise ImportError(f"No module named {name!r}")
sys.meta_path.insert(0, NoEmulatorExtra())
from qbsync.cli import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("args", [("emulator",), ("demo", "--orders", "1")])
def test_without_the_extra_the_emulator_commands_say_how_to_get_it(
        args: tuple[str, ...]) -> None:
    done = subprocess.run([sys.executable, "-c", BLOCKED, *args], capture_output=True,
                          text=True, timeout=120, env=clean_env(), check=False)
    assert done.returncode == 1
    assert "pip install 'qbsync[emulator]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_wrong_setting_stops_run_with_one_json_line() -> None:
    done = run("run", env=clean_env(log_format="json", concurrency="99"))
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    record = json.loads(lines[0])
    assert record["level"] == "CRITICAL"
    assert record["msg"].startswith("qbsync cannot run: invalid configuration: concurrency: ")
    assert record["exit_code"] == 2
