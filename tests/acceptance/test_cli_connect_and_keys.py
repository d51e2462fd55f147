"""`qbsync keygen / connect / disconnect / rotate-key` through the real entry point, with
QBSYNC_* settings in the environment and the emulator on a real socket."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import psycopg
import pytest

from qbsync.emulator import Emulator
from qbsync.emulator.server import EmulatorServer
from qbsync.vault import Vault, generate_key, parse_key_ring
from tests.support import INVOICED, conn_url
from tests.waiting import wait_until

QBSYNC = str(Path(sys.executable).with_name("qbsync"))
OLD = generate_key("k1")
NEW = generate_key("k2")


@pytest.fixture
def emu() -> Emulator:
    return Emulator(limits=False)


@pytest.fixture
def server(emu: Emulator) -> Iterator[EmulatorServer]:
    with EmulatorServer(emu) as srv:
        yield srv


def cli_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """The environment minus any QBSYNC_* of the caller, an empty config file, plus values."""
    config = tmp_path / "qbsync.toml"
    config.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("QBSYNC_")}
    env["QBSYNC_CONFIG"] = str(config)
    env.update({f"QBSYNC_{k.upper()}": v for k, v in values.items()})
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QBSYNC, *args], capture_output=True, text=True, timeout=120,
                          env=env, stdin=subprocess.DEVNULL, check=False)


def cli_connect(env: dict[str, str], srv: EmulatorServer) -> tuple[int, str, str]:
    """`qbsync connect --emulator URL --no-browser`, playing the browser on the URL it prints."""
    proc = subprocess.Popen(
        [QBSYNC, "connect", "--emulator", srv.base_url, "--port", "0", "--no-browser",
         "--wait", "30"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.strip().startswith("http"):
            httpx.get(line.strip(), follow_redirects=True, timeout=30)
            break
    out, err = proc.communicate(timeout=60)
    return proc.returncode, "".join(lines) + out, err


def test_keygen_prints_a_usable_key(tmp_path: Path) -> None:
    result = run(cli_env(tmp_path), "keygen", "--key-id", "k9")
    assert result.returncode == 0, result.stderr
    entry = result.stdout.strip()
    assert entry.startswith("k9:")
    assert len(parse_key_ring(entry)["k9"]) == 32
    bad = run(cli_env(tmp_path), "keygen", "--key-id", "bad id!")
    assert bad.returncode == 2  # a usage error
    assert "key id 'bad id!' is invalid" in bad.stderr


def test_connect_disconnect_rotate(tmp_path: Path, db_url: str, emu: Emulator,
                                   server: EmulatorServer) -> None:
    realm = emu.create_company("Dixis Α.Ε.")
    env = cli_env(tmp_path, database_url=db_url, token_keys=OLD)

    code, out, err = cli_connect(env, server)
    assert code == 0, err
    assert "scope=com.intuit.quickbooks.accounting" in out
    assert f"connected Dixis Α.Ε. (realm {realm}, emulator)" in out
    grant = next(g for g in emu.oauth.grants.values() if g.realm_id == realm)
    access = [t for t, a in emu.oauth.access.items() if a.realm_id == realm]
    for token in [grant.refresh_token, *access]:
        assert token not in out + err
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT status, active, company_name, key_id, c::text "
                           "FROM qbsync.connections c").fetchone()
    assert row is not None
    assert row[:4] == ("connected", True, "Dixis Α.Ε.", "k1")
    assert grant.refresh_token not in row[4]

    # rotate-key: refused without the old key, then done with the new ring.
    refused = run({**env, "QBSYNC_TOKEN_KEYS": NEW}, "rotate-key", "--new-key-id", "k2")
    assert refused.returncode == 1
    assert "lacks the key" in refused.stderr
    assert "Traceback" not in refused.stderr
    ring = {**env, "QBSYNC_TOKEN_KEYS": f"{NEW},{OLD}"}
    dry = run(ring, "rotate-key", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "1 to re-encrypt" in dry.stdout
    rotated = run(ring, "rotate-key", "--new-key-id", "k2")
    assert rotated.returncode == 0, rotated.stderr
    assert f"[1/1] realm {realm}: k1 -> k2" in rotated.stdout
    assert "re-encrypted 1 of 1 connection(s) under key 'k2'" in rotated.stdout
    misordered = run({**env, "QBSYNC_TOKEN_KEYS": f"{OLD},{NEW}"}, "rotate-key",
                     "--new-key-id", "k2")
    assert misordered.returncode == 1
    assert "not first" in misordered.stderr

    # disconnect (with the new key only: every row is under it now).
    gone = run({**env, "QBSYNC_TOKEN_KEYS": NEW, "QBSYNC_CLIENT_ID": "qbsync-emulator-client",
                "QBSYNC_CLIENT_SECRET": "qbsync-emulator-secret"}, "disconnect", "--emulator",
               server.base_url)
    assert gone.returncode == 0, gone.stderr
    assert "grant revoked at Intuit" in gone.stdout
    assert grant.revoked
    with psycopg.connect(db_url) as conn:
        status = conn.execute("SELECT status, active, key_id, tokens FROM qbsync.connections"
                              ).fetchone()
    assert status is not None
    assert status[:3] == ("disconnected", False, "k2")
    assert Vault.parse(NEW).decrypt(realm, status[3], "k2") == {}


def test_connect_names_a_missing_setting(tmp_path: Path, db_url: str,
                                         server: EmulatorServer) -> None:
    result = run(cli_env(tmp_path, database_url=db_url), "connect", "--emulator",
                 server.base_url, "--port", "0", "--no-browser")
    assert result.returncode == 2  # a configuration error
    assert "token_keys is not set" in result.stderr
    assert "Traceback" not in result.stderr
    result = run(cli_env(tmp_path, database_url=db_url, token_keys=OLD), "connect",
                 "--production", "--no-browser", "--port", "0")
    assert result.returncode == 2
    assert "client_id is not set" in result.stderr


def test_disconnect_unreachable_database(tmp_path: Path) -> None:
    env = cli_env(tmp_path, token_keys=OLD, client_id="x", client_secret="y")
    for command in ("disconnect", "rotate-key"):
        result = run(env, command, "--database-url",
                     "postgresql://postgres@127.0.0.1:1/x?connect_timeout=2")
        assert result.returncode == 3, result.stderr
        assert "cannot reach the database" in result.stderr
        assert "Traceback" not in result.stderr


def test_unmigrated_database_is_a_clear_error(tmp_path: Path, empty_db_url: str) -> None:
    result = run(cli_env(tmp_path, token_keys=OLD, database_url=empty_db_url), "rotate-key")
    assert result.returncode == 5  # no qbsync schema
    assert "the database has no qbsync schema: run `qbsync migrate`" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_with_the_emulator_url_alone(tmp_path: Path, dixis_db: psycopg.Connection) -> None:
    """`qbsync connect --emulator URL`, then `qbsync run --emulator URL`: nothing else set
    but the database and the key (as for connect). The daemon takes the emulator's API,
    OAuth endpoints, client id and time scale, and syncs."""
    emu = Emulator(limits=False, time_scale=60)
    with EmulatorServer(emu) as srv:
        realm = emu.create_company("Dixis Α.Ε.", custom_txn_numbers=True)
        url = conn_url(dixis_db)
        env = cli_env(tmp_path, database_url=url, token_keys=OLD)
        code, _, err = cli_connect(env, srv)
        assert code == 0, err
        dixis_db.execute("SELECT dixis.generate(6)")
        dixis_db.commit()
        log = tmp_path / "run.log"
        with log.open("w") as out:
            proc = subprocess.Popen([QBSYNC, "run", "--emulator", srv.base_url], env=env,
                                    stdout=out, stderr=subprocess.STDOUT)
        try:
            def drained() -> bool:
                left = dixis_db.execute("SELECT qbsync.backlog()").fetchone()
                dixis_db.commit()
                assert left == (0,) or proc.poll() is None, log.read_text()
                return left == (0,)

            wait_until(drained, 120, f"an empty queue ({log})", every=0.2)
            window = dixis_db.execute("SELECT minute_window FROM qbsync.rate_limits "
                                      "WHERE realm_id = %s", (realm,)).fetchone()
        finally:
            proc.terminate()
            assert proc.wait(60) == 0, log.read_text()
        invoiced = dixis_db.execute(f"SELECT count(*) FROM dixis.orders WHERE {INVOICED}"
                                    ).fetchone()
        assert invoiced is not None
        assert len(emu.entities(realm, "Invoice")) == invoiced[0] > 0
        assert window == (timedelta(seconds=1),)  # a minute at the emulator's 60x


@pytest.mark.parametrize("where", ["http://10.1.2.3:8765", "https://evil.example",
                                   "http://localhost.evil.example:8765"])
def test_emulator_url_must_be_loopback(tmp_path: Path, db_url: str, where: str) -> None:
    env = cli_env(tmp_path, database_url=db_url, token_keys=OLD)
    for command in (["run"], ["connect", "--no-browser", "--port", "0"], ["disconnect"]):
        result = run(env, *command, "--emulator", where)
        assert result.returncode == 2, (command, result.stderr)
        assert "loopback address" in result.stderr
        assert "Traceback" not in result.stderr
