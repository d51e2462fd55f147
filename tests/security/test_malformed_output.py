"""Malformed mapping output fails its own row, once, naming the JSON path, on both push
paths; numbers reach QuickBooks with the decimal value PostgreSQL gave them or are refused.

A DBA's mapping is the shop's code: here the Dixis order and customer mappings are wrapped
by ones that write one malformed value into the real body (`jsonb_set`), or replace it,
for the keys listed in `public.tamper`. Every other key maps as Dixis does."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest

from qbsync.emulator import Emulator
from tests.daemon_support import Shop, connect_quick_retry_shop, drained, running
from tests.integration import dixis_helpers as dx
from tests.support import conn_url

Conn = psycopg.Connection

TAMPERING = """
CREATE TABLE public.tamper (
    entity text, key text, path text[], value jsonb, whole jsonb, PRIMARY KEY (entity, key));
ALTER FUNCTION qbsync_map."order"(text) RENAME TO order_untampered;
ALTER FUNCTION qbsync_map.customer(text) RENAME TO customer_untampered;
CREATE FUNCTION qbsync_map."order"(key text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN t.entity IS NULL THEN u.b WHEN t.path IS NULL THEN t.whole
                ELSE jsonb_set(u.b, t.path, t.value) END
    FROM qbsync_map.order_untampered($1) AS u(b)
    LEFT JOIN public.tamper t ON t.entity = 'order' AND t.key = $1 $$;
CREATE FUNCTION qbsync_map.customer(key text) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN t.entity IS NULL THEN u.b WHEN t.path IS NULL THEN t.whole
                ELSE jsonb_set(u.b, t.path, t.value) END
    FROM qbsync_map.customer_untampered($1) AS u(b)
    LEFT JOIN public.tamper t ON t.entity = 'customer' AND t.key = $1 $$;
"""

ITEM = "Line,0,SalesItemLineDetail,ItemRef"


@dataclass(frozen=True)
class Case:
    """One malformed value: where it goes (`path`, a jsonb_set path; None: `value` is the
    whole body), and what the row's error must say (`at`: the JSON path; `says`)."""

    name: str
    path: str | None
    value: str  # JSON; {customer} and {product} are replaced by the shop's keys
    at: str | None
    says: str


# Written into an order's body
ORDER_CASES = [
    Case("$ref of one part", "CustomerRef", '{"$ref": ["customer"]}', "CustomerRef",
         '"$ref" must be ["entity", "key"]'),
    Case("$ref a number", "Line,1,SalesItemLineDetail,ItemRef", '{"$ref": 42}',
         "Line[1].SalesItemLineDetail.ItemRef", "not 42"),
    Case("$ref and $id together", ITEM, '{"$ref": ["product", "{product}"], "$id": 7}',
         "Line[0].SalesItemLineDetail.ItemRef", 'both "$ref" and "$id"'),
    Case("$id of three parts inside an array", "LinkedTxn",
         '[{"TxnId": {"$id": ["order", "1", "x"]}, "TxnType": "Invoice"}]',
         "LinkedTxn[0].TxnId", '"$id" must be ["entity", "key"]'),
    Case("$ref key a boolean", ITEM, '{"$ref": ["product", true]}',
         "Line[0].SalesItemLineDetail.ItemRef", "not [\"product\",true]"),
    Case("$ref entity a nested reference", "CustomerRef",
         '{"$ref": [{"$ref": ["customer", "{customer}"]}, "{customer}"]}', "CustomerRef",
         '"$ref" must be ["entity", "key"]'),
    Case("$ref with a value beside it", "CustomerRef",
         '{"$ref": ["customer", "{customer}"], "value": "1"}', "CustomerRef",
         '"value" beside "$ref"'),
    Case("$ref with a name that is an object", "CustomerRef",
         '{"$ref": ["customer", "{customer}"], "name": {"$setting": "x"}}', "CustomerRef",
         '"name" of a reference must be a string'),
    Case("$ref to an unknown entity", ITEM, '{"$ref": ["giftcard", "1"]}',
         "Line[0].SalesItemLineDetail.ItemRef", 'unknown entity "giftcard"'),
    Case("$Ref mistyped", "CustomerRef", '{"$Ref": ["customer", "{customer}"]}',
         "CustomerRef.$Ref", 'unknown key "$Ref"'),
    Case("$setting a list", "Line,0,SalesItemLineDetail,TaxCodeRef",
         '{"$setting": ["tax_code", 24]}', "Line[0].SalesItemLineDetail.TaxCodeRef",
         '"$setting" must name a setting'),
    Case("$setting with a value beside it", "Line,1,SalesItemLineDetail,TaxCodeRef",
         '{"$setting": "tax_code:24", "value": "3"}', "Line[1].SalesItemLineDetail.TaxCodeRef",
         '"value" beside "$setting"'),
    Case("the body an array", None, "[]", None, "the mapping returned an array"),
    Case("the body a reference", None, '{"$ref": ["customer", "{customer}"]}', None,
         "the body itself is a reference"),
    Case("amount 1e400", "Line,0,Amount", "1e400", "Line[0].Amount", "401 digits"),
    Case("20-digit amount", "Line,0,Amount", "123456789012345678.91", "Line[0].Amount",
         "123456789012345678.91 has 20 digits"),
    Case("30-digit quantity", "Line,0,SalesItemLineDetail,Qty", "1" + "0" * 29,
         "Line[0].SalesItemLineDetail.Qty", "30 digits"),
    Case("NaN unit price", "Line,1,SalesItemLineDetail,UnitPrice", '"NaN"',
         "Line[1].SalesItemLineDetail.UnitPrice", '"NaN" is not a number'),
    Case("Infinity amount", "Line,0,Amount", '"Infinity"', "Line[0].Amount",
         '"Infinity" is not a number'),
]
# Written into the body of the customer an order refers to: the order fails, naming it
CUSTOMER_CASES = [
    Case("its customer's body an array", None, "[]", None,
         "the mapping returned an array"),
    Case("its customer with 1e400", "Balance", "1e400", "Balance", "401 digits"),
]


@dataclass
class Bad:
    entity: str
    key: str
    case: Case
    customer: str | None = None  # the tampered customer an order refers to


@pytest.fixture
async def shop(dixis_db: Conn) -> Shop:
    dixis_db.execute(TAMPERING)
    dixis_db.commit()
    return await connect_quick_retry_shop(conn_url(dixis_db), Emulator(limits=False))


def _goods(conn: Conn) -> tuple[int, int, int]:
    """Two products and a customer for the orders."""
    oil = dx.product(conn, "Ελαιόλαδο Κορωνέικη 1L", "12.90", vat=13)
    wine = dx.product(conn, "Αγιωργίτικο Νεμέας", "3.40", vat=24)
    return oil, wine, dx.customer(conn)


def _order(conn: Conn, goods: tuple[int, int, int], customer: int | None = None) -> int:
    oil, wine, who = goods
    return dx.order(conn, [(oil, "1", "12.90"), (wine, "2", "3.40")],
                    customer_id=customer or who)


def _tamper(conn: Conn, entity: str, key: int | str, case: Case, goods: tuple[int, int, int]
            ) -> None:
    value = case.value.replace("{customer}", str(goods[2])).replace("{product}", str(goods[0]))
    conn.execute("INSERT INTO public.tamper (entity, key, path, value, whole) "
                 "VALUES (%s, %s, %s, %s::jsonb, %s::jsonb)",
                 (entity, str(key), case.path.split(",") if case.path else None,
                  value if case.path else None, None if case.path else value))


def _malformed_rows(conn: Conn, goods: tuple[int, int, int]) -> list[Bad]:
    """An order for each order case, and for each customer case an order referring to a
    new customer (pushed as its dependency) with that case in its body."""
    bad = []
    for case in ORDER_CASES:
        order_id = _order(conn, goods)
        _tamper(conn, "order", order_id, case, goods)
        bad.append(Bad("order", str(order_id), case))
    for n, case in enumerate(CUSTOMER_CASES):
        customer = dx.customer(conn, "Ελένη", f"Τσακίρη {n}")
        _tamper(conn, "customer", customer, case, goods)
        bad.append(Bad("order", str(_order(conn, goods, customer)), case, str(customer)))
    return bad


def _outbox(conn: Conn, entity: str, key: str) -> tuple[str, int, str | None, str | None]:
    """The key's outbox row: state, tries, error and its code (none left: pushed)."""
    conn.commit()
    row = conn.execute("SELECT state::text, attempts, last_error, last_error_code "
                       "FROM qbsync.outbox WHERE entity = %s AND key = %s "
                       "ORDER BY id DESC LIMIT 1", (entity, key)).fetchone()
    return row or ("pushed", 0, None, None)


def _logs(conn: Conn, entity: str, key: str) -> list[tuple[str, str]]:
    conn.commit()
    return conn.execute("SELECT operation, status FROM qbsync.integration_logs "
                        "WHERE model_type = %s AND model_id = %s ORDER BY id",
                        (entity, key)).fetchall()


def _check_dead_once(conn: Conn, bad: list[Bad]) -> None:
    """Each bad row dead on its first try, its error naming the row (and the customer it
    refers to), the JSON path and the problem."""
    problems = []
    for row in bad:
        state, attempts, error, code = _outbox(conn, row.entity, row.key)
        error = error or ""
        label = f"{row.entity} {row.key}: " + (f"its customer {row.customer}: "
                                              if row.customer else "")
        wanted = [label, "mapping output" + (f" at {row.case.at}:" if row.case.at else ""),
                  row.case.says]
        missing = [w for w in wanted if w not in error]
        if (state, attempts, code) != ("dead", 1, "QB003") or missing:
            problems.append(f"{row.case.name} ({row.entity} {row.key}): {state} after "
                            f"{attempts} tries, code {code}, missing {missing} in {error!r}")
        statuses = [status for _, status in _logs(conn, row.entity, row.key)]
        if statuses != ["dead"]:
            problems.append(f"{row.case.name} ({row.entity} {row.key}): logged {statuses}")
    assert not problems, "\n".join(problems)


def _check_pushed_once(conn: Conn, orders: list[int], operation: str) -> None:
    for order_id in orders:
        logs = _logs(conn, "order", str(order_id))
        assert logs == [(operation, "success")], (order_id, logs)
        assert dx.mapped(conn, "order", order_id) is not None


async def _one_batch_next(shop: Shop, conn: Conn, order: Callable[[], int]) -> list[int]:
    """Pushes an order (its products and customer with it), then queues another claimed on
    its own: run next with one push at a time and batch_threshold=1, the daemon claims that
    one, sees the backlog, and claims every row queued after it as one batch push."""
    first = order()
    conn.commit()
    async with running(shop):
        await drained(shop.url)
    decoy = order()
    conn.commit()
    conn.execute("SELECT qbsync.collect_changes()")  # queued before the others
    conn.commit()
    return [first, decoy]


ONE_BATCH = {"batch_threshold": 1, "concurrency": 1}


async def test_malformed_output_fails_its_row_once_on_the_single_path(
        shop: Shop, dixis_db: Conn) -> None:
    goods = _goods(dixis_db)
    good = [_order(dixis_db, goods) for _ in range(3)]
    bad = _malformed_rows(dixis_db, goods)
    dixis_db.commit()
    async with running(shop, batch_threshold=100_000):
        await drained(shop.url)
    _check_dead_once(dixis_db, bad)
    _check_pushed_once(dixis_db, good, "create")
    assert len(shop.invoices()) == len(good)


async def test_malformed_output_fails_its_row_once_on_the_batch_path(
        shop: Shop, dixis_db: Conn) -> None:
    """One batch: the malformed rows and good ones. Each malformed row is dead on its first
    try with its own path; the good rows go through the batch on their first try."""
    goods = _goods(dixis_db)
    before = await _one_batch_next(shop, dixis_db, lambda: _order(dixis_db, goods))
    good = [_order(dixis_db, goods) for _ in range(3)]
    bad = _malformed_rows(dixis_db, goods)
    dixis_db.commit()
    assert len(good) + len(bad) <= 30  # one batch's worth
    async with running(shop, **ONE_BATCH):
        await drained(shop.url)
    _check_dead_once(dixis_db, bad)
    _check_pushed_once(dixis_db, good, "create (batch)")
    _check_pushed_once(dixis_db, before, "create")
    assert len(shop.invoices()) == len(good) + len(before)


class Recording(httpx.AsyncBaseTransport):
    """The transport to the emulator, keeping every request body the daemon sends."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.sent: list[bytes] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            self.sent.append(request.content)
        return await self.inner.handle_async_request(request)


def _numbers(node: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple, Decimal]]:
    """Every number in a body (read as Decimal) with its path, outside references."""
    if isinstance(node, dict):
        if not any(k.startswith("$") for k in node):
            for key, value in node.items():
                yield from _numbers(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _numbers(value, (*path, index))
    elif isinstance(node, Decimal):
        yield path, node


def _at(node: Any, path: tuple) -> Any:
    for part in path:
        node = node[part]
    return node


@pytest.mark.parametrize("batches", [False, True], ids=["one by one", "batches"])
async def test_numbers_reach_quickbooks_with_their_decimal_value(
        shop: Shop, dixis_db: Conn, batches: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every number of every invoice body, as the bytes sent to QuickBooks, equals the
    mapping's numeric (read as Decimal on both sides): amounts of up to 12 digits,
    quantities of up to 3 decimals, VAT-inclusive totals."""
    prices = ["0.01", "0.10", "12.90", "4.90", "99999.99", "1234567890.99", "3.33"]
    quantities = ["1", "2.5", "0.125", "3", "7", "1", "1000"]
    who = dx.customer(dixis_db)
    second = dx.product(dixis_db, "Ρίγανη Βουνού", "0.50", vat=13)
    before = await _one_batch_next(shop, dixis_db, lambda: dx.order(
        dixis_db, [(second, "1", "0.50")], customer_id=who)) if batches else []
    orders = []
    for n, (price, qty) in enumerate(zip(prices, quantities, strict=True)):
        item = dx.product(dixis_db, f"Προϊόν {n}", price, vat=(13, 24)[n % 2])
        orders.append(dx.order(dixis_db, [(item, qty, price), (second, "3", "0.50")],
                               customer_id=who, shipping="3.50"))
    dixis_db.commit()
    expected = {}
    for order_id in orders:
        row = dixis_db.execute("SELECT qbsync.map('order', %s)::text",
                               (str(order_id),)).fetchone()
        assert row is not None
        body = json.loads(row[0], parse_float=Decimal, parse_int=Decimal)
        expected[body["DocNumber"]] = body
    recording = Recording(shop.transport())
    monkeypatch.setattr(shop, "transport", lambda: recording)
    async with running(shop, **(ONE_BATCH if batches else {"batch_threshold": 100_000})):
        await drained(shop.url)
    _check_pushed_once(dixis_db, orders, "create (batch)" if batches else "create")
    sent = {}
    for content in recording.sent:
        data = json.loads(content, parse_float=Decimal, parse_int=Decimal)
        items = [i.get("Invoice") for i in data.get("BatchItemRequest", ())] or [data]
        sent.update({b["DocNumber"]: b for b in items if b and b.get("DocNumber") in expected})
    assert sent.keys() == expected.keys()
    compared = 0
    for number, body in expected.items():
        for path, value in _numbers(body):
            got = _at(sent[number], path)
            assert isinstance(got, Decimal), (number, path, got)  # a JSON number
            assert got == value, (number, path, value, got)
            compared += 1
    assert compared >= 8 * len(orders)
    assert len(shop.invoices()) == len(orders) + len(before)
