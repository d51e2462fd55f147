"""Outermost request pipeline: counters, throttling, latency and fault injection.

Order for every request outside ``/_emulator/``: throttle check (only for ``/v3/company/<known
realm>/...``) -> added latency -> injected fault (if a rule matches) -> the app. The in-flight
count covers latency and injected hangs, so concurrency limits can be tested by adding latency.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import faults
from .counters import route_of

if TYPE_CHECKING:
    from .core import Emulator


async def _send_json(send: Send, status: int, body: dict[str, Any]) -> None:
    await _send(send, status, faults.dumps(body), "application/json;charset=UTF-8")


async def _send_throttled(send: Send, now: float) -> None:
    await _send(send, 429, faults.throttled_xml(now), faults.XML)


async def _send(send: Send, status: int, data: bytes, content_type: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type.encode()),
                (b"content-length", str(len(data)).encode()),
                (b"intuit_tid", b"emulator-injected"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": data})


async def _discard(message: Message) -> None:
    return None


async def _wait_disconnect(receive: Receive, seconds: float) -> None:
    """Sleep ``seconds``, returning early if the client goes away."""

    async def watch() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return

    task = asyncio.ensure_future(watch())
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout=seconds)
    except TimeoutError:
        pass
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def drop_connection(receive: Receive) -> None:
    """Close the connection without an answer.

    Under uvicorn ``receive`` is a bound method of the request cycle, which owns the asyncio
    transport: abort it and mark the cycle disconnected so uvicorn writes no 500. Otherwise
    (httpx ``ASGITransport``) raise the error an HTTP client sees for a vanished server.
    """
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None and hasattr(transport, "abort"):
        cycle.disconnected = True  # type: ignore[union-attr]
        transport.abort()
        return
    raise httpx.RemoteProtocolError("Server disconnected without sending a response.")


class Gate:
    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emu = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_emulator"):
            await self.app(scope, receive, send)
            return
        emu = self.emu
        method: str = scope["method"]
        path: str = scope["path"]
        route, entity, realm = route_of(path)
        status: list[int | str] = [0]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        limited = realm is not None and realm in emu.companies
        if limited:
            assert realm is not None
            if emu.limits.acquire(realm, entity == "batch") is not None:
                await _send_throttled(send, emu.clock.now())
                emu.counters.record(method, route, 429, realm)
                return
        try:
            injector = emu.injector
            if injector.latency is not None:
                await asyncio.sleep(injector.delay())
            rule = injector.take(method, path, entity, realm) if injector.rules else None
            if rule is None:
                await self.app(scope, receive, send_status)
            elif rule.kind == "drop":
                await self.app(scope, receive, _discard)
                status[0] = "dropped"
                drop_connection(receive)
            elif rule.kind == "timeout":
                await _wait_disconnect(receive, rule.hang_seconds)
                if rule.then == "drop":
                    status[0] = "dropped"
                    drop_connection(receive)
                else:
                    status[0] = 504
                    await _send_json(
                        send,
                        504,
                        faults.fault(
                            "10000",
                            "Gateway Timeout",
                            "The request timed out at the gateway",
                            status=504,
                            type_="SERVICE",
                        ).body(emu.clock.now()),
                    )
            elif rule.kind == "429":
                status[0] = 429
                await _send_throttled(send, emu.clock.now())
            else:
                status[0] = int(rule.kind)
                await _send_json(send, int(rule.kind), self._injected_body(rule.kind))
        finally:
            if limited:
                assert realm is not None
                emu.limits.release(realm)
            emu.counters.record(method, route, status[0], realm)

    def _injected_body(self, kind: str) -> dict[str, Any]:
        now = self.emu.clock.now()
        if kind == "401":
            return faults.auth_body("3200", "Token invalid (injected)")
        if kind == "403":
            return faults.auth_body("3100", "")
        if kind == "503":
            return faults.fault(
                "10000",
                "Service Unavailable",
                "The service is temporarily unavailable (injected)",
                status=503,
                type_="SystemFault",
            ).body(now)
        return faults.system_error("System Failure Error: injected internal error").body(now)
