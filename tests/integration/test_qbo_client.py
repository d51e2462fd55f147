"""QboClient against the in-process QuickBooks emulator (and httpx.MockTransport for
transport failures the emulator cannot produce)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from qbsync.qbo import errors as e
from qbsync.qbo import oauth
from qbsync.qbo.client import QboClient, quote_value

BASE = "http://qbo.emulator"
ENDPOINTS = oauth.OAuthEndpoints(
    authorization_endpoint=f"{BASE}/connect/oauth2",
    token_endpoint=f"{BASE}/oauth2/v1/tokens/bearer",
    revocation_endpoint=f"{BASE}/v2/oauth2/tokens/revoke",
)
CLIENT = oauth.ClientCredentials(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)


class EmulatorTokens:
    """A TokenProvider that refreshes against the emulator's token endpoint and counts."""

    def __init__(self, http: httpx.AsyncClient, grant: dict[str, Any]) -> None:
        self.http = http
        self.access = grant["access_token"]
        self.refresh_token = grant["refresh_token"]
        self.refreshes = 0
        self.rejected: list[str] = []

    async def access_token(self) -> str:
        return self.access

    async def refresh(self, rejected: str) -> str:
        self.refreshes += 1
        self.rejected.append(rejected)
        fresh = await oauth.refresh(self.http, CLIENT, self.refresh_token, endpoints=ENDPOINTS)
        self.access, self.refresh_token = fresh.access_token, fresh.refresh_token
        return self.access


class Env:
    def __init__(self, emu: Emulator, realm: str, http: httpx.AsyncClient,
                 tokens: EmulatorTokens, client: QboClient, sent: list[httpx.Request]) -> None:
        self.emu, self.realm, self.http, self.tokens, self.client = emu, realm, http, tokens, client
        self.sent = sent


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    emu = Emulator()
    realm = emu.create_company("Client Test Shop", custom_txn_numbers=True)
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    async with emu.client(BASE, event_hooks={"request": [record]}) as http:
        tokens = EmulatorTokens(http, emu.issue_tokens(realm))
        client = QboClient(http, base_url=BASE, realm_id=realm, tokens=tokens)
        yield Env(emu, realm, http, tokens, client, sent)


def rid() -> str:
    return str(uuid.uuid4())


async def make_item(client: QboClient, name: str = "Olive oil 1l") -> dict[str, Any]:
    return await client.create("Item", {"Name": name, "Type": "Service",
                                        "IncomeAccountRef": {"value": "1"}}, request_id=rid())


def invoice_body(customer_id: str, item_id: str, doc: str) -> dict[str, Any]:
    return {
        "CustomerRef": {"value": customer_id},
        "DocNumber": doc,
        "GlobalTaxCalculation": "TaxExcluded",
        "Line": [{"DetailType": "SalesItemLineDetail", "Amount": 10.0,
                  "SalesItemLineDetail": {"ItemRef": {"value": item_id}, "Qty": 1,
                                          "UnitPrice": 10.0, "TaxCodeRef": {"value": "1"}}}],
    }


# --- happy paths ---------------------------------------------------------------------------


async def test_create_read_sparse_update_query(env: Env) -> None:
    client = env.client
    created = await client.create("Customer", {"DisplayName": "Maria Papadopoulou",
                                               "PrimaryEmailAddr": {"Address": "m@example.gr"}},
                                  request_id=rid())
    assert created["DisplayName"] == "Maria Papadopoulou"
    assert created["SyncToken"] == "0"
    info = client.last_call
    assert info is not None
    assert (info.method, info.status, info.attempts) == ("POST", 200, 1)
    assert info.intuit_tid
    assert info.response_ms >= 0
    assert client.last_response_ms == info.response_ms

    read = await client.read("Customer", created["Id"])
    assert read["Id"] == created["Id"]

    updated = await client.update("Customer", {"Id": created["Id"], "SyncToken": "0",
                                               "Notes": "VIP"}, request_id=rid())
    assert updated["Notes"] == "VIP"
    assert updated["SyncToken"] == "1"
    # sparse: the e-mail survived an update that did not mention it
    assert updated["PrimaryEmailAddr"]["Address"] == "m@example.gr"
    assert env.sent[-1].read().count(b'"sparse":true') == 1

    rows = await client.query("SELECT * FROM Customer WHERE DisplayName = 'Maria Papadopoulou'")
    assert [r["Id"] for r in rows] == [created["Id"]]
    assert await client.find_one("Customer", "DisplayName", "nobody") is None
    found = await client.find_one("Customer", "DisplayName", "Maria Papadopoulou")
    assert found is not None
    assert found["Id"] == created["Id"]


async def test_every_call_sends_minorversion_accept_and_requestid_on_writes(env: Env) -> None:
    request_id = rid()
    await env.client.create("Customer", {"DisplayName": "Headers"}, request_id=request_id)
    await env.client.query("SELECT * FROM Customer")
    write, read = env.sent[-2], env.sent[-1]
    for request in (write, read):
        assert request.url.params["minorversion"] == "75"
        assert request.headers["accept"] == "application/json"
    assert write.url.params["requestid"] == request_id
    assert "requestid" not in read.url.params
    assert write.url.path.endswith("/customer")
    with pytest.raises(ValueError, match="requestid"):
        await env.client.create("Customer", {"DisplayName": "x"}, request_id="x" * 51)


async def test_find_one_escapes_quotes(env: Env) -> None:
    assert quote_value("O'Brien") == "'O\\'Brien'"
    created = await env.client.create("Customer", {"DisplayName": "Tavern O'Brien"},
                                      request_id=rid())
    found = await env.client.find_one("Customer", "DisplayName", "Tavern O'Brien")
    assert found is not None
    assert found["Id"] == created["Id"]
    with pytest.raises(ValueError, match="not a QuickBooks name"):
        await env.client.find_one("Customer", "DisplayName = 'x' OR 1", "y")


async def test_requestid_replay_returns_the_same_entity(env: Env) -> None:
    request_id = rid()
    first = await env.client.create("Customer", {"DisplayName": "Replay"}, request_id=request_id)
    again = await env.client.create("Customer", {"DisplayName": "Replay"}, request_id=request_id)
    assert again["Id"] == first["Id"]
    names = [c["DisplayName"] for c in env.emu.entities(env.realm, "Customer")]
    assert names.count("Replay") == 1


async def test_query_all_pages(env: Env) -> None:
    for n in range(5):
        await env.client.create("Customer", {"DisplayName": f"Paged {n}"}, request_id=rid())
    before = len(env.sent)
    rows = await env.client.query_all("SELECT * FROM Customer WHERE DisplayName LIKE 'Paged%'",
                                      page_size=2)
    assert sorted(r["DisplayName"] for r in rows) == [f"Paged {n}" for n in range(5)]
    queries = [r.url.params["query"] for r in env.sent[before:]]
    assert queries[0].endswith("STARTPOSITION 1 MAXRESULTS 2")
    assert queries[-1].endswith("STARTPOSITION 5 MAXRESULTS 2")
    assert len(queries) == 3
    assert await env.client.count("SELECT COUNT(*) FROM Customer WHERE DisplayName LIKE "
                                  "'Paged%'") == 5
    with pytest.raises(ValueError, match="pages by itself"):
        await env.client.query_all("SELECT * FROM Customer MAXRESULTS 5")


async def test_void_and_delete_invoice(env: Env) -> None:
    client = env.client
    customer = await client.create("Customer", {"DisplayName": "Void Me"}, request_id=rid())
    item = await make_item(client)
    inv = await client.create("Invoice", invoice_body(customer["Id"], item["Id"], "V-1"),
                              request_id=rid())
    voided = await client.void("Invoice", inv["Id"], inv["SyncToken"], request_id=rid())
    assert voided["Id"] == inv["Id"]
    assert float(voided["TotalAmt"]) == 0
    inv2 = await client.create("Invoice", invoice_body(customer["Id"], item["Id"], "V-2"),
                               request_id=rid())
    deleted = await client.delete("Invoice", inv2["Id"], inv2["SyncToken"], request_id=rid())
    assert deleted["Id"] == inv2["Id"]
    with pytest.raises(e.NotFound):
        await client.read("Invoice", inv2["Id"])


async def test_batch_returns_items_in_order_with_faults(env: Env) -> None:
    await env.client.create("Customer", {"DisplayName": "Taken"}, request_id=rid())
    items = [
        {"operation": "create", "Customer": {"DisplayName": "Batch A"}},
        {"operation": "create", "Customer": {"DisplayName": "Taken"}},
        {"Query": "SELECT * FROM Customer WHERE DisplayName = 'Taken'"},
    ]
    out = await env.client.batch(items, request_id=rid())
    assert [o["bId"] for o in out] == ["1", "2", "3"]
    assert out[0]["Customer"]["DisplayName"] == "Batch A"
    assert isinstance(e.error_from_batch_item(out[1]), e.DuplicateName)
    assert e.error_from_batch_item(out[2]) is None
    assert env.sent[-1].url.path.endswith("/batch")
    with pytest.raises(ValueError, match="30"):
        await env.client.batch([{"Query": "SELECT * FROM Item"}] * 31, request_id=rid())


async def test_company_info_preferences_report_cdc(env: Env) -> None:
    info = await env.client.company_info()
    assert info["CompanyName"] == "Client Test Shop"
    prefs = await env.client.preferences()
    assert "SalesFormsPrefs" in prefs
    report = await env.client.report("ProfitAndLoss", start_date="2020-01-01",
                                     end_date="2030-12-31")
    assert "Header" in report
    created = await env.client.create("Customer", {"DisplayName": "Changed"}, request_id=rid())
    changed = await env.client.cdc(["Customer"], datetime.now(UTC) - timedelta(hours=1))
    assert created["Id"] in [c["Id"] for c in changed.get("Customer", [])]


# --- faults --------------------------------------------------------------------------------


async def test_expired_token_is_refreshed_once_and_the_request_resent(env: Env) -> None:
    old = env.tokens.access
    env.emu.expire_access_tokens(env.realm)
    request_id = rid()
    created = await env.client.create("Customer", {"DisplayName": "After refresh"},
                                      request_id=request_id)
    assert created["DisplayName"] == "After refresh"
    assert env.tokens.refreshes == 1
    assert env.tokens.rejected == [old]
    assert env.client.last_call is not None
    assert env.client.last_call.attempts == 2
    writes = [r for r in env.sent if r.url.path.endswith("/customer")]
    assert [r.url.params["requestid"] for r in writes] == [request_id, request_id]


class GateLimiter:
    """A rate limiter whose permits wait until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.queued = asyncio.Event()  # a request waits at the gate

    @contextlib.asynccontextmanager
    async def permit(self, kind: str = "request") -> AsyncIterator[object]:
        self.queued.set()
        await self.gate.wait()
        yield object()

    async def sending(self, permit: object) -> None:
        return None


async def test_a_request_queued_for_its_permit_is_sent_with_the_token_of_then(env: Env) -> None:
    """Tokens refreshed while a request waits for its rate-limit slot: it goes out with the
    new token, not with the one current when it queued (chaos: 279 needless 401s)."""
    limiter = GateLimiter()
    client = QboClient(env.http, base_url=BASE, realm_id=env.realm, tokens=env.tokens,
                       limiter=limiter)  # type: ignore[arg-type]  # the permit protocol only
    read = asyncio.create_task(client.read("CompanyInfo", env.realm))
    await asyncio.wait_for(limiter.queued.wait(), 30)
    old = env.tokens.access
    env.emu.expire_access_tokens(env.realm)
    await env.tokens.refresh(old)  # a neighbour's 401 refreshed the tokens meanwhile
    limiter.gate.set()
    await read
    assert env.tokens.refreshes == 1  # the neighbour's only: this request met no 401
    assert [r.headers["Authorization"] for r in env.sent if "/companyinfo/" in r.url.path] == [
        f"Bearer {env.tokens.access}"]


async def test_second_401_raises_auth_error_without_the_token(env: Env) -> None:
    env.emu.inject_fault("401", count=2, path="/v3/company/")
    with pytest.raises(e.AuthError) as exc:
        await env.client.read("Customer", "1")
    assert env.tokens.refreshes == 1
    assert exc.value.status == 401
    assert exc.value.code == "3200"
    for token in (env.tokens.access, *env.tokens.rejected):
        assert token not in str(exc.value)
        assert token not in repr(exc.value)


@pytest.mark.parametrize("kind", ["500", "503"])
async def test_server_errors_are_transient(env: Env, kind: str) -> None:
    env.emu.inject_fault(kind, count=2)
    with pytest.raises(e.TransientError) as read_exc:
        await env.client.read("CompanyInfo", env.realm)
    assert type(read_exc.value) is e.TransientError
    with pytest.raises(e.TransientError) as write_exc:
        await env.client.create("Customer", {"DisplayName": "x"}, request_id=rid())
    # QuickBooks answered: a 500/503 is not an unknown outcome
    assert type(write_exc.value) is e.TransientError
    assert write_exc.value.status == int(kind)
    assert write_exc.value.response_ms is not None


async def test_throttle_is_throttled_with_retry_after(env: Env) -> None:
    env.emu.inject_fault("429")
    with pytest.raises(e.Throttled) as exc:
        await env.client.query("SELECT * FROM Customer")
    assert exc.value.retry_after == 60.0
    assert exc.value.code == "3001"
    assert exc.value.retryable


async def test_connection_dropped_after_a_write_is_unknown_outcome(env: Env) -> None:
    env.emu.inject_fault("drop", entity="customer")
    request_id = rid()
    with pytest.raises(e.UnknownOutcome) as exc:
        await env.client.create("Customer", {"DisplayName": "Maybe"}, request_id=request_id)
    assert exc.value.request_id == request_id
    # it did happen: the lookup the caller must do finds it, and a replay returns it
    found = await env.client.find_one("Customer", "DisplayName", "Maybe")
    assert found is not None


async def test_connection_dropped_on_a_read_is_transient(env: Env) -> None:
    env.emu.inject_fault("drop", entity="query")
    with pytest.raises(e.TransientError) as exc:
        await env.client.query("SELECT * FROM Customer")
    assert type(exc.value) is e.TransientError


async def test_gateway_timeout_on_a_write_is_unknown_outcome(env: Env) -> None:
    env.emu.inject_fault("timeout", entity="customer", hang_seconds=0.01, then="504")
    with pytest.raises(e.UnknownOutcome) as exc:
        await env.client.create("Customer", {"DisplayName": "Slow"}, request_id=rid())
    assert exc.value.status == 504


async def test_duplicate_name(env: Env) -> None:
    await env.client.create("Customer", {"DisplayName": "Dup"}, request_id=rid())
    with pytest.raises(e.DuplicateName) as exc:
        await env.client.create("Customer", {"DisplayName": "Dup"}, request_id=rid())
    assert exc.value.code == "6240"
    assert exc.value.describe().startswith("QuickBooks 6240 ")
    assert exc.value.intuit_tid


async def test_duplicate_doc_number_names_the_existing_invoice(env: Env) -> None:
    customer = await env.client.create("Customer", {"DisplayName": "Docs"}, request_id=rid())
    item = await make_item(env.client)
    first = await env.client.create("Invoice", invoice_body(customer["Id"], item["Id"], "D-7"),
                                    request_id=rid())
    with pytest.raises(e.DuplicateDocNumber) as exc:
        await env.client.create("Invoice", invoice_body(customer["Id"], item["Id"], "D-7"),
                                request_id=rid())
    assert exc.value.code == "6140"
    assert exc.value.existing_id == first["Id"]


async def test_stale_sync_token(env: Env) -> None:
    c = await env.client.create("Customer", {"DisplayName": "Stale"}, request_id=rid())
    await env.client.update("Customer", {"Id": c["Id"], "SyncToken": "0", "Notes": "a"},
                            request_id=rid())
    with pytest.raises(e.StaleObject) as exc:
        await env.client.update("Customer", {"Id": c["Id"], "SyncToken": "0", "Notes": "b"},
                                request_id=rid())
    assert exc.value.code == "5010"


async def test_unknown_id_is_not_found(env: Env) -> None:
    with pytest.raises(e.NotFound):
        await env.client.read("Customer", "999999")


async def test_wrong_realm_is_forbidden(env: Env) -> None:
    other = env.emu.create_company("Other")
    client = QboClient(env.http, base_url=BASE, realm_id=other, tokens=env.tokens)
    with pytest.raises(e.Forbidden) as exc:
        await client.company_info()
    assert exc.value.code == "3100"
    assert not exc.value.retryable
    assert env.tokens.refreshes == 0


# --- transport failures (MockTransport) -----------------------------------------------------


class StaticTokens:
    async def access_token(self) -> str:
        return "eyJstatic..a.b.c"

    async def refresh(self, rejected: str) -> str:
        raise AssertionError("no refresh expected")


def mock_client(exc: Exception) -> QboClient:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return QboClient(http, base_url=BASE, realm_id="1", tokens=StaticTokens())


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow connect"),
     httpx.PoolTimeout("pool")],
)
async def test_not_sent_is_transient_even_for_writes(exc: Exception) -> None:
    with pytest.raises(e.TransientError) as info:
        await mock_client(exc).create("Customer", {"DisplayName": "x"}, request_id="r1")
    assert type(info.value) is e.TransientError
    assert "eyJstatic" not in str(info.value)
    # httpx errors hold the request and its token: not chained, not even as context
    assert info.value.__cause__ is None
    assert info.value.__context__ is None


@pytest.mark.parametrize(
    "exc",
    [httpx.ReadTimeout("read"), httpx.RemoteProtocolError("gone"), httpx.ReadError("reset"),
     httpx.WriteError("broken pipe")],
)
async def test_sent_without_answer(exc: Exception) -> None:
    with pytest.raises(e.UnknownOutcome):
        await mock_client(exc).create("Customer", {"DisplayName": "x"}, request_id="r1")
    with pytest.raises(e.TransientError) as read:
        await mock_client(exc).read("Customer", "1")
    assert type(read.value) is e.TransientError


async def test_fault_inside_200_raises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"Fault": {"Error": [{
            "Message": "Duplicate Name Exists Error", "Detail": "d", "code": "6240"}],
            "type": "ValidationFault"}})

    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    client = QboClient(http, base_url=BASE, realm_id="1", tokens=StaticTokens())
    with pytest.raises(e.DuplicateName):
        await client.create("Customer", {"DisplayName": "x"}, request_id="r1")
