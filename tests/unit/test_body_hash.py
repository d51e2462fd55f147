"""sync.body_hash: what entity_map keeps of a pushed body to skip an unchanged one, and
sync.unchanged: when a push may be skipped."""

from __future__ import annotations

import uuid

from qbsync.decide import body_hash, unchanged
from qbsync.model import UNCHANGED, Mapped, Row

BODY = {"DisplayName": "Μαρία Κωνσταντινίδου (#1)", "PrimaryEmailAddr": {"Address": "m@x.gr"},
        "Line": [{"Amount": 12.9, "Qty": 2}, {"Amount": 4.9}]}


def row(**kw: object) -> Row:
    values: dict = {"id": 1, "entity": "customer", "key": "1", "attempts": 1,
                    "request_id": uuid.uuid4(), **kw}
    return Row(**values)


def test_key_order_does_not_matter_values_do() -> None:
    reordered = {"Line": BODY["Line"], "PrimaryEmailAddr": {"Address": "m@x.gr"},
                 "DisplayName": BODY["DisplayName"]}
    assert body_hash("Customer", BODY) == body_hash("Customer", reordered)
    assert body_hash("Customer", BODY) != body_hash("Item", BODY)
    assert body_hash("Customer", BODY) != body_hash("Customer", {**BODY, "DisplayName": "x"})
    lines = {**BODY, "Line": list(reversed(BODY["Line"]))}  # array order is content
    assert body_hash("Customer", BODY) != body_hash("Customer", lines)
    assert body_hash("Customer", {"n": 10**30}) == body_hash("Customer", {"n": 10**30})


def test_only_an_active_unforced_first_try_with_the_same_hash_is_skipped() -> None:
    h = body_hash("Customer", BODY)
    same = Mapped("7", "0", None, "active", h)
    skipped = unchanged(row(), same, h)
    assert skipped is not None
    assert skipped.operation == UNCHANGED
    assert "unchanged" in skipped.reason
    assert "7" in skipped.reason
    assert unchanged(row(force=True), same, h) is None
    assert unchanged(row(attempts=2), same, h) is None
    assert unchanged(row(), None, h) is None
    assert unchanged(row(), Mapped("7", "0", None, "active", None), h) is None
    assert unchanged(row(), Mapped("7", "0", None, "deleted", h), h) is None
    assert unchanged(row(), Mapped("7", "0", None, "voided", h), h) is None
    assert unchanged(row(), same, body_hash("Customer", {**BODY, "DisplayName": "x"})) is None
