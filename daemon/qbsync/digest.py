"""The digest of a QuickBooks object, computed in the daemon: the same JSON value as
`qbsync.qbo_digest(type, object)` (0002) computes in PostgreSQL, so that a push sends
PostgreSQL a few fields instead of the whole object (which would cost the daemon its JSON
encoding and PostgreSQL its parsing and a set-based digest, per pushed row).

Drift detection (0005) still digests QuickBooks' CDC objects in SQL and compares the two
field by field with jsonb equality, under which numbers compare by value (12.5 = 12.50).
Whenever an object holds a value whose SQL text or numeric conversion this module would
have to imitate (a number where text is expected, a string where a number is, a non-object
line...), `digest` returns None and the caller sends the object for SQL to digest, as
before. (A JSON number is read as a Python float and sent back as its shortest repr, the
same decimal value for any number of up to 15 significant digits: money and quantities.)
"""

from __future__ import annotations

import math
from typing import Any

TRANSACTION_TYPES = frozenset({"Invoice", "CreditMemo", "RefundReceipt", "Payment"})


class _Unsure(Exception):
    """A value whose conversion is left to PostgreSQL."""


def _text(value: Any) -> str | None:
    """`->>` of a JSON value: the string itself; NULL for a missing key or JSON null."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise _Unsure


def _number(value: Any) -> int | float | None:
    """`(->>)::numeric` of a JSON number (a string, or a non-finite float, is left to SQL)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _Unsure
    if isinstance(value, float) and not math.isfinite(value):
        raise _Unsure
    return value


def _boolean(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    raise _Unsure


def _get(obj: Any, *path: str | int) -> Any:
    """`obj->a->b…`: None as soon as a step is not an object (or, for an int, an array)."""
    for step in path:
        if isinstance(step, int):
            if not isinstance(obj, list) or step >= len(obj):
                return None
            obj = obj[step]
        elif isinstance(obj, dict):
            obj = obj.get(step)
        else:
            return None
    return obj


def _stripped(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


def _lines(obj: dict[str, Any]) -> list[dict[str, Any]] | None:
    if "Line" not in obj:
        return None
    lines = obj["Line"]
    if not isinstance(lines, list):  # JSON null included: SQL raises on it
        raise _Unsure
    out = []
    for line in lines:
        if not isinstance(line, dict):
            raise _Unsure
        if _text(line.get("DetailType")) == "SubTotalLineDetail":
            continue
        detail = line.get("SalesItemLineDetail")
        out.append(_stripped({
            "Amount": _number(line.get("Amount")),
            "Item": _text(_get(detail, "ItemRef", "value")),
            "Qty": _number(_get(detail, "Qty")),
            "TaxCode": _text(_get(detail, "TaxCodeRef", "value")),
            "Linked": _text(_get(line, "LinkedTxn", 0, "TxnId")),
        }))
    return out or None


def marked_voided(qbo_type: str, obj: Any) -> Any:
    """The object with ``Voided: true`` when it is a voided transaction as QuickBooks returns
    one: nothing marks it but its zero total and the "Voided" it puts before PrivateNote
    (Intuit's invoice and payment void samples, tests/fixtures/qbo). Drift detection and the
    digest of a void read ``Voided``; qbsync.reconcile recognises the same two signs."""
    if (qbo_type not in TRANSACTION_TYPES or not isinstance(obj, dict) or "Voided" in obj
            or obj.get("status") == "Deleted"):
        return obj
    note, total = obj.get("PrivateNote"), obj.get("TotalAmt")
    if (isinstance(note, str) and note.startswith("Voided") and isinstance(total, int | float)
            and not isinstance(total, bool) and total == 0):
        return {**obj, "Voided": True}
    return obj


def digest(qbo_type: str, obj: Any) -> dict[str, Any] | None:
    """qbsync.qbo_digest(qbo_type, obj), or None when PostgreSQL should compute it."""
    if not isinstance(obj, dict):
        return None
    try:
        if qbo_type in TRANSACTION_TYPES:
            return _stripped({
                "TotalAmt": _number(obj.get("TotalAmt")),
                "CustomerRef": _text(_get(obj, "CustomerRef", "value")),
                "DocNumber": _text(obj.get("DocNumber")),
                "TxnDate": _text(obj.get("TxnDate")),
                "Voided": True if _boolean(obj.get("Voided")) else None,
                "Lines": _lines(obj),
            })
        if qbo_type == "Customer":
            return _stripped({
                "DisplayName": _text(obj.get("DisplayName")),
                "Email": _text(_get(obj, "PrimaryEmailAddr", "Address")),
                "Active": _boolean(obj.get("Active")),
            })
        if qbo_type == "Item":
            return _stripped({
                "Name": _text(obj.get("Name")),
                "Sku": _text(obj.get("Sku")),
                "UnitPrice": _number(obj.get("UnitPrice")),
                "Active": _boolean(obj.get("Active")),
            })
        return {"SyncToken": _text(obj.get("SyncToken"))}
    except _Unsure:
        return None
