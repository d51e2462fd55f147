"""The /_emulator/ control endpoints, snapshots and the CLI."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
from click.testing import CliRunner

from qbsync.emulator import Emulator
from qbsync.emulator.cli import emulator_command
from qbsync.emulator.server import EmulatorServer
from tests.waiting import wait_until

from .helpers import Api, line


async def test_control_endpoints(emu: Emulator, http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/_emulator/companies", json={"name": "Ctl", "tax_mode": "us", "custom_txn_numbers": True}
    )
    realm = r.json()["realmId"]
    assert emu.company(realm).settings.tax_mode == "us"
    tok = (await http.post("/_emulator/tokens", json={"realm_id": realm})).json()
    headers = {"Authorization": f"Bearer {tok['access_token']}"}
    url = f"/v3/company/{realm}/customer"
    assert (await http.post(url, json={"DisplayName": "Z"}, headers=headers)).status_code == 200

    rule = (
        await http.post("/_emulator/faults", json={"kind": "503", "count": 1, "entity": "customer"})
    ).json()
    assert rule["kind"] == "503"
    assert rule["remaining"] == 1
    assert len((await http.get("/_emulator/faults")).json()["rules"]) == 1
    assert (await http.get(f"{url}/1", headers=headers)).status_code == 503
    assert (await http.get("/_emulator/faults")).json()["rules"] == []
    await http.post("/_emulator/faults", json={"kind": "500", "count": None})
    await http.delete("/_emulator/faults")
    assert (await http.get(f"{url}/1", headers=headers)).status_code == 200

    counters = (await http.get("/_emulator/counters", params={"realm": realm})).json()
    assert counters["POST /v3/company/{realmId}/customer 200"] == 1
    assert counters["GET /v3/company/{realmId}/customer/{id} 503"] == 1
    assert counters["GET /v3/company/{realmId}/customer/{id} 200"] == 1
    assert not any(k.startswith("GET /_emulator") for k in counters)

    ents = (await http.get(f"/_emulator/entities/{realm}/customer")).json()
    assert [c["DisplayName"] for c in ents["Customer"]] == ["Z"]
    state = (await http.get("/_emulator/state")).json()
    assert state["companies"][realm]["counts"]["Customer"] == 1

    lim = (await http.post("/_emulator/limits", json={"enabled": True, "per_second": 3})).json()
    assert lim["config"]["per_second"] == 3
    assert lim["config"]["enabled"] is True
    await http.post("/_emulator/latency", json={"min": 0.001, "max": 0.002})
    assert emu.injector.latency == (0.001, 0.002)
    await http.delete("/_emulator/latency")
    t = (await http.post("/_emulator/time", json={"advance": 10})).json()
    assert t["time_scale"] == 1.0
    policy = (await http.post("/_emulator/requestids",
                              json={"ignored": ["Payment"], "refusals": True})).json()
    assert policy == {"ignored": ["payment"], "refusals": True}
    assert (emu.requestids_ignored, emu.refusals_remembered) == ({"payment"}, True)

    assert (await http.post("/_emulator/expire-tokens", json={"realm_id": realm})).json()[
        "expired"
    ] == 1
    assert (await http.get(f"{url}/1", headers=headers)).status_code == 401
    assert (await http.post("/_emulator/revoke", json={})).json()["revoked"] == 1
    bad = await http.post("/_emulator/faults", json={"kind": "teapot"})
    assert bad.status_code == 400
    assert "error" in bad.json()
    assert (await http.post("/_emulator/reset")).json() == {"ok": True}
    assert emu.companies == {}
    assert (emu.requestids_ignored, emu.refusals_remembered) == (frozenset(), False)
    assert emu.counter_snapshot() == {}


async def test_snapshot_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "qbo.json"
    emu = Emulator(limits=False, snapshot_path=path)
    realm = emu.create_company("Snap", custom_txn_numbers=False)
    async with emu.client() as http:
        api = Api(http, emu, realm)
        c = await api.customer("Snap Customer")
        it = await api.item("Snap Item")
        inv = (await api.invoice(c["Id"], [line(it["Id"], 2, 5)])).json()["Invoice"]
        await api.post("customer", {"DisplayName": "Rid"}, requestid="snap-rid")
    emu.save_snapshot()
    tokens = api.tokens

    again = Emulator(limits=False, snapshot_path=path)
    assert again.entities(realm, "Invoice") == emu.entities(realm, "Invoice")
    async with again.client() as http:
        headers = {"Authorization": f"Bearer {tokens['access_token']}"}
        base = f"/v3/company/{realm}"
        r = await http.get(f"{base}/invoice/{inv['Id']}", headers=headers)
        assert r.status_code == 200
        assert r.json()["Invoice"]["DocNumber"] == "1001"
        r = await http.post(
            f"{base}/customer", json={"DisplayName": "snap customer"}, headers=headers
        )
        assert r.json()["Fault"]["Error"][0]["code"] == "6240"
        r = await http.post(
            f"{base}/customer",
            json={"DisplayName": "Rid"},
            params={"requestid": "snap-rid"},
            headers=headers,
        )
        assert r.status_code == 200
        assert r.json()["Customer"]["Id"] == "2"
        r = await http.post(f"{base}/customer", json={"DisplayName": "Third"}, headers=headers)
        assert r.json()["Customer"]["Id"] == "3"
        r = await http.post(
            f"{base}/invoice",
            headers=headers,
            json={"CustomerRef": {"value": c["Id"]}, "Line": [line(it["Id"], 1, 5)]},
        )
        assert r.json()["Invoice"]["DocNumber"] == "1002"
        r = await http.post(
            "/oauth2/v1/tokens/bearer",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
            auth=("qbsync-emulator-client", "qbsync-emulator-secret"),
        )
        assert r.status_code == 200


def test_snapshot_saved_on_shutdown(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    emu = Emulator(snapshot_path=path)
    realm = emu.create_company("Persist")
    with EmulatorServer(emu) as server:
        r = httpx.post(
            f"{server.base_url}/_emulator/snapshot", json={"path": str(tmp_path / "manual.json")}
        )
        assert r.status_code == 200
    assert (tmp_path / "manual.json").exists()
    assert realm in Emulator(snapshot_path=path).companies


def test_cli_help() -> None:
    result = CliRunner().invoke(emulator_command, ["--help"])
    assert result.exit_code == 0
    for option in (
        "--host",
        "--port",
        "--time-scale",
        "--snapshot",
        "--client-id",
        "--client-secret",
        "--realm",
    ):
        assert option in result.output
    assert "8765" in result.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_python_m_runs_a_server(tmp_path: Path) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "qbsync.emulator",
            "--port",
            str(port),
            "--realm",
            "12345",
            "--time-scale",
            "2",
            "--snapshot",
            str(tmp_path / "cli.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "realm_id=12345"
        def discovery() -> httpx.Response | None:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/.well-known/openid_configuration/")
            except httpx.TransportError:
                return None

        r = wait_until(discovery, 20, "the emulator serving", every=0.1)
        assert r.json()["token_endpoint"] == f"http://127.0.0.1:{port}/oauth2/v1/tokens/bearer"
        state = httpx.get(f"http://127.0.0.1:{port}/_emulator/state").json()
        assert "12345" in state["companies"]
        assert state["time_scale"] == 2
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    assert (tmp_path / "cli.json").exists()  # saved on shutdown


def test_server_can_freeze_its_heap() -> None:
    import gc

    emu = Emulator()
    with EmulatorServer(emu, freeze_heap=0.01):
        wait_until(gc.get_freeze_count, 10, "a frozen heap")
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0  # given back to the collector on stop
