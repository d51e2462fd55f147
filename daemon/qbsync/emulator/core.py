"""The :class:`Emulator`: state holder, Python API for tests, and the ASGI app."""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from ..local_qbo import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from . import control, faults, oauth
from .api import V3
from .clock import Clock
from .counters import Counters
from .entities import SYSTEM_FIELDS, Writer
from .gate import Gate
from .injection import FaultRule, Injector
from .limits import LimitConfig, Limits
from .store import BY_PATH, WRITABLE, Company, CompanySettings


class Emulator:
    """A local QuickBooks Online (Accounting API v3 + Intuit OAuth 2.0) emulator.

    ``emulator.app`` is the Starlette ASGI app; use it in-process with
    ``httpx.AsyncClient(transport=httpx.ASGITransport(app=emulator.app))`` (or
    :meth:`client`) or serve it with uvicorn (see :mod:`qbsync.emulator.server`).
    """

    def __init__(
        self,
        *,
        time_scale: float = 1.0,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        limits: bool | LimitConfig = True,
        snapshot_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self.clock = Clock(time_scale)
        self.oauth = oauth.OAuth(self.clock, {client_id: client_secret})
        self.default_client_id = client_id
        self.companies: dict[str, Company] = {}
        config = limits if isinstance(limits, LimitConfig) else LimitConfig(enabled=limits)
        self.limits = Limits(self.clock, config)
        self.injector = Injector()
        self.counters = Counters()
        # requestid behaviours QuickBooks is not known to keep: set_requestid_policy
        self.requestids_ignored: frozenset[str] = frozenset()
        self.refusals_remembered = False
        self.snapshot_path = Path(snapshot_path) if snapshot_path else None
        self._realm_seq = 0
        if self.snapshot_path and self.snapshot_path.exists():
            self.load_snapshot(self.snapshot_path)
        self.app = self._build_app()

    # --- app ---------------------------------------------------------------------------

    def _build_app(self) -> Starlette:
        async def http_error(request: Request, exc: Exception) -> Response:
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            detail = (
                f"Operation Could not find resource for relative : {request.url.path} "
                f"of full path: {request.url}"
            )
            if status == 405:
                detail = f"Method {request.method} is not supported for {request.url.path}"
            body = faults.unsupported(detail, status=status).body(self.clock.now())
            return Response(faults.dumps(body), status_code=status, media_type="application/json")

        async def internal(request: Request, exc: Exception) -> Response:
            body = faults.system_error().body(self.clock.now())
            return Response(faults.dumps(body), status_code=500, media_type="application/json")

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            if self.snapshot_path is not None:
                self.save_snapshot(self.snapshot_path)

        routes = [*oauth.routes(self), *V3(self).routes(), *control.routes(self)]
        return Starlette(
            routes=routes,
            middleware=[Middleware(Gate, emulator=self)],
            exception_handlers={404: http_error, 405: http_error, Exception: internal},
            lifespan=lifespan,
        )

    def client(self, base_url: str = "http://qbo.emulator", **kwargs: Any) -> httpx.AsyncClient:
        """An in-process ``httpx.AsyncClient`` bound to this emulator."""
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=base_url, **kwargs
        )

    # --- companies ---------------------------------------------------------------------

    def create_company(
        self,
        name: str = "Emulated Shop",
        *,
        custom_txn_numbers: bool = False,
        tax_mode: str = "global",
        realm_id: str | None = None,
        currency: str | None = None,
        multicurrency: bool = False,
        country: str | None = None,
        us_tax_rate: float = 8.0,
    ) -> str:
        """Create a company (realm) and return its realm id (a numeric string). `currency`:
        its home currency (USD for a US company, else EUR); `multicurrency`: whether it takes
        transactions in other currencies."""
        if realm_id is None:
            while True:
                self._realm_seq += 1
                realm_id = f"9341{self._realm_seq:012d}"
                if realm_id not in self.companies:
                    break
        realm_id = str(realm_id)
        if realm_id in self.companies:
            raise ValueError(f"realm {realm_id} already exists")
        us = tax_mode == "us"
        settings = CompanySettings(
            name=name,
            custom_txn_numbers=custom_txn_numbers,
            tax_mode=tax_mode,
            currency=(currency or ("USD" if us else "EUR")).upper(),
            multicurrency=multicurrency,
            country=country or ("US" if us else "GR"),
            us_tax_rate=us_tax_rate,
        )
        self.companies[realm_id] = Company.new(realm_id, settings, self.clock.iso())
        return realm_id

    def company(self, realm_id: str) -> Company:
        return self.companies[realm_id]

    # --- tokens ------------------------------------------------------------------------

    def issue_tokens(self, realm_id: str, client_id: str | None = None) -> dict[str, Any]:
        """Issue a grant directly: ``{"access_token", "refresh_token", "expires_in", ...}``."""
        if realm_id not in self.companies:
            raise KeyError(f"unknown realm {realm_id}")
        return self.oauth.issue(realm_id, client_id or self.default_client_id)

    def add_client(self, client_id: str, client_secret: str) -> None:
        self.oauth.clients[client_id] = client_secret

    def expire_access_tokens(self, realm_id: str | None = None) -> int:
        return self.oauth.expire_access(realm_id)

    def expire_refresh_tokens(self, realm_id: str | None = None) -> int:
        return self.oauth.expire_refresh(realm_id)

    def revoke_grants(self, realm_id: str | None = None) -> int:
        return self.oauth.revoke_realm(realm_id)

    # --- faults, latency, limits, time -------------------------------------------------

    def inject_fault(self, kind: str | int, count: int | None = 1, **match: Any) -> FaultRule:
        """Fail the next ``count`` matching requests (``None``: until cleared).

        ``kind``: "500", "503", "429", "401", "403", "timeout", "drop"; ``match``: ``method``,
        ``path`` (substring), ``entity`` (path segment, e.g. "invoice"), ``realm``,
        ``hang_seconds`` and ``then`` ("504" or "drop") for timeouts; ``seconds``: the rule
        lapses after that many real seconds even if not used up; ``rate``: only that share
        of the matching requests is hit (e.g. 0.05 with ``count=None``: 5 % of them).
        """
        return self.injector.add(kind, count, **match)

    def clear_faults(self) -> None:
        self.injector.rules.clear()

    def set_latency(self, min_seconds: float | None, max_seconds: float | None = None) -> None:
        """Delay every API/OAuth request by a fixed or uniformly random time (real seconds)."""
        self.injector.set_latency(min_seconds, max_seconds)

    def set_limits(self, enabled: bool | None = None, **limits: int) -> LimitConfig:
        changes: dict[str, Any] = dict(limits)
        if enabled is not None:
            changes["enabled"] = enabled
        return self.limits.configure(**changes)

    def set_requestid_policy(self, *, ignored: Iterable[str] = (),
                             refusals: bool = False) -> None:
        """How a write's ``requestid`` is honoured, where QuickBooks is not known to keep
        its word. ``ignored``: route segments ("payment", "batch") whose writes are applied
        whatever their requestid and never replayed (two identical Payments created under
        one RequestId: intuit/QuickBooks-V3-DotNET-SDK#352); ``refusals``: a refused
        write's answer is stored under its requestid and replayed too (whether QuickBooks
        does is undocumented). The default: every requestid honoured, successes only
        remembered."""
        self.requestids_ignored = frozenset(segment.lower() for segment in ignored)
        self.refusals_remembered = bool(refusals)

    def set_time_scale(self, time_scale: float) -> None:
        self.clock.set_time_scale(time_scale)

    def advance_time(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # --- inspection --------------------------------------------------------------------

    def request_count(
        self,
        method: str | None = None,
        route: str | None = None,
        status: int | str | None = None,
        realm: str | None = None,
    ) -> int:
        return self.counters.count(method, route, status, realm)

    def counter_snapshot(self, realm: str | None = None) -> dict[str, int]:
        return self.counters.snapshot(realm)

    def entities(self, realm_id: str, entity: str) -> list[dict[str, Any]]:
        """Deep copies of every stored object of a type (active and inactive), by Id."""
        objs = self.companies[realm_id].entities[BY_PATH.get(entity.lower(), entity)]
        return [copy.deepcopy(objs[k]) for k in sorted(objs, key=_id_key)]

    def get_entity(self, realm_id: str, entity: str, id_: str) -> dict[str, Any] | None:
        obj = self.companies[realm_id].entities[BY_PATH.get(entity.lower(), entity)].get(str(id_))
        return copy.deepcopy(obj) if obj is not None else None

    # --- "an accountant edits things in QuickBooks directly" ------------------------------
    #
    # These bypass OAuth, throttling, requestid and fault injection, but apply the same
    # business rules as the API (a QBOFault is raised on a rule violation), bump SyncToken and
    # LastUpdatedTime like a UI edit, and show up in CDC. They return deep copies.

    def _ui(self, realm_id: str, entity: str, id_: str | None = None) -> tuple[Writer, str, Any]:
        company = self.companies[realm_id]
        name = BY_PATH.get(entity.lower())
        if name is None:
            raise ValueError(f"unknown entity {entity}")
        obj = None
        if id_ is not None:
            obj = company.entities[name].get(str(id_))
            if obj is None:
                raise KeyError(f"{name} {id_} does not exist in realm {realm_id}")
        writer = Writer(company, self.clock.iso(), self.clock.today(), set())
        return writer, name, obj

    def create_entity(self, realm_id: str, entity: str, body: dict[str, Any]) -> dict[str, Any]:
        """Create an object as a QBO user would (e.g. a Payment received in QuickBooks)."""
        writer, name, _ = self._ui(realm_id, entity)
        if name not in WRITABLE:
            raise ValueError(f"{name} cannot be created")
        return copy.deepcopy(writer.create(name, dict(body)))

    def edit_entity(
        self,
        realm_id: str,
        entity: str,
        id_: str,
        changes: dict[str, Any],
        *,
        validate: bool = True,
    ) -> dict[str, Any]:
        """Sparse-update an object as a UI edit would (no SyncToken needed).

        ``validate=False`` stores ``changes`` verbatim (no rules, no recomputed totals), to
        simulate states the API cannot produce; SyncToken and LastUpdatedTime still move.
        """
        writer, name, old = self._ui(realm_id, entity, id_)
        if validate:
            if name not in WRITABLE:
                raise ValueError(f"{name} cannot be edited")
            body = {**changes, "Id": old["Id"], "SyncToken": old["SyncToken"], "sparse": True}
            return copy.deepcopy(writer.update(name, body))
        obj = {k: v for k, v in old.items() if k not in SYSTEM_FIELDS}
        obj.update({k: v for k, v in changes.items() if k not in SYSTEM_FIELDS})
        writer._bump(old, obj)
        writer.c.put(name, obj, old)
        return copy.deepcopy(obj)

    def void_entity(self, realm_id: str, entity: str, id_: str) -> dict[str, Any]:
        """Void an Invoice or Payment (same rules as ``operation=void``)."""
        writer, name, old = self._ui(realm_id, entity, id_)
        return copy.deepcopy(writer.void(name, {"Id": old["Id"], "SyncToken": old["SyncToken"]}))

    def delete_entity(self, realm_id: str, entity: str, id_: str) -> dict[str, Any]:
        """Delete as the QBO UI does.

        Transactions are deleted (CDC: ``status: Deleted`` stub); an invoice / credit memo with
        payments applied is deleted too and those payments' lines for it are removed (the money
        becomes unapplied), unlike the API which refuses. Customers, Items and PaymentMethods
        cannot be deleted in QBO: "delete" makes them inactive (``Active: false``).
        """
        writer, name, old = self._ui(realm_id, entity, id_)
        if name in ("Customer", "Item", "PaymentMethod"):
            body = {"Id": old["Id"], "SyncToken": old["SyncToken"], "sparse": True}
            return copy.deepcopy(writer.update(name, {**body, "Active": False}))
        body = {"Id": old["Id"], "SyncToken": old["SyncToken"]}
        return writer.delete(name, body, unlink_payments=True)

    def merge_customers(self, realm_id: str, from_id: str, into_id: str) -> dict[str, Any]:
        """Merge customer ``from_id`` into ``into_id`` (see :meth:`Writer.merge_customers`)."""
        writer, _, _ = self._ui(realm_id, "Customer")
        return writer.merge_customers(str(from_id), str(into_id))

    def state(self) -> dict[str, Any]:
        return {
            "time": self.clock.iso(),
            "time_scale": self.clock.time_scale,
            "companies": {
                realm: {
                    "name": c.settings.name,
                    "tax_mode": c.settings.tax_mode,
                    "custom_txn_numbers": c.settings.custom_txn_numbers,
                    "currency": c.settings.currency,
                    "multicurrency": c.settings.multicurrency,
                    "counts": {k: len(v) for k, v in c.entities.items()},
                    "deleted": {k: len(v) for k, v in c.deleted.items() if v},
                    "requestids": len(c.requestids),
                }
                for realm, c in self.companies.items()
            },
            "grants": sum(1 for g in self.oauth.grants.values() if not g.revoked),
            "access_tokens": len(self.oauth.access),
            "fault_rules": [r.as_dict() for r in self.injector.rules],
            "requestid_policy": {"ignored": sorted(self.requestids_ignored),
                                 "refusals": self.refusals_remembered},
            "latency": self.injector.latency,
            "limits": self.limits.summary(),
            "requests": sum(self.counters.total.values()),
        }

    def reset(self) -> None:
        """Forget companies, tokens, counters, fault rules and throttle windows."""
        self.companies.clear()
        self.oauth.reset()
        self.injector.clear()
        self.counters.reset()
        self.limits.reset()
        self.set_requestid_policy()
        self._realm_seq = 0

    # --- snapshots ---------------------------------------------------------------------

    def save_snapshot(self, path: str | os.PathLike[str] | None = None) -> Path:
        target = Path(path) if path else self.snapshot_path
        if target is None:
            raise ValueError("no snapshot path given")
        data = {
            "version": 1,
            "realm_seq": self._realm_seq,
            "companies": [c.to_dict() for c in self.companies.values()],
            "oauth": self.oauth.to_dict(),
        }
        tmp = target.with_suffix(target.suffix + ".tmp")
        tmp.write_text(json.dumps(data, ensure_ascii=False))
        tmp.replace(target)
        return target

    def load_snapshot(self, path: str | os.PathLike[str] | None = None) -> None:
        source = Path(path) if path else self.snapshot_path
        if source is None:
            raise ValueError("no snapshot path given")
        data = json.loads(source.read_text())
        self.companies = {}
        for c in data["companies"]:
            company = Company.from_dict(c)
            self.companies[company.realm_id] = company
        self._realm_seq = int(data.get("realm_seq", 0))
        self.oauth.load(data.get("oauth", {}))


def _id_key(id_: str) -> tuple[int, str]:
    return (0, f"{int(id_):020d}") if id_.isdigit() else (1, id_)
