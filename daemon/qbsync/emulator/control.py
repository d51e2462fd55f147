"""Inspection and fault-injection endpoints under ``/_emulator/`` (JSON in, JSON out).

| Method + path | Body / query | Effect |
|---|---|---|
| GET  /_emulator/state | | summary (companies, counts, limits, rules, time) |
| POST /_emulator/reset | | forget everything (companies, tokens, counters, rules) |
| POST /_emulator/companies | {name, custom_txn_numbers, tax_mode, realm_id, currency, |  |
|  | multicurrency, country} | create |
| POST /_emulator/tokens | {realm_id, client_id?} | issue a token pair (no browser flow) |
| POST /_emulator/expire-tokens | {realm_id?} | expire access tokens |
| POST /_emulator/expire-refresh-tokens | {realm_id?} | expire refresh tokens |
| POST /_emulator/revoke | {realm_id?} | revoke grants |
| GET/POST/DELETE /_emulator/faults | {kind, count, method, path, entity, realm, |  |
|  | hang_seconds, then, seconds} | list / add / clear fault rules |
| POST/DELETE /_emulator/latency | {min, max?} | add/remove latency (real seconds) |
| GET/POST /_emulator/limits | {enabled, per_minute, per_second, in_flight, | |
|  | batch_per_minute} | read / change throttle limits |
| POST /_emulator/requestids | {ignored: [route, ...], refusals} | requestid policy |
| POST /_emulator/time | {time_scale?, advance?} | change the emulated clock |
| GET/DELETE /_emulator/counters | ?realm= | "METHOD route status" -> count |
| GET /_emulator/entities/{realm}/{Entity} | | stored objects (incl. inactive) |
| POST /_emulator/entities/{realm}/{Entity} | the object | create as a QBO user would |
| GET /_emulator/entities/{realm}/{Entity}/{id} | | one stored object |
| POST /_emulator/entities/{realm}/{Entity}/{id}/edit | changes; ?validate=false | UI edit |
| POST /_emulator/entities/{realm}/{Entity}/{id}/void | | UI void (Invoice, Payment) |
| POST /_emulator/entities/{realm}/{Entity}/{id}/delete | | UI delete (name lists: inactive) |
| POST /_emulator/merge-customers | {realm_id, from_id, into_id} | UI customer merge |
| POST /_emulator/snapshot | {path?} | save the state as JSON |
| POST /_emulator/snapshot/load | {path?} | load a saved state |

The UI-simulation endpoints answer a business-rule violation with HTTP 400 and the QBO
``Fault`` envelope; other bad input gives 400 ``{"error": ...}``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .faults import QBOFault, dumps
from .store import ALL_ENTITIES

if TYPE_CHECKING:
    from .core import Emulator


def routes(emu: Emulator) -> list[Route]:
    async def body(request: Request) -> dict[str, Any]:
        raw = await request.body()
        if not raw.strip():
            return {}
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return data

    def guarded(fn: Any) -> Any:
        async def wrapper(request: Request) -> Response:
            try:
                return JSONResponse(await fn(request))
            except QBOFault as exc:
                return Response(
                    dumps(exc.body(emu.clock.now())), 400, media_type="application/json"
                )
            except (ValueError, KeyError, TypeError, OSError) as exc:
                return JSONResponse({"error": f"{type(exc).__name__}: {exc}"}, status_code=400)

        return wrapper

    async def state(request: Request) -> Any:
        return emu.state()

    async def reset(request: Request) -> Any:
        emu.reset()
        return {"ok": True}

    async def companies(request: Request) -> Any:
        data = await body(request)
        realm = emu.create_company(**data)
        return {"realmId": realm}

    async def tokens(request: Request) -> Any:
        data = await body(request)
        return emu.issue_tokens(str(data["realm_id"]), data.get("client_id"))

    async def expire(request: Request) -> Any:
        data = await body(request)
        return {"expired": emu.expire_access_tokens(data.get("realm_id"))}

    async def expire_refresh(request: Request) -> Any:
        data = await body(request)
        return {"expired": emu.expire_refresh_tokens(data.get("realm_id"))}

    async def revoke(request: Request) -> Any:
        data = await body(request)
        return {"revoked": emu.revoke_grants(data.get("realm_id"))}

    async def faults_(request: Request) -> Any:
        if request.method == "DELETE":
            emu.injector.rules.clear()
            return {"ok": True}
        if request.method == "POST":
            data = await body(request)
            return emu.inject_fault(**data).as_dict()
        emu.injector.prune()
        return {"rules": [r.as_dict() for r in emu.injector.rules]}

    async def latency(request: Request) -> Any:
        if request.method == "DELETE":
            emu.set_latency(None)
        else:
            data = await body(request)
            emu.set_latency(data.get("min"), data.get("max"))
        return {"latency": emu.injector.latency}

    async def limits(request: Request) -> Any:
        if request.method == "POST":
            data = await body(request)
            emu.set_limits(**data)
        return emu.limits.summary()

    async def requestids(request: Request) -> Any:
        data = await body(request)
        emu.set_requestid_policy(ignored=data.get("ignored") or (),
                                 refusals=bool(data.get("refusals")))
        return emu.state()["requestid_policy"]

    async def time_(request: Request) -> Any:
        data = await body(request)
        if "time_scale" in data:
            emu.clock.set_time_scale(float(data["time_scale"]))
        if "advance" in data:
            emu.clock.advance(float(data["advance"]))
        return {"time_scale": emu.clock.time_scale, "now": emu.clock.iso()}

    async def counters(request: Request) -> Any:
        if request.method == "DELETE":
            emu.counters.reset()
            return {"ok": True}
        return emu.counters.snapshot(request.query_params.get("realm"))

    def canonical(request: Request) -> str:
        name = request.path_params["entity"]
        found = next((e for e in ALL_ENTITIES if e.lower() == name.lower()), None)
        if found is None:
            raise ValueError(f"unknown entity {name}")
        return found

    async def entities(request: Request) -> Any:
        realm = request.path_params["realm"]
        entity = canonical(request)
        if request.method == "POST":
            return {entity: emu.create_entity(realm, entity, await body(request))}
        return {entity: emu.entities(realm, entity)}

    async def entity(request: Request) -> Any:
        realm, id_ = request.path_params["realm"], request.path_params["id"]
        entity = canonical(request)
        obj = emu.get_entity(realm, entity, id_)
        if obj is None:
            raise KeyError(f"{entity} {id_} does not exist")
        return {entity: obj}

    async def entity_action(request: Request) -> Any:
        realm, id_ = request.path_params["realm"], request.path_params["id"]
        entity = canonical(request)
        action = request.path_params["action"]
        if action == "edit":
            validate = request.query_params.get("validate", "true").lower() != "false"
            obj = emu.edit_entity(realm, entity, id_, await body(request), validate=validate)
        elif action == "void":
            obj = emu.void_entity(realm, entity, id_)
        elif action == "delete":
            obj = emu.delete_entity(realm, entity, id_)
        else:
            raise ValueError(f"unknown action {action} (edit, void, delete)")
        return {entity: obj}

    async def merge(request: Request) -> Any:
        data = await body(request)
        return emu.merge_customers(
            str(data["realm_id"]), str(data["from_id"]), str(data["into_id"])
        )

    async def snapshot(request: Request) -> Any:
        data = await body(request)
        return {"path": str(emu.save_snapshot(data.get("path")))}

    async def snapshot_load(request: Request) -> Any:
        data = await body(request)
        emu.load_snapshot(data.get("path"))
        return {"ok": True, "companies": list(emu.companies)}

    p = "/_emulator"
    return [
        Route(f"{p}/state", guarded(state), methods=["GET"]),
        Route(f"{p}/reset", guarded(reset), methods=["POST"]),
        Route(f"{p}/companies", guarded(companies), methods=["POST"]),
        Route(f"{p}/tokens", guarded(tokens), methods=["POST"]),
        Route(f"{p}/expire-tokens", guarded(expire), methods=["POST"]),
        Route(f"{p}/expire-refresh-tokens", guarded(expire_refresh), methods=["POST"]),
        Route(f"{p}/revoke", guarded(revoke), methods=["POST"]),
        Route(f"{p}/faults", guarded(faults_), methods=["GET", "POST", "DELETE"]),
        Route(f"{p}/latency", guarded(latency), methods=["POST", "DELETE"]),
        Route(f"{p}/limits", guarded(limits), methods=["GET", "POST"]),
        Route(f"{p}/requestids", guarded(requestids), methods=["POST"]),
        Route(f"{p}/time", guarded(time_), methods=["POST"]),
        Route(f"{p}/counters", guarded(counters), methods=["GET", "DELETE"]),
        Route(f"{p}/entities/{{realm}}/{{entity}}", guarded(entities), methods=["GET", "POST"]),
        Route(f"{p}/entities/{{realm}}/{{entity}}/{{id}}", guarded(entity), methods=["GET"]),
        Route(
            f"{p}/entities/{{realm}}/{{entity}}/{{id}}/{{action}}",
            guarded(entity_action),
            methods=["POST"],
        ),
        Route(f"{p}/merge-customers", guarded(merge), methods=["POST"]),
        Route(f"{p}/snapshot", guarded(snapshot), methods=["POST"]),
        Route(f"{p}/snapshot/load", guarded(snapshot_load), methods=["POST"]),
    ]
