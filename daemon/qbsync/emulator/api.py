"""Accounting API v3 routes: ``/v3/company/{realmId}/...``.

Decisions where the fact sheet is silent ([U]):

* an unknown entity or route under ``/v3/company/{realm}/`` -> HTTP 400, code 500
  "Unsupported Operation" ("Could not find resource for relative : <path>");
* unparsable JSON -> HTTP 400, code 2010 "Request has invalid or unsupported property";
* reading an unknown Id -> HTTP 400, code 610 "Object Not Found";
* ``requestid``: only successful (HTTP 200) write responses are remembered, per realm, with
  no expiry and regardless of the body of the repeat; a failed write can be retried with the
  same id. Ids longer than 50 characters -> 2050. ``Emulator.set_requestid_policy`` makes
  some routes ignore requestids, or refusals remembered too;
* a batch with more than 30 items -> 6000 (whole request rejected); a batch item's
  ``optionsData`` may carry ``allowduplicatedocnum``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import fastjson
from . import cdc, faults, query, reports
from .entities import Writer
from .faults import AuthError, QBOFault
from .store import BATCH_HIDDEN, BY_PATH, WRITABLE, Company

if TYPE_CHECKING:
    from .core import Emulator

log = logging.getLogger("qbsync.emulator")
MAX_BATCH = 30
JSON = "application/json;charset=UTF-8"


def _json(body: dict[str, Any] | bytes, status: int = 200, tid: str = "") -> Response:
    return Response(
        body if isinstance(body, bytes) else faults.dumps(body),
        status_code=status,
        media_type=JSON,
        headers={"intuit_tid": tid} if tid else None,
    )


class V3:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.n = 0

    def routes(self) -> list[Route]:
        methods = ["GET", "POST", "PUT", "DELETE", "PATCH"]
        return [
            Route("/v3/company/{realm}/{rest:path}", self.handle, methods=methods),
            Route("/v3/company/{realm}", self.handle, methods=methods),
        ]

    async def handle(self, request: Request) -> Response:
        emu = self.emu
        self.n += 1
        tid = f"1-emulator-{self.n:08x}"
        realm = request.path_params["realm"]
        try:
            emu.oauth.authenticate(request.headers.get("authorization"), realm)
            company = emu.companies.get(realm)
            if company is None:
                raise AuthError("3100", f"Company {realm} does not exist")
            body, status = await self.dispatch(request, company)
            return _json(body, status, tid)
        except AuthError as exc:
            return _json(exc.body(), exc.status, tid)
        except QBOFault as exc:
            return _json(exc.body(emu.clock.now()), exc.status, tid)
        except Exception:  # never leak a traceback to the client
            log.exception("emulator internal error on %s %s", request.method, request.url.path)
            return _json(faults.system_error().body(emu.clock.now()), 500, tid)

    def _unknown(self, request: Request) -> QBOFault:
        path = request.url.path
        return faults.unsupported(
            f"Operation Could not find resource for relative : {path} of full path: {request.url}"
        )

    async def dispatch(self, request: Request, company: Company
                       ) -> tuple[dict[str, Any] | bytes, int]:
        """The answer's body (or its JSON, already encoded) and HTTP status."""
        emu = self.emu
        rest = request.path_params.get("rest", "")
        parts = [p for p in rest.split("/") if p]
        method = request.method
        now = emu.clock.now()
        if not parts:
            raise self._unknown(request)
        head = parts[0].lower()
        params = request.query_params
        if head == "query" and len(parts) == 1 and method in ("GET", "POST"):
            text = params.get("query")
            if method == "POST" and not text:
                text = (await request.body()).decode("utf-8", "replace")
            return {
                "QueryResponse": query.execute(company, text or ""),
                "time": faults.qbo_time(now),
            }, 200
        if head == "reports" and len(parts) == 2 and method == "GET":
            report = reports.run(company, parts[1], dict(params), emu.clock)
            return report, 200
        if head == "cdc" and len(parts) == 1 and method == "GET":
            result = cdc.run(company, params.get("entities"), params.get("changedSince"), emu.clock)
            return {"CDCResponse": result, "time": faults.qbo_time(now)}, 200
        if head == "batch" and len(parts) == 1 and method == "POST":
            return await self._with_requestid(request, company, self._batch)
        entity = BY_PATH.get(head)
        if entity is None:
            raise self._unknown(request)
        if method == "GET":
            if entity == "Preferences" and len(parts) == 1:
                return self._envelope(entity, company.entities[entity]["1"], now), 200
            if len(parts) != 2:
                raise self._unknown(request)
            obj = company.get(entity, parts[1])
            if obj is None:
                raise faults.not_found(entity, parts[1])
            return self._envelope(entity, obj, now), 200
        if method == "POST" and len(parts) == 1:
            if entity not in WRITABLE:
                raise faults.unsupported(
                    f"Operation create/update is not supported for {entity} by this endpoint."
                )
            return await self._with_requestid(request, company, self._write)
        raise self._unknown(request)

    @staticmethod
    def _envelope(entity: str, obj: dict[str, Any], now: float) -> dict[str, Any]:
        return {entity: obj, "time": faults.qbo_time(now)}

    async def _with_requestid(
        self, request: Request, company: Company, handler: Any
    ) -> tuple[bytes, int]:
        """A write, answered with its JSON encoded once: the answer and what a replay of its
        requestid gets are the same bytes."""
        rid = request.query_params.get("requestid")
        if rid and len(rid) > 50:
            raise faults.too_long("requestid", 50, len(rid))
        if request.path_params.get("rest", "").split("/")[0].lower() in \
                self.emu.requestids_ignored:
            rid = None
        if rid:
            cached = company.requestids.get(rid)
            if cached is not None:
                return cached[1].encode(), cached[0]
        raw = await request.body()
        try:
            body = fastjson.loads(raw) if raw.strip() else None
        except (ValueError, UnicodeDecodeError) as exc:
            raise faults.invalid_property(
                f"Property Name:Unparsable JSON body ({exc}) specified is unsupported or invalid"
            ) from None
        if body is None:
            raise faults.invalid_property(
                "Property Name:empty request body specified is unsupported or invalid"
            )
        if rid and rid in company.requestids_running:
            # the same requestid again while the first is still being served (a batch
            # yields between items): answer what the first one answers
            await asyncio.shield(company.requestids_running[rid])
            cached = company.requestids.get(rid)
            if cached is not None:
                return cached[1].encode(), cached[0]
        running: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if rid:
            company.requestids_running[rid] = running
        try:
            result = handler(request, company, body)
            if asyncio.iscoroutine(result):
                result = await result
            encoded = faults.dumps(result)
            if rid:
                company.requestids[rid] = (200, encoded.decode())
        except QBOFault as exc:
            if rid and self.emu.refusals_remembered:
                company.requestids[rid] = (
                    exc.status, faults.dumps(exc.body(self.emu.clock.now())).decode())
            raise
        finally:
            if rid:
                del company.requestids_running[rid]
            running.set_result(None)
        return encoded, 200

    def _writer(self, company: Company, include: str | None) -> Writer:
        clock = self.emu.clock
        inc = {s.strip().lower() for s in (include or "").split(",") if s.strip()}
        return Writer(company, clock.iso(), clock.today(), inc)

    def _write(self, request: Request, company: Company, body: Any) -> dict[str, Any]:
        entity = BY_PATH[request.path_params["rest"].split("/")[0].lower()]
        params = request.query_params
        writer = self._writer(company, params.get("include"))
        obj = writer.write(entity, body, params.get("operation"))
        return self._envelope(entity, obj, self.emu.clock.now())

    async def _batch(self, request: Request, company: Company, body: Any) -> dict[str, Any]:
        items = body.get("BatchItemRequest") if isinstance(body, dict) else None
        if not items or not isinstance(items, list):
            raise faults.required("BatchItemRequest")
        if len(items) > MAX_BATCH:
            raise faults.business(
                f"Batch request cannot contain more than {MAX_BATCH} "
                f"BatchItemRequest items. Supplied: {len(items)}",
                "BatchItemRequest",
            )
        out: list[dict[str, Any]] = []
        hidden: set[tuple[str, str]] = set()
        token = BATCH_HIDDEN.set(hidden)
        try:
            for item in items:
                out.append(self._batch_item(request, company, item, hidden))
                # Serve other requests between items, as QuickBooks does: a batch must not
                # hold every other request of the realm (their arrival times included).
                await asyncio.sleep(0)
        finally:
            BATCH_HIDDEN.reset(token)
        return {"BatchItemResponse": out, "time": faults.qbo_time(self.emu.clock.now())}

    def _batch_item(self, request: Request, company: Company, item: Any,
                    hidden: set[tuple[str, str]]) -> dict[str, Any]:
        if not isinstance(item, dict):
            return {
                "Fault": faults.invalid_property(
                    "Property Name:BatchItemRequest specified is unsupported or invalid"
                ).fault()
            }
        bid = item.get("bId")
        resp: dict[str, Any] = {"bId": bid}
        try:
            if "Query" in item:
                resp["QueryResponse"] = query.execute(company, str(item["Query"]))
                return resp
            names = [k for k in item if k in WRITABLE]
            if len(names) != 1:
                raise faults.unsupported(
                    "BatchItemRequest must hold exactly one of "
                    + ", ".join(WRITABLE)
                    + " or a Query"
                )
            entity = names[0]
            options = item.get("optionsData")
            include = options if isinstance(options, str) else None
            operation = item.get("operation") or "create"
            writer = self._writer(company, include)
            obj = writer.write(entity, item[entity], operation)
            if str(operation).lower() == "create":
                hidden.add((entity, obj["Id"]))
            resp[entity] = obj
        except QBOFault as exc:
            resp["Fault"] = exc.fault()
        return resp
