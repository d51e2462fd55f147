"""Async QuickBooks Online Accounting API v3 client.

One :class:`QboClient` per realm, over an ``httpx.AsyncClient`` owned by the caller (tests
pass one bound to the emulator through ``httpx.ASGITransport``). Every call sends
``minorversion`` and ``Accept: application/json``; writes also send ``requestid`` so that
QuickBooks answers a replay with the first result instead of creating a second object.

Timing: every finished call (success or QuickBooks error) records a :class:`CallInfo`
(``response_ms``, ``intuit_tid``, status, request id). Read it with ``client.last_call``
right after the call; it is kept per asyncio task (a ``ContextVar``), so tasks sharing one
client never see each other's timing. Errors carry ``response_ms`` and ``intuit_tid`` too.

Errors are the classes of :mod:`qbsync.qbo.errors`. The access token never appears in an
exception, a log line or a repr.

An answer is read up to ``max_response_bytes`` and no further: a longer one fails the
attempt as retryable (`TransientError`; `UnknownOutcome` for a write, which QuickBooks may
have applied). The daemon gives the client an HTTP client from
`qbsync.qbo.endpoints.http_client`, which refuses hosts outside the endpoint policy and
follows no redirect.
"""

from __future__ import annotations

import contextvars
import re
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from .. import fastjson
from .endpoints import DEFAULT_MAX_RESPONSE_BYTES, ResponseTooLarge, read_capped
from .errors import (
    AuthError,
    QboError,
    Throttled,
    TransientError,
    UnknownOutcome,
    error_from_response,
    parse_fault,
)
from .observer import NULL_OBSERVER, Observer, endpoint_of
from .ratelimit import RequestLimiter

MAX_REQUEST_ID = 50
MAX_BATCH = 30
MAX_PAGE = 1000
_IDENT = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*$")
_PAGING = re.compile(r"\b(STARTPOSITION|MAXRESULTS)\b", re.I)


class TokenProvider(Protocol):
    """Where the client gets access tokens (``qbsync.tokens.TokenStore`` in the daemon)."""

    async def access_token(self) -> str:
        """A currently valid access token."""
        ...

    async def refresh(self, rejected: str) -> str:
        """A new access token after QuickBooks rejected ``rejected`` with 401."""
        ...


@dataclass(frozen=True)
class CallInfo:
    """Timing and trace ids of one API call (what the daemon logs)."""

    method: str
    path: str
    status: int | None
    response_ms: int
    intuit_tid: str | None
    request_id: str | None
    attempts: int  # 2 when a 401 made the client refresh the token and send again


_last_call: contextvars.ContextVar[CallInfo | None] = contextvars.ContextVar(
    "qbsync_qbo_last_call", default=None)


class QboClient:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        realm_id: str,
        tokens: TokenProvider,
        minor_version: int = 75,
        limiter: RequestLimiter | None = None,
        timeout: float = 60.0,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        observer: Observer = NULL_OBSERVER,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.realm_id = realm_id
        self.tokens = tokens
        self.minor_version = minor_version
        self.limiter = limiter
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.observer = observer
        self._prefix = f"{self.base_url}/v3/company/{quote(realm_id, safe='')}"

    def __repr__(self) -> str:
        return f"QboClient(base_url={self.base_url!r}, realm_id={self.realm_id!r})"

    @property
    def last_call(self) -> CallInfo | None:
        """The last call finished by the current asyncio task (any client)."""
        return _last_call.get()

    @property
    def last_response_ms(self) -> int | None:
        info = _last_call.get()
        return info.response_ms if info else None

    # --- entities ------------------------------------------------------------------------

    async def create(self, entity_type: str, body: Mapping[str, Any], *, request_id: str
                     ) -> dict[str, Any]:
        data = await self._call("POST", _segment(entity_type), json=dict(body),
                                request_id=request_id)
        return _unwrap(data, entity_type)

    async def update(self, entity_type: str, body: Mapping[str, Any], *, request_id: str,
                     sparse: bool = True) -> dict[str, Any]:
        """Sparse by default: a full update blanks every field left out of ``body``."""
        payload = dict(body)
        payload["sparse"] = sparse
        data = await self._call("POST", _segment(entity_type), json=payload,
                                request_id=request_id)
        return _unwrap(data, entity_type)

    async def read(self, entity_type: str, id: str) -> dict[str, Any]:
        data = await self._call("GET", f"{_segment(entity_type)}/{quote(str(id), safe='')}")
        return _unwrap(data, entity_type)

    async def void(self, entity_type: str, id: str, sync_token: str, *, request_id: str
                   ) -> dict[str, Any]:
        data = await self._call("POST", _segment(entity_type), params={"operation": "void"},
                                json={"Id": str(id), "SyncToken": str(sync_token)},
                                request_id=request_id)
        return _unwrap(data, entity_type)

    async def delete(self, entity_type: str, id: str, sync_token: str, *, request_id: str
                     ) -> dict[str, Any]:
        """Delete a transaction (names are made inactive with a sparse update instead)."""
        data = await self._call("POST", _segment(entity_type), params={"operation": "delete"},
                                json={"Id": str(id), "SyncToken": str(sync_token)},
                                request_id=request_id)
        return _unwrap(data, entity_type)

    # --- queries -------------------------------------------------------------------------

    async def query(self, select: str) -> list[dict[str, Any]]:
        """Rows of one query page (QuickBooks returns 100 unless MAXRESULTS says more)."""
        data = await self._call("GET", "query", params={"query": select})
        return _query_rows(data)

    async def query_all(self, select: str, *, page_size: int = MAX_PAGE
                        ) -> list[dict[str, Any]]:
        """Every row, fetched page by page with STARTPOSITION / MAXRESULTS."""
        return [row async for page in self.query_pages(select, page_size=page_size)
                for row in page]

    async def query_pages(self, select: str, *, page_size: int = MAX_PAGE
                          ) -> AsyncIterator[list[dict[str, Any]]]:
        """The rows page by page (STARTPOSITION / MAXRESULTS), each page asked for only
        when the one before was used: a caller looking for one row may stop early."""
        if _PAGING.search(select):
            raise ValueError("query_all pages by itself: leave STARTPOSITION/MAXRESULTS out")
        if not 1 <= page_size <= MAX_PAGE:
            raise ValueError(f"page_size must be 1..{MAX_PAGE}")
        start = 1
        while True:
            page = await self.query(f"{select} STARTPOSITION {start} MAXRESULTS {page_size}")
            yield page
            if len(page) < page_size:
                return
            start += page_size

    async def count(self, select_count: str) -> int:
        """``SELECT COUNT(*) FROM ...`` -> totalCount."""
        data = await self._call("GET", "query", params={"query": select_count})
        return int((data.get("QueryResponse") or {}).get("totalCount") or 0)

    async def find_one(self, entity_type: str, field: str, value: str | int
                       ) -> dict[str, Any] | None:
        """The first object whose ``field`` equals ``value`` (e.g. Invoice by DocNumber)."""
        if not _IDENT.match(entity_type) or not _IDENT.match(field):
            raise ValueError(f"not a QuickBooks name: {entity_type!r}.{field!r}")
        rows = await self.query(
            f"SELECT * FROM {entity_type} WHERE {field} = {quote_value(value)} MAXRESULTS 1")
        return rows[0] if rows else None

    # --- batch, company, reports, CDC ----------------------------------------------------

    async def batch(self, items: Sequence[Mapping[str, Any]], *, request_id: str
                    ) -> list[dict[str, Any]]:
        """Run up to 30 operations in one request. Items look like ``{"operation": "create",
        "Customer": {...}}`` or ``{"Query": "SELECT ..."}``; a ``bId`` is added when missing.

        Returns the ``BatchItemResponse`` entries in the order of ``items``; each either holds
        the entity / ``QueryResponse`` or a ``Fault`` (use
        :func:`qbsync.qbo.errors.error_from_batch_item`). There is no rollback.
        """
        if not items:
            return []
        if len(items) > MAX_BATCH:
            raise ValueError(f"a batch holds at most {MAX_BATCH} operations, got {len(items)}")
        request: list[dict[str, Any]] = []
        for n, item in enumerate(items, start=1):
            entry = dict(item)
            entry.setdefault("bId", str(n))
            request.append(entry)
        data = await self._call("POST", "batch", json={"BatchItemRequest": request},
                                request_id=request_id, kind="batch")
        by_id = {str(r.get("bId")): r for r in data.get("BatchItemResponse") or []}
        return [by_id.get(str(entry["bId"]), {"bId": entry["bId"], "Fault": {
            "Error": [{"Message": "no answer for this batch item", "code": None}],
            "type": "BatchItemMissing"}}) for entry in request]

    async def company_info(self) -> dict[str, Any]:
        data = await self._call("GET", f"companyinfo/{quote(self.realm_id, safe='')}")
        return _unwrap(data, "CompanyInfo")

    async def preferences(self) -> dict[str, Any]:
        data = await self._call("GET", "preferences")
        return _unwrap(data, "Preferences")

    async def report(self, name: str, **params: str | int) -> dict[str, Any]:
        """The report document (Header, Columns, Rows) for e.g. ``ProfitAndLoss``."""
        if not _IDENT.match(name):
            raise ValueError(f"not a report name: {name!r}")
        return await self._call("GET", f"reports/{name}",
                                params={k: str(v) for k, v in params.items()})

    async def cdc(self, entities: Iterable[str], changed_since: datetime | str
                  ) -> dict[str, list[dict[str, Any]]]:
        """Objects changed since an instant (30 days back at most), by entity name."""
        since = changed_since.isoformat() if isinstance(changed_since, datetime) \
            else changed_since
        data = await self._call("GET", "cdc", params={"entities": ",".join(entities),
                                                      "changedSince": since})
        out: dict[str, list[dict[str, Any]]] = {}
        for block in data.get("CDCResponse") or []:
            for qr in block.get("QueryResponse") or []:
                for key, value in qr.items():
                    if isinstance(value, list):
                        out.setdefault(key, []).extend(value)
        return out

    # --- transport -----------------------------------------------------------------------

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        request_id: str | None = None,
        kind: str = "request",
    ) -> dict[str, Any]:
        write = method != "GET"
        query: dict[str, str] = {"minorversion": str(self.minor_version)}
        if params:
            query.update(params)
        if write:
            if not request_id or len(request_id) > MAX_REQUEST_ID:
                raise ValueError(f"a write needs a requestid of 1..{MAX_REQUEST_ID} characters")
            query["requestid"] = request_id
        url = f"{self._prefix}/{path}"
        attempts = 0
        while True:
            attempts += 1
            resp, body, elapsed, token = await self._send(method, url, query, json, write,
                                                          kind, request_id, endpoint_of(path))
            tid = resp.headers.get("intuit_tid")
            _last_call.set(CallInfo(method, path, resp.status_code, elapsed, tid, request_id,
                                    attempts))
            data: Any = None
            if 200 <= resp.status_code < 300:
                try:
                    data = fastjson.loads(body)
                except ValueError:
                    data = None
            if isinstance(data, dict) and not parse_fault(data)[0]:
                return data  # a success, its body read once
            error = error_from_response(resp.status_code, body, resp.headers,
                                        write=write, reason=resp.reason_phrase)
            if error is None:
                error = TransientError(
                    f"QuickBooks answered HTTP {resp.status_code} without a JSON object",
                    status=resp.status_code, intuit_tid=tid)
            error.request_id = request_id
            error.response_ms = elapsed
            if isinstance(error, AuthError) and attempts == 1:
                # Same request, same requestid: QuickBooks did nothing with a 401.
                await self.tokens.refresh(token)
                continue
            if isinstance(error, Throttled):
                self.observer.throttled(self.realm_id)
                if self.limiter is not None:
                    await self.limiter.throttled(error.retry_after)
            raise error

    async def _send(self, method: str, url: str, query: Mapping[str, str], json: Any,
                    write: bool, kind: str, request_id: str | None, endpoint: str = "other"
                    ) -> tuple[httpx.Response, bytes, int, str]:
        """One HTTP exchange under a rate-limit permit; (response, its body read up to
        max_response_bytes, milliseconds on the wire, not counting the wait for the permit,
        the access token sent).

        The token is read once the permit is granted, not before the wait: a request that
        queued for its slot while the tokens were refreshed (by this task's neighbours or
        another daemon) goes out with the new one instead of collecting a 401."""
        headers = {"Accept": "application/json"}
        token = ""
        content: bytes | None = None
        if json is not None:
            headers["Content-Type"] = "application/json"
            content = fastjson.dumps_bytes(json)
        started = time.perf_counter()
        failure: QboError | None = None
        body = b""
        try:
            if self.limiter is None:
                token = await self.tokens.access_token()
                headers["Authorization"] = f"Bearer {token}"
                resp = await self._exchange(method, url, query, content, headers, None)
                body = await read_capped(resp, self.max_response_bytes, f"{method} {url}")
            else:
                limiter = self.limiter
                async with limiter.permit(kind) as permit:

                    async def trace(event: str, info: Mapping[str, Any]) -> None:
                        # httpcore calls this right before it writes the request: the
                        # moment QuickBooks' windows should see, so check the slot here
                        if event.endswith("send_request_headers.started"):
                            await limiter.sending(permit)

                    await limiter.sending(permit)  # also for transports that trace nothing
                    token = await self.tokens.access_token()
                    headers["Authorization"] = f"Bearer {token}"
                    started = time.perf_counter()
                    resp = await self._exchange(method, url, query, content, headers,
                                                {"trace": trace})
                    body = await read_capped(resp, self.max_response_bytes,
                                             f"{method} {url}")
        except ResponseTooLarge as exc:
            # Retryable; a write's answer was cut off after QuickBooks took it: unknown.
            failure = (UnknownOutcome if write else TransientError)(
                f"{exc}; {'the write may have been applied' if write else 'retried later'}",
                request_id=request_id,
                response_ms=int((time.perf_counter() - started) * 1000))
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            failure = _transport_error(TransientError, exc, "could not send the request",
                                       request_id, started)
        except httpx.TransportError as exc:
            # Read timeout, connection dropped, broken write: a write may have been applied.
            failure = _transport_error(
                UnknownOutcome if write else TransientError, exc,
                "no answer; the write may have been applied" if write else "no answer",
                request_id, started)
        seconds = time.perf_counter() - started
        self.observer.request(endpoint, None if failure is not None else resp.status_code,
                              seconds)
        if failure is not None:
            # Raised outside the except block: no __context__ either. httpx exceptions hold
            # the request, and with it the Authorization header.
            raise failure
        return resp, body, int(seconds * 1000), token

    async def _exchange(self, method: str, url: str, query: Mapping[str, str],
                        content: bytes | None, headers: dict[str, str],
                        extensions: dict[str, Any] | None) -> httpx.Response:
        """Send the request; the answer's headers are in, its body is left to read."""
        request = self.http.build_request(method, url, params=query, content=content,
                                          headers=headers, timeout=self.timeout,
                                          extensions=extensions)
        return await self.http.send(request, stream=True)


def _transport_error(cls: type[QboError], exc: Exception, what: str, request_id: str | None,
                     started: float) -> QboError:
    # Only the exception type and httpx's own message (never headers) are kept.
    text = str(exc) or type(exc).__name__
    return cls(f"{what} ({type(exc).__name__}: {text})", request_id=request_id,
               response_ms=int((time.perf_counter() - started) * 1000))


def quote_value(value: str | int) -> str:
    """A QuickBooks query literal: ``'`` and ``\\`` are escaped with a backslash."""
    if isinstance(value, int) and not isinstance(value, bool):
        return f"'{value}'"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _segment(entity_type: str) -> str:
    if not _IDENT.match(entity_type):
        raise ValueError(f"not a QuickBooks entity name: {entity_type!r}")
    return entity_type.lower()


def _unwrap(data: Mapping[str, Any], entity_type: str) -> dict[str, Any]:
    obj = data.get(entity_type)
    if obj is None:
        lowered = entity_type.lower()
        obj = next((v for k, v in data.items() if k.lower() == lowered), None)
    if not isinstance(obj, dict):
        raise TransientError(f"QuickBooks answered without a {entity_type} object")
    return obj


def _query_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    qr = data.get("QueryResponse") or {}
    for value in qr.values():
        if isinstance(value, list):
            return value
    return []
