"""requestid idempotency: a repeated write returns the first response and changes nothing."""

from __future__ import annotations

import httpx
import pytest

from qbsync.emulator import Emulator

from .helpers import Api, fault_of, line


async def test_repeated_create_returns_first_response(api: Api) -> None:
    c = await api.customer("C")
    it = await api.item("I")
    body = {"CustomerRef": {"value": c["Id"]}, "DocNumber": "R-1", "Line": [line(it["Id"], 1, 10)]}
    r1 = await api.post("invoice", body, requestid="rid-1")
    r2 = await api.post("invoice", body, requestid="rid-1")
    assert r1.status_code == r2.status_code == 200
    assert r1.json() == r2.json()
    assert len(api.emu.entities(api.realm, "Invoice")) == 1
    # a different body with the same id still gets the first answer
    r3 = await api.post("invoice", {**body, "DocNumber": "R-2"}, requestid="rid-1")
    assert r3.json()["Invoice"]["DocNumber"] == "R-1"
    assert len(api.emu.entities(api.realm, "Invoice")) == 1
    # a new id creates (and hits the duplicate DocNumber check)
    r4 = await api.post("invoice", body, requestid="rid-2")
    assert fault_of(r4)["code"] == "6140"


async def test_repeated_update_applies_once(api: Api) -> None:
    c = await api.customer("C")
    upd = {"Id": c["Id"], "SyncToken": "0", "sparse": True, "Notes": "n"}
    r1 = await api.post("customer", upd, requestid="u-1")
    r2 = await api.post("customer", upd, requestid="u-1")
    assert r1.json()["Customer"]["SyncToken"] == r2.json()["Customer"]["SyncToken"] == "1"
    assert api.emu.get_entity(api.realm, "Customer", c["Id"])["SyncToken"] == "1"  # type: ignore[index]


async def test_failed_write_is_not_remembered(api: Api) -> None:
    r = await api.post("customer", {"DisplayName": "a:b"}, requestid="f-1")
    assert r.status_code == 400
    r = await api.post("customer", {"DisplayName": "ab"}, requestid="f-1")
    assert r.status_code == 200


async def test_requestid_is_per_realm(emu: Emulator, http: httpx.AsyncClient, api: Api) -> None:
    other = Api(http, emu, emu.create_company("Other"))
    r1 = await api.post("customer", {"DisplayName": "Same"}, requestid="shared")
    r2 = await other.post("customer", {"DisplayName": "Same"}, requestid="shared")
    assert r1.status_code == r2.status_code == 200
    assert len(emu.entities(other.realm, "Customer")) == 1
    r = await api.post("customer", {"DisplayName": "Z"}, requestid="x" * 51)
    assert fault_of(r)["code"] == "2050"


async def test_batch_honours_requestid(api: Api) -> None:
    batch = {
        "BatchItemRequest": [
            {"bId": "1", "operation": "create", "Customer": {"DisplayName": "B1"}},
            {"bId": "2", "operation": "create", "Customer": {"DisplayName": "B2"}},
        ]
    }
    r1 = await api.post("batch", batch, requestid="batch-1")
    r2 = await api.post("batch", batch, requestid="batch-1")
    assert r1.json() == r2.json()
    assert "Customer" in r2.json()["BatchItemResponse"][0]
    assert len(api.emu.entities(api.realm, "Customer")) == 2


async def test_an_applied_write_whose_answer_was_lost_is_replayed_whatever_the_new_body(
        api: Api) -> None:
    """What makes a resend under the same requestid with another body dangerous: the write
    was applied, its answer lost; the resend gets the first answer, and nothing of the new
    body is applied (batch and single alike)."""
    c = await api.customer("C")
    api.emu.inject_fault("drop", 1, method="POST", entity="customer")
    with pytest.raises(httpx.TransportError):
        await api.post("customer", {"Id": c["Id"], "SyncToken": "0", "sparse": True,
                                    "Notes": "first"}, requestid="u-lost")
    r = await api.post("customer", {"Id": c["Id"], "SyncToken": "1", "sparse": True,
                                    "Notes": "second"}, requestid="u-lost")
    assert r.json()["Customer"]["Notes"] == "first"
    assert api.emu.get_entity(api.realm, "Customer", c["Id"])["Notes"] == "first"  # type: ignore[index]
    batch = {"BatchItemRequest": [
        {"bId": "1", "operation": "create", "Customer": {"DisplayName": "B1"}}]}
    first = await api.post("batch", batch, requestid="b-1")
    changed = {"BatchItemRequest": [
        {"bId": "1", "operation": "create", "Customer": {"DisplayName": "B2"}}]}
    again = await api.post("batch", changed, requestid="b-1")
    assert again.json() == first.json()
    names = sorted(x["DisplayName"] for x in api.emu.entities(api.realm, "Customer"))
    assert names == ["B1", "C"]


async def test_a_route_set_to_ignore_requestids_applies_every_write(api: Api) -> None:
    """What intuit/QuickBooks-V3-DotNET-SDK#352 reports of Payments: the same create
    twice under one requestid makes two. Other routes still replay."""
    c = await api.customer("Payer")
    api.emu.set_requestid_policy(ignored=["Payment"])
    body = {"CustomerRef": {"value": c["Id"]}, "TotalAmt": 5}
    first = await api.ok("payment", body, requestid="p-1")
    second = await api.ok("payment", body, requestid="p-1")
    assert first["Payment"]["Id"] != second["Payment"]["Id"]
    assert len(api.emu.entities(api.realm, "Payment")) == 2
    one = await api.ok("customer", {"DisplayName": "Once"}, requestid="c-1")
    assert await api.ok("customer", {"DisplayName": "Once"}, requestid="c-1") == one
    api.emu.set_requestid_policy()
    assert await api.ok("payment", body, requestid="p-2") == \
        await api.ok("payment", body, requestid="p-2")


async def test_refusals_remembered_are_replayed_after_the_cause_is_fixed(api: Api) -> None:
    """Whether QuickBooks keeps a refused write's answer under its requestid is not
    documented: with refusals remembered, a fixed write sent under the same requestid gets
    the old refusal, and nothing is applied; under another it goes through."""
    api.emu.set_requestid_policy(refusals=True)
    refused = await api.post("customer", {"DisplayName": "a:b"}, requestid="f-1")
    again = await api.post("customer", {"DisplayName": "ab"}, requestid="f-1")
    assert refused.status_code == again.status_code == 400
    assert again.json()["Fault"] == refused.json()["Fault"]
    assert api.emu.entities(api.realm, "Customer") == []
    assert (await api.post("customer", {"DisplayName": "ab"}, requestid="f-2")).status_code \
        == 200
