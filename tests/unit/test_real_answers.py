"""The daemon's parsing and classification fed real QuickBooks answers (tests/fixtures/qbo,
sources in SOURCES.md): every captured fault classified as the daemon must react to it, and
the client, OAuth and settings code reading Intuit's own sample answers."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from qbsync.digest import digest, marked_voided
from qbsync.qbo import errors as e
from qbsync.qbo import oauth
from qbsync.qbo.client import QboClient
from qbsync.realm import look_up_references

from ..qbo_shapes import load, text

BASE = "https://quickbooks.example"
REALM = "9130"


def body_of(name: str) -> bytes:
    return text(name).encode()


# --- faults ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "status", "cls", "code"),
    [
        ("fault_6240.json", 400, e.DuplicateName, "6240"),
        ("fault_6240_lowercase.json", 400, e.DuplicateName, "6240"),
        ("fault_2500.json", 400, e.ValidationFault, "2500"),
        ("fault_2500_element.xml", 400, e.ValidationFault, "2500"),
        ("fault_4000.json", 400, e.ValidationFault, "4000"),
        ("fault_6070_unclosed.xml", 400, e.ValidationFault, "6070"),
        ("fault_401_3200.json", 401, e.AuthError, "3200"),
        ("fault_401_100.xml", 401, e.AuthError, "100"),
        # a wrong cluster is not cured by a new token: the operator must fix the base URL
        ("fault_401_130.xml", 401, e.Forbidden, "130"),
        ("fault_403_3100.json", 403, e.Forbidden, "3100"),
        ("fault_403_3100_scope.xml", 403, e.Forbidden, "3100"),
        ("fault_429_3001.xml", 429, e.Throttled, "3001"),
        ("fault_403_3001.xml", 403, e.Throttled, "3001"),
    ],
)
def test_real_faults_are_classified(fixture: str, status: int, cls: type[e.QboError],
                                    code: str) -> None:
    err = e.error_from_response(status, body_of(fixture), {"intuit_tid": "1-tid"})
    assert type(err) is cls
    assert (err.status, err.code, err.intuit_tid) == (status, code, "1-tid")
    assert err.message  # the operator reads QuickBooks' own words
    if cls is e.Throttled:
        assert isinstance(err, e.Throttled)
        assert err.retry_after == e.DEFAULT_RETRY_AFTER


def test_an_unclosed_xml_error_keeps_its_code_message_and_detail() -> None:
    """QuickBooks-V3-PHP-SDK issue 445: the 6070 answer never closes its <Error>."""
    err = e.error_from_response(400, body_of("fault_6070_unclosed.xml"))
    assert isinstance(err, e.ValidationFault)
    assert (err.code, err.element, err.fault_type) == ("6070", "Line.Amount", "ValidationFault")
    assert err.message == "Amount calculation incorrect in the request."
    assert err.detail == "Amount is not equal to UnitPrice * Qty. Supplied value:58"
    assert err.describe() == ("QuickBooks 6070 Amount calculation incorrect in the request.: "
                              "Amount is not equal to UnitPrice * Qty. Supplied value:58")


def test_xml_fault_details_are_read() -> None:
    err = e.error_from_response(400, body_of("fault_2500_element.xml"))
    assert (err.element, err.detail) == ("Line.SalesItemLineDetail.ItemRef",
                                         "Invalid Reference Id : Line.SalesItemLineDetail.ItemRef")
    scope = e.error_from_response(403, body_of("fault_403_3100_scope.xml"))
    assert scope.detail == "The access token does not have sufficient scope"
    assert scope.fault_type == "SERVICE"


def test_gateway_bodies_are_read() -> None:
    err = e.error_from_response(401, body_of("fault_401_3200.json"))
    assert err.fault_type == "AUTHENTICATION"
    assert err.detail == "Malformed bearer token: too short or too long"
    assert err.element is None  # JSON null
    forbidden = e.error_from_response(403, body_of("fault_403_3100.json"))
    assert (forbidden.detail, forbidden.fault_type) == ("", "SERVICE")
    assert "AuthorizationFailed" in forbidden.message


@pytest.mark.parametrize(
    ("fixture", "cls"),
    [
        # an Intuit outage: 3100 with HTTP 500 is a server fault, not a missing grant
        ("fault_500_3100_fields.json", e.TransientError),
        ("fault_500_120_fields.json", e.TransientError),
    ],
)
def test_server_faults_with_authorization_codes_are_transient(fixture: str,
                                                              cls: type[e.QboError]) -> None:
    """minimul/qbo_api issues 81 and 96 quote these faults as the gem parsed them (the raw
    bodies are not quoted): the same fields go through the daemon's classification."""
    f = load(fixture)
    items = (e.FaultItem(code=f["error_code"], message=f["error_message"],
                         detail=f["error_detail"] or ""),)
    for write in (False, True):
        err = e.error_from_fault(items, f["fault_type"], status=f["http_status"], write=write)
        assert isinstance(err, cls), err
        assert err.retryable
        assert err.code == f["error_code"]


def test_stale_object_error_list() -> None:
    err = e.error_from_response(400, json.dumps({"Fault": {"Error": load(
        "fault_5010_errors.json")}}).encode())
    assert isinstance(err, e.StaleObject)
    assert err.detail.startswith("Stale Object Error : You and API API were working")


def test_batch_item_faults() -> None:
    items = load("batch_response.json")["BatchItemResponse"]
    got = [e.error_from_batch_item(item) for item in items]
    assert [type(err) for err in got] == [e.DuplicateName, e.NotFound, e.StaleObject,
                                          type(None)]
    assert [err.code for err in got if err is not None] == ["6240", "610", "5010"]
    assert all(err.status is None for err in got if err is not None)


def test_batch_item_with_several_errors() -> None:
    first, second = load("batch_faults_6140.json")["BatchItemResponse"]
    err = e.error_from_batch_item(first)
    assert isinstance(err, e.DuplicateDocNumber)
    assert err.existing_id == "3632"  # "TxnType=Journal Entry with TxnId=3632"
    assert len(err.errors) == 4
    assert [i.code for i in err.errors] == ["6140", "2020", "2020", "2020"]
    assert err.describe().endswith("(+3 more)")
    other = e.error_from_batch_item(second)
    assert type(other) is e.ValidationFault
    assert (other.code, other.element) == ("2020", "AccountRef")


def test_successful_answers_carry_no_fault() -> None:
    for name in ("customer_create.json", "invoice_void.json", "invoice_delete.json",
                 "customer_query.json", "batch_query_empty.json", "cdc_empty.json",
                 "query_count.json", "report_profitandloss.json", "preferences_read.json"):
        assert e.error_from_response(200, body_of(name)) is None, name


# --- the client ----------------------------------------------------------------------------


class Tokens:
    def __init__(self) -> None:
        self.refreshes = 0

    async def access_token(self) -> str:
        return "eyJ..a.b.c"

    async def refresh(self, rejected: str) -> str:
        self.refreshes += 1
        return "eyJ..d.e.f"


Route = Callable[[httpx.Request], httpx.Response]


def client_for(route: Route) -> tuple[QboClient, Tokens]:
    tokens = Tokens()
    http = httpx.AsyncClient(transport=httpx.MockTransport(route))
    return QboClient(http, base_url=BASE, realm_id=REALM, tokens=tokens), tokens


def answering(name: str, status: int = 200, content_type: str = "application/json") -> Route:
    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body_of(name),
                              headers={"content-type": content_type, "intuit_tid": "1-x"})
    return route


async def test_entity_answers() -> None:
    client, _ = client_for(answering("customer_create.json"))
    customer = await client.create("Customer", {"DisplayName": "King's Groceries"},
                                   request_id="r1")
    assert (customer["Id"], customer["SyncToken"]) == ("67", "0")
    client, _ = client_for(answering("invoice_void.json"))
    voided = await client.void("Invoice", "129", "0", request_id="r2")
    assert (voided["SyncToken"], voided["TotalAmt"], voided["PrivateNote"]) == ("1", 0, "Voided")
    client, _ = client_for(answering("invoice_delete.json"))
    deleted = await client.delete("Invoice", "33", "3", request_id="r3")
    assert deleted == {"status": "Deleted", "domain": "QBO", "Id": "33"}
    client, _ = client_for(answering("companyinfo_read.json"))
    assert (await client.company_info())["CompanyName"] == "Larry's Bakery"
    client, _ = client_for(answering("preferences_read.json"))
    prefs = await client.preferences()
    assert prefs["SalesFormsPrefs"]["CustomTxnNumbers"] is False
    assert prefs["CurrencyPrefs"]["HomeCurrency"]["value"] == "USD"


async def test_query_answers() -> None:
    client, _ = client_for(answering("customer_query.json"))
    rows = await client.query("select * from Customer")
    assert [r["Id"] for r in rows] == ["1", "29"]
    client, _ = client_for(answering("invoice_query.json"))  # totalCount beside the rows
    assert [r["Id"] for r in await client.query("select * from Invoice")] == ["239"]
    client, _ = client_for(answering("query_count.json"))
    assert await client.count("select count(*) from Account") == 1
    empty = load("batch_query_empty.json")["BatchItemResponse"][0]
    client, _ = client_for(lambda request: httpx.Response(200, json={**empty, "time": "t"}))
    assert await client.query("select * from Invoice where id = '999'") == []
    assert await client.find_one("Invoice", "DocNumber", "1001") is None


async def test_batch_answers_are_matched_by_bid() -> None:
    client, _ = client_for(answering("batch_response.json"))
    answers = await client.batch([{"bId": "bid4", "Query": "select * from SalesReceipt"},
                                  {"bId": "bid1", "operation": "create", "Customer": {}},
                                  {"bId": "bid3", "operation": "update", "Customer": {}}],
                                 request_id="b1")
    assert [a["bId"] for a in answers] == ["bid4", "bid1", "bid3"]
    assert "QueryResponse" in answers[0]
    assert isinstance(e.error_from_batch_item(answers[2]), e.StaleObject)


async def test_cdc_answers() -> None:
    client, _ = client_for(answering("cdc_response.json"))
    changed = await client.cdc(["Customer", "Estimate"], datetime(2015, 12, 1, tzinfo=UTC))
    assert {k: [o["Id"] for o in v] for k, v in changed.items()} == {
        "Customer": ["63", "99"], "Estimate": ["34", "123", "979"]}
    assert changed["Estimate"][2]["status"] == "Deleted"
    client, _ = client_for(answering("cdc_empty.json"))
    assert await client.cdc(["Invoice", "Customer"], "2019-03-01T00:00:00Z") == {}


async def test_report_answer() -> None:
    client, _ = client_for(answering("report_profitandloss.json"))
    report = await client.report("ProfitAndLoss", start_date="2015-06-01", end_date="2015-06-30")
    groups = [row.get("group") for row in report["Rows"]["Row"]]
    assert groups == ["Income", "GrossProfit", "Expenses", "NetOperatingIncome", "NetIncome"]


@pytest.mark.parametrize(("fixture", "status"), [("fault_429_3001.xml", 429),
                                             ("fault_403_3001.xml", 403)])
async def test_throttle_in_xml_is_throttled(fixture: str, status: int) -> None:
    client, tokens = client_for(answering(fixture, status, "application/xml"))
    with pytest.raises(e.Throttled) as exc:
        await client.query("select * from Customer")
    assert exc.value.code == "3001"
    assert tokens.refreshes == 0


async def test_wrong_cluster_is_not_retried_with_a_new_token() -> None:
    sent: list[httpx.Request] = []

    def route(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(401, content=body_of("fault_401_130.xml"),
                              headers={"content-type": "application/xml"})

    client, tokens = client_for(route)
    with pytest.raises(e.Forbidden) as exc:
        await client.query("select * from Customer")
    assert exc.value.code == "130"
    assert (tokens.refreshes, len(sent)) == (0, 1)


async def test_expired_token_is_refreshed_once() -> None:
    answers = [httpx.Response(401, content=body_of("fault_401_3200.json")),
               httpx.Response(200, content=body_of("customer_query.json"))]
    client, tokens = client_for(lambda request: answers.pop(0))
    assert len(await client.query("select * from Customer")) == 2
    assert tokens.refreshes == 1


# --- OAuth -------------------------------------------------------------------------------

ENDPOINTS = oauth.OAuthEndpoints(authorization_endpoint=f"{BASE}/connect/oauth2",
                                 token_endpoint=f"{BASE}/oauth2/v1/tokens/bearer",
                                 revocation_endpoint=f"{BASE}/v2/oauth2/tokens/revoke")
CLIENT = oauth.ClientCredentials("client", "secret")


async def test_token_answers() -> None:
    now = datetime(2016, 5, 6, tzinfo=UTC)

    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body_of("oauth_token_refresh.json"))

    async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
        tokens = await oauth.refresh(http, CLIENT, "old", endpoints=ENDPOINTS, now=now)
    real = load("oauth_token_refresh.json")
    assert (tokens.access_token, tokens.refresh_token) == (real["access_token"],
                                                           real["refresh_token"])
    assert (tokens.expires_at - now).total_seconds() == 3600
    assert tokens.refresh_expires_at is not None
    assert (tokens.refresh_expires_at - now).total_seconds() == 15552000


async def test_invalid_grant_answer() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, content=body_of("oauth_invalid_grant.json"),
                              headers={"content-type": "application/json;charset=UTF-8",
                                       "intuit_tid": "1234-1234-1234-123"})

    async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
        with pytest.raises(oauth.InvalidGrant) as exc:
            await oauth.refresh(http, CLIENT, "old", endpoints=ENDPOINTS)
    assert (exc.value.error, exc.value.description, exc.value.status) == (
        "invalid_grant", "Token invalid", 400)
    assert exc.value.intuit_tid == "1234-1234-1234-123"


async def test_discovery_document() -> None:
    def route(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body_of("oauth_discovery.json"))

    async with httpx.AsyncClient(transport=httpx.MockTransport(route)) as http:
        found = await oauth.discover(http, f"{BASE}/.well-known/openid_configuration/")
    assert found.token_endpoint == oauth.PRODUCTION.token_endpoint
    assert found.revocation_endpoint == oauth.PRODUCTION.revocation_endpoint
    assert found.authorization_endpoint == oauth.PRODUCTION.authorization_endpoint


# --- settings looked up in the company ----------------------------------------------------


class Company:
    """Answers the connect-time lookup with real answers (no tax codes: the tax-code work
    keeps its own fixtures)."""

    def __init__(self) -> None:
        self.accounts = [load("account_create.json")["Account"]]

    async def query_all(self, select: str) -> list[dict[str, Any]]:
        if "PaymentMethod" in select:
            return load("paymentmethod_query.json")["QueryResponse"]["PaymentMethod"]
        if "Account" in select:
            return self.accounts
        return []

    async def preferences(self) -> dict[str, Any]:
        return load("preferences_read.json")["Preferences"]


async def test_settings_from_real_answers() -> None:
    lookup = await look_up_references(Company())
    assert lookup.refused == {}
    found = lookup.found
    assert found["custom_txn_numbers"] is False
    assert found["payment_method:american_express"] == {"value": "6", "name": "American Express"}
    assert found["payment_method:cash"] == {"value": "1", "name": "Cash"}
    assert len([k for k in found if k.startswith("payment_method:")]) == 7


# --- digests ------------------------------------------------------------------------------


def test_digests_of_real_objects() -> None:
    """Real objects hold nothing the daemon's digest must hand over to PostgreSQL."""
    invoice = load("invoice_read.json")["Invoice"]
    assert digest("Invoice", invoice) == {
        "TotalAmt": 362.07, "CustomerRef": "24", "DocNumber": "1037", "TxnDate": "2014-09-19",
        "Lines": [{"Amount": 275.0, "Item": "5", "Qty": 1, "TaxCode": "TAX"},
                  {"Amount": 12.75, "Item": "11", "Qty": 1, "TaxCode": "TAX"},
                  {"Amount": 47.5, "Item": "3", "Qty": 5, "TaxCode": "TAX"}]}
    assert digest("Customer", load("customer_create.json")["Customer"]) == {
        "DisplayName": "King's Groceries", "Email": "jdrew@myemail.com", "Active": True}
    assert digest("Item", load("item_create.json")["Item"]) == {
        "Name": "Garden Supplies", "UnitPrice": 0, "Active": True}
    payment = digest("Payment", load("payment_read.json")["Payment"])
    assert payment is not None
    assert payment["Lines"] == [{"Amount": 55.0, "Linked": "70"}]


def test_voids_are_recognised_as_quickbooks_shows_them() -> None:
    """A real void carries no Voided field: only the zero total and the note show it."""
    for qbo_type, fixture in (("Invoice", "invoice_void.json"), ("Payment", "payment_void.json")):
        obj = load(fixture)[qbo_type]
        assert "Voided" not in obj
        assert marked_voided(qbo_type, obj) == {**obj, "Voided": True}
    live = load("invoice_read.json")["Invoice"]
    assert marked_voided("Invoice", live) is live
    noted = {**live, "PrivateNote": "Voided by mistake, re-issued"}  # money still there
    assert marked_voided("Invoice", noted) is noted
    stub = {"status": "Deleted", "domain": "QBO", "Id": "33", "PrivateNote": "Voided",
            "TotalAmt": 0}
    assert marked_voided("Invoice", stub) is stub
    customer = {"DisplayName": "x", "PrivateNote": "Voided", "TotalAmt": 0}
    assert marked_voided("Customer", customer) is customer


def test_too_long_fault() -> None:
    err = e.error_from_response(400, body_of("fault_2050.json"))
    assert type(err) is e.ValidationFault
    assert (err.code, err.element) == ("2050", "Description")
