"""Intuit OAuth 2.0 emulation: grants, access/refresh tokens, codes and their HTTP endpoints.

Decisions where the fact sheet is silent ([U]):

* any ``redirect_uri`` is accepted by the authorize endpoint (no app registration), but the
  token request must repeat the same one;
* authorization codes are single-use and live 600 emulated seconds;
* the refresh token rotates on *every* refresh; the superseded one fails at once with
  ``invalid_grant`` (the stricter of the two documented behaviours); access tokens issued
  before a refresh stay valid until they expire;
* the revoke endpoint answers 200 with an empty body even for an unknown token (RFC 7009);
  revoking either token of a grant revokes the whole grant (refresh + every access token);
* no ``id_token`` is issued (its JWKS validation would need a signing key);
* a bearer token that is not shaped like a JWE (5 dot-separated segments) -> 3200 "Malformed
  bearer token"; unknown, expired and revoked tokens -> 3200 with a matching Detail; a valid
  token used on another realm -> 403 code 3100.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from .clock import Clock
from .faults import AuthError

if TYPE_CHECKING:
    from . import Emulator

ACCESS_TTL = 3600
REFRESH_TTL = 8726400
CODE_TTL = 600
SCOPE = "com.intuit.quickbooks.accounting"
_JWE_HEADER = "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0"


def _b64(n: int) -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(n)).rstrip(b"=").decode()


def new_access_token() -> str:
    return f"{_JWE_HEADER}..{_b64(16)}.{_b64(180)}.{_b64(16)}"


def new_refresh_token() -> str:
    return "AB11" + secrets.token_urlsafe(36)[:46]


@dataclass
class Grant:
    id: str
    realm_id: str
    client_id: str
    scope: str
    refresh_token: str
    refresh_expires_at: float
    revoked: bool = False


@dataclass
class AccessToken:
    token: str
    grant_id: str
    realm_id: str
    expires_at: float


@dataclass
class AuthCode:
    client_id: str
    redirect_uri: str
    realm_id: str
    scope: str
    expires_at: float


class OAuth:
    def __init__(self, clock: Clock, clients: dict[str, str]) -> None:
        self.clock = clock
        self.clients = clients
        self.codes: dict[str, AuthCode] = {}
        self.grants: dict[str, Grant] = {}
        self.access: dict[str, AccessToken] = {}
        self.refresh: dict[str, str] = {}  # current refresh token -> grant id

    # --- issuing -----------------------------------------------------------------------

    def new_code(self, client_id: str, redirect_uri: str, realm_id: str, scope: str) -> str:
        code = "AB11" + secrets.token_urlsafe(48)
        self.codes[code] = AuthCode(
            client_id, redirect_uri, realm_id, scope, self.clock.now() + CODE_TTL
        )
        return code

    def issue(self, realm_id: str, client_id: str, scope: str = SCOPE) -> dict[str, Any]:
        now = self.clock.now()
        grant = Grant(
            id=secrets.token_hex(8),
            realm_id=realm_id,
            client_id=client_id,
            scope=scope,
            refresh_token=new_refresh_token(),
            refresh_expires_at=now + REFRESH_TTL,
        )
        self.grants[grant.id] = grant
        self.refresh[grant.refresh_token] = grant.id
        return self._token_response(grant)

    def _token_response(self, grant: Grant) -> dict[str, Any]:
        token = new_access_token()
        self.access[token] = AccessToken(
            token, grant.id, grant.realm_id, self.clock.now() + ACCESS_TTL
        )
        return {
            "token_type": "bearer",
            "access_token": token,
            "refresh_token": grant.refresh_token,
            "expires_in": ACCESS_TTL,
            "x_refresh_token_expires_in": REFRESH_TTL,
            "realmId": grant.realm_id,
        }

    def exchange_code(self, client_id: str, code: str, redirect_uri: str) -> dict[str, Any] | None:
        auth = self.codes.pop(code, None)  # single use, even when the request fails
        if auth is None or auth.client_id != client_id or auth.redirect_uri != redirect_uri:
            return None
        if auth.expires_at < self.clock.now():
            return None
        return self.issue(auth.realm_id, client_id, auth.scope)

    def refresh_grant(self, client_id: str, refresh_token: str) -> dict[str, Any] | None:
        grant_id = self.refresh.get(refresh_token)
        grant = self.grants.get(grant_id) if grant_id else None
        if grant is None or grant.revoked or grant.client_id != client_id:
            return None
        now = self.clock.now()
        if grant.refresh_expires_at < now:
            return None
        del self.refresh[refresh_token]
        grant.refresh_token = new_refresh_token()
        grant.refresh_expires_at = now + REFRESH_TTL
        self.refresh[grant.refresh_token] = grant.id
        return self._token_response(grant)

    # --- checking ----------------------------------------------------------------------

    def authenticate(self, header: str | None, realm_id: str | None) -> AccessToken:
        if not header:
            raise AuthError("3200", "Authorization header missing or empty")
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthError("3200", "Malformed bearer token: expected 'Bearer <token>'")
        if token.count(".") != 4:
            raise AuthError("3200", "Malformed bearer token")
        at = self.access.get(token)
        if at is None:
            raise AuthError("3200", "Token invalid or revoked")
        grant = self.grants.get(at.grant_id)
        if grant is None or grant.revoked:
            raise AuthError("3200", "Token revoked")
        if at.expires_at <= self.clock.now():
            raise AuthError("3200", "Token expired")
        if realm_id is not None and at.realm_id != realm_id:
            raise AuthError("3100", f"Token is not authorized for realm {realm_id}")
        return at

    # --- administration ----------------------------------------------------------------

    def revoke_token(self, token: str) -> bool:
        grant_id = self.refresh.get(token)
        if grant_id is None and token in self.access:
            grant_id = self.access[token].grant_id
        if grant_id is None:
            return False
        self._revoke_grant(grant_id)
        return True

    def _revoke_grant(self, grant_id: str) -> None:
        grant = self.grants[grant_id]
        grant.revoked = True
        self.refresh.pop(grant.refresh_token, None)
        for token in [t for t, a in self.access.items() if a.grant_id == grant_id]:
            del self.access[token]

    def revoke_realm(self, realm_id: str | None = None) -> int:
        ids = [
            g.id
            for g in self.grants.values()
            if not g.revoked and (realm_id is None or g.realm_id == realm_id)
        ]
        for gid in ids:
            self._revoke_grant(gid)
        return len(ids)

    def expire_access(self, realm_id: str | None = None) -> int:
        past = self.clock.now() - 1
        n = 0
        for at in self.access.values():
            if realm_id is None or at.realm_id == realm_id:
                at.expires_at = min(at.expires_at, past)
                n += 1
        return n

    def expire_refresh(self, realm_id: str | None = None) -> int:
        past = self.clock.now() - 1
        n = 0
        for g in self.grants.values():
            if realm_id is None or g.realm_id == realm_id:
                g.refresh_expires_at = past
                n += 1
        return n

    def reset(self) -> None:
        self.codes.clear()
        self.grants.clear()
        self.access.clear()
        self.refresh.clear()

    def to_dict(self) -> dict[str, Any]:
        return {
            "grants": [asdict(g) for g in self.grants.values()],
            "access": [asdict(a) for a in self.access.values()],
        }

    def load(self, data: dict[str, Any]) -> None:
        self.reset()
        for g in data.get("grants", []):
            grant = Grant(**g)
            self.grants[grant.id] = grant
            if not grant.revoked:
                self.refresh[grant.refresh_token] = grant.id
        for a in data.get("access", []):
            at = AccessToken(**a)
            self.access[at.token] = at


# --- HTTP endpoints ------------------------------------------------------------------------


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def _client(oauth: OAuth, request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        client_id, _, secret = base64.b64decode(value.strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if client_id in oauth.clients and secrets.compare_digest(oauth.clients[client_id], secret):
        return client_id
    return None


async def _form(request: Request) -> dict[str, str]:
    """Parse an x-www-form-urlencoded body (no python-multipart dependency)."""
    raw = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(raw, keep_blank_values=True))


def _oauth_error(error: str, status: int = 400, description: str | None = None) -> JSONResponse:
    body = {"error": error}
    if description:
        body["error_description"] = description
    return JSONResponse(body, status_code=status)


def routes(emu: Emulator) -> list[Route]:
    oauth = emu.oauth

    async def discovery(request: Request) -> Response:
        base = _base_url(request)
        return JSONResponse(
            {
                "issuer": base,
                "authorization_endpoint": f"{base}/connect/oauth2",
                "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
                "userinfo_endpoint": f"{base}/v1/openid_connect/userinfo",
                "revocation_endpoint": f"{base}/v2/oauth2/tokens/revoke",
                "jwks_uri": f"{base}/op/v1/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "scopes_supported": [
                    "openid",
                    "email",
                    "profile",
                    "address",
                    "phone",
                    "com.intuit.quickbooks.accounting",
                    "com.intuit.quickbooks.payment",
                ],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
                "claims_supported": ["aud", "exp", "iat", "iss", "realmid", "sub"],
            }
        )

    async def authorize(request: Request) -> Response:
        q = request.query_params
        client_id = q.get("client_id", "")
        redirect_uri = q.get("redirect_uri", "")
        if client_id not in oauth.clients:
            return _oauth_error("invalid_client", 400, "unknown client_id")
        if not redirect_uri:
            return _oauth_error("invalid_request", 400, "redirect_uri is required")
        if q.get("response_type", "code") != "code":
            return _oauth_error("unsupported_response_type", 400)
        realm = q.get("realm") or q.get("realmId")
        if realm and realm not in emu.companies:
            emu.create_company(realm_id=realm)
        if not realm:
            realm = next(iter(emu.companies), None) or emu.create_company()
        code = oauth.new_code(client_id, redirect_uri, realm, q.get("scope", SCOPE))
        params: dict[str, str] = {"code": code}
        if "state" in q:
            params["state"] = q["state"]
        params["realmId"] = realm
        parts = urlsplit(redirect_uri)
        query = f"{parts.query}&{urlencode(params)}" if parts.query else urlencode(params)
        return RedirectResponse(urlunsplit(parts._replace(query=query)), status_code=302)

    async def token(request: Request) -> Response:
        client_id = _client(oauth, request)
        if client_id is None:
            return _oauth_error("invalid_client", 401)
        form = await _form(request)
        grant_type = str(form.get("grant_type") or "")
        if grant_type == "authorization_code":
            code, redirect_uri = form.get("code"), form.get("redirect_uri")
            if not code or not redirect_uri:
                return _oauth_error("invalid_request")
            result = oauth.exchange_code(client_id, str(code), str(redirect_uri))
        elif grant_type == "refresh_token":
            refresh_token = form.get("refresh_token")
            if not refresh_token:
                return _oauth_error("invalid_request")
            result = oauth.refresh_grant(client_id, str(refresh_token))
        else:
            return _oauth_error("unsupported_grant_type")
        if result is None:
            # the description Intuit's own client tests record for a refused grant
            return _oauth_error("invalid_grant", description="Token invalid")
        result.pop("realmId", None)
        return JSONResponse(result, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    async def revoke(request: Request) -> Response:
        if _client(oauth, request) is None:
            return _oauth_error("invalid_client", 401)
        raw = await request.body()
        token = None
        try:
            data = json.loads(raw or b"{}")
            if isinstance(data, dict):
                token = data.get("token")
        except ValueError:
            token = (await _form(request)).get("token")
        if not token:
            return _oauth_error("invalid_request")
        oauth.revoke_token(str(token))
        return Response(status_code=200)

    async def userinfo(request: Request) -> Response:
        try:
            at = oauth.authenticate(request.headers.get("authorization"), None)
        except AuthError as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        return JSONResponse(
            {
                "sub": f"emulator-user-{at.realm_id}",
                "email": "owner@example.com",
                "emailVerified": True,
                "givenName": "Emulated",
                "familyName": "Owner",
                "realmId": at.realm_id,
            }
        )

    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": []})

    paths = ["/.well-known/openid_configuration", "/.well-known/openid_sandbox_configuration"]
    out = [Route(p + s, discovery, methods=["GET"]) for p in paths for s in ("", "/")]
    out += [
        Route("/connect/oauth2", authorize, methods=["GET"]),
        Route("/oauth2/v1/tokens/bearer", token, methods=["POST"]),
        Route("/v2/oauth2/tokens/revoke", revoke, methods=["POST"]),
        Route("/v1/openid_connect/userinfo", userinfo, methods=["GET"]),
        Route("/op/v1/jwks", jwks, methods=["GET"]),
    ]
    return out
