"""Where qbsync may send a request that carries a QuickBooks token or the app's secret, and
how much of an answer it reads.

The bearer token and the client secret go to QuickBooks (and its OAuth server) and nowhere
else. Every URL qbsync sends one to must pass :meth:`EndpointPolicy.check`:

* ``https`` to one of Intuit's QuickBooks hosts (:data:`INTUIT_HOSTS`) or to a host listed
  in the ``quickbooks_hosts`` setting;
* ``http`` (or ``https``) to a loopback address (127.0.0.0/8, ::1, ``localhost``) only when
  ``allow_local_quickbooks`` is on: the emulator, the demo and the tests.

The URLs come from settings only (file, environment, systemd credentials). A database value
(``qbsync.connections.api_base_url``, which the daemon's role can update) can at most choose
among the endpoints the settings allow (:func:`api_base_for`).

:func:`http_client` builds the HTTP client every token-bearing request goes through: the
policy is checked right before each request leaves (an httpx request hook, so a redirect
target or a URL built anywhere else is checked too), and redirects are not followed.
:func:`read_capped` reads an answer up to ``max_response_bytes`` and stops there.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

import httpx

from ..errors import ConfigError, QbsyncError

API_PRODUCTION = "https://quickbooks.api.intuit.com"
API_SANDBOX = "https://sandbox-quickbooks.api.intuit.com"
INTUIT_API_BASES = (API_PRODUCTION, API_SANDBOX)

#: Intuit's hosts for the Accounting API and OAuth 2.0 (developer.intuit.com/app/developer/qbo/
#: docs/develop/authentication-and-authorization; Intuit's discovery document,
#: tests/fixtures/qbo/oauth_discovery.json): API production and sandbox, authorization,
#: token, revocation, discovery, userinfo.
INTUIT_HOSTS = frozenset({
    "quickbooks.api.intuit.com",
    "sandbox-quickbooks.api.intuit.com",
    "appcenter.intuit.com",
    "oauth.platform.intuit.com",
    "developer.api.intuit.com",
    "developer.intuit.com",
    "accounts.platform.intuit.com",
    "sandbox-accounts.platform.intuit.com",
})

#: Default cap on one answer (``max_response_bytes``). The largest real answers are query
#: pages and CDC reads of at most 1,000 objects (a few MB of JSON at most).
DEFAULT_MAX_RESPONSE_BYTES = 16 * 1024 * 1024

ALLOW_LOCAL_HINT = "allow_local_quickbooks = true (QBSYNC_ALLOW_LOCAL_QUICKBOOKS=1)"


class EndpointRefused(ConfigError):
    """A URL that a token or the client secret would be sent to is not allowed."""


class ResponseTooLarge(QbsyncError):
    """An answer was longer than ``max_response_bytes``; reading stopped at the cap."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


def is_loopback_host(host: str) -> bool:
    """127.0.0.0/8, ::1 (also IPv4-mapped) or the name ``localhost``."""
    host = host.strip("[]").rstrip(".").lower()
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def normalise_host(entry: str) -> str:
    """A ``quickbooks_hosts`` entry: a bare host name, lower case (ValueError otherwise)."""
    host = entry.strip().rstrip(".").lower()
    if not host or any(c in host for c in "/:@?#* \t") or host.startswith("."):
        raise ValueError(f"{entry!r} is not a host name (give e.g. qbo-proxy.example.com, "
                         "without scheme, port or path)")
    return host


@dataclass(frozen=True)
class EndpointPolicy:
    """Which hosts may get a QuickBooks token or the client secret."""

    extra_hosts: frozenset[str] = frozenset()
    allow_local: bool = False

    @classmethod
    def of(cls, hosts: Iterable[str] = (), allow_local: bool = False) -> EndpointPolicy:
        return cls(frozenset(normalise_host(h) for h in hosts), allow_local)

    def refusal(self, url: str | httpx.URL) -> str | None:
        """Why ``url`` is refused, or None when it is allowed."""
        try:
            parsed = url if isinstance(url, httpx.URL) else httpx.URL(str(url))
        except (httpx.InvalidURL, TypeError, ValueError):
            return "it is not a URL"
        scheme, host = parsed.scheme, (parsed.host or "").rstrip(".").lower()
        if scheme not in ("https", "http") or not host:
            return "only https:// URLs are accepted"
        if parsed.userinfo:
            return "a URL with user:password@ is not accepted"
        if is_loopback_host(host):
            if self.allow_local:
                return None
            if scheme == "https" and host in self.extra_hosts:
                return None
            return (f"{host} is a loopback address: accepted only with {ALLOW_LOCAL_HINT}, "
                    "which is meant for the local emulator, the demo and tests")
        if scheme == "http":
            return ("http:// is accepted only for a loopback address (127.0.0.1, ::1, "
                    f"localhost) with {ALLOW_LOCAL_HINT}; QuickBooks needs https://")
        if host in INTUIT_HOSTS or host in self.extra_hosts:
            return None
        return (f"{host} is not one of Intuit's QuickBooks hosts and not listed in the "
                "quickbooks_hosts setting")

    def check(self, url: str | httpx.URL, what: str) -> None:
        """Raise `EndpointRefused` naming ``what`` (e.g. "api_base_url") unless allowed."""
        why = self.refusal(url)
        if why is not None:
            raise EndpointRefused(f"{what} {shown(url)} is refused: {why}")


def shown(url: str | httpx.URL) -> str:
    """A URL for a message: without its query string (which may hold a code or state)."""
    text = str(url)
    return text.split("?", 1)[0].split("#", 1)[0]


def api_base_for(stored: str, configured: str, policy: EndpointPolicy, *, realm_id: str
                 ) -> str:
    """The API base URL to use for a connection whose row says ``stored``.

    The row may only choose among the endpoints the settings allow: the configured
    ``api_base_url`` and Intuit's production and sandbox APIs. Anything else, e.g. a URL a
    member of qbsync_daemon wrote into qbsync.connections, is refused before a request is
    made."""
    wanted = stored.strip().rstrip("/")
    allowed = [configured.rstrip("/"), *INTUIT_API_BASES]
    if wanted not in allowed:
        choices = ", ".join(dict.fromkeys(allowed))
        raise EndpointRefused(
            f"qbsync.connections.api_base_url of company {realm_id} is {shown(wanted)!r}, "
            f"which is not an API endpoint these settings allow ({choices}): connect the "
            "company again with `qbsync connect`, or set api_base_url (and quickbooks_hosts "
            f"or {ALLOW_LOCAL_HINT} as needed) to choose it; for the local emulator, give "
            "the command --emulator URL")
    policy.check(wanted, f"qbsync.connections.api_base_url of company {realm_id}")
    return wanted


def http_client(policy: EndpointPolicy, *, transport: httpx.AsyncBaseTransport | None = None,
                timeout: float = 60.0) -> httpx.AsyncClient:
    """The HTTP client for QuickBooks and its OAuth server: every request is checked
    against ``policy`` right before it is sent (`EndpointRefused` otherwise, and nothing
    leaves), and redirects are never followed (a 3xx is an answer like any other)."""

    async def guard(request: httpx.Request) -> None:
        policy.check(request.url, f"{request.method} request to")

    return httpx.AsyncClient(transport=transport, timeout=timeout, follow_redirects=False,
                             event_hooks={"request": [guard]})


async def read_capped(response: httpx.Response, limit: int, what: str) -> bytes:
    """The body of a streamed ``response``, at most ``limit`` bytes (after decoding, so a
    compressed answer counts by what it expands to). Past the cap reading stops, the
    connection is closed and `ResponseTooLarge` names ``what`` and the cap. The response
    is closed either way."""
    try:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge(
                f"the answer to {what} is {int(declared)} bytes, over max_response_bytes "
                f"({limit}); not read", limit=limit)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > limit:
                raise ResponseTooLarge(
                    f"the answer to {what} is over max_response_bytes ({limit} bytes); "
                    f"stopped reading after {size} bytes", limit=limit)
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        await response.aclose()
