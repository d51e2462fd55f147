"""The daemon's HTTP endpoint on `metrics_listen` (default 127.0.0.1:9464), served on the
daemon's own event loop from the moment the settings are read, start-up included:

* ``/metrics``: Prometheus' text format (prometheus-client's exposition of `metrics`);
* ``/healthz``: 200 ``ok`` while the event loop turns (it answers at all) and the worker
  loop has turned within its watchdog interval (during start-up: while start-up takes
  steps, see `startup`); else 503 and why;
* ``/readyz``: 200 ``ready`` when the database answers and the company is connected and
  not paused; else 503 with a one-line reason (during start-up: ``starting: `` and what it
  waits for).

Plain HTTP/1.1, one request per connection, GET or HEAD, no authentication (it says nothing
secret: counts, ages, realm ids): keep it on loopback or a private network. A request must
arrive whole within a few seconds and stay small; nothing it sends reaches the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

# What generate_latest writes (names escaped to underscores): the text format every
# Prometheus reads. prometheus-client's CONTENT_TYPE_LATEST names 1.0.0 from 0.22 on.
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

REQUEST_TIMEOUT = 5.0  # seconds for the request line and headers to arrive
MAX_HEADER_LINES = 64
LINE_LIMIT = 8192  # bytes per line (the stream's limit)
TEXT = "text/plain; charset=utf-8"
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           503: "Service Unavailable"}


class MetricsServer:
    """`exposition` renders /metrics; `health` and `ready` answer None when all is well,
    else the reason (one line)."""

    def __init__(self, host: str, port: int, *,
                 exposition: Callable[[], Awaitable[bytes]],
                 health: Callable[[], str | None],
                 ready: Callable[[], Awaitable[str | None]]) -> None:
        self.host = host
        self.port = port
        self.exposition = exposition
        self.health = health
        self.ready = ready
        self._server: asyncio.Server | None = None

    @property
    def address(self) -> tuple[str, int]:
        """Where it listens (the port the system chose, for port 0)."""
        assert self._server is not None
        assert self._server.sockets
        name = self._server.sockets[0].getsockname()
        return str(name[0]), int(name[1])

    async def start(self) -> None:
        """Listen; raises OSError when the address cannot be bound."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port,
                                                  limit=LINE_LIMIT)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                async with asyncio.timeout(REQUEST_TIMEOUT):
                    method, path = await _read_request(reader)
            except ValueError as exc:
                await _respond(writer, 400, f"{exc}\n".encode(), TEXT, head=False)
                return
            if method not in ("GET", "HEAD"):
                await _respond(writer, 405, b"GET or HEAD only\n", TEXT, head=False,
                               extra="Allow: GET, HEAD\r\n")
                return
            status, body, ctype = await self._route(path)
            await _respond(writer, status, body, ctype, head=method == "HEAD")
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError):
            pass  # a client that went away or never finished its request
        except Exception:
            log.exception("metrics endpoint: answering a request failed")
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _route(self, path: str) -> tuple[int, bytes, str]:
        if path == "/metrics":
            return 200, await self.exposition(), CONTENT_TYPE
        if path == "/healthz":
            why = self.health()
        elif path == "/readyz":
            why = await self.ready()
        else:
            return 404, b"not found: /metrics, /healthz or /readyz\n", TEXT
        if why is None:
            return 200, b"ok\n" if path == "/healthz" else b"ready\n", TEXT
        return 503, f"{_one_line(why)}\n".encode(), TEXT


async def _read_request(reader: asyncio.StreamReader) -> tuple[str, str]:
    """(method, path without the query) of one request; its headers are read and ignored."""
    line = (await reader.readline()).decode("latin-1").strip()
    parts = line.split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ValueError("not an HTTP request")
    for _ in range(MAX_HEADER_LINES):
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
    else:
        raise ValueError("too many header lines")
    return parts[0], parts[1].split("?", 1)[0]


async def _respond(writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str, *,
                   head: bool, extra: str = "") -> None:
    writer.write((f"HTTP/1.1 {status} {REASONS[status]}\r\n"
                  f"Content-Type: {ctype}\r\n"
                  f"Content-Length: {len(body)}\r\n"
                  "Cache-Control: no-store\r\n"
                  f"{extra}Connection: close\r\n\r\n").encode("latin-1"))
    if not head:
        writer.write(body)
    await writer.drain()


def _one_line(text: str) -> str:
    return " ".join(text.split())[:500]
