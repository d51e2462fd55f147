"""A mapping's numbers on their way to QuickBooks: read as doubles only when a double holds
them exactly (at most 15 digits) and written back with the same decimal value; anything
longer, beyond a double's range, NaN or Infinity fails the row, naming the JSON path."""

from __future__ import annotations

import json
import random
from decimal import Decimal

import orjson
import pytest

from qbsync import fastjson
from qbsync.decide import parse_body
from qbsync.model import PushFailed

REFUSED = [
    ("1e400 as jsonb writes it", '{"Line": [{"Amount": 1' + "0" * 400 + "}]}",
     "Line[0].Amount", "401 digits"),
    ("1e400", '{"Line": [{}, {"Amount": 1e400}]}', "Line[1].Amount", "401 digits"),
    ("20 digits", '{"Line": [{"Amount": 123456789012345678.91}]}', "Line[0].Amount",
     "has 20 digits"),
    ("beyond 64 bits", '{"Qty": 18446744073709551616}', "Qty", "20 digits"),
    ("within 64 bits, 17 digits", '{"Qty": 12345678901234567}', "Qty", "17 digits"),
    ("16 digits", '{"Amount": 1234567890123456}', "Amount", "16 digits"),
    ("16 decimals", '{"Amount": 0.0000000000000001}', "Amount", "16 digits"),
    ("rounded to a short double", '{"Amount": 0.10000000000000000001}', "Amount",
     "20 digits"),
    ("an exponent", '{"X": {"Rate": 1.5e300}}', "X.Rate", "301 digits"),
    ("a small exponent", '{"Rate": 1.2345e-12}', "Rate", "16 digits"),
    ("NaN", '{"a": [NaN]}', "a[0]", "NaN is not a number"),
    ("-Infinity", '{"a": {"b": -Infinity}}', "a.b", "-Infinity is not a number"),
]


@pytest.mark.parametrize(("text", "path", "says"), [r[1:] for r in REFUSED],
                         ids=[r[0] for r in REFUSED])
def test_numbers_a_double_would_change_fail_the_row_by_path(text: str, path: str,
                                                            says: str) -> None:
    with pytest.raises(PushFailed) as info:
        parse_body("order 7", text)
    failure = info.value
    assert failure.kind == "permanent"
    assert failure.message.startswith(f"order 7: mapping output at {path}: ")
    assert says in failure.message


def test_a_body_that_is_not_an_object_fails_saying_what_it_is() -> None:
    for text, kind in (("[]", "an array"), ('"x"', "a string"), ("null", "null"),
                       ("12.5", "a number"), ("true", "a boolean")):
        with pytest.raises(PushFailed) as info:
            parse_body("order 7", text)
        assert info.value.kind == "permanent"
        assert f"the mapping returned {kind}, not a JSON object" in info.value.message


def _decimal(rng: random.Random) -> str:
    """A number of at most 15 digits, as PostgreSQL writes a numeric (trailing zeros too)."""
    digits = rng.randint(1, 15)
    scale = rng.randint(0, digits)
    text = str(rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits))
    if scale:
        text = text.rjust(scale + 1, "0")
        text = f"{text[:-scale]}.{text[-scale:]}" + "0" * rng.randint(0, 3)
    return ("-" if rng.random() < 0.2 else "") + text


EDGES = ["999999999999999", "0.000000000000001", "9999999999.99999", "1234567890.12345",
         "-0.00001", "0.1", "4.90", "1.000000000000000000000", "0", "-0.0", "100000000000000"]


def test_numbers_of_up_to_15_digits_reach_quickbooks_with_their_decimal_value() -> None:
    rng = random.Random(15)
    numbers = EDGES + [_decimal(rng) for _ in range(20_000)]
    text = '{"Line": [' + ", ".join(f'{{"Amount": {n}}}' for n in numbers) + "]}"
    body = parse_body("order 7", text)
    assert body is not None
    sent = json.loads(fastjson.dumps_bytes(body), parse_float=Decimal, parse_int=Decimal)
    assert [line["Amount"] for line in sent["Line"]] == [Decimal(n) for n in numbers]


def test_text_that_only_looks_like_a_long_number_is_read_as_it_is() -> None:
    text = json.dumps({"PrivateNote": "card 1234567890123456, 1e400", "Line1": "Apt 4E",
                       "Amount": 12.9, "Line": [{"Qty": 2}]}, ensure_ascii=False)
    assert fastjson.loads_exact(text) == orjson.loads(text)


def test_digits_counts_what_a_number_needs_written_out() -> None:
    assert fastjson.digits("1e400") == 401
    assert fastjson.digits("1" + "0" * 400) == 401
    assert fastjson.digits("0.000120") == 5
    assert fastjson.digits("4.90") == 2
    assert fastjson.digits("-12.5") == 3
    assert fastjson.digits("0.0") == 1
    assert fastjson.digits("NaN") is None
    assert fastjson.digits("Infinity") is None


def test_a_body_nested_deeper_than_the_parsers_read_fails_the_row() -> None:
    text = '{"Line": ' + "[" * 5000 + "1" + "]" * 5000 + "}"  # jsonb takes it
    with pytest.raises(PushFailed) as info:
        parse_body("order 7", text)
    assert info.value.kind == "permanent"
    assert "nested too deeply" in info.value.message
