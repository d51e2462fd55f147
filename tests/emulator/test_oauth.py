"""OAuth 2.0: discovery, authorize, code exchange, refresh rotation, revoke, bearer checks."""

from __future__ import annotations

import base64
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from qbsync.emulator import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator

#: the body of a refused grant, as Intuit answers it (tests/fixtures/qbo/oauth_invalid_grant.json)
INVALID_GRANT = {"error": "invalid_grant", "error_description": "Token invalid"}

BASIC = (
    "Basic " + base64.b64encode(f"{DEFAULT_CLIENT_ID}:{DEFAULT_CLIENT_SECRET}".encode()).decode()
)
REDIRECT = "https://app.example.com/callback?x=1"


async def authorize(http: httpx.AsyncClient, **extra: str) -> dict[str, str]:
    r = await http.get(
        "/connect/oauth2",
        params={
            "client_id": DEFAULT_CLIENT_ID,
            "response_type": "code",
            "scope": "com.intuit.quickbooks.accounting",
            "redirect_uri": REDIRECT,
            "state": "st4te",
            **extra,
        },
    )
    assert r.status_code == 302
    loc = urlsplit(r.headers["location"])
    assert loc.netloc == "app.example.com"
    assert loc.path == "/callback"
    return {k: v[0] for k, v in parse_qs(loc.query).items()}


async def token(http: httpx.AsyncClient, auth: str = BASIC, **form: str) -> httpx.Response:
    return await http.post(
        "/oauth2/v1/tokens/bearer",
        data=form,
        headers={"Authorization": auth, "Accept": "application/json"},
    )


@pytest.mark.parametrize(
    "path",
    [
        "/.well-known/openid_configuration",
        "/.well-known/openid_configuration/",
        "/.well-known/openid_sandbox_configuration",
        "/.well-known/openid_sandbox_configuration/",
    ],
)
async def test_discovery_points_back_at_emulator(http: httpx.AsyncClient, path: str) -> None:
    r = await http.get(path)
    assert r.status_code == 200
    doc = r.json()
    assert doc["issuer"] == "http://qbo.emulator"
    assert doc["token_endpoint"] == "http://qbo.emulator/oauth2/v1/tokens/bearer"
    assert doc["authorization_endpoint"] == "http://qbo.emulator/connect/oauth2"
    assert doc["revocation_endpoint"] == "http://qbo.emulator/v2/oauth2/tokens/revoke"
    assert doc["userinfo_endpoint"].startswith("http://qbo.emulator/")
    assert doc["jwks_uri"].startswith("http://qbo.emulator/")


async def test_authorize_creates_company_and_code_exchange(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    assert emu.companies == {}
    params = await authorize(http)
    assert params["state"] == "st4te"
    assert params["x"] == "1"
    realm = params["realmId"]
    assert list(emu.companies) == [realm]
    r = await token(
        http, grant_type="authorization_code", code=params["code"], redirect_uri=REDIRECT
    )
    assert r.status_code == 200, r.text
    tok = r.json()
    assert tok["token_type"] == "bearer"
    assert tok["expires_in"] == 3600
    assert tok["x_refresh_token_expires_in"] == 8726400
    assert tok["access_token"].startswith("eyJ")
    assert tok["access_token"].count(".") == 4
    assert ".." in tok["access_token"]
    # the token works on the API
    r = await http.get(
        f"/v3/company/{realm}/companyinfo/{realm}",
        headers={"Authorization": f"Bearer {tok['access_token']}"},
    )
    assert r.status_code == 200
    assert r.json()["CompanyInfo"]["Id"] == realm
    # codes are single use
    r = await token(
        http, grant_type="authorization_code", code=params["code"], redirect_uri=REDIRECT
    )
    assert r.status_code == 400
    assert r.json() == INVALID_GRANT


async def test_authorize_realm_param_and_redirect_mismatch(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    realm = emu.create_company("A")
    emu.create_company("B")
    params = await authorize(http, realm=realm)
    assert params["realmId"] == realm
    r = await token(
        http,
        grant_type="authorization_code",
        code=params["code"],
        redirect_uri="https://evil.example.com/cb",
    )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"


async def test_wrong_client_credentials(http: httpx.AsyncClient, emu: Emulator) -> None:
    realm = emu.create_company()
    refresh = emu.issue_tokens(realm)["refresh_token"]
    bad = "Basic " + base64.b64encode(f"{DEFAULT_CLIENT_ID}:nope".encode()).decode()
    r = await token(http, auth=bad, grant_type="refresh_token", refresh_token=refresh)
    assert r.status_code == 401
    assert r.json() == {"error": "invalid_client"}
    r = await http.post(
        "/oauth2/v1/tokens/bearer", data={"grant_type": "refresh_token", "refresh_token": refresh}
    )
    assert r.status_code == 401
    assert r.json() == {"error": "invalid_client"}
    r = await token(http, grant_type="password", refresh_token=refresh)
    assert r.status_code == 400
    assert r.json()["error"] == "unsupported_grant_type"


async def test_refresh_rotates_and_superseded_token_is_refused(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    realm = emu.create_company()
    first = emu.issue_tokens(realm)
    r = await token(http, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r.status_code == 200
    second = r.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["x_refresh_token_expires_in"] == 8726400
    r = await token(http, grant_type="refresh_token", refresh_token=first["refresh_token"])
    assert r.status_code == 400
    assert r.json() == INVALID_GRANT
    r = await token(http, grant_type="refresh_token", refresh_token=second["refresh_token"])
    assert r.status_code == 200
    assert r.json()["refresh_token"] not in (first["refresh_token"], second["refresh_token"])


async def test_access_token_expires_after_3600_emulated_seconds(
    emu: Emulator, http: httpx.AsyncClient
) -> None:
    realm = emu.create_company()
    tok = emu.issue_tokens(realm)
    headers = {"Authorization": f"Bearer {tok['access_token']}"}
    url = f"/v3/company/{realm}/preferences"
    assert (await http.get(url, headers=headers)).status_code == 200
    emu.advance_time(3590)
    assert (await http.get(url, headers=headers)).status_code == 200
    emu.advance_time(20)
    r = await http.get(url, headers=headers)
    assert r.status_code == 401
    body = r.json()
    assert body["fault"]["error"][0]["code"] == "3200"
    assert body["fault"]["type"] == "AUTHENTICATION"
    assert body["fault"]["error"][0]["message"] == (
        "message=AuthenticationFailed; errorCode=003200; statusCode=401"
    )
    assert "expired" in body["fault"]["error"][0]["detail"].lower()
    assert isinstance(body["time"], int)
    # refresh still works and gives a working token
    r = await token(http, grant_type="refresh_token", refresh_token=tok["refresh_token"])
    assert r.status_code == 200
    fresh = {"Authorization": f"Bearer {r.json()['access_token']}"}
    assert (await http.get(url, headers=fresh)).status_code == 200


async def test_refresh_token_expiry(emu: Emulator, http: httpx.AsyncClient) -> None:
    realm = emu.create_company()
    tok = emu.issue_tokens(realm)
    emu.advance_time(8726400 + 1)
    r = await token(http, grant_type="refresh_token", refresh_token=tok["refresh_token"])
    assert r.status_code == 400
    assert r.json() == INVALID_GRANT


async def test_time_scale_shortens_token_lifetime() -> None:
    emu = Emulator(time_scale=3600)
    assert emu.clock.real_seconds(3600) == pytest.approx(1.0)


async def test_revoke_kills_whole_grant(emu: Emulator, http: httpx.AsyncClient) -> None:
    realm = emu.create_company()
    tok = emu.issue_tokens(realm)
    other = emu.issue_tokens(realm)
    r = await http.post(
        "/v2/oauth2/tokens/revoke",
        json={"token": tok["access_token"]},
        headers={"Authorization": BASIC},
    )
    assert r.status_code == 200
    headers = {"Authorization": f"Bearer {tok['access_token']}"}
    r = await http.get(f"/v3/company/{realm}/preferences", headers=headers)
    assert r.status_code == 401
    assert r.json()["fault"]["error"][0]["code"] == "3200"
    r = await token(http, grant_type="refresh_token", refresh_token=tok["refresh_token"])
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    # another grant of the same realm is untouched
    r = await http.get(
        f"/v3/company/{realm}/preferences",
        headers={"Authorization": f"Bearer {other['access_token']}"},
    )
    assert r.status_code == 200
    # revoke needs client credentials
    r = await http.post("/v2/oauth2/tokens/revoke", json={"token": other["refresh_token"]})
    assert r.status_code == 401


@pytest.mark.parametrize(
    ("header", "detail"),
    [
        (None, "missing"),
        ("Bearer", "malformed"),
        ("Basic abc", "malformed"),
        ("Bearer not-a-jwe", "malformed"),
        ("Bearer eyJhbGciOiJkaXIifQ..aaaa.bbbb.cccc", "invalid"),
    ],
)
async def test_bad_bearer_tokens(
    emu: Emulator, http: httpx.AsyncClient, header: str | None, detail: str
) -> None:
    realm = emu.create_company()
    headers = {"Authorization": header} if header else {}
    r = await http.get(f"/v3/company/{realm}/preferences", headers=headers)
    assert r.status_code == 401
    err = r.json()["fault"]["error"][0]
    assert err["code"] == "3200"
    assert detail in err["detail"].lower()


async def test_wrong_realm_is_403_3100(emu: Emulator, http: httpx.AsyncClient) -> None:
    a, b = emu.create_company("A"), emu.create_company("B")
    headers = {"Authorization": f"Bearer {emu.issue_tokens(a)['access_token']}"}
    for realm in (b, "123"):
        r = await http.get(f"/v3/company/{realm}/preferences", headers=headers)
        assert r.status_code == 403
        body = r.json()
        assert body["fault"]["error"][0]["code"] == "3100"
        assert "003100" in body["fault"]["error"][0]["message"]


async def test_api_expire_and_revoke_helpers(emu: Emulator, http: httpx.AsyncClient) -> None:
    realm = emu.create_company()
    tok = emu.issue_tokens(realm)
    headers = {"Authorization": f"Bearer {tok['access_token']}"}
    assert emu.expire_access_tokens(realm) == 1
    assert (await http.get(f"/v3/company/{realm}/preferences", headers=headers)).status_code == 401
    r = await token(http, grant_type="refresh_token", refresh_token=tok["refresh_token"])
    assert r.status_code == 200
    assert emu.revoke_grants(realm) == 1
    r = await token(http, grant_type="refresh_token", refresh_token=r.json()["refresh_token"])
    assert r.status_code == 400


async def test_userinfo(emu: Emulator, http: httpx.AsyncClient) -> None:
    realm = emu.create_company()
    tok = emu.issue_tokens(realm)
    r = await http.get(
        "/v1/openid_connect/userinfo", headers={"Authorization": f"Bearer {tok['access_token']}"}
    )
    assert r.status_code == 200
    assert r.json()["email"] == "owner@example.com"
