"""CDC over the "after the invoice" entities, and simulated accountant edits in QuickBooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from qbsync.emulator import Emulator
from qbsync.emulator.faults import QBOFault

from .helpers import Api, fault_of, line


async def _cdc(api: Api, entities: str, since: str) -> dict[str, list[dict[str, Any]]]:
    r = await api.get("cdc", entities=entities, changedSince=since)
    assert r.status_code == 200, r.text
    out: dict[str, list[dict[str, Any]]] = {}
    for q in r.json()["CDCResponse"][0]["QueryResponse"]:
        for name, objs in q.items():
            if isinstance(objs, list):
                out[name] = objs
    return out


def _pay(customer_id: str, invoice_id: str, amount: float) -> dict[str, Any]:
    return {
        "CustomerRef": {"value": customer_id},
        "TotalAmt": amount,
        "Line": [{"Amount": amount, "LinkedTxn": [{"TxnId": invoice_id, "TxnType": "Invoice"}]}],
    }


async def _window(api: Api) -> str:
    api.emu.advance_time(60)
    since = api.emu.clock.iso()
    api.emu.advance_time(5)
    return since


async def test_cdc_reports_payments_refunds_credit_memos(api: Api) -> None:
    emu, realm = api.emu, api.realm
    c = await api.customer("C")
    it = await api.item("I")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 100)])).json()["Invoice"]
    gone = (await api.invoice(c["Id"], [line(it["Id"], 1, 5)])).json()["Invoice"]
    since = await _window(api)
    pay = (await api.ok("payment", _pay(c["Id"], inv["Id"], 24)))["Payment"]
    doomed = (await api.ok("payment", _pay(c["Id"], inv["Id"], 1)))["Payment"]
    await api.ok("payment", {"Id": doomed["Id"], "SyncToken": "0"}, operation="delete")
    rr = await api.ok(
        "refundreceipt",
        {
            "CustomerRef": {"value": c["Id"]},
            "DepositToAccountRef": {"value": "10"},
            "Line": [line(it["Id"], 1, 5)],
        },
    )
    cm = await api.ok(
        "creditmemo", {"CustomerRef": {"value": c["Id"]}, "Line": [line(it["Id"], 1, 5)]}
    )
    emu.void_entity(realm, "Invoice", gone["Id"])
    got = await _cdc(api, "Invoice,Payment,RefundReceipt,CreditMemo,Customer", since)
    assert "Customer" not in got
    invoices = {x["Id"]: x for x in got["Invoice"]}
    assert invoices[inv["Id"]]["Balance"] == 100  # paid 24 of 124
    assert invoices[inv["Id"]]["LinkedTxn"] == [{"TxnId": pay["Id"], "TxnType": "Payment"}]
    assert invoices[inv["Id"]]["SyncToken"] == "3"  # two payments applied, one removed
    # as real voided invoices: zero amounts and the note, no other mark
    assert invoices[gone["Id"]]["PrivateNote"] == "Voided"
    assert "Voided" not in invoices[gone["Id"]]
    assert invoices[gone["Id"]]["TotalAmt"] == 0
    payments = {x["Id"]: x for x in got["Payment"]}
    assert payments[pay["Id"]]["TotalAmt"] == 24
    assert payments[doomed["Id"]] == {
        "domain": "QBO",
        "status": "Deleted",
        "Id": doomed["Id"],
        "MetaData": {"LastUpdatedTime": payments[doomed["Id"]]["MetaData"]["LastUpdatedTime"]},
    }
    assert [x["Id"] for x in got["RefundReceipt"]] == [rr["RefundReceipt"]["Id"]]
    assert [x["Id"] for x in got["CreditMemo"]] == [cm["CreditMemo"]["Id"]]


async def test_edit_entity_like_the_ui(api: Api) -> None:
    emu, realm = api.emu, api.realm
    c = await api.customer("C")
    it = await api.item("I")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 100)], DocNumber="D1")).json()["Invoice"]
    since = await _window(api)
    edited = emu.edit_entity(realm, "Invoice", inv["Id"], {"Line": [line(it["Id"], 3, 100)]})
    assert (edited["SyncToken"], edited["TotalAmt"], edited["DocNumber"]) == ("1", 372, "D1")
    assert edited["MetaData"]["LastUpdatedTime"] > inv["MetaData"]["LastUpdatedTime"]
    assert edited["MetaData"]["CreateTime"] == inv["MetaData"]["CreateTime"]
    # the daemon's copy is now stale
    r = await api.post("invoice", {"Id": inv["Id"], "SyncToken": "0", "sparse": True})
    assert fault_of(r)["code"] == "5010"
    got = await _cdc(api, "Invoice", since)
    assert got["Invoice"][0]["TotalAmt"] == 372
    # UI edits obey the same rules
    with pytest.raises(QBOFault) as exc:
        emu.edit_entity(realm, "Invoice", inv["Id"], {"DocNumber": "x" * 30})
    assert exc.value.code == "2050"
    # validate=False stores the change verbatim
    raw = emu.edit_entity(realm, "Customer", c["Id"], {"Notes": "x" * 3000}, validate=False)
    assert (raw["SyncToken"], len(raw["Notes"])) == ("1", 3000)
    with pytest.raises(KeyError):
        emu.edit_entity(realm, "Invoice", "999", {})
    with pytest.raises(ValueError, match="unknown entity"):
        emu.edit_entity(realm, "Nope", "1", {})
    # a payment received in QuickBooks directly
    pay = emu.create_entity(realm, "Payment", _pay(c["Id"], inv["Id"], 372))
    assert pay["UnappliedAmt"] == 0
    assert emu.get_entity(realm, "Invoice", inv["Id"])["Balance"] == 0  # type: ignore[index]
    # UI delete of a paid invoice unapplies the payment (the API refuses, see test_payments)
    stub = emu.delete_entity(realm, "Invoice", inv["Id"])
    assert stub["status"] == "Deleted"
    pay_after = emu.get_entity(realm, "Payment", pay["Id"])
    assert pay_after is not None
    assert (pay_after["Line"], pay_after["UnappliedAmt"], pay_after["SyncToken"]) == ([], 372, "1")
    got = await _cdc(api, "Invoice,Payment", since)
    assert got["Invoice"][0]["status"] == "Deleted"
    assert got["Payment"][0]["UnappliedAmt"] == 372
    # "deleting" a customer or item makes it inactive
    out = emu.delete_entity(realm, "Item", it["Id"])
    assert (out["Active"], out["SyncToken"]) == (False, "1")
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 1)])
    assert fault_of(r)["code"] == "610"  # the item is inactive now


async def test_void_entity(api: Api) -> None:
    emu, realm = api.emu, api.realm
    c = await api.customer("C")
    it = await api.item("I")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 100)])).json()["Invoice"]
    pay = emu.create_entity(realm, "Payment", _pay(c["Id"], inv["Id"], 24))
    with pytest.raises(QBOFault) as exc:
        emu.void_entity(realm, "Invoice", inv["Id"])
    assert exc.value.code == "6000"
    voided = emu.void_entity(realm, "Payment", pay["Id"])
    assert (voided["TotalAmt"], voided["PrivateNote"]) == (0, "Voided")
    voided_invoice = emu.void_entity(realm, "Invoice", inv["Id"])
    assert (voided_invoice["TotalAmt"], voided_invoice["PrivateNote"]) == (0, "Voided")
    with pytest.raises(QBOFault):
        emu.void_entity(realm, "Customer", c["Id"])


async def test_merge_customers(api: Api) -> None:
    emu, realm = api.emu, api.realm
    a = await api.customer("Alice Dup", PrimaryEmailAddr={"Address": "a@example.com"})
    b = await api.customer("Alice")
    kid = await api.customer("Alice's shop", ParentRef={"value": a["Id"]})
    it = await api.item("I")
    inv = (await api.invoice(a["Id"], [line(it["Id"], 1, 100)])).json()["Invoice"]
    other = (await api.invoice(b["Id"], [line(it["Id"], 1, 5)])).json()["Invoice"]
    pay = (await api.ok("payment", _pay(a["Id"], inv["Id"], 24)))["Payment"]
    since = await _window(api)
    result = emu.merge_customers(realm, a["Id"], b["Id"])
    assert result["moved"] == {
        "Invoice": [inv["Id"]],
        "Payment": [pay["Id"]],
        "Customer": [kid["Id"]],
    }
    assert fault_of(await api.get(f"customer/{a['Id']}"))["code"] == "610"
    moved = (await api.get(f"invoice/{inv['Id']}")).json()["Invoice"]
    assert moved["CustomerRef"] == {"value": b["Id"], "name": "Alice"}
    assert moved["Balance"] == 100  # payments stay applied
    got = await _cdc(api, "Customer,Invoice,Payment", since)
    customers = {x["Id"]: x for x in got["Customer"]}
    assert customers[a["Id"]]["status"] == "Deleted"
    assert customers[b["Id"]]["SyncToken"] == "1"
    assert customers[kid["Id"]]["ParentRef"]["value"] == b["Id"]
    assert [x["Id"] for x in got["Invoice"]] == [inv["Id"]]  # not `other`
    assert got["Payment"][0]["CustomerRef"]["value"] == b["Id"]
    assert other["Id"] not in [x["Id"] for x in got["Invoice"]]
    # the merged-away name is free again; B can take payments for the moved invoice
    assert (await api.post("customer", {"DisplayName": "Alice Dup"})).status_code == 200
    await api.ok("payment", _pay(b["Id"], inv["Id"], 100))
    with pytest.raises(KeyError):
        emu.merge_customers(realm, a["Id"], b["Id"])
    with pytest.raises(ValueError, match="into itself"):
        emu.merge_customers(realm, b["Id"], b["Id"])


async def test_cdc_window_and_cap_with_payments(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 10000)])).json()["Invoice"]
    since = await _window(api)
    for start in range(0, 1005, 30):
        n = min(30, 1005 - start)
        items = [
            {"bId": str(i), "operation": "create", "Payment": _pay(c["Id"], inv["Id"], 1)}
            for i in range(n)
        ]
        await api.ok("batch", {"BatchItemRequest": items})
    got = await _cdc(api, "Payment,Invoice", since)
    # 1005 payments + the invoice (updated by each): capped at 1000 objects, oldest first
    assert len(got["Payment"]) + len(got.get("Invoice", [])) == 1000
    old = api.emu.clock.iso(api.emu.clock.now() - 31 * 86400)
    r = await api.get("cdc", entities="Payment", changedSince=old)
    assert (fault_of(r)["code"], fault_of(r)["element"]) == ("6000", "changedSince")


async def test_control_endpoints_for_drift(
    emu: Emulator, http: httpx.AsyncClient, api: Api
) -> None:
    realm = api.realm
    c = await api.customer("C")
    b = await api.customer("B")
    it = await api.item("I")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 100)])).json()["Invoice"]
    base = f"/_emulator/entities/{realm}"
    r = await http.post(f"{base}/payment", json=_pay(c["Id"], inv["Id"], 24))
    assert r.status_code == 200, r.text
    pay = r.json()["Payment"]
    r = await http.post(f"{base}/payment", json=_pay(c["Id"], inv["Id"], 1000))
    assert r.status_code == 400
    assert r.json()["Fault"]["Error"][0]["code"] == "6000"
    r = await http.get(f"{base}/Invoice/{inv['Id']}")
    assert r.json()["Invoice"]["Balance"] == 100
    r = await http.post(f"{base}/invoice/{inv['Id']}/edit", json={"PrivateNote": "by accountant"})
    assert r.json()["Invoice"]["SyncToken"] == "2"
    r = await http.post(
        f"{base}/invoice/{inv['Id']}/edit", params={"validate": "false"}, json={"Foo": 1}
    )
    assert r.json()["Invoice"]["Foo"] == 1
    r = await http.post(f"{base}/invoice/{inv['Id']}/void")
    assert r.status_code == 400
    assert r.json()["Fault"]["Error"][0]["code"] == "6000"
    r = await http.post(f"{base}/payment/{pay['Id']}/void")
    assert r.json()["Payment"]["TotalAmt"] == 0
    r = await http.post(f"{base}/payment/{pay['Id']}/delete")
    assert r.json()["Payment"]["status"] == "Deleted"
    r = await http.post(f"{base}/invoice/{inv['Id']}/frobnicate")
    assert r.status_code == 400
    r = await http.get(f"{base}/invoice/999")
    assert r.status_code == 400
    r = await http.post(
        "/_emulator/merge-customers",
        json={"realm_id": realm, "from_id": c["Id"], "into_id": b["Id"]},
    )
    assert r.json()["moved"] == {"Invoice": [inv["Id"]]}
    assert emu.get_entity(realm, "Customer", c["Id"]) is None


async def test_snapshot_keeps_payment_links(api: Api, tmp_path: Path) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 100)])).json()["Invoice"]
    await api.ok("payment", _pay(c["Id"], inv["Id"], 24))
    path = api.emu.save_snapshot(tmp_path / "snap.json")
    emu2 = Emulator(limits=False, snapshot_path=path)
    with pytest.raises(QBOFault):  # the applied-payments index was rebuilt
        emu2.void_entity(api.realm, "Invoice", inv["Id"])
    out = emu2.create_entity(api.realm, "Payment", _pay(c["Id"], inv["Id"], 100))
    assert out["Id"] == "2"
    assert emu2.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 0  # type: ignore[index]
