"""The daemon's digest of a QuickBooks object (qbsync/digest.py) is the value
qbsync.qbo_digest computes in SQL, which drift detection compares it with; where it is
unsure it declines (None) and the object goes to SQL as before."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

from qbsync.digest import digest

INVOICE: dict[str, Any] = {
    "Id": "17", "SyncToken": "0", "DocNumber": "DX-2026-000042", "TxnDate": "2026-11-25",
    "TotalAmt": 38.9, "Balance": 38.9, "CustomerRef": {"value": "5", "name": "Γιώργος"},
    "PrivateNote": "x", "Line": [
        {"Id": "1", "LineNum": 1, "Amount": 12.5, "DetailType": "SalesItemLineDetail",
         "SalesItemLineDetail": {"ItemRef": {"value": "3"}, "Qty": 2, "UnitPrice": 6.25,
                                 "TaxCodeRef": {"value": "24"}}},
        {"Id": "2", "LineNum": 2, "Amount": -1.25, "DetailType": "SalesItemLineDetail",
         "SalesItemLineDetail": {"ItemRef": {"value": "9"}, "Qty": 0.5,
                                 "TaxCodeRef": {"value": "13"}}},
        {"Amount": 11.25, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}},
        {"Amount": 4.9, "DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {}},
    ],
}
PAYMENT: dict[str, Any] = {
    "Id": "30", "TotalAmt": 100, "CustomerRef": {"value": 5}, "TxnDate": "2026-11-25",
    "Line": [{"Amount": 100, "LinkedTxn": [{"TxnId": "17", "TxnType": "Invoice"}]}],
}

CASES: list[tuple[str, Any]] = [
    ("Invoice", INVOICE),
    ("Invoice", {**INVOICE, "Voided": True, "Line": []}),
    ("Invoice", {**{k: v for k, v in INVOICE.items() if k != "Line"}, "Voided": False,
                 "DocNumber": None}),
    ("CreditMemo", {**INVOICE, "CustomerRef": "not an object"}),
    ("Payment", PAYMENT),
    ("RefundReceipt", {"TotalAmt": 0, "Line": [{"LinkedTxn": {"TxnId": "1"}}]}),
    ("Customer", {"DisplayName": "Γιώργος Π. (#42)", "PrimaryEmailAddr": {"Address": "g@x.gr"},
                  "Active": True}),
    ("Customer", {"DisplayName": "Guest", "Active": False, "PrimaryEmailAddr": None}),
    ("Item", {"Name": "Μέλι (SKU-1)", "Sku": "SKU-1", "UnitPrice": 12.4, "Active": True}),
    ("Item", {"Name": "Fee", "UnitPrice": 0}),
    ("Account", {"SyncToken": "3"}),
    ("Account", {}),
]

UNSURE: list[tuple[str, Any]] = [
    ("Invoice", {**INVOICE, "TotalAmt": "38.90"}),
    ("Invoice", {**INVOICE, "Voided": "true"}),
    ("Invoice", {**INVOICE, "Line": {"Amount": 1}}),
    ("Invoice", {**INVOICE, "Line": ["x"]}),
    ("Invoice", {**INVOICE, "Line": None}),
    ("Invoice", {**INVOICE, "DocNumber": 4.5}),
    ("Item", {"Name": "x", "UnitPrice": float("nan")}),
    ("Customer", "not an object"),
]


@pytest.mark.parametrize(("qbo_type", "obj"), CASES)
def test_digest_is_what_sql_computes(db: psycopg.Connection, qbo_type: str, obj: Any) -> None:
    ours = digest(qbo_type, obj)
    assert ours is not None
    same, theirs = db.execute(
        "SELECT %s::jsonb = qbsync.qbo_digest(%s, %s::jsonb), qbsync.qbo_digest(%s, %s::jsonb)",
        (json.dumps(ours), qbo_type, json.dumps(obj), qbo_type, json.dumps(obj))).fetchone() \
        or (None, None)
    assert same, (ours, theirs)


@pytest.mark.parametrize(("qbo_type", "obj"), UNSURE)
def test_digest_declines_what_sql_would_convert(qbo_type: str, obj: Any) -> None:
    assert digest(qbo_type, obj) is None
