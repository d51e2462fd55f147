"""CRUD semantics: Ids, SyncTokens, full vs sparse update, validation faults."""

from __future__ import annotations

import pytest

from qbsync.emulator import Emulator

from .helpers import Api, fault_of, line


async def test_create_read_ids_and_synctoken(api: Api) -> None:
    c1 = await api.customer("Alice")
    c2 = await api.customer("Bob")
    assert (c1["Id"], c2["Id"]) == ("1", "2")
    assert c1["SyncToken"] == "0"
    assert c1["domain"] == "QBO"
    assert c1["sparse"] is False
    assert c1["MetaData"]["CreateTime"] == c1["MetaData"]["LastUpdatedTime"]
    r = await api.get("customer/2")
    assert r.status_code == 200
    body = r.json()
    assert body["Customer"]["DisplayName"] == "Bob"
    assert "time" in body
    r = await api.get("customer/999")
    assert r.status_code == 400
    assert fault_of(r)["code"] == "610"


async def test_sparse_update_keeps_other_fields(api: Api) -> None:
    c = await api.customer(
        "Alice", CompanyName="ACME", Notes="vip", PrimaryEmailAddr={"Address": "a@example.com"}
    )
    out = (
        await api.ok("customer", {"Id": c["Id"], "SyncToken": "0", "sparse": True, "Notes": "gold"})
    )["Customer"]
    assert out["SyncToken"] == "1"
    assert out["Notes"] == "gold"
    assert out["CompanyName"] == "ACME"
    assert out["PrimaryEmailAddr"] == {"Address": "a@example.com"}
    assert out["DisplayName"] == "Alice"


async def test_full_update_blanks_omitted_fields(api: Api) -> None:
    c = await api.customer("Alice", CompanyName="ACME", Notes="vip")
    out = (
        await api.ok(
            "customer", {"Id": c["Id"], "SyncToken": "0", "DisplayName": "Alice", "Notes": "new"}
        )
    )["Customer"]
    assert out["SyncToken"] == "1"
    assert out["Notes"] == "new"
    assert "CompanyName" not in out
    stored = api.emu.get_entity(api.realm, "Customer", c["Id"])
    assert stored is not None
    assert "CompanyName" not in stored


async def test_stale_synctoken_5010(api: Api) -> None:
    c = await api.customer("Alice")
    await api.ok("customer", {"Id": c["Id"], "SyncToken": "0", "sparse": True, "Notes": "x"})
    r = await api.post("customer", {"Id": c["Id"], "SyncToken": "0", "sparse": True, "Notes": "y"})
    assert r.status_code == 400
    data = r.json()
    assert data["Fault"]["type"] == "ValidationFault"
    err = data["Fault"]["Error"][0]
    assert err["code"] == "5010"
    assert err["Message"] == "Stale Object Error"
    assert api.emu.get_entity(api.realm, "Customer", c["Id"])["Notes"] == "x"  # type: ignore[index]
    # integer SyncToken (as python-quickbooks sends on create) is accepted
    out = await api.ok("customer", {"Id": c["Id"], "SyncToken": 1, "sparse": True, "Notes": "z"})
    assert out["Customer"]["SyncToken"] == "2"


async def test_duplicate_display_name_6240_case_insensitive(api: Api) -> None:
    await api.customer("Alice Smith")
    r = await api.post("customer", {"DisplayName": "alice SMITH"})
    err = fault_of(r)
    assert r.status_code == 400
    assert err["code"] == "6240"
    assert err["Message"] == "Duplicate Name Exists Error"
    assert "already using this name" in err["Detail"]
    # renaming onto an existing name is refused too; keeping your own name is fine
    b = await api.customer("Bob")
    r = await api.post(
        "customer", {"Id": b["Id"], "SyncToken": "0", "sparse": True, "DisplayName": "ALICE smith"}
    )
    assert fault_of(r)["code"] == "6240"
    await api.ok("customer", {"Id": b["Id"], "SyncToken": "0", "DisplayName": "Bob"})


async def test_display_name_built_from_name_parts_and_6080(api: Api) -> None:
    c = await api.ok("customer", {"GivenName": "Maria", "FamilyName": "Papadopoulou"})
    assert c["Customer"]["DisplayName"] == "Maria Papadopoulou"
    r = await api.post("customer", {"CompanyName": "Nameless"})
    assert fault_of(r)["code"] == "6080"
    c2 = await api.customer("Temp")
    r = await api.post(
        "customer", {"Id": c2["Id"], "SyncToken": "0", "sparse": True, "DisplayName": ""}
    )
    assert fault_of(r)["code"] == "2020"


@pytest.mark.parametrize(
    ("field", "value", "limit"),
    [
        ("DisplayName", "x" * 501, 500),
        ("GivenName", "x" * 101, 100),
        ("FamilyName", "x" * 101, 100),
        ("Title", "x" * 17, 16),
        ("Notes", "x" * 2001, 2000),
    ],
)
async def test_customer_length_limits_2050(api: Api, field: str, value: str, limit: int) -> None:
    body = {"DisplayName": "Ok", field: value}
    r = await api.post("customer", body)
    err = fault_of(r)
    assert r.status_code == 400
    assert err["code"] == "2050"
    assert err["element"] == field
    assert f"Max:{limit}" in err["Detail"]


async def test_nested_length_limits(api: Api) -> None:
    r = await api.post(
        "customer", {"DisplayName": "P", "PrimaryPhone": {"FreeFormNumber": "1" * 31}}
    )
    assert fault_of(r)["code"] == "2050"
    assert fault_of(r)["element"] == "PrimaryPhone.FreeFormNumber"
    r = await api.post("customer", {"DisplayName": "A", "BillAddr": {"Line1": "x" * 501}})
    assert fault_of(r)["code"] == "2050"
    assert fault_of(r)["element"] == "BillAddr.Line1"
    r = await api.post(
        "customer", {"DisplayName": "E", "PrimaryEmailAddr": {"Address": "a" * 95 + "@x.com"}}
    )
    assert fault_of(r)["code"] == "2050"
    await api.customer(
        "Ok",
        PrimaryPhone={"FreeFormNumber": "1" * 30},
        BillAddr={"Line1": "x" * 500, "City": "Athens"},
    )


@pytest.mark.parametrize("bad", ["A:B", "A\tB", "A\nB"])
async def test_forbidden_characters(api: Api, bad: str) -> None:
    r = await api.post("customer", {"DisplayName": bad})
    err = fault_of(r)
    assert r.status_code == 400
    assert err["element"] == "DisplayName"
    assert "colon" in err["Detail"]
    r = await api.post("customer", {"DisplayName": "Fine", "GivenName": bad})
    assert fault_of(r)["element"] == "GivenName"
    r = await api.post("item", {"Name": bad, "Type": "Service", "IncomeAccountRef": {"value": "1"}})
    assert fault_of(r)["element"] == "Name"


@pytest.mark.parametrize("email", ["no-at-sign.example.com", "user@localhost"])
async def test_email_must_have_at_and_dot(api: Api, email: str) -> None:
    r = await api.post("customer", {"DisplayName": "E", "PrimaryEmailAddr": {"Address": email}})
    err = fault_of(r)
    assert r.status_code == 400
    assert err["element"] == "PrimaryEmailAddr.Address"
    assert "RFC 822" in err["Detail"]


async def test_item_rules(api: Api) -> None:
    item = await api.item("Widget", 12.5, Sku="W-1")
    assert item["IncomeAccountRef"] == {"value": "1", "name": "Sales of Product Income"}
    assert item["FullyQualifiedName"] == "Widget"
    r = await api.post(
        "item", {"Name": "WIDGET", "Type": "Service", "IncomeAccountRef": {"value": "1"}}
    )
    assert fault_of(r)["code"] == "6240"
    r = await api.post(
        "item", {"Name": "x" * 101, "Type": "Service", "IncomeAccountRef": {"value": "1"}}
    )
    assert fault_of(r)["code"] == "2050"
    assert "Max:100" in fault_of(r)["Detail"]
    r = await api.post("item", {"Type": "Service", "IncomeAccountRef": {"value": "1"}})
    assert fault_of(r)["code"] == "2020"
    assert fault_of(r)["element"] == "Name"
    for type_ in ("Service", "NonInventory"):
        r = await api.post("item", {"Name": f"No account {type_}", "Type": type_})
        err = fault_of(r)
        assert err["code"] == "2020"
        assert err["element"] == "IncomeAccountRef"
    r = await api.post(
        "item", {"Name": "Bad acc", "Type": "Service", "IncomeAccountRef": {"value": "777"}}
    )
    err = fault_of(r)
    assert err["code"] == "2500"
    assert err["element"] == "IncomeAccountRef"
    r = await api.post(
        "item", {"Name": "Inactive acc", "Type": "Service", "IncomeAccountRef": {"value": "9"}}
    )
    assert fault_of(r)["code"] == "610"
    r = await api.post(
        "item",
        {
            "Name": "Long desc",
            "Type": "Service",
            "Description": "d" * 4001,
            "IncomeAccountRef": {"value": "1"},
        },
    )
    assert fault_of(r)["code"] == "2050"


async def test_invoice_required_fields_2020(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    r = await api.post("invoice", {"Line": [line(it["Id"], 1, 10)]})
    assert fault_of(r)["code"] == "2020"
    assert fault_of(r)["element"] == "CustomerRef"
    r = await api.post("invoice", {"CustomerRef": {"value": c["Id"]}, "Line": []})
    err = fault_of(r)
    assert err["code"] == "2020"
    assert err["Detail"] == "Required parameter Line is missing in the request"


async def test_invoice_references_2500_and_610(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    r = await api.invoice("999", [line(it["Id"], 1, 10)])
    err = fault_of(r)
    assert err["code"] == "2500"
    assert err["element"] == "CustomerRef"
    r = await api.invoice(c["Id"], [line("999", 1, 10)])
    err = fault_of(r)
    assert err["code"] == "2500"
    assert err["element"] == "Line.SalesItemLineDetail.ItemRef"
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 10, tax="99")])
    err = fault_of(r)
    assert err["code"] == "2500"
    assert err["element"] == "Line.SalesItemLineDetail.TaxCodeRef"
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 10, tax="5")])  # inactive tax code
    assert fault_of(r)["code"] == "610"
    # inactive customer and item
    await api.ok("customer", {"Id": c["Id"], "SyncToken": "0", "sparse": True, "Active": False})
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 10)])
    err = fault_of(r)
    assert err["code"] == "610"
    assert err["element"] == "CustomerRef"
    c2 = await api.customer("C2")
    await api.ok("item", {"Id": it["Id"], "SyncToken": "0", "sparse": True, "Active": False})
    r = await api.invoice(c2["Id"], [line(it["Id"], 1, 10)])
    err = fault_of(r)
    assert err["code"] == "610"
    assert err["element"] == "Line.SalesItemLineDetail.ItemRef"


async def test_amount_must_equal_qty_times_price_6070(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    r = await api.invoice(c["Id"], [line(it["Id"], 3, 3.33, amount=10.0)])
    err = fault_of(r)
    assert r.status_code == 400
    assert err["code"] == "6070"
    ok = await api.invoice(c["Id"], [line(it["Id"], 3, 3.335, amount=10.01)])
    assert ok.status_code == 200, ok.text  # round(10.005, 2) half-up = 10.01
    r = await api.invoice(c["Id"], [line(it["Id"], 3, 3.335, amount=10.0)])
    assert fault_of(r)["code"] == "6070"


async def test_missing_vat_code_names_the_line(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 10), line(it["Id"], 1, 5, tax=None)])
    err = fault_of(r)
    assert err["code"].startswith("6")
    assert len(err["code"]) == 4
    assert "Line 2" in err["Detail"]


async def test_docnumber_duplicates_6140_and_allowduplicatedocnum(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 10)], DocNumber="INV-1")
    first = r.json()["Invoice"]
    assert first["DocNumber"] == "INV-1"
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 10)], DocNumber="INV-1")
    err = fault_of(r)
    assert r.status_code == 400
    assert err["code"] == "6140"
    assert err["Detail"].endswith(
        f"DocNumber=INV-1 is assigned to TxnType=Invoice with TxnId={first['Id']}"
    )
    r = await api.post(
        "invoice",
        {"CustomerRef": {"value": c["Id"]}, "DocNumber": "INV-1", "Line": [line(it["Id"], 1, 10)]},
        include="allowduplicatedocnum",
    )
    assert r.status_code == 200
    assert r.json()["Invoice"]["DocNumber"] == "INV-1"
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 10)], DocNumber="X" * 22)
    err = fault_of(r)
    assert err["code"] == "2050"
    assert "Max:21" in err["Detail"]
    assert err["element"] == "DocNumber"
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 10)])  # custom numbers on, none sent
    assert "DocNumber" not in r.json()["Invoice"]


async def test_auto_docnumbers_when_custom_numbers_off(emu: Emulator, http) -> None:
    realm = emu.create_company("Auto", custom_txn_numbers=False)
    api = Api(http, emu, realm)
    prefs = (await api.get("preferences")).json()["Preferences"]
    assert prefs["SalesFormsPrefs"]["CustomTxnNumbers"] is False
    c = await api.customer("C")
    it = await api.item("I")
    nums = []
    for sent in ("MINE-1", None, "MINE-1"):
        extra = {"DocNumber": sent} if sent else {}
        r = await api.invoice(c["Id"], [line(it["Id"], 1, 10)], **extra)
        assert r.status_code == 200, r.text
        nums.append(r.json()["Invoice"]["DocNumber"])
    assert nums == ["1001", "1002", "1003"]
    inv = r.json()["Invoice"]
    out = await api.ok("invoice", {**inv, "DocNumber": "CHANGED"})
    assert out["Invoice"]["DocNumber"] == "1003"


async def test_invoice_update_replaces_lines_and_bumps_synctoken(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    inv = (
        await api.invoice(c["Id"], [line(it["Id"], 1, 10), line(it["Id"], 2, 5)], DocNumber="D1")
    ).json()["Invoice"]
    assert [ln.get("Id") for ln in inv["Line"]] == ["1", "2", None]
    assert inv["Line"][-1]["DetailType"] == "SubTotalLineDetail"
    out = (
        await api.ok(
            "invoice",
            {"Id": inv["Id"], "SyncToken": "0", "sparse": True, "Line": [line(it["Id"], 4, 10)]},
        )
    )["Invoice"]
    assert out["SyncToken"] == "1"
    sales = [ln for ln in out["Line"] if ln["DetailType"] == "SalesItemLineDetail"]
    assert len(sales) == 1
    assert sales[0]["Amount"] == 40
    assert out["TotalAmt"] == 49.6
    assert out["DocNumber"] == "D1"
    # TotalAmt/Balance sent by the client are overwritten
    out = (
        await api.ok(
            "invoice",
            {"Id": inv["Id"], "SyncToken": "1", "sparse": True, "TotalAmt": 1, "Balance": 1},
        )
    )["Invoice"]
    assert out["TotalAmt"] == 49.6
    assert out["Balance"] == 49.6
    assert out["SyncToken"] == "2"
    # full update without CustomerRef fails with 2020
    r = await api.post(
        "invoice", {"Id": inv["Id"], "SyncToken": "2", "Line": [line(it["Id"], 1, 1)]}
    )
    assert fault_of(r)["code"] == "2020"


async def test_void_and_delete_invoice(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 100)], DocNumber="V1")).json()["Invoice"]
    r = await api.post("invoice", {"Id": inv["Id"], "SyncToken": "0"}, operation="void")
    assert r.status_code == 200
    voided = r.json()["Invoice"]
    assert voided["TotalAmt"] == 0
    assert voided["Balance"] == 0
    assert voided["SyncToken"] == "1"
    assert "Voided" in voided["PrivateNote"]
    assert voided["DocNumber"] == "V1"
    r = await api.post("invoice", {"Id": inv["Id"], "SyncToken": "0"}, operation="delete")
    assert fault_of(r)["code"] == "5010"
    r = await api.post("invoice", {"Id": inv["Id"], "SyncToken": "1"}, operation="delete")
    assert r.status_code == 200
    assert r.json()["Invoice"] == {"status": "Deleted", "domain": "QBO", "Id": inv["Id"]}
    r = await api.get(f"invoice/{inv['Id']}")
    assert fault_of(r)["code"] == "610"
    # the DocNumber is free again
    r = await api.invoice(c["Id"], [line(it["Id"], 1, 100)], DocNumber="V1")
    assert r.status_code == 200
    # customers cannot be deleted
    r = await api.post("customer", {"Id": c["Id"], "SyncToken": "0"}, operation="delete")
    assert r.status_code == 400
    assert fault_of(r)["code"] == "500"


async def test_credit_memo(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    r = await api.post(
        "creditmemo",
        {"CustomerRef": {"value": c["Id"]}, "DocNumber": "CM-1", "Line": [line(it["Id"], 1, 50)]},
    )
    assert r.status_code == 200, r.text
    cm = r.json()["CreditMemo"]
    assert cm["TotalAmt"] == 62
    assert cm["RemainingCredit"] == 62
    assert cm["Id"] == "1"
    r = await api.get(f"creditmemo/{cm['Id']}")
    assert r.json()["CreditMemo"]["DocNumber"] == "CM-1"


async def test_read_only_entities(api: Api) -> None:
    r = await api.get("account/1")
    acc = r.json()["Account"]
    assert acc["Name"] == "Sales of Product Income"
    assert acc["AccountType"] == "Income"
    r = await api.get("taxcode/1")
    code = r.json()["TaxCode"]
    assert "24" in code["Name"]
    assert code["SalesTaxRateList"]["TaxRateDetail"][0]["TaxRateRef"]["value"] == "1"
    r = await api.get(f"companyinfo/{api.realm}")
    assert r.json()["CompanyInfo"]["CompanyName"] == "Test Shop"
    r = await api.get("preferences")
    assert r.json()["Preferences"]["SalesFormsPrefs"]["CustomTxnNumbers"] is True
    r = await api.post("account", {"Name": "New"})
    assert r.status_code == 400
    assert fault_of(r)["code"] == "500"


async def test_bill_address_copied_from_customer(api: Api) -> None:
    c = await api.customer("Addr", BillAddr={"Line1": "Ermou 5", "City": "Athens"})
    it = await api.item("I")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 1)])).json()["Invoice"]
    assert inv["BillAddr"]["Line1"] == "Ermou 5"
    assert inv["CustomerRef"] == {"value": c["Id"], "name": "Addr"}
