"""The real python-quickbooks and intuit-oauth clients against the emulator (real socket).

Only URLs change: intuit-oauth reads its endpoints from the discovery document, whose URL is
the module-level ``intuitlib.config.DISCOVERY_URL``; python-quickbooks takes its sandbox base
URL from ``QuickBooks.sandbox_api_url_v3``. ``OAUTHLIB_INSECURE_TRANSPORT`` lets
requests-oauthlib send a bearer token over plain http to 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from intuitlib import config as intuit_config
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError
from quickbooks import QuickBooks
from quickbooks.exceptions import QuickbooksException, ValidationException
from quickbooks.objects.base import Ref
from quickbooks.objects.customer import Customer
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.item import Item

from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from qbsync.emulator.server import EmulatorServer

#: the body of a refused grant, as Intuit answers it (tests/fixtures/qbo/oauth_invalid_grant.json)
INVALID_GRANT = {"error": "invalid_grant", "error_description": "Token invalid"}

REDIRECT = "http://localhost:5000/callback"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[EmulatorServer]:
    emu = Emulator(limits=False)
    with EmulatorServer(emu) as srv:
        base = srv.base_url
        monkeypatch.setitem(
            intuit_config.DISCOVERY_URL,
            "sandbox",
            f"{base}/.well-known/openid_sandbox_configuration/",
        )
        monkeypatch.setitem(
            intuit_config.DISCOVERY_URL, "production", f"{base}/.well-known/openid_configuration/"
        )
        monkeypatch.setattr(QuickBooks, "sandbox_api_url_v3", f"{base}/v3")
        monkeypatch.setattr(QuickBooks, "api_url_v3", f"{base}/v3")
        monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
        yield srv


def _connect(server: EmulatorServer) -> AuthClient:
    auth = AuthClient(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, REDIRECT, "sandbox")
    assert auth.token_endpoint.startswith(server.base_url)
    url = auth.get_authorization_url([Scopes.ACCOUNTING], state_token="xyz")
    r = requests.get(url, allow_redirects=False, timeout=10)
    assert r.status_code == 302
    params = {k: v[0] for k, v in parse_qs(urlsplit(r.headers["Location"]).query).items()}
    assert params["state"] == "xyz"
    auth.get_bearer_token(params["code"], realm_id=params["realmId"])
    assert auth.access_token
    assert auth.refresh_token
    assert auth.x_refresh_token_expires_in == 8726400
    return auth


def test_intuit_oauth_flow_refresh_and_revoke(server: EmulatorServer) -> None:
    auth = _connect(server)
    old_refresh, old_access = auth.refresh_token, auth.access_token
    auth.refresh()
    assert auth.refresh_token != old_refresh
    assert auth.access_token != old_access
    with pytest.raises(AuthClientError) as exc:
        auth.refresh(refresh_token=old_refresh)
    assert exc.value.status_code == 400
    assert exc.value.response.json() == INVALID_GRANT
    assert auth.revoke() is True
    with pytest.raises(AuthClientError):
        auth.refresh()
    bad = AuthClient(DEFAULT_CLIENT_ID, "wrong", REDIRECT, "sandbox")
    with pytest.raises(AuthClientError) as exc:
        bad.refresh(refresh_token="AB11whatever")
    assert exc.value.status_code == 401


def test_python_quickbooks_crud_query_and_refresh(server: EmulatorServer) -> None:
    realm = server.emulator.create_company("PyQB", custom_txn_numbers=True)
    auth = _connect(server)  # the authorize endpoint picks the existing company
    assert auth.realm_id == realm
    qb = QuickBooks(
        auth_client=auth, refresh_token=auth.refresh_token, company_id=realm, minorversion=75
    )

    customer = Customer()
    customer.DisplayName = "Ιωάννης O'Neil"
    customer.GivenName = "Ioannis"
    customer = customer.save(qb=qb)
    assert customer.Id == "1"
    assert customer.SyncToken == "0"

    item = Item()
    item.Name = "Espresso"
    item.Type = "Service"
    item.UnitPrice = Decimal("2.50")
    item.Sku = "ESP-1"
    income = Ref()
    income.value = "1"
    item.IncomeAccountRef = income
    item = item.save(qb=qb)
    assert item.Id == "1"

    invoice = Invoice()
    invoice.CustomerRef = customer.to_ref()
    invoice.DocNumber = "PY-1"
    sales_line = SalesItemLine()
    sales_line.Amount = Decimal("7.50")
    sales_line.SalesItemLineDetail = SalesItemLineDetail()
    sales_line.SalesItemLineDetail.ItemRef = item.to_ref()
    sales_line.SalesItemLineDetail.Qty = 3
    sales_line.SalesItemLineDetail.UnitPrice = Decimal("2.50")
    tax = Ref()
    tax.value = "1"
    sales_line.SalesItemLineDetail.TaxCodeRef = tax
    invoice.Line.append(sales_line)
    invoice = invoice.save(qb=qb, request_id="py-req-1")
    assert invoice.TotalAmt == 9.3
    assert invoice.DocNumber == "PY-1"

    # full update through save() (python-quickbooks sends the whole object)
    invoice.PrivateNote = "updated"
    invoice = invoice.save(qb=qb)
    assert invoice.SyncToken == "1"
    assert invoice.PrivateNote == "updated"

    found = Customer.filter(DisplayName="Ιωάννης O'Neil", qb=qb)
    assert [c.Id for c in found] == ["1"]
    assert Invoice.count(qb=qb) == 1
    items = Item.all(qb=qb)
    assert items[0].Sku == "ESP-1"
    assert [i.DocNumber for i in Invoice.where("TotalAmt > '9'", qb=qb)] == ["PY-1"]
    assert Invoice.get(invoice.Id, qb=qb).DocNumber == "PY-1"

    dup = Customer()
    dup.DisplayName = "ιωάννης o'neil"
    with pytest.raises(QuickbooksException) as exc:
        dup.save(qb=qb)
    assert exc.value.error_code == 6240
    bad = Item()
    bad.Name = "Bad:Name"
    bad.Type = "Service"
    bad.IncomeAccountRef = income
    with pytest.raises(QuickbooksException):
        bad.save(qb=qb)
    long = Customer()
    long.DisplayName = "x" * 501
    with pytest.raises(ValidationException) as exc2:
        long.save(qb=qb)
    assert exc2.value.error_code == 2050

    # refresh with the OAuth client, then keep using the API with the new access token
    auth.refresh()
    qb2 = QuickBooks(
        auth_client=auth, refresh_token=auth.refresh_token, company_id=realm, minorversion=75
    )
    assert Customer.get("1", qb=qb2).DisplayName == "Ιωάννης O'Neil"
    report = qb2.get_report("ProfitAndLoss")
    assert report["Header"]["ReportName"] == "ProfitAndLoss"
