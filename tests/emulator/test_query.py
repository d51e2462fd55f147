"""Query language subset, envelopes and pagination."""

from __future__ import annotations

import pytest

from .helpers import Api, fault_of, line


@pytest.fixture
async def customers(api: Api) -> list[dict]:
    out = []
    for i in range(1, 26):
        out.append(
            await api.customer(f"Customer {i:02d}", CompanyName="Even" if i % 2 == 0 else "Odd")
        )
    return out


async def test_pagination_and_envelope(api: Api, customers: list[dict]) -> None:
    r = await api.query("SELECT * FROM Customer STARTPOSITION 11 MAXRESULTS 10")
    assert r.status_code == 200
    qr = r.json()["QueryResponse"]
    assert qr["startPosition"] == 11
    assert qr["maxResults"] == 10
    assert [c["Id"] for c in qr["Customer"]] == [str(i) for i in range(11, 21)]
    r = await api.query("SELECT * FROM Customer STARTPOSITION 21 MAXRESULTS 10")
    qr = r.json()["QueryResponse"]
    assert qr["maxResults"] == 5
    assert len(qr["Customer"]) == 5
    r = await api.query("select * from Customer")  # default page: 100
    assert len(r.json()["QueryResponse"]["Customer"]) == 25
    assert "time" in r.json()


async def test_count_and_no_match(api: Api, customers: list[dict]) -> None:
    r = await api.query("SELECT COUNT(*) FROM Customer")
    assert r.json()["QueryResponse"] == {"totalCount": 25}
    r = await api.query("SELECT COUNT(*) FROM Customer WHERE CompanyName = 'Even'")
    assert r.json()["QueryResponse"] == {"totalCount": 12}
    r = await api.query("SELECT * FROM Customer WHERE DisplayName = 'Nobody'")
    assert r.json()["QueryResponse"] == {}


async def test_where_like_in_order(api: Api, customers: list[dict]) -> None:
    r = await api.get(
        "query",
        query="select * from customer where DisplayName LIKE '%er 1%' orderby DisplayName desc",
    )
    names = [c["DisplayName"] for c in r.json()["QueryResponse"]["Customer"]]
    assert names == [f"Customer {i}" for i in range(19, 9, -1)]
    r = await api.query(
        "SELECT * FROM Customer WHERE Id IN ('3', '5', '7') AND "
        "CompanyName = 'Odd' ORDER BY Id DESC"
    )
    assert [c["Id"] for c in r.json()["QueryResponse"]["Customer"]] == ["7", "5", "3"]
    r = await api.query("SELECT * FROM Customer WHERE DisplayName = 'customer 07'")
    assert [c["Id"] for c in r.json()["QueryResponse"]["Customer"]] == ["7"]
    r = await api.query("SELECT * FROM Customer WHERE Id > '20'")
    assert [c["Id"] for c in r.json()["QueryResponse"]["Customer"]] == [
        "21",
        "22",
        "23",
        "24",
        "25",
    ]


async def test_escaped_quotes(api: Api) -> None:
    await api.customer("O'Brien")
    r = await api.query("SELECT * FROM Customer WHERE DisplayName = 'O\\'Brien'")
    assert r.json()["QueryResponse"]["Customer"][0]["DisplayName"] == "O'Brien"


async def test_inactive_hidden_unless_asked(api: Api) -> None:
    a = await api.customer("Active One")
    b = await api.customer("Gone")
    await api.ok("customer", {"Id": b["Id"], "SyncToken": "0", "sparse": True, "Active": False})
    r = await api.query("SELECT * FROM Customer")
    assert [c["Id"] for c in r.json()["QueryResponse"]["Customer"]] == [a["Id"]]
    r = await api.query("SELECT * FROM Customer WHERE Active IN (true, false)")
    assert len(r.json()["QueryResponse"]["Customer"]) == 2
    r = await api.query("SELECT * FROM Customer WHERE Active = false")
    assert [c["Id"] for c in r.json()["QueryResponse"]["Customer"]] == [b["Id"]]


async def test_item_sku_only_when_selected(api: Api) -> None:
    await api.item("Widget", Sku="SKU-1")
    r = await api.query("SELECT * FROM Item WHERE Name = 'Widget'")
    assert "Sku" not in r.json()["QueryResponse"]["Item"][0]
    r = await api.query("SELECT *, Sku FROM Item WHERE Name = 'Widget'")
    assert r.json()["QueryResponse"]["Item"][0]["Sku"] == "SKU-1"


async def test_invoice_queries(api: Api) -> None:
    c1 = await api.customer("C1")
    c2 = await api.customer("C2")
    it = await api.item("I")
    for cust, n, doc in ((c1, 1, "A-1"), (c1, 5, "A-2"), (c2, 2, "B-1")):
        await api.invoice(cust["Id"], [line(it["Id"], n, 10)], DocNumber=doc)
    r = await api.query(
        f"SELECT * FROM Invoice WHERE CustomerRef = '{c1['Id']}' AND TotalAmt > '20'"
    )
    assert [i["DocNumber"] for i in r.json()["QueryResponse"]["Invoice"]] == ["A-2"]
    r = await api.query("SELECT * FROM Invoice WHERE DocNumber = 'B-1'")
    assert r.json()["QueryResponse"]["Invoice"][0]["CustomerRef"]["value"] == c2["Id"]
    r = await api.query(
        "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime > "
        "'2000-01-01T00:00:00-07:00' ORDERBY TotalAmt"
    )
    assert [i["DocNumber"] for i in r.json()["QueryResponse"]["Invoice"]] == ["A-1", "B-1", "A-2"]
    r = await api.query("SELECT * FROM Account WHERE AccountType = 'Income'")
    names = {a["Name"] for a in r.json()["QueryResponse"]["Account"]}
    assert "Sales of Product Income" in names
    assert "Inactive Old Sales" not in names
    r = await api.query("SELECT * FROM TaxCode")
    assert len(r.json()["QueryResponse"]["TaxCode"]) == 7  # inactive and hidden ones too


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("SELECT * FROM Customer MAXRESULTS 1001", "4001"),
        ("SELECT * FROM Nope", "4000"),
        ("SELECT * Customer", "4000"),
        ("SELECT * FROM Customer WHERE DisplayName = 'x' OR Id = '1'", "4000"),
        ("DROP TABLE Customer", "4000"),
        ("", "4000"),
    ],
)
async def test_query_errors(api: Api, text: str, code: str) -> None:
    r = await api.query(text)
    assert r.status_code == 400
    err = fault_of(r)
    assert err["code"] == code
    if code == "4001":
        assert "Max allowed value is 1000" in err["Detail"]


async def test_private_note_is_not_queryable(api: Api) -> None:
    """As QuickBooks answers a filter on a field it does not mark filterable."""
    r = await api.query("SELECT * FROM Invoice WHERE PrivateNote LIKE '%qbsync:order:1;%'")
    err = fault_of(r)
    assert (r.status_code, err["code"]) == (400, "4001")
    assert err["Detail"] == "QueryValidationError: property 'PrivateNote' is not queryable"
    r = await api.query("SELECT * FROM Payment WHERE privatenote = 'x'")
    assert fault_of(r)["code"] == "4001"


async def test_payments_by_customer_and_date_page_by_page(api: Api) -> None:
    """What qbsync asks to find a payment it made: the customer's payments of a date."""
    ann, bob = await api.customer("Ann"), await api.customer("Bob")
    for who, date, note in [(ann, "2026-03-14", "a1"), (ann, "2026-03-15", "a2"),
                            (bob, "2026-03-14", "b1"), (ann, "2026-03-14", "a3")]:
        await api.ok("payment", {"CustomerRef": {"value": who["Id"]}, "TotalAmt": 5,
                                 "TxnDate": date, "PrivateNote": note})
    where = f"CustomerRef = '{ann['Id']}' AND TxnDate = '2026-03-14'"
    r = await api.query(f"SELECT * FROM Payment WHERE {where} STARTPOSITION 1 MAXRESULTS 1")
    assert [p["PrivateNote"] for p in r.json()["QueryResponse"]["Payment"]] == ["a1"]
    r = await api.query(f"SELECT * FROM Payment WHERE {where} STARTPOSITION 2 MAXRESULTS 1")
    assert [p["PrivateNote"] for p in r.json()["QueryResponse"]["Payment"]] == ["a3"]
    r = await api.query(f"SELECT * FROM Payment WHERE {where} STARTPOSITION 3 MAXRESULTS 1")
    assert r.json()["QueryResponse"] == {}


async def test_max_results_1000(api: Api) -> None:
    r = await api.query("SELECT * FROM Customer MAXRESULTS 1000")
    assert r.status_code == 200
