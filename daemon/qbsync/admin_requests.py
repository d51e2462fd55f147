"""The daemon's side of admin requests (`qbsync.admin_requests`, migration 0004).

A DBA or the CLI asks with the SQL functions ``request_report`` or
``request_connection_test`` (schema qbsync); that inserts a pending request and NOTIFYs
``qbsync_wakeup``. The daemon calls :func:`handle_pending_requests` when it wakes up (and on
its polling backstop): it claims pending requests (``FOR UPDATE SKIP LOCKED`` inside
``qbsync.claim_admin_requests``, so several daemons never run one twice; a request left
``running`` by a daemon that died is claimed again after 10 minutes), calls QuickBooks with
no transaction open, and records the outcome:

* ``report``: ``ProfitAndLoss`` for the request's dates, stored with the shop's own revenue
  for the same dates by ``qbsync.store_report`` (see ``qbsync.report_comparison``);
* ``connection_test``: ``CompanyInfo`` and ``Preferences``; the result holds the company
  name, realm, home currency and the round trip in milliseconds;
* ``reconcile``: QuickBooks' transactions dated in the request's period (one paginated query
  per type), then the mapped objects that query did not return, read by Id (deleted? dated
  elsewhere?), stored in ``qbsync.reconcile_items``; ``qbsync.finish_reconcile`` compares
  them with the shop's ledger. The result holds the run id and the totals per type.
* ``refresh_settings`` (``SELECT qbsync.request_settings_refresh ()``): the company's
  settings are looked up again, as at daemon start (the caller's ``refresh_settings``); rows
  waiting for a setting found go on at once. The result says what was saved or removed,
  what is still missing (and how many rows wait for it), what QuickBooks refused, and
  tax-rate ties.

The request ends ``done`` with its result, or ``failed`` with QuickBooks' own message
(``QboError.describe()``), e.g. ``QuickBooks 3200 AuthenticationFailed: ...``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import asyncpg

from .qbo.client import QboClient
from .qbo.errors import NotFound, QboError
from .queries import load as load_queries

log = logging.getLogger("qbsync.admin")

#: Bound on one request's QuickBooks calls (a report over a long period can be slow).
REQUEST_TIMEOUT = 120.0
#: QuickBooks transaction types a reconciliation may read, and the reads by Id it may make.
RECONCILE_TYPES = frozenset({"Invoice", "Payment", "RefundReceipt", "CreditMemo", "SalesReceipt"})
RECONCILE_MAX_READS = 100
Q = load_queries()

class RequestFailed(Exception):
    """A request that cannot be run as asked (bad parameters)."""


async def handle_pending_requests(
    pool: asyncpg.Pool,
    client: QboClient,
    realm_id: str,
    *,
    worker: str = "qbsync",
    limit: int = 5,
    request_timeout: float = REQUEST_TIMEOUT,
    refresh_settings: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> int:
    """Claim and answer up to ``limit`` pending admin requests; returns how many were handled
    (done or failed). Database errors propagate (the caller's loop reconnects); QuickBooks
    errors and timeouts fail the request, with QuickBooks' message, and never escape.
    ``refresh_settings`` looks the company's settings up again and returns the summary."""
    rows = await pool.fetch(Q.claim_admin_requests, worker, limit)
    for row in rows:
        request_id, kind = row["id"], row["kind"]
        params: dict[str, Any] = json.loads(row["params"] or "{}")
        try:
            async with asyncio.timeout(request_timeout):
                if kind == "report":
                    result = await _report(pool, client, realm_id, request_id, params)
                elif kind == "connection_test":
                    result = await _connection_test(client, realm_id)
                elif kind == "reconcile":
                    result = await _reconcile(pool, client, realm_id, request_id, params)
                elif kind == "refresh_settings" and refresh_settings is not None:
                    result = {"realm_id": realm_id, **await refresh_settings()}
                else:
                    raise RequestFailed(f"unknown admin request kind {kind!r}")
        except QboError as exc:
            log.warning("admin request %s (%s) failed: %s", request_id, kind, exc.describe())
            await pool.fetchval(Q.fail_admin_request, request_id, worker, exc.describe(),
                                json.dumps({"realm_id": realm_id, "status": exc.status,
                                            "code": exc.code, "intuit_tid": exc.intuit_tid,
                                            "response_ms": exc.response_ms}))
        except TimeoutError:
            message = f"QuickBooks did not answer within {request_timeout:g} s"
            log.warning("admin request %s (%s) failed: %s", request_id, kind, message)
            await pool.fetchval(Q.fail_admin_request, request_id, worker, message, None)
        except (RequestFailed, asyncpg.PostgresError) as exc:
            # a bad parameter, or the shop's revenue function failed: the request fails,
            # the daemon goes on
            log.warning("admin request %s (%s) failed: %s", request_id, kind, exc)
            await pool.fetchval(Q.fail_admin_request, request_id, worker,
                                f"{type(exc).__name__}: {exc}", None)
        else:
            await pool.fetchval(Q.finish_admin_request, request_id, worker, json.dumps(result))
            log.info("admin request %s (%s) done", request_id, kind)
    return len(rows)


async def _report(pool: asyncpg.Pool, client: QboClient, realm_id: str, request_id: int,
                  params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("report", "ProfitAndLoss")
    if name != "ProfitAndLoss":
        raise RequestFailed(f"report {name!r} is not supported (only ProfitAndLoss)")
    start, end = params.get("start_date"), params.get("end_date")
    if not start or not end:
        raise RequestFailed("a report request needs start_date and end_date")
    method = params.get("accounting_method", "Accrual")
    started = time.perf_counter()
    report = await client.report(name, start_date=start, end_date=end,
                                 accounting_method=method)
    elapsed = int((time.perf_counter() - started) * 1000)
    stored = await pool.fetchrow(Q.store_report, request_id, realm_id,
                                 params.get("period", "custom"), start, end, method,
                                 json.dumps(report))
    assert stored is not None
    return {
        "report_id": stored["id"],
        "realm_id": realm_id,
        "period": params.get("period", "custom"),
        "start_date": start,
        "end_date": end,
        "qbo_income": stored["qbo_income"],
        "shop_revenue_net": stored["shop_revenue_net"],
        "shop_revenue_gross": stored["shop_revenue_gross"],
        "shop_orders": stored["shop_orders"],
        "difference": stored["difference"],
        "response_ms": elapsed,
    }


async def _connection_test(client: QboClient, realm_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    info = await client.company_info()
    round_trip = int((time.perf_counter() - started) * 1000)
    started = time.perf_counter()
    prefs = await client.preferences()
    prefs_ms = int((time.perf_counter() - started) * 1000)
    currency = ((prefs.get("CurrencyPrefs") or {}).get("HomeCurrency") or {}).get("value")
    return {
        "ok": True,
        "realm_id": realm_id,
        "company_name": info.get("CompanyName"),
        "legal_name": info.get("LegalName"),
        "country": info.get("Country"),
        "home_currency": currency,
        "round_trip_ms": round_trip,
        "preferences_ms": prefs_ms,
    }


async def _reconcile(pool: asyncpg.Pool, client: QboClient, realm_id: str, request_id: int,
                     params: dict[str, Any]) -> dict[str, Any]:
    try:
        start = date.fromisoformat(str(params.get("from_date")))
        end = date.fromisoformat(str(params.get("to_date")))
    except ValueError as exc:
        raise RequestFailed(f"a reconcile request needs from_date and to_date: {exc}") from exc
    if start > end:
        raise RequestFailed(f"from_date {start} is after to_date {end}")
    types = [str(t) for t in params.get("types") or ("Invoice", "Payment")]
    unknown = sorted(set(types) - RECONCILE_TYPES)
    if unknown:
        raise RequestFailed(f"cannot reconcile QuickBooks type(s) {', '.join(unknown)}")
    started = time.perf_counter()
    run_id = await pool.fetchval(Q.reconcile_start, request_id, realm_id, start.isoformat(),
                                 end.isoformat(), types)
    found: dict[str, int] = {}
    for qbo_type in types:
        objects = await client.query_all(
            f"SELECT * FROM {qbo_type} WHERE TxnDate >= '{start.isoformat()}' "
            f"AND TxnDate <= '{end.isoformat()}'")
        found[qbo_type] = len(objects)
        await pool.fetchval(Q.reconcile_store_items, run_id, qbo_type, json.dumps(objects),
                            "query")
    reads = 0
    for row in await pool.fetch(Q.reconcile_unseen, run_id, RECONCILE_MAX_READS):
        qbo_type, qbo_id = row["qbo_type"], row["qbo_id"]
        try:
            obj = await client.read(qbo_type, qbo_id)
        except NotFound:
            obj = {"Id": qbo_id, "status": "Deleted"}
        reads += 1
        await pool.fetchval(Q.reconcile_store_items, run_id, qbo_type, json.dumps([obj]),
                            "read")
    summary = json.loads(await pool.fetchval(Q.reconcile_finish, run_id))
    return {**summary, "realm_id": realm_id, "found": found, "reads": reads,
            "elapsed_ms": int((time.perf_counter() - started) * 1000)}
