"""Connect a QuickBooks company (OAuth 2.0 authorization code flow) and disconnect it.

``connect``: find the OAuth endpoints (set directly, else discovered, else Intuit's
documented ones; every one checked against the endpoint policy of
`qbsync.qbo.endpoints`), send the operator's browser to the authorization
URL (scope ``com.intuit.quickbooks.accounting``, a random ``state``), catch the redirect on
``http://localhost:PORT/callback`` with a one-shot local HTTP server (or take the redirect
address pasted into the terminal), check ``state``, exchange the code, read CompanyInfo
with the new token and store the tokens encrypted (`save_connection`). The
demo and the tests drive the same flow headlessly (:func:`headless_browser`).

``disconnect``: revoke the grant at Intuit with the refresh token, then mark the
connection ``disconnected`` and inactive and overwrite its ciphertext with an encrypted
empty payload (the row stays for history; no token remains). Both happen under the
realm's refresh lock, so a daemon's refresh cannot rotate the token being revoked. The
row's stored API URL only chooses among the endpoints the settings allow.

``--emulator URL`` (`emulator_overrides`): the settings that point `connect` and `run` at a
local emulator on a loopback address, with its clock's time scale.

Tokens are never printed or logged.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import inspect
import json
import secrets
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx

from .config import Settings
from .errors import ConfigError, QbsyncError
from .local_qbo import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from .operator_db import open_db, operator
from .qbo import oauth
from .qbo.client import QboClient
from .qbo.endpoints import api_base_for, http_client, is_loopback_host
from .qbo.errors import QboError
from .queries import load_cli
from .vault import Vault, vault_for

DEFAULT_PORT = 8724
CALLBACK_PATH = "/callback"
EMULATOR_DISCOVERY = "/.well-known/openid_configuration"
Q = load_cli()

OpenUrl = Callable[[str], Awaitable[None] | None]


class ConnectError(QbsyncError):
    """The authorization did not complete (refused, state mismatch, timeout...)."""


async def save_connection(
    conn_or_pool: asyncpg.Connection | asyncpg.Pool,
    vault: Vault,
    realm_id: str,
    tokens: oauth.TokenSet,
    *,
    api_base_url: str,
    company_name: str | None = None,
    company_info: dict[str, Any] | None = None,
    environment: str = "production",
    active: bool = True,
) -> int:
    """Store (or replace) a connected company and its tokens; returns the token generation.

    ``active=True`` makes it the sync target: any other active company is deactivated in the
    same transaction (one active company at a time). Reconnecting a realm resets its status
    to connected and bumps ``token_generation``, so running daemons pick the new tokens up.
    """
    blob, key_id = vault.encrypt(realm_id, tokens.to_payload())
    info = json.dumps(company_info) if company_info is not None else None

    async def run(conn: asyncpg.Connection) -> int:
        generation: int = await conn.fetchval(
            Q.save_connection, realm_id, environment, api_base_url, company_name,
            info, blob, key_id, tokens.expires_at, tokens.refresh_expires_at, active)
        return generation

    if isinstance(conn_or_pool, asyncpg.Pool):
        async with conn_or_pool.acquire() as conn:
            return await run(conn)
    return await run(conn_or_pool)


@dataclass(frozen=True)
class Target:
    """Where a company is connected: the API base and the OAuth discovery document."""

    environment: str  # production | sandbox | emulator | custom
    api_base_url: str
    discovery_url: str


@dataclass(frozen=True)
class ConnectedCompany:
    realm_id: str
    company_name: str | None
    environment: str
    api_base_url: str
    token_generation: int


@dataclass(frozen=True)
class Disconnected:
    realm_id: str
    company_name: str | None
    revoked: bool
    note: str


def target_for(settings: Settings, *, sandbox: bool = False, production: bool = False,
               emulator: str | None = None) -> Target:
    if emulator:
        base = emulator.rstrip("/")
        return Target("emulator", base, base + EMULATOR_DISCOVERY)
    if sandbox:
        return Target("sandbox", oauth.API_SANDBOX, oauth.DISCOVERY_SANDBOX)
    if production:
        return Target("production", oauth.API_PRODUCTION, oauth.DISCOVERY_PRODUCTION)
    env = {oauth.API_PRODUCTION: "production", oauth.API_SANDBOX: "sandbox"}
    return Target(env.get(settings.api_base_url, "custom"), settings.api_base_url,
                  settings.oauth_discovery_url)


def discovery_for(environment: str, api_base_url: str, settings: Settings) -> str:
    """The discovery document of a stored connection (for revoke); ``api_base_url`` must
    have passed `api_base_for` (the row alone decides nothing)."""
    if settings.oauth_discovery_url != oauth.DISCOVERY_PRODUCTION:
        return settings.oauth_discovery_url  # set on purpose (or "" for none)
    if environment == "sandbox":
        return oauth.DISCOVERY_SANDBOX
    if environment == "emulator":
        return api_base_url.rstrip("/") + EMULATOR_DISCOVERY
    return oauth.DISCOVERY_PRODUCTION


def emulator_base(url: str) -> str:
    """The ``--emulator`` URL without a trailing slash; ConfigError unless it is http(s)
    on a loopback address (a token goes there over plain http)."""
    base = url.strip().rstrip("/")
    try:
        parsed = httpx.URL(base)
    except (httpx.InvalidURL, TypeError, ValueError):
        parsed = None
    if parsed is None or parsed.scheme not in ("http", "https") or parsed.userinfo \
            or not is_loopback_host(parsed.host or "") or parsed.path not in ("", "/"):
        raise ConfigError(f"--emulator {url}: the emulator must be on a loopback address, "
                          "e.g. http://127.0.0.1:8765")
    return base


def emulator_overrides(url: str, settings: Settings, *,
                       transport: httpx.BaseTransport | None = None) -> dict[str, Any]:
    """Settings that point `qbsync connect` / `run` / `disconnect` at a local emulator: its
    API and discovery document, loopback allowed, the emulator's own client id and secret
    when none is set, and its clock's time scale unless rate_time_scale is set."""
    base = emulator_base(url)
    overrides: dict[str, Any] = {
        "api_base_url": base, "oauth_discovery_url": base + EMULATOR_DISCOVERY,
        "allow_local_quickbooks": True,
        # its endpoints come from its discovery document, not from endpoints set for Intuit
        "oauth_authorization_endpoint": "", "oauth_token_endpoint": "",
        "oauth_revocation_endpoint": ""}
    if not settings.client_id and settings.client_secret is None:
        overrides.update(client_id=DEFAULT_CLIENT_ID, client_secret=DEFAULT_CLIENT_SECRET)
    if "rate_time_scale" not in settings.model_fields_set:
        scale = emulator_time_scale(base, transport=transport)
        if scale is not None:
            overrides["rate_time_scale"] = scale
    return overrides


def emulator_time_scale(base: str, *, transport: httpx.BaseTransport | None = None
                        ) -> float | None:
    """The emulator's clock speed (its /_emulator/state); None when it does not say."""
    try:
        with httpx.Client(transport=transport, timeout=10, follow_redirects=False) as http:
            resp = http.get(base + "/_emulator/state")
        scale = float(resp.json()["time_scale"]) if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return None
    return scale if scale is not None and scale > 0 else None


def client_credentials(settings: Settings) -> oauth.ClientCredentials:
    if not settings.client_id:
        raise ConfigError("client_id is not set (QBSYNC_CLIENT_ID or client_id in the config "
                          "file): the Intuit app's client ID is needed")
    if settings.client_secret is None:
        raise ConfigError("client_secret is not set (QBSYNC_CLIENT_SECRET or the systemd "
                          "credential qbsync-client-secret)")
    return oauth.ClientCredentials(settings.client_id, settings.client_secret.get_secret_value())


async def endpoints_for(http: httpx.AsyncClient, settings: Settings,
                        discovery_url: str) -> oauth.OAuthEndpoints:
    """The OAuth endpoints: set directly in the settings, else from ``discovery_url``, else
    Intuit's documented ones; each checked against the endpoint policy."""
    return await oauth.resolve_endpoints(http, settings.oauth_sources(discovery_url),
                                         settings.endpoint_policy(),
                                         max_bytes=settings.max_response_bytes)


# --- the redirect catcher ---------------------------------------------------------------

@dataclass(frozen=True)
class Redirect:
    code: str
    realm_id: str


_PAGE = ("<!doctype html><meta charset=utf-8><title>qbsync</title>"
         "<body style='font-family:sans-serif;margin:3em'><h2>{title}</h2><p>{text}</p>")


class CallbackServer:
    """A one-shot HTTP server on localhost that waits for the authorization redirect.

    The first request to ``/callback`` settles it: a good one (matching ``state``, with
    ``code`` and ``realmId``) or a refusal (wrong state, ``error=access_denied``...). Other
    paths (``/favicon.ico``) get 404 and do not count. :meth:`offer` takes the redirect
    address pasted by an operator whose browser cannot reach this machine.
    """

    def __init__(self, state: str, port: int = DEFAULT_PORT, host: str = "127.0.0.1") -> None:
        self.state = state
        self.result: concurrent.futures.Future[Redirect] = concurrent.futures.Future()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != CALLBACK_PATH:
                    self._answer(404, "Not found", "This is qbsync's OAuth callback.")
                    return
                ok, text = outer.offer(self.path)
                title = "QuickBooks company authorized" if ok else "Authorization not accepted"
                self._answer(200 if ok else 400, title, text)

            def _answer(self, status: int, title: str, text: str) -> None:
                body = _PAGE.format(title=title, text=text).encode()
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # the query string holds the code: never log it

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="qbsync-oauth-callback")

    @property
    def redirect_uri(self) -> str:
        return f"http://localhost:{self.port}{CALLBACK_PATH}"

    def start(self) -> CallbackServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def offer(self, url: str) -> tuple[bool, str]:
        """Settle with a redirect address (path+query or full URL); (accepted, message)."""
        if self.result.done():
            return False, "This authorization was already handled; return to the terminal."
        query = parse_qs(urlsplit(url.strip()).query)

        def one(name: str) -> str:
            return (query.get(name) or [""])[0]

        if not secrets.compare_digest(one("state").encode(), self.state.encode()):
            error = ConnectError("the redirect's state does not match this `qbsync connect` "
                                 "(a stale or forged redirect); nothing was stored; run "
                                 "`qbsync connect` again")
            self.result.set_exception(error)
            return False, "The state parameter does not match: nothing was connected."
        if one("error"):
            self.result.set_exception(ConnectError(
                f"Intuit did not authorize the connection: {one('error')}"
                + (f" ({one('error_description')})" if one("error_description") else "")))
            return False, "The connection was not authorized; see the terminal."
        if not one("code") or not one("realmId").isdigit():
            self.result.set_exception(ConnectError(
                "the redirect lacks the code or the realmId (was the accounting scope "
                "granted?)"))
            return False, "The redirect lacks the code or the company id."
        self.result.set_result(Redirect(one("code"), one("realmId")))
        return True, "qbsync got the authorization. You can close this window."

    async def wait(self, within: float) -> Redirect:
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self.result), within)
        except TimeoutError:
            raise ConnectError(f"no authorization arrived within {within:.0f} s; run "
                               "`qbsync connect` again") from None


def headless_browser(*, transport: httpx.AsyncBaseTransport | None = None,
                     timeout: float = 30.0) -> Callable[[str], Awaitable[None]]:
    """An ``open_url`` that plays the browser: GET the authorization URL and follow its
    redirect to the local callback (for the demo, tests, and an auto-approving emulator)."""
    async def open_url(url: str) -> None:
        async with httpx.AsyncClient(transport=transport, follow_redirects=True,
                                     timeout=timeout) as http:
            await http.get(url)
    return open_url


def _paste_reader(server: CallbackServer, read_line: Callable[[], str]) -> None:
    def loop() -> None:
        while not server.result.done():
            try:
                line = read_line()
            except (EOFError, OSError, ValueError):
                return
            if not line:
                return
            if line.strip() and not server.result.done():
                server.offer(line.strip())
    threading.Thread(target=loop, daemon=True, name="qbsync-oauth-paste").start()


class _FixedToken:
    """TokenProvider for the one CompanyInfo call right after the code exchange."""

    def __init__(self, token: str) -> None:
        self._token = token

    async def access_token(self) -> str:
        return self._token

    async def refresh(self, rejected: str) -> str:
        raise ConnectError("QuickBooks refused the access token it has just issued")


async def connect(
    settings: Settings,
    target: Target,
    *,
    open_url: OpenUrl,
    port: int = DEFAULT_PORT,
    wait_seconds: float = 300.0,
    announce: Callable[[str], None] | None = None,
    read_pasted: Callable[[], str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ConnectedCompany:
    """Run the authorization-code flow and store the company; see the module docstring.

    ``announce`` gets the authorization URL (no secret in it) before ``open_url`` is called;
    ``read_pasted`` (e.g. ``sys.stdin.readline``) lets an operator paste the redirect address.
    """
    client = client_credentials(settings)
    vault = vault_for(settings)
    policy = settings.endpoint_policy()
    policy.check(target.api_base_url, "the QuickBooks API URL")  # before the browser
    await _check_schema(settings)  # fail before the operator goes through the browser
    state = secrets.token_urlsafe(24)
    async with http_client(policy, transport=transport, timeout=settings.http_timeout) as http:
        endpoints = await endpoints_for(http, settings, target.discovery_url)
        try:
            server = CallbackServer(state, port).start()
        except OSError as exc:
            raise ConnectError(f"cannot listen on localhost:{port} for the redirect "
                               f"({exc.strerror or exc}); pick another --port") from None
        try:
            url = oauth.authorization_url(client.client_id, server.redirect_uri, state,
                                          endpoints=endpoints)
            if announce:
                announce(url)
            if read_pasted is not None:
                _paste_reader(server, read_pasted)
            opened = open_url(url)
            if inspect.isawaitable(opened):
                await opened
            redirect = await server.wait(wait_seconds)
        finally:
            server.stop()
        tokens = await oauth.exchange_code(http, client, redirect.code, server.redirect_uri,
                                           endpoints=endpoints,
                                           time_scale=settings.rate_time_scale,
                                           max_bytes=settings.max_response_bytes)
        api = QboClient(http, base_url=target.api_base_url, realm_id=redirect.realm_id,
                        tokens=_FixedToken(tokens.access_token),
                        minor_version=settings.minor_version, timeout=settings.http_timeout,
                        max_response_bytes=settings.max_response_bytes)
        info = await api.company_info()
    name = info.get("CompanyName") or info.get("LegalName")
    conn = await open_db(settings)
    try:
        async with conn.transaction():
            generation = await save_connection(
                conn, vault, redirect.realm_id, tokens, api_base_url=target.api_base_url,
                company_name=name, company_info=info, environment=target.environment)
            await _log(conn, "connection.connect", redirect.realm_id,
                       {"message": f"connected {name or 'company'} ({target.environment})",
                        "environment": target.environment})
    finally:
        await conn.close()
    return ConnectedCompany(redirect.realm_id, name, target.environment, target.api_base_url,
                            generation)


async def _check_schema(settings: Settings) -> None:
    conn = await open_db(settings)
    try:
        if not await conn.fetchval(Q.connections_table_exists):
            raise QbsyncError("the qbsync schema is missing in this database: run "
                              "`qbsync migrate` first")
    finally:
        await conn.close()


async def _log(conn: asyncpg.Connection, operation: str, realm_id: str,
               detail: dict[str, Any]) -> None:
    await conn.execute(Q.log_connection_event, operation, realm_id, json.dumps(detail),
                       operator())


# --- disconnect -------------------------------------------------------------------------

async def _find(conn: asyncpg.Connection, realm_id: str | None) -> asyncpg.Record:
    row = await conn.fetchrow(Q.find_connection, realm_id)
    if row is None:
        known = [r["realm_id"] for r in await conn.fetch(Q.connected_realms)]
        what = f"company {realm_id} is not" if realm_id else "no company is"
        raise QbsyncError(f"{what} connected" + (
            f"; connected: {', '.join(known)} (choose with --realm)" if known else ""))
    return row


async def disconnect(settings: Settings, *, realm_id: str | None = None, revoke: bool = True,
                     transport: httpx.AsyncBaseTransport | None = None) -> Disconnected:
    """Revoke the grant and mark the connection disconnected (see the module docstring)."""
    vault = vault_for(settings)
    client = client_credentials(settings) if revoke else None
    conn = await open_db(settings)
    try:
        row = await _find(conn, realm_id)
        realm, name = row["realm_id"], row["company_name"]
        if row["status"] == "disconnected":
            return Disconnected(realm, name, False, "already disconnected")
        await conn.execute(Q.session_lock_timeout)
        try:  # session lock, no transaction open during the HTTP call (like TokenStore)
            await conn.execute(Q.refresh_lock, realm)
        except asyncpg.LockNotAvailableError:
            raise QbsyncError(f"a token refresh of company {realm} holds its lock for over "
                              "60 s; try again") from None
        try:
            note = "not revoked (--no-revoke): remove the app in QuickBooks to revoke it"
            revoked = False
            if client is not None:
                revoked, note = await _revoke(conn, vault, client, realm, settings, transport)
            blob, key_id = vault.encrypt(realm, {})
            async with conn.transaction():
                await conn.execute(Q.mark_disconnected, realm, blob, key_id)
                await _log(conn, "connection.disconnect", realm,
                           {"message": f"disconnected; {note}", "revoked": revoked})
        finally:
            with contextlib.suppress(asyncpg.PostgresError, OSError):
                await conn.execute(Q.refresh_unlock, realm)
        return Disconnected(realm, name, revoked, note)
    finally:
        await conn.close()


async def _revoke(conn: asyncpg.Connection, vault: Vault, client: oauth.ClientCredentials,
                  realm: str, settings: Settings,
                  transport: httpx.AsyncBaseTransport | None) -> tuple[bool, str]:
    row = await conn.fetchrow(Q.connection_tokens, realm)
    assert row is not None
    retry = "nothing changed (retry, or --no-revoke to only mark it disconnected here)"
    policy = settings.endpoint_policy()
    try:  # the row chooses at most among the endpoints the settings allow
        api_base = api_base_for(row["api_base_url"], settings.api_base_url, policy,
                                realm_id=realm)
    except ConfigError as exc:
        raise QbsyncError(f"{exc}; {retry}") from None
    payload = vault.decrypt(realm, row["tokens"], row["key_id"])
    token = payload.get("refresh_token")
    if not token:
        return False, "no token stored to revoke"
    discovery = discovery_for(row["environment"], api_base, settings)
    async with http_client(policy, transport=transport, timeout=settings.http_timeout) as http:
        try:
            endpoints = await endpoints_for(http, settings, discovery)
        except QbsyncError as exc:
            raise QbsyncError(f"cannot find Intuit's revoke endpoint: {exc}; {retry}") from None
        try:
            await oauth.revoke(http, client, str(token), endpoints=endpoints,
                               max_bytes=settings.max_response_bytes)
        except oauth.OAuthError as exc:
            if exc.status == 401 or exc.error == "invalid_client" or exc.status is None:
                raise QbsyncError(f"revoking at Intuit failed: {exc}; {retry}") from None
            return False, f"Intuit no longer accepts the grant ({exc.error or exc.status})"
        except QboError as exc:
            raise QbsyncError(f"revoking at Intuit failed: {exc}; {retry}") from None
    return True, "grant revoked at Intuit"
