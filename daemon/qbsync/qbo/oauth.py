"""Intuit OAuth 2.0: authorization URL, code exchange, refresh, revoke, discovery.

Token endpoint calls use HTTP Basic client credentials and a form body; revoke uses a JSON
body (fact sheet section 6). A rejected grant is :class:`InvalidGrant`, also when Intuit
answers 200 with ``{"error": ...}`` in the body: callers must never wipe stored tokens on it
(a node-quickbooks bug did). A response without both tokens is refused for the same reason.

Every answer is read up to ``max_bytes`` (`qbsync.qbo.endpoints.read_capped`); callers pass
an HTTP client from `qbsync.qbo.endpoints.http_client`, which checks every URL against the
endpoint policy and follows no redirect. :func:`resolve_endpoints` finds the endpoints:
those set directly, else the discovery document's, else Intuit's documented ones.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from .. import fastjson
from ..errors import QbsyncError
from .endpoints import API_PRODUCTION as API_PRODUCTION  # where callers found them
from .endpoints import API_SANDBOX as API_SANDBOX
from .endpoints import (
    DEFAULT_MAX_RESPONSE_BYTES,
    EndpointPolicy,
    EndpointRefused,
    ResponseTooLarge,
    read_capped,
    shown,
)
from .errors import Throttled, TransientError, UnknownOutcome, retry_after_seconds

log = logging.getLogger(__name__)

ACCOUNTING_SCOPE = "com.intuit.quickbooks.accounting"
DISCOVERY_PRODUCTION = "https://developer.intuit.com/.well-known/openid_configuration/"
DISCOVERY_SANDBOX = "https://developer.intuit.com/.well-known/openid_sandbox_configuration/"
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
    def from_response(cls, data: Mapping[str, Any], now: datetime | None = None, *,
                      time_scale: float = 1.0) -> TokenSet:
        """Parse a token endpoint answer (``expires_in`` and ``x_refresh_token_expires_in``
        are seconds from now on the server's clock, which an emulator runs ``time_scale``
        times faster than real time: the expiry instants are real time)."""
        now = now or datetime.now(UTC)
        access, refresh = data.get("access_token"), data.get("refresh_token")
        if not access or not refresh:
            raise OAuthError("the token endpoint answered without an access and a refresh "
                             "token; the stored tokens are kept", error="invalid_response")
        refresh_in = data.get("x_refresh_token_expires_in")
        expires_in = float(data.get("expires_in") or 3600)
        return cls(
            access_token=str(access),
            refresh_token=str(refresh),
            expires_at=now + timedelta(seconds=expires_in / time_scale),
            refresh_expires_at=(now + timedelta(seconds=float(refresh_in) / time_scale)
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


class DiscoveryMissing(OAuthError):
    """The server has no usable OpenID discovery document (404, not JSON, no endpoints)."""


async def discover(http: httpx.AsyncClient, discovery_url: str = DISCOVERY_PRODUCTION, *,
                   max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> OAuthEndpoints:
    """Endpoints from an OpenID discovery document (what Intuit's own clients do)."""
    where = shown(discovery_url)
    try:
        request = http.build_request("GET", discovery_url,
                                     headers={"Accept": "application/json"},
                                     timeout=DEFAULT_TIMEOUT)
        resp = await http.send(request, stream=True)
        body = await read_capped(resp, max_bytes, f"GET {where}")
    except httpx.TransportError as exc:
        raise TransientError(f"OpenID discovery at {where} failed: "
                             f"{type(exc).__name__}") from None
    except ResponseTooLarge as exc:
        raise TransientError(f"OpenID discovery failed: {exc}") from None
    if resp.status_code >= 500 or resp.status_code == 429:
        raise TransientError(f"OpenID discovery at {where} answered HTTP {resp.status_code}",
                             status=resp.status_code)
    if resp.status_code != 200:
        raise DiscoveryMissing(f"OpenID discovery at {where} answered HTTP "
                               f"{resp.status_code}", status=resp.status_code)
    try:
        doc = fastjson.loads(body)
        return OAuthEndpoints(
            authorization_endpoint=str(doc["authorization_endpoint"]),
            token_endpoint=str(doc["token_endpoint"]),
            revocation_endpoint=str(doc["revocation_endpoint"]),
            userinfo_endpoint=doc.get("userinfo_endpoint"),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise DiscoveryMissing(f"OpenID discovery document at {where} lacks the "
                               "endpoints") from None


@dataclass(frozen=True)
class EndpointSettings:
    """Where the OAuth endpoints come from: a discovery document (empty: none) and
    endpoints set directly (empty: not set)."""

    discovery_url: str = DISCOVERY_PRODUCTION
    authorization_endpoint: str = ""
    token_endpoint: str = ""
    revocation_endpoint: str = ""


_ENDPOINT_FIELDS = ("authorization_endpoint", "token_endpoint", "revocation_endpoint")
_INTUIT_DISCOVERY = {DISCOVERY_PRODUCTION.rstrip("/"), DISCOVERY_SANDBOX.rstrip("/")}


async def resolve_endpoints(http: httpx.AsyncClient, source: EndpointSettings,
                            policy: EndpointPolicy, *,
                            max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES) -> OAuthEndpoints:
    """The authorization, token and revocation endpoints: each as set directly, else from
    the discovery document, else Intuit's documented one (when the server has no
    discovery document, or Intuit's own discovery cannot be read). A discovery document
    that cannot be read for a passing reason (timeout, 5xx) on another server raises
    `TransientError`: guessing Intuit's endpoints for an emulator's tokens would get the
    grant refused. Every endpoint is checked against ``policy`` (`EndpointRefused`)."""
    given = {name: getattr(source, name) for name in _ENDPOINT_FIELDS}
    found: OAuthEndpoints | None = None
    origin = "set directly"
    if not all(given.values()) and source.discovery_url:
        policy.check(source.discovery_url, "oauth_discovery_url")
        try:
            found = await discover(http, source.discovery_url, max_bytes=max_bytes)
            origin = f"from the discovery document at {shown(source.discovery_url)}"
        except DiscoveryMissing as exc:
            log.warning("%s; using the OAuth endpoints set directly, else Intuit's "
                        "documented ones", exc)
        except (TransientError, OAuthError) as exc:
            if source.discovery_url.rstrip("/") not in _INTUIT_DISCOVERY:
                raise
            log.warning("%s; using Intuit's documented OAuth endpoints", exc)
    fallback = found or PRODUCTION
    endpoints = replace(fallback, **{k: v for k, v in given.items() if v})
    for name in _ENDPOINT_FIELDS:
        url = getattr(endpoints, name)
        where = ("set directly" if given[name] else origin if found
                 else "Intuit's documented endpoint")
        try:
            policy.check(url, f"OAuth {name.replace('_', ' ')}")
        except EndpointRefused as exc:
            raise EndpointRefused(f"{exc} ({where})") from None
    return endpoints


async def exchange_code(
    http: httpx.AsyncClient,
    client: ClientCredentials,
    code: str,
    redirect_uri: str,
    *,
    endpoints: OAuthEndpoints = PRODUCTION,
    now: datetime | None = None,
    time_scale: float = 1.0,
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> TokenSet:
    """Trade the authorization code from the redirect for a token pair."""
    data = await _token_call(http, client, endpoints, {
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri},
        max_bytes)
    return TokenSet.from_response(data, now, time_scale=time_scale)


async def refresh(
    http: httpx.AsyncClient,
    client: ClientCredentials,
    refresh_token: str,
    *,
    endpoints: OAuthEndpoints = PRODUCTION,
    now: datetime | None = None,
    time_scale: float = 1.0,
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> TokenSet:
    """A new pair from the refresh token. Store the new refresh token before anything else:
    the old one may stop working at once."""
    data = await _token_call(http, client, endpoints, {
        "grant_type": "refresh_token", "refresh_token": refresh_token}, max_bytes)
    return TokenSet.from_response(data, now, time_scale=time_scale)


async def revoke(
    http: httpx.AsyncClient,
    client: ClientCredentials,
    token: str,
    *,
    endpoints: OAuthEndpoints = PRODUCTION,
    max_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
) -> None:
    """Revoke the grant (pass the refresh token, or an access token)."""
    where = shown(endpoints.revocation_endpoint)
    try:
        request = http.build_request(
            "POST", endpoints.revocation_endpoint, json={"token": token},
            headers={"Authorization": client.basic_auth(), "Accept": "application/json"},
            timeout=DEFAULT_TIMEOUT)
        resp = await http.send(request, stream=True)
        body = await read_capped(resp, max_bytes, f"POST {where}")
    except httpx.TransportError as exc:
        raise TransientError(f"token revoke failed: {type(exc).__name__}") from None
    except ResponseTooLarge as exc:
        raise TransientError(f"token revoke failed: {exc}") from None
    if resp.status_code != 200:
        _raise_oauth(resp, _json_or_empty(body))


async def _token_call(http: httpx.AsyncClient, client: ClientCredentials,
                      endpoints: OAuthEndpoints, form: dict[str, str],
                      max_bytes: int) -> dict[str, Any]:
    where = shown(endpoints.token_endpoint)
    try:
        request = http.build_request(
            "POST", endpoints.token_endpoint, data=form,
            headers={"Authorization": client.basic_auth(), "Accept": "application/json"},
            timeout=DEFAULT_TIMEOUT)
        resp = await http.send(request, stream=True)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise TransientError(f"token endpoint unreachable: {type(exc).__name__}") from None
    except httpx.TransportError as exc:
        # Intuit may have rotated the refresh token without us seeing the new one.
        raise UnknownOutcome(f"token endpoint gave no answer: {type(exc).__name__}") from None
    try:
        raw = await read_capped(resp, max_bytes, f"POST {where}")
    except httpx.TransportError as exc:
        raise UnknownOutcome(f"token endpoint answer cut off: {type(exc).__name__}") from None
    except ResponseTooLarge as exc:
        # The new pair may be in what was not read: as unknown as no answer at all.
        raise UnknownOutcome(f"token endpoint: {exc}") from None
    body = _json_or_empty(raw)
    if resp.status_code == 200 and "error" not in body:
        return body
    _raise_oauth(resp, body)
    raise AssertionError("unreachable")


def _json_or_empty(raw: bytes) -> dict[str, Any]:
    try:
        data = fastjson.loads(raw)
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
