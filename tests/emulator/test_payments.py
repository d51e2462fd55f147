"""ReceivePayment (Payment), PaymentMethod and their effect on invoices and credit memos."""

from __future__ import annotations

from typing import Any

from .helpers import Api, fault_of, line


async def _setup(api: Api, total: float = 100) -> tuple[dict[str, Any], dict[str, Any]]:
    """A customer and an invoice of ``total`` net at 24 % VAT (TotalAmt = total x 1.24)."""
    c = await api.customer("Payer")
    it = await api.item("Goods")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, total)], DocNumber="P-1")).json()
    return c, inv["Invoice"]


def _payment(customer_id: str, total: float, *links: tuple[str, float], **extra: Any) -> Any:
    lines = [
        {"Amount": amount, "LinkedTxn": [{"TxnId": tid, "TxnType": "Invoice"}]}
        for tid, amount in links
    ]
    return {"CustomerRef": {"value": customer_id}, "TotalAmt": total, "Line": lines, **extra}


async def test_payment_methods_and_deposit_accounts_seeded(api: Api) -> None:
    r = await api.query("select * from PaymentMethod")
    names = {m["Name"]: m for m in r.json()["QueryResponse"]["PaymentMethod"]}
    assert {"Cash", "Credit Card", "Bank Transfer"} <= set(names)
    assert names["Credit Card"]["Type"] == "CREDIT_CARD"
    assert names["Cash"]["Type"] == "NON_CREDIT_CARD"
    r = await api.get(f"paymentmethod/{names['Cash']['Id']}")
    assert r.json()["PaymentMethod"]["Name"] == "Cash"
    pm = (await api.ok("paymentmethod", {"Name": "Κάρτα IRIS"}))["PaymentMethod"]
    assert pm["Type"] == "NON_CREDIT_CARD"
    assert pm["Active"] is True
    r = await api.post("paymentmethod", {"Name": "cash"})
    assert fault_of(r)["code"] == "6240"
    r = await api.post("paymentmethod", {"Name": "x" * 32})
    assert fault_of(r)["code"] == "2050"
    r = await api.post("paymentmethod", {"Name": "Bad", "Type": "CHEQUE"})
    assert fault_of(r)["code"] == "6000"
    r = await api.post("paymentmethod", {"Id": pm["Id"], "SyncToken": "0"}, operation="delete")
    assert fault_of(r)["code"] == "500"

    r = await api.query("select * from Account where AccountType = 'Bank'")
    bank = r.json()["QueryResponse"]["Account"]
    assert [a["Name"] for a in bank] == ["Τράπεζα"]
    r = await api.query("select * from Account where AccountSubType = 'UndepositedFunds'")
    assert r.json()["QueryResponse"]["Account"][0]["Name"] == "Undeposited Funds"


async def test_payment_applies_to_invoice(api: Api) -> None:
    c, inv = await _setup(api)
    assert inv["TotalAmt"] == 124
    p = (await api.ok("payment", _payment(c["Id"], 50, (inv["Id"], 50))))["Payment"]
    assert p["Id"] == "1"
    assert p["SyncToken"] == "0"
    assert p["TotalAmt"] == 50
    assert p["UnappliedAmt"] == 0
    assert p["CustomerRef"] == {"value": c["Id"], "name": "Payer"}
    assert p["DepositToAccountRef"] == {"value": "8", "name": "Undeposited Funds"}
    assert p["Line"] == [{"Amount": 50, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}]
    assert p["TxnDate"] == api.emu.clock.today()

    after = (await api.get(f"invoice/{inv['Id']}")).json()["Invoice"]
    assert after["Balance"] == 74
    assert after["TotalAmt"] == 124
    assert after["LinkedTxn"] == [{"TxnId": p["Id"], "TxnType": "Payment"}]
    assert after["SyncToken"] == "1"  # the payment changed the invoice
    # so a client still holding SyncToken 0 gets 5010
    r = await api.post(
        "invoice", {"Id": inv["Id"], "SyncToken": "0", "sparse": True, "PrivateNote": "x"}
    )
    assert fault_of(r)["code"] == "5010"

    # second payment settles it, with an overpayment left unapplied
    p2 = (
        await api.ok(
            "payment",
            _payment(
                c["Id"],
                100,
                (inv["Id"], 74),
                DepositToAccountRef={"value": "10"},
                PaymentMethodRef={"value": "4"},
                PaymentRefNum="TRX-778",
                PrivateNote="Τραπεζική μεταφορά",
                TxnDate="2025-03-02",
            ),
        )
    )["Payment"]
    assert p2["UnappliedAmt"] == 26
    assert p2["DepositToAccountRef"] == {"value": "10", "name": "Τράπεζα"}
    assert p2["PaymentMethodRef"] == {"value": "4", "name": "Bank Transfer"}
    assert p2["PaymentRefNum"] == "TRX-778"
    assert p2["TxnDate"] == "2025-03-02"
    after = (await api.get(f"invoice/{inv['Id']}")).json()["Invoice"]
    assert after["Balance"] == 0
    assert [x["TxnId"] for x in after["LinkedTxn"]] == [p["Id"], p2["Id"]]
    # an unapplied payment (no lines) is fine
    p3 = (await api.ok("payment", _payment(c["Id"], 10)))["Payment"]
    assert p3["UnappliedAmt"] == 10
    assert p3["Line"] == []
    # query
    r = await api.query(f"select * from Payment where CustomerRef = '{c['Id']}'")
    assert [x["Id"] for x in r.json()["QueryResponse"]["Payment"]] == ["1", "2", "3"]
    r = await api.query("select count(*) from Payment where TotalAmt > '20'")
    assert r.json()["QueryResponse"]["totalCount"] == 2


async def test_payment_validation(api: Api) -> None:
    c, inv = await _setup(api)
    other = await api.customer("Someone Else")
    it = await api.item("Other goods")
    theirs = (await api.invoice(other["Id"], [line(it["Id"], 1, 10)])).json()["Invoice"]

    async def code(body: Any, **params: Any) -> tuple[str, str]:
        err = fault_of(await api.post("payment", body, **params))
        return err["code"], err["element"]

    assert await code({"TotalAmt": 10}) == ("2020", "CustomerRef")
    assert await code({"CustomerRef": {"value": c["Id"]}}) == ("2020", "TotalAmt")
    assert await code(_payment("999", 10)) == ("2500", "CustomerRef")
    assert await code(_payment(c["Id"], -5)) == ("6000", "TotalAmt")
    # over-applying the invoice (balance 124)
    err = fault_of(await api.post("payment", _payment(c["Id"], 200, (inv["Id"], 124.01))))
    assert (err["code"], err["element"]) == ("6000", "Line.Amount")
    assert "more than its open balance (124" in err["Detail"]
    # two lines on the same invoice add up
    body = _payment(c["Id"], 200, (inv["Id"], 100), (inv["Id"], 30))
    assert await code(body) == ("6000", "Line.Amount")
    # lines applying more than the payment amount
    assert await code(_payment(c["Id"], 50, (inv["Id"], 60))) == ("6000", "TotalAmt")
    # another customer's invoice
    err = fault_of(await api.post("payment", _payment(c["Id"], 10, (theirs["Id"], 10))))
    assert err["code"] == "6000"
    assert "another customer" in err["Detail"]
    # unknown invoice / bad link shapes
    assert await code(_payment(c["Id"], 10, ("999", 10))) == ("2500", "Line.LinkedTxn.TxnId")
    bad_type = {
        "CustomerRef": {"value": c["Id"]},
        "TotalAmt": 10,
        "Line": [{"Amount": 10, "LinkedTxn": [{"TxnId": "1", "TxnType": "Bill"}]}],
    }
    assert await code(bad_type) == ("6000", "Line.LinkedTxn.TxnType")
    no_link = {"CustomerRef": {"value": c["Id"]}, "TotalAmt": 10, "Line": [{"Amount": 10}]}
    assert await code(no_link) == ("2020", "Line.LinkedTxn")
    neg = _payment(c["Id"], 10, (inv["Id"], -1))
    assert await code(neg) == ("6000", "Line.Amount")
    # field rules
    assert await code(_payment(c["Id"], 1, PaymentRefNum="x" * 22)) == ("2050", "PaymentRefNum")
    assert await code(_payment(c["Id"], 1, PrivateNote="x" * 4001)) == ("2050", "PrivateNote")
    assert await code(_payment(c["Id"], 1, DepositToAccountRef={"value": "1"})) == (
        "6000",
        "DepositToAccountRef",
    )
    assert await code(_payment(c["Id"], 1, DepositToAccountRef={"value": "77"})) == (
        "2500",
        "DepositToAccountRef",
    )
    assert await code(_payment(c["Id"], 1, PaymentMethodRef={"value": "77"})) == (
        "2500",
        "PaymentMethodRef",
    )
    assert await code(_payment(c["Id"], 1, TxnDate="2025-13-01")) == ("2010", "TxnDate")
    # nothing was written, the invoice is untouched
    assert api.emu.entities(api.realm, "Payment") == []
    stored = api.emu.get_entity(api.realm, "Invoice", inv["Id"])
    assert stored is not None
    assert (stored["Balance"], stored["SyncToken"]) == (124, "0")
    assert stored["LinkedTxn"] == []


async def test_voided_invoice_cannot_take_payment_and_paid_invoice_cannot_be_voided(
    api: Api,
) -> None:
    c, inv = await _setup(api)
    it = await api.item("More")
    inv2 = (await api.invoice(c["Id"], [line(it["Id"], 1, 10)])).json()["Invoice"]
    await api.ok("invoice", {"Id": inv2["Id"], "SyncToken": "0"}, operation="void")
    err = fault_of(await api.post("payment", _payment(c["Id"], 10, (inv2["Id"], 0.01))))
    assert err["code"] == "6000"
    assert "voided" in err["Detail"]

    p = (await api.ok("payment", _payment(c["Id"], 24, (inv["Id"], 24))))["Payment"]
    r = await api.post("invoice", {"Id": inv["Id"], "SyncToken": "1"}, operation="void")
    err = fault_of(r)
    assert (err["code"], err["element"]) == ("6000", "LinkedTxn")
    assert f"Payment Id={p['Id']}" in err["Detail"]
    r = await api.post("invoice", {"Id": inv["Id"], "SyncToken": "1"}, operation="delete")
    assert fault_of(r)["code"] == "6000"
    # after deleting the payment, the invoice can be voided
    await api.ok("payment", {"Id": p["Id"], "SyncToken": "0"}, operation="delete")
    voided = await api.ok("invoice", {"Id": inv["Id"], "SyncToken": "2"}, operation="void")
    assert voided["Invoice"]["Balance"] == 0
    assert voided["Invoice"]["LinkedTxn"] == []


async def test_update_delete_and_void_payment_restore_balance(api: Api) -> None:
    c, inv = await _setup(api)
    p = (await api.ok("payment", _payment(c["Id"], 100, (inv["Id"], 100))))["Payment"]
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 24  # type: ignore[index]
    # sparse update: apply less
    lines = [{"Amount": 60, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]}]
    p = (await api.ok("payment", {"Id": p["Id"], "SyncToken": "0", "sparse": True, "Line": lines}))[
        "Payment"
    ]
    assert (p["SyncToken"], p["TotalAmt"], p["UnappliedAmt"]) == ("1", 100, 40)
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 64  # type: ignore[index]
    # re-applying up to the full balance counts this payment's own amount as available
    lines[0]["Amount"] = 124
    p = (
        await api.ok(
            "payment",
            {"Id": p["Id"], "SyncToken": "1", "sparse": True, "TotalAmt": 124, "Line": lines},
        )
    )["Payment"]
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 0  # type: ignore[index]
    # full update without Line: the money becomes unapplied
    p = (
        await api.ok(
            "payment",
            {"Id": p["Id"], "SyncToken": "2", "CustomerRef": {"value": c["Id"]}, "TotalAmt": 124},
        )
    )["Payment"]
    assert (p["UnappliedAmt"], p["Line"]) == (124, [])
    invoice = api.emu.get_entity(api.realm, "Invoice", inv["Id"])
    assert invoice is not None
    assert invoice["Balance"] == 124
    assert invoice["LinkedTxn"] == []
    # stale token
    r = await api.post("payment", {"Id": p["Id"], "SyncToken": "0", "sparse": True})
    assert fault_of(r)["code"] == "5010"

    # void (operation=void) and void (Intuit's documented include=void sparse update)
    pa = await api.ok("payment", _payment(c["Id"], 50, (inv["Id"], 50), PrivateNote="cheque"))
    pa = pa["Payment"]
    pb = (await api.ok("payment", _payment(c["Id"], 20, (inv["Id"], 20))))["Payment"]
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 54  # type: ignore[index]
    va = (await api.ok("payment", {"Id": pa["Id"], "SyncToken": "0"}, operation="void"))["Payment"]
    # as Intuit's void sample: the lines go, nothing but the note marks the payment
    assert (va["TotalAmt"], va["UnappliedAmt"], va["Line"]) == (0, 0, [])
    assert "Voided" not in va
    assert va["PrivateNote"] == "Voided - cheque"
    assert va["SyncToken"] == "1"
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 104  # type: ignore[index]
    vb = await api.ok(
        "payment",
        {"Id": pb["Id"], "SyncToken": "0", "sparse": True},
        operation="update",
        include="void",
    )
    assert vb["Payment"]["PrivateNote"] == "Voided"
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 124  # type: ignore[index]
    # a voided payment stays readable but cannot be edited
    r = await api.post("payment", {"Id": pa["Id"], "SyncToken": "1", "sparse": True})
    assert fault_of(r)["code"] == "6000"

    # delete
    pc = (await api.ok("payment", _payment(c["Id"], 24, (inv["Id"], 24))))["Payment"]
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 100  # type: ignore[index]
    r = await api.ok("payment", {"Id": pc["Id"], "SyncToken": "0"}, operation="delete")
    assert r["Payment"] == {"status": "Deleted", "domain": "QBO", "Id": pc["Id"]}
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 124  # type: ignore[index]
    assert fault_of(await api.get(f"payment/{pc['Id']}"))["code"] == "610"


async def test_invoice_update_keeps_payments(api: Api) -> None:
    c, inv = await _setup(api)
    it = api.emu.entities(api.realm, "Item")[0]
    await api.ok("payment", _payment(c["Id"], 100, (inv["Id"], 100)))
    # full update of the invoice (client sends back LinkedTxn/Balance: ignored, recomputed)
    body = {
        "Id": inv["Id"],
        "SyncToken": "1",
        "CustomerRef": {"value": c["Id"]},
        "Line": [line(it["Id"], 2, 100)],
        "Balance": 1,
        "LinkedTxn": [],
    }
    out = (await api.ok("invoice", body))["Invoice"]
    assert (out["TotalAmt"], out["Balance"]) == (248, 148)
    assert out["LinkedTxn"] == [{"TxnId": "1", "TxnType": "Payment"}]
    # a new total below what was paid is refused
    body = {**body, "SyncToken": "2", "Line": [line(it["Id"], 1, 50)]}
    err = fault_of(await api.post("invoice", body))
    assert (err["code"], err["element"]) == ("6000", "TotalAmt")


async def test_payment_applies_credit_memo(api: Api) -> None:
    c, inv = await _setup(api)
    it = api.emu.entities(api.realm, "Item")[0]
    cm = (
        await api.ok(
            "creditmemo", {"CustomerRef": {"value": c["Id"]}, "Line": [line(it["Id"], 1, 20)]}
        )
    )["CreditMemo"]
    assert (cm["TotalAmt"], cm["RemainingCredit"], cm["Balance"]) == (24.8, 24.8, 24.8)
    assert cm["TxnTaxDetail"]["TotalTax"] == 4.8
    body = {
        "CustomerRef": {"value": c["Id"]},
        "TotalAmt": 99.2,
        "Line": [
            {"Amount": 124, "LinkedTxn": [{"TxnId": inv["Id"], "TxnType": "Invoice"}]},
            {"Amount": 24.8, "LinkedTxn": [{"TxnId": cm["Id"], "TxnType": "CreditMemo"}]},
        ],
    }
    p = (await api.ok("payment", body))["Payment"]
    assert p["UnappliedAmt"] == 0
    cm = (await api.get(f"creditmemo/{cm['Id']}")).json()["CreditMemo"]
    assert (cm["RemainingCredit"], cm["Balance"]) == (0, 0)
    assert cm["LinkedTxn"] == [{"TxnId": p["Id"], "TxnType": "Payment"}]
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 0  # type: ignore[index]
    # more credit than the invoices it is applied to
    await api.ok("payment", {"Id": p["Id"], "SyncToken": "0"}, operation="delete")
    body = {**body, "TotalAmt": 0, "Line": [body["Line"][1]]}
    err = fault_of(await api.post("payment", body))
    assert (err["code"], err["element"]) == ("6000", "Line.LinkedTxn")


async def test_payment_and_refund_in_batch(api: Api) -> None:
    c, inv = await _setup(api)
    it = api.emu.entities(api.realm, "Item")[0]
    body = {
        "BatchItemRequest": [
            {"bId": "p", "operation": "create", "Payment": _payment(c["Id"], 24, (inv["Id"], 24))},
            {
                "bId": "r",
                "operation": "create",
                "RefundReceipt": {
                    "CustomerRef": {"value": c["Id"]},
                    "DepositToAccountRef": {"value": "10"},
                    "Line": [line(it["Id"], 1, 10)],
                },
            },
            {
                "bId": "i",
                "operation": "create",
                "Invoice": {"CustomerRef": {"value": c["Id"]}, "Line": [line(it["Id"], 1, 1)]},
            },
            # the invoice created by the previous item is not visible to this one
            {"bId": "p2", "operation": "create", "Payment": _payment(c["Id"], 1, ("2", 1))},
            {"bId": "q", "Query": "select * from Payment"},
            {"bId": "d", "operation": "delete", "Payment": {"Id": "1", "SyncToken": "0"}},
        ]
    }
    items = {i["bId"]: i for i in (await api.ok("batch", body))["BatchItemResponse"]}
    assert items["p"]["Payment"]["UnappliedAmt"] == 0
    assert items["r"]["RefundReceipt"]["TotalAmt"] == 12.4
    assert items["p2"]["Fault"]["Error"][0]["code"] == "2500"
    assert items["q"]["QueryResponse"] == {}  # created earlier in this batch: hidden
    assert items["d"]["Fault"]["Error"][0]["code"] == "610"
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 100  # type: ignore[index]


async def test_requestid_on_payment(api: Api) -> None:
    c, inv = await _setup(api)
    body = _payment(c["Id"], 24, (inv["Id"], 24))
    a = await api.ok("payment", body, requestid="pay-1")
    b = await api.ok("payment", body, requestid="pay-1")
    assert a["Payment"]["Id"] == b["Payment"]["Id"]
    assert len(api.emu.entities(api.realm, "Payment")) == 1
    assert api.emu.get_entity(api.realm, "Invoice", inv["Id"])["Balance"] == 100  # type: ignore[index]
