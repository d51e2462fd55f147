"""Batch: limits, independent items, no visibility of objects created in the same batch."""

from __future__ import annotations

import asyncio

from .helpers import Api, fault_of, line


async def test_batch_mixed_items(api: Api) -> None:
    existing = await api.customer("Existing")
    it = await api.item("I")
    body = {
        "BatchItemRequest": [
            {"bId": "b1", "operation": "create", "Customer": {"DisplayName": "New"}},
            {"bId": "b2", "operation": "create", "Customer": {"DisplayName": "existing"}},
            {
                "bId": "b3",
                "operation": "update",
                "Customer": {
                    "Id": existing["Id"],
                    "SyncToken": "0",
                    "sparse": True,
                    "Notes": "batched",
                },
            },
            {"bId": "b4", "Query": "SELECT * FROM Item"},
            {
                "bId": "b5",
                "operation": "create",
                "Invoice": {
                    "CustomerRef": {"value": existing["Id"]},
                    "DocNumber": "BT-1",
                    "Line": [line(it["Id"], 1, 10)],
                },
            },
        ]
    }
    r = await api.post("batch", body)
    assert r.status_code == 200
    items = {i["bId"]: i for i in r.json()["BatchItemResponse"]}
    assert items["b1"]["Customer"]["DisplayName"] == "New"
    assert items["b2"]["Fault"]["Error"][0]["code"] == "6240"
    assert items["b2"]["Fault"]["type"] == "ValidationFault"
    assert items["b3"]["Customer"]["Notes"] == "batched"
    assert items["b4"]["QueryResponse"]["Item"][0]["Name"] == "I"
    assert items["b5"]["Invoice"]["TotalAmt"] == 12.4
    assert len(api.emu.entities(api.realm, "Customer")) == 2


async def test_batch_items_cannot_see_earlier_creations(api: Api) -> None:
    it = await api.item("I")
    body = {
        "BatchItemRequest": [
            {"bId": "1", "operation": "create", "Customer": {"DisplayName": "Fresh"}},
            {
                "bId": "2",
                "operation": "create",
                "Invoice": {"CustomerRef": {"value": "1"}, "Line": [line(it["Id"], 1, 10)]},
            },
            {"bId": "3", "Query": "SELECT * FROM Customer WHERE DisplayName = 'Fresh'"},
            {
                "bId": "4",
                "operation": "update",
                "Customer": {"Id": "1", "SyncToken": "0", "sparse": True, "Notes": "x"},
            },
        ]
    }
    r = await api.post("batch", body)
    items = r.json()["BatchItemResponse"]
    assert items[0]["Customer"]["Id"] == "1"
    assert items[1]["Fault"]["Error"][0]["code"] == "2500"
    assert items[1]["Fault"]["Error"][0]["element"] == "CustomerRef"
    assert items[2]["QueryResponse"] == {}
    assert items[3]["Fault"]["Error"][0]["code"] == "610"
    # after the batch, the customer is visible
    inv = await api.invoice("1", [line(it["Id"], 1, 10)])
    assert inv.status_code == 200


async def test_batch_size_limit(api: Api) -> None:
    items = [
        {"bId": str(i), "operation": "create", "Customer": {"DisplayName": f"C{i}"}}
        for i in range(31)
    ]
    r = await api.post("batch", {"BatchItemRequest": items})
    assert r.status_code == 400
    assert "30" in fault_of(r)["Detail"]
    assert api.emu.entities(api.realm, "Customer") == []
    r = await api.post("batch", {"BatchItemRequest": items[:30]})
    assert r.status_code == 200
    assert len(r.json()["BatchItemResponse"]) == 30
    r = await api.post("batch", {"Nope": []})
    assert fault_of(r)["code"] == "2020"


async def test_batch_delete_and_options(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    inv = (await api.invoice(c["Id"], [line(it["Id"], 1, 10)], DocNumber="D")).json()["Invoice"]
    body = {
        "BatchItemRequest": [
            {
                "bId": "1",
                "operation": "create",
                "optionsData": "allowduplicatedocnum",
                "Invoice": {
                    "CustomerRef": {"value": c["Id"]},
                    "DocNumber": "D",
                    "Line": [line(it["Id"], 1, 10)],
                },
            },
            {
                "bId": "2",
                "operation": "create",
                "Invoice": {
                    "CustomerRef": {"value": c["Id"]},
                    "DocNumber": "D",
                    "Line": [line(it["Id"], 1, 10)],
                },
            },
            {"bId": "3", "operation": "delete", "Invoice": {"Id": inv["Id"], "SyncToken": "0"}},
        ]
    }
    items = (await api.post("batch", body)).json()["BatchItemResponse"]
    assert items[0]["Invoice"]["DocNumber"] == "D"
    assert items[1]["Fault"]["Error"][0]["code"] == "6140"
    assert items[2]["Invoice"]["status"] == "Deleted"


async def test_other_requests_are_served_between_batch_items(api: Api) -> None:
    # A batch yields between its items: a request arriving meanwhile is answered before the
    # batch ends (a 30-item batch must not hold the realm's every other request), and it
    # sees what the batch created so far, as QuickBooks' other requests would.
    body = {"BatchItemRequest": [
        {"bId": str(i), "operation": "create", "Customer": {"DisplayName": f"B{i}"}}
        for i in range(30)]}
    order: list[str] = []

    async def batch() -> None:
        r = await api.post("batch", body)
        assert all("Customer" in i for i in r.json()["BatchItemResponse"])
        order.append("batch")

    async def single() -> None:
        await asyncio.sleep(0)
        await api.customer("Single")
        order.append("single")

    await asyncio.gather(batch(), single())
    assert order == ["single", "batch"]
    assert len(api.emu.entities(api.realm, "Customer")) == 31


async def test_a_requestid_repeated_while_its_batch_runs_creates_nothing_twice(api: Api) -> None:
    body = {"BatchItemRequest": [
        {"bId": str(i), "operation": "create", "Customer": {"DisplayName": f"R{i}"}}
        for i in range(10)]}
    first, again = await asyncio.gather(api.post("batch", body, requestid="rid-1"),
                                        api.post("batch", body, requestid="rid-1"))
    assert first.status_code == again.status_code == 200
    assert first.json()["BatchItemResponse"] == again.json()["BatchItemResponse"]
    assert len(api.emu.entities(api.realm, "Customer")) == 10
