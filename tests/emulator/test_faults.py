"""Fault injection (in-process and over a real socket) and the never-a-500 guarantee."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from qbsync.emulator import Emulator
from qbsync.emulator.server import EmulatorServer

from .helpers import Api, fault_of, throttle_fault


@pytest.mark.parametrize(
    ("kind", "code", "ftype"),
    [
        ("500", "10000", "SystemFault"),
        ("503", "10000", "SystemFault"),
        ("429", "3001", "SERVICE"),
    ],
)
async def test_status_faults(api: Api, kind: str, code: str, ftype: str) -> None:
    api.emu.inject_fault(kind, count=2, entity="customer")
    for _ in range(2):
        r = await api.post("customer", {"DisplayName": "X"})
        assert r.status_code == int(kind)
        if kind == "429":  # QuickBooks throttles in XML
            assert throttle_fault(r)[:2] == (ftype, code)
        else:
            assert r.json()["Fault"]["type"] == ftype
            assert fault_of(r)["code"] == code
    assert (await api.get("preferences")).status_code == 200
    assert api.emu.entities(api.realm, "Customer") == []
    r = await api.post("customer", {"DisplayName": "X"})
    assert r.status_code == 200
    assert api.emu.request_count("POST", "/customer", int(kind)) == 2


async def test_injected_401(api: Api) -> None:
    api.emu.inject_fault(401)
    r = await api.get("preferences")
    assert r.status_code == 401
    assert r.json()["fault"]["error"][0]["code"] == "3200"
    assert (await api.get("preferences")).status_code == 200


async def test_rule_lapses_after_its_seconds(api: Api) -> None:
    """A storm: every request refused for a while, however many (count None) or few come."""
    now = [1000.0]  # the injector's clock, moved on by hand
    api.emu.injector.clock = lambda: now[0]
    api.emu.inject_fault("429", None, seconds=0.3)
    assert [(await api.get("preferences")).status_code for _ in range(3)] == [429] * 3
    now[0] += 0.29
    assert (await api.get("preferences")).status_code == 429
    now[0] += 0.02
    assert (await api.get("preferences")).status_code == 200
    assert api.emu.injector.rules == []


async def test_rule_matching_by_method_and_path(api: Api) -> None:
    api.emu.inject_fault("500", count=None, method="GET", path="/query")
    assert (await api.post("customer", {"DisplayName": "A"})).status_code == 200
    assert (await api.query("SELECT * FROM Customer")).status_code == 200  # POST query
    assert (await api.get("query", query="SELECT * FROM Customer")).status_code == 500
    assert (await api.get("query", query="SELECT * FROM Customer")).status_code == 500
    api.emu.clear_faults()
    assert (await api.get("query", query="SELECT * FROM Customer")).status_code == 200


async def test_timeout_then_504(api: Api) -> None:
    api.emu.inject_fault("timeout", hang_seconds=0.05)
    r = await api.post("customer", {"DisplayName": "T"})
    assert r.status_code == 504
    assert api.emu.entities(api.realm, "Customer") == []


async def test_timeout_then_drop(api: Api) -> None:
    api.emu.inject_fault("timeout", hang_seconds=0.05, then="never")
    with pytest.raises(httpx.RemoteProtocolError):
        await api.post("customer", {"DisplayName": "T"})
    assert api.emu.entities(api.realm, "Customer") == []


async def test_drop_after_write_in_process(api: Api) -> None:
    api.emu.inject_fault("drop", entity="invoice")
    c = await api.customer("C")
    it = await api.item("I")
    body = {
        "CustomerRef": {"value": c["Id"]},
        "DocNumber": "EX-1",
        "Line": [
            {
                "DetailType": "SalesItemLineDetail",
                "Amount": 10,
                "SalesItemLineDetail": {
                    "ItemRef": {"value": it["Id"]},
                    "Qty": 1,
                    "UnitPrice": 10,
                    "TaxCodeRef": {"value": "1"},
                },
            }
        ],
    }
    with pytest.raises(httpx.RemoteProtocolError):
        await api.post("invoice", body, requestid="once-1")
    stored = api.emu.entities(api.realm, "Invoice")
    assert len(stored) == 1  # the write was applied
    r = await api.post("invoice", body, requestid="once-1")  # the retry is idempotent
    assert r.status_code == 200
    assert r.json()["Invoice"]["Id"] == stored[0]["Id"]
    assert len(api.emu.entities(api.realm, "Invoice")) == 1
    assert api.emu.request_count("POST", "/invoice", "dropped") == 1


async def test_latency(api: Api) -> None:
    api.emu.set_latency(0.01, 0.02)
    assert api.emu.injector.latency == (0.01, 0.02)
    assert 0.01 <= api.emu.injector.delay() <= 0.02
    assert (await api.get("preferences")).status_code == 200
    api.emu.set_latency(None)
    assert api.emu.injector.latency is None


def test_invalid_rules_rejected(emu: Emulator) -> None:
    with pytest.raises(ValueError, match="kind"):
        emu.inject_fault("418")
    with pytest.raises(ValueError, match="then"):
        emu.inject_fault("timeout", then="later")


@pytest.fixture
def served() -> Iterator[tuple[Emulator, EmulatorServer, str, dict[str, str]]]:
    emu = Emulator(limits=False)
    realm = emu.create_company()
    headers = {"Authorization": f"Bearer {emu.issue_tokens(realm)['access_token']}"}
    with EmulatorServer(emu) as server:
        yield emu, server, realm, headers


def test_drop_after_write_over_socket(
    served: tuple[Emulator, EmulatorServer, str, dict[str, str]],
) -> None:
    emu, server, realm, headers = served
    emu.inject_fault("drop", entity="customer")
    url = f"{server.base_url}/v3/company/{realm}/customer"
    with httpx.Client(timeout=10) as client:
        with pytest.raises(httpx.TransportError):
            client.post(url, json={"DisplayName": "Dropped"}, headers=headers)
        assert [c["DisplayName"] for c in emu.entities(realm, "Customer")] == ["Dropped"]
        r = client.post(url, json={"DisplayName": "Next"}, headers=headers)
        assert r.status_code == 200
    assert emu.request_count("POST", "/customer", "dropped") == 1


def test_hang_over_socket_hits_client_timeout(
    served: tuple[Emulator, EmulatorServer, str, dict[str, str]],
) -> None:
    emu, server, realm, headers = served
    emu.inject_fault("timeout", hang_seconds=30, then="never")
    with httpx.Client(timeout=0.3) as client, pytest.raises(httpx.ReadTimeout):
        client.get(f"{server.base_url}/v3/company/{realm}/preferences", headers=headers)
    with httpx.Client(timeout=10) as client:
        r = client.get(f"{server.base_url}/v3/company/{realm}/preferences", headers=headers)
        assert r.status_code == 200


def test_injected_500_over_socket(
    served: tuple[Emulator, EmulatorServer, str, dict[str, str]],
) -> None:
    emu, server, realm, headers = served
    emu.inject_fault(503)
    with httpx.Client(timeout=10) as client:
        r = client.get(f"{server.base_url}/v3/company/{realm}/preferences", headers=headers)
    assert r.status_code == 503
    assert r.json()["Fault"]["Error"][0]["code"] == "10000"


# --- never a 500 with a traceback ------------------------------------------------------------


async def test_malformed_requests_give_faults(api: Api) -> None:
    http, h = api.http, api.headers
    cases = [
        ("POST", api.url("customer"), b"{not json", 400, "2010"),
        ("POST", api.url("customer"), b"\xff\xfe\x00", 400, "2010"),
        ("POST", api.url("customer"), b"", 400, "2010"),
        ("POST", api.url("customer"), b"[1, 2]", 400, "2010"),
        ("POST", api.url("invoice"), b'{"CustomerRef": 5, "Line": "x"}', 400, None),
        (
            "POST",
            api.url("invoice"),
            b'{"CustomerRef": {"value": "1"}, "Line": [{"Amount": '
            b'"abc", "DetailType": "SalesItemLineDetail"}]}',
            400,
            None,
        ),
        ("POST", api.url("widget"), b"{}", 400, "500"),
        ("GET", api.url("widget/1"), b"", 400, "500"),
        ("GET", api.url("customer"), b"", 400, "500"),
        ("DELETE", api.url("customer/1"), b"", 400, "500"),
        ("GET", api.url(""), b"", 400, "500"),
        ("POST", api.url("batch"), b'{"BatchItemRequest": [1, "x", {"bId": "3"}]}', 200, None),
        ("GET", "/v3/nothing", b"", 404, "500"),
        ("GET", "/totally/unknown", b"", 404, "500"),
        ("POST", "/.well-known/openid_configuration", b"", 405, "500"),
    ]
    for method, url, body, status, code in cases:
        r = await http.request(
            method, url, content=body, headers={**h, "Content-Type": "application/json"}
        )
        assert r.status_code == status, (method, url, r.text)
        data = r.json()
        assert "Traceback" not in r.text
        if status != 200:
            assert "Fault" in data, (url, r.text)
            if code:
                assert data["Fault"]["Error"][0]["code"] == code, (url, r.text)


async def test_wrong_realm_and_bad_token_are_not_500(api: Api) -> None:
    r = await api.http.get("/v3/company/does-not-exist/customer/1", headers=api.headers)
    assert r.status_code == 403
    assert r.json()["fault"]["error"][0]["code"] == "3100"
    r = await api.http.get(api.url("customer/1"), headers={"Authorization": "Bearer x.y"})
    assert r.status_code == 401
    assert r.json()["fault"]["error"][0]["code"] == "3200"


async def test_internal_error_is_a_system_fault(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from qbsync.emulator import entities

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(entities.Writer, "write", boom)
    r = await api.post("customer", {"DisplayName": "X"})
    assert r.status_code == 500
    assert r.json()["Fault"]["type"] == "SystemFault"
    assert "bug" not in r.text
    assert "Traceback" not in r.text


async def test_a_rule_with_a_rate_hits_that_share_of_the_requests(api: Api) -> None:
    """5xx on a share of the requests (a flaky QuickBooks): the others are answered, and
    may meet the next rule."""
    api.emu.injector.seed(3)
    api.emu.inject_fault("503", None, method="GET", rate=0.25)
    api.emu.inject_fault("500", None, method="GET", rate=0.5)
    statuses = [(await api.get("preferences")).status_code for _ in range(200)]
    hits_503, hits_500 = statuses.count(503), statuses.count(500)
    assert statuses.count(200) + hits_503 + hits_500 == 200
    # about 50 of 200, then about half of the 150 left; the draws are seeded
    assert 30 < hits_503 < 70
    assert 50 < hits_500 < 100
    rules = api.emu.injector.rules
    assert [r.hits for r in rules] == [hits_503, hits_500]
    with pytest.raises(ValueError, match="rate"):
        api.emu.inject_fault("500", None, rate=1.5)
