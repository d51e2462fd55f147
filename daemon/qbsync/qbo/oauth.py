"""Intuit OAuth 2.0: authorization URL, code exchange, refresh, revoke, discovery.

Token endpoint calls use HTTP Basic client credentials and a form body; revoke uses a JSON
body (fact sheet section 6). A rejected grant is :class:`InvalidGrant`, also when Intuit
answers 200 with ``{"error": ...}`` in the body: callers must never wipe stored tokens on it
(a node-quickbooks bug did). A response without both tokens is refused for the same reason.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from ..errors import QbsyncError
from .errors import Throttled, TransientError, UnknownOutcome, retry_after_seconds

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
DISCOVERY_PRODUCTION = "https://developer.intuit.com/.well-known/openid_configuration/"
DISCOVERY_SANDBOX = "https://developer.intuit.com/.well-known/openid_sandbox_configuration/"
API_PRODUCTION = "https://quickbooks.api.intuit.com"
API_SANDBOX = "https://sandbox-quickbooks.api.intuit.com"
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True)
class OAuthEndpoints:
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str
    userinfo_endpoint: str | None = None


#: Intuit production endpoints (the sandbox uses the same ones, except userinfo).
PRODUCTION = OAuthEndpoints(
    authorization_endpoint="https://appcenter.intuit.com/connect/oauth2",
    token_endpoint="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",  # noqa: S106
    revocation_endpoint="https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
    userinfo_endpoint="https://accounts.platform.intuit.com/v1/openid_connect/userinfo",
)
SANDBOX = OAuthEndpoints(
    authorization_endpoint=PRODUCTION.authorization_endpoint,
    token_endpoint=PRODUCTION.token_endpoint,
    revocation_endpoint=PRODUCTION.revocation_endpoint,
    userinfo_endpoint="https://sandbox-accounts.platform.intuit.com/v1/openid_connect/userinfo",
)


@dataclass(frozen=True)
class ClientCredentials:
    """The app's OAuth client id and secret (the secret never shows in repr)."""

    client_id: str
    client_secret: str = field(repr=False)

    def basic_auth(self) -> str:
        raw = f"{self.client_id}:{self.client_secret}".encode()
        return "Basic " + base64.b64encode(raw).decode()


@dataclass(frozen=True)
class TokenSet:
    """An access + refresh token pair with their expiry instants (UTC)."""

    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    expires_at: datetime
    refresh_expires_at: datetime | None = None

    def expires_within(self, seconds: float, now: datetime | None = None) -> bool:
        now = now or datetime.now(UTC)
        return self.expires_at - now <= timedelta(seconds=seconds)

    def to_payload(self) -> dict[str, Any]:
        """What the vault encrypts."""
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.isoformat(),
            "refresh_expires_at": (self.refresh_expires_at.isoformat()
                                   if self.refresh_expires_at else None),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> TokenSet:
        refresh_exp = payload.get("refresh_expires_at")
        return cls(
            access_token=str(payload["access_token"]),
            refresh_token=str(payload["refresh_token"]),
            expires_at=datetime.fromisoformat(payload["expires_at"]),
            refresh_expires_at=datetime.fromisoformat(refresh_exp) if refresh_exp else None,
        )

    @classmethod
    def from_response(cls, data: Mapping[str, Any], now: datetime | None = None) -> TokenSet:
        """Parse a token endpoint answer (``expires_in`` and ``x_refresh_token_expires_in``
        are seconds from now)."""
        now = now or datetime.now(UTC)
        access, refresh = data.get("access_token"), data.get("refresh_token")
        if not access or not refresh:
            raise OAuthError("the token endpoint answered without an access and a refresh "
                             "token; the stored tokens are kept", error="invalid_response")
        refresh_in = data.get("x_refresh_token_expires_in")
        return cls(
            access_token=str(access),
            refresh_token=str(refresh),
            expires_at=now + timedelta(seconds=float(data.get("expires_in") or 3600)),
            refresh_expires_at=(now + timedelta(seconds=float(refresh_in))
                                if refresh_in else None),
        )


class OAuthError(QbsyncError):
    """The token or revoke endpoint refused the request (``error`` is the OAuth code)."""

    def __init__(self, message: str, *, error: str | None = None, status: int | None = None,
                 description: str | None = None, intuit_tid: str | None = None) -> None:
        super().__init__(message)
        self.error = error
        self.status = status
        self.description = description
        self.intuit_tid = intuit_tid


class InvalidGrant(OAuthError):
    """The refresh token (or code) is expired, revoked or superseded: the company must be
    reconnected. Keep the stored tokens; they may still help support find out why."""


def authorization_url(
    client_id: str,
    redirect_uri: str,
    state: str,
    scopes: Iterable[str] = (ACCOUNTING_SCOPE,),
    *,
    endpoints: OAuthEndpoints = PRODUCTION,
) -> str:
    query = urlencode({
        "client_id": client_id,
        "response_type": "code",
        "scope": " ".join(scopes),
        "redirect_uri": redirect_uri,
        "state": state,
    })
    return f"{endpoints.authorization_endpoint}?{query}"


async def discover(http: httpx.AsyncClient, discovery_url: str = DISCOVERY_PRODUCTION
                   ) -> OAuthEndpoints:
    """Endpoints from an OpenID discovery document (what Intuit's own clients do)."""
    try:
        resp = await http.get(discovery_url, headers={"Accept": "application/json"},
                              timeout=DEFAULT_TIMEOUT)
    except httpx.TransportError as exc:
        raise TransientError(f"OpenID discovery failed: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        raise OAuthError(f"OpenID discovery at {discovery_url} answered HTTP {resp.status_code}",
                         status=resp.status_code)
    try:
        doc = resp.json()
        return OAuthEndpoints(
            authorization_endpoint=doc["authorization_endpoint"],
            token_endpoint=doc["token_endpoint"],
            revocation_endpoint=doc["revocation_endpoint"],
            userinfo_endpoint=doc.get("userinfo_endpoint"),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise OAuthError(f"OpenID discovery document at {discovery_url} lacks endpoints") \
            from exc


async def exchange_code(
    http: httpx.AsyncClient,
    client: ClientCredentials,
    code: str,
    redirect_uri: str,
    *,
    endpoints: OAuthEndpoints = PRODUCTION,
    now: datetime | None = None,
) -> TokenSet:
    """Trade the authorization code from the redirect for a token pair."""
    data = await _token_call(http, client, endpoints, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri})
    return TokenSet.from_response(data, now)


async def refresh(
    http: httpx.AsyncClient,
    client: ClientCredentials,
    refresh_token: str,
    *,
    endpoints: OAuthEndpoints = PRODUCTION,
    now: datetime | None = None,
) -> TokenSet:
    """A new pair from the refresh token. Store the new refresh token before anything else:
    the old one may stop working at once."""
    data = await _token_call(http, client, endpoints, {
        "grant_type": "refresh_token", "refresh_token": refresh_token})
    return TokenSet.from_response(data, now)


async def revoke(
    http: httpx.AsyncClient,
    client: ClientCredentials,
    token: str,
    *,
    endpoints: OAuthEndpoints = PRODUCTION,
) -> None:
    """Revoke the grant (pass the refresh token, or an access token)."""
    try:
        resp = await http.post(
            endpoints.revocation_endpoint, json={"token": token},
            headers={"Authorization": client.basic_auth(), "Accept": "application/json"},
            timeout=DEFAULT_TIMEOUT)
    except httpx.TransportError as exc:
        raise TransientError(f"token revoke failed: {type(exc).__name__}") from exc
    if resp.status_code != 200:
        _raise_oauth(resp, _json_or_empty(resp))


async def _token_call(http: httpx.AsyncClient, client: ClientCredentials,
                      endpoints: OAuthEndpoints, form: dict[str, str]) -> dict[str, Any]:
    try:
        resp = await http.post(
            endpoints.token_endpoint, data=form,
            headers={"Authorization": client.basic_auth(), "Accept": "application/json"},
            timeout=DEFAULT_TIMEOUT)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from exc
    except httpx.TransportError as exc:
        # Intuit may have rotated the refresh token without us seeing the new one.
        raise UnknownOutcome(f"token endpoint gave no answer: {type(exc).__name__}") from exc
    body = _json_or_empty(resp)
    if resp.status_code == 200 and "error" not in body:
        return body
    _raise_oauth(resp, body)
    raise AssertionError("unreachable")


def _json_or_empty(resp: httpx.Response) -> dict[str, Any]:
    try:
        data = resp.json()
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _raise_oauth(resp: httpx.Response, body: Mapping[str, Any]) -> None:
    status = resp.status_code
    tid = resp.headers.get("intuit_tid")
    if status == 429:
        raise Throttled("token endpoint throttled", status=429, intuit_tid=tid,
                        retry_after=retry_after_seconds(resp.headers.get("retry-after")))
    if status >= 500:
        raise TransientError(f"token endpoint failed with HTTP {status}", status=status,
                             intuit_tid=tid)
    error = str(body.get("error") or "") or None
    description = str(body.get("error_description") or "") or None
    text = f"Intuit OAuth error {error or 'unknown'} (HTTP {status})"
    if description:
        text += f": {description}"
    cls = InvalidGrant if error == "invalid_grant" else OAuthError
    raise cls(text, error=error, status=status, description=description, intuit_tid=tid)
