"""Transports for the attack tests: the emulator at the addresses it is expected at, and a
recording stand-in for every other host (what an attacker's server would have received).

`Router` is an httpx transport, handed to the daemon, `connect` or `disconnect` the way
tests hand them the in-process emulator; it answers any other host like a QuickBooks would
(a discovery document naming its own endpoints, JSON for the rest), so code that trusts
the host goes on sending to it. `Flood` is an answer body of any length, produced lazily,
that counts what was read of it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field

import httpx

from qbsync.emulator import Emulator
from tests.daemon_support import EMULATOR_URL

EMULATOR_NETLOC = httpx.URL(EMULATOR_URL).netloc.decode()
Answer = Callable[[httpx.Request], httpx.Response | None]


def discovery_document(base: str) -> dict[str, str]:
    return {"issuer": base, "authorization_endpoint": f"{base}/connect/oauth2",
            "token_endpoint": f"{base}/oauth2/v1/tokens/bearer",
            "revocation_endpoint": f"{base}/v2/oauth2/tokens/revoke"}


class Router(httpx.AsyncBaseTransport):
    """Requests to ``hosts`` (netlocs) go to the emulator, unless an entry of ``answers``
    (path suffix -> function; None from it: the emulator answers) answers first; every
    other request is recorded in ``elsewhere`` and answered by a fake QuickBooks."""

    def __init__(self, emu: Emulator, hosts: Iterable[str] = (EMULATOR_NETLOC,)) -> None:
        self.emulator = httpx.ASGITransport(app=emu.app)
        self.hosts = set(hosts)
        self.answers: dict[str, Answer] = {}
        self.elsewhere: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.netloc.decode() in self.hosts:
            for suffix, answer in self.answers.items():
                if request.url.path.endswith(suffix):
                    response = answer(request)
                    if response is not None:
                        return response
            return await self.emulator.handle_async_request(request)
        self.elsewhere.append(request)
        base = f"{request.url.scheme}://{request.url.netloc.decode()}"
        if "openid" in request.url.path:
            return httpx.Response(200, json=discovery_document(base))
        if request.url.path.endswith("/tokens/bearer"):
            return httpx.Response(200, json={"access_token": "stolen", "refresh_token": "x",
                                             "expires_in": 3600})
        return httpx.Response(200, json={"QueryResponse": {}, "Preferences": {},
                                         "CompanyInfo": {"CompanyName": "elsewhere"}})

    def leaks(self) -> list[str]:
        """What went elsewhere, and whether it carried credentials."""
        return [f"{r.method} {r.url} (Authorization: "
                f"{r.headers.get('authorization', '').split(' ')[0] or 'none'})"
                for r in self.elsewhere]


@dataclass
class Flood:
    """A body of ``total`` bytes in ``chunk``-byte pieces, made as they are read."""

    total: int
    chunk: int = 64 * 1024
    produced: int = field(default=0)

    async def stream(self) -> AsyncIterator[bytes]:
        piece = b" " * self.chunk
        while self.produced < self.total:
            self.produced += self.chunk
            yield piece

    def answer(self, *, declare: bool = False) -> httpx.Response:
        headers = {"Content-Type": "application/json"}
        if declare:
            headers["Content-Length"] = str(self.total)
        return httpx.Response(200, headers=headers, content=self.stream())
