"""Helpers shared by the emulator tests."""

from __future__ import annotations

from typing import Any

import httpx

from qbsync.emulator import Emulator

from ..qbo_shapes import xml_tree

SERVICE_ITEM = {"Type": "Service", "IncomeAccountRef": {"value": "1"}}


class Api:
    """Thin helper around an in-process httpx client for one realm."""

    def __init__(self, http: httpx.AsyncClient, emu: Emulator, realm: str) -> None:
        self.http = http
        self.emu = emu
        self.realm = realm
        self.tokens = emu.issue_tokens(realm)
        self.headers = {
            "Authorization": f"Bearer {self.tokens['access_token']}",
            "Accept": "application/json",
        }

    def url(self, path: str) -> str:
        return f"/v3/company/{self.realm}/{path}"

    async def get(self, path: str, **params: Any) -> httpx.Response:
        params.setdefault("minorversion", "75")
        return await self.http.get(self.url(path), params=params, headers=self.headers)

    async def post(self, path: str, body: Any, **params: Any) -> httpx.Response:
        params.setdefault("minorversion", "75")
        return await self.http.post(self.url(path), json=body, params=params, headers=self.headers)

    async def ok(self, path: str, body: Any, **params: Any) -> dict[str, Any]:
        r = await self.post(path, body, **params)
        assert r.status_code == 200, r.text
        return r.json()

    async def query(self, text: str) -> httpx.Response:
        return await self.http.post(
            self.url("query"),
            content=text.encode(),
            params={"minorversion": "75"},
            headers={**self.headers, "Content-Type": "application/text"},
        )

    async def customer(self, name: str, **extra: Any) -> dict[str, Any]:
        return (await self.ok("customer", {"DisplayName": name, **extra}))["Customer"]

    async def item(self, name: str, price: float = 10, **extra: Any) -> dict[str, Any]:
        body = {"Name": name, "UnitPrice": price, **SERVICE_ITEM, **extra}
        return (await self.ok("item", body))["Item"]

    async def invoice(
        self, customer_id: str, lines: list[dict[str, Any]], **extra: Any
    ) -> httpx.Response:
        return await self.post(
            "invoice", {"CustomerRef": {"value": customer_id}, "Line": lines, **extra}
        )


def line(
    item_id: str, qty: float, price: float, tax: str | None = "1", amount: float | None = None
) -> dict[str, Any]:
    detail: dict[str, Any] = {"ItemRef": {"value": item_id}, "Qty": qty, "UnitPrice": price}
    if tax is not None:
        detail["TaxCodeRef"] = {"value": tax}
    return {
        "DetailType": "SalesItemLineDetail",
        "Amount": amount if amount is not None else round(qty * price, 2),
        "SalesItemLineDetail": detail,
    }


def fault_of(r: httpx.Response) -> dict[str, Any]:
    data = r.json()
    assert "Fault" in data, r.text
    return data["Fault"]["Error"][0]


def throttle_fault(r: httpx.Response) -> tuple[str, str, str]:
    """(Fault type, Error code, Message) of a 429, which QuickBooks answers in XML."""
    assert r.status_code == 429
    assert "xml" in r.headers["content-type"], r.text
    fault = xml_tree(r.text)["IntuitResponse"]["Fault"]
    return fault["@type"], fault["Error"]["@code"], fault["Error"]["Message"]["#text"]
