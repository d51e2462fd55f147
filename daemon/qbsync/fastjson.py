"""JSON on the daemon's hot path (jsonb to and from PostgreSQL, QuickBooks bodies and
answers) through orjson, several times faster than the standard library's json for the
same values. Anything orjson will not encode (an int beyond 64 bits, a type it does not
know) goes through the standard library, and so does what orjson will not read, so callers
see the json module's behaviour there. Compact separators, non-ASCII kept.

A mapping's output goes through `loads_exact`: its numbers must reach QuickBooks with the
decimal value PostgreSQL gave them. orjson reads a number as a double, which holds any
number of at most 15 digits exactly and is written back (shortest form) with the same
decimal value; QuickBooks takes at most 15 digits for an amount (10 before the point, 5
after). So a number of more digits, or beyond a double's range, is refused by name rather
than rounded (it became `inf`, sent as `null`)."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from .errors import MalformedOutput

_OPTIONS = orjson.OPT_NON_STR_KEYS  # {1: …} becomes {"1": …}, as with json.dumps


def dumps_bytes(value: Any) -> bytes:
    try:
        return orjson.dumps(value, option=_OPTIONS)
    except TypeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def dumps(value: Any) -> str:
    return dumps_bytes(value).decode()


def loads(data: str | bytes | bytearray | memoryview) -> Any:
    """Also what only the standard library reads (NaN, integers beyond 64 bits, UTF-16),
    and its error for what neither reads."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(bytes(data) if isinstance(data, memoryview) else data)


MAX_DIGITS = 15
# What the text of a number of more than MAX_DIGITS digits, or written with an exponent,
# must contain: 16 digits (and points) in a row, or a digit and an "e". Strings may match
# too (a long reference, "Apt 4E"): then the precise check finds nothing, at some cost. jsonb
# writes numbers out in full, without an exponent, and ordinary bodies do not match. (A
# stricter pattern, anchored where a value starts, cost three times as much on every body.)
_SUSPECT = re.compile(r"[0-9][0-9.]{15}|[0-9][eE]")
_UNREAD = object()


def loads_exact(text: str) -> Any:
    """loads, for a body bound for QuickBooks: MalformedOutput, naming the JSON path, for a
    number of more than MAX_DIGITS digits (counted written out in full, without leading
    zeros or trailing zeros after the point), beyond a double's range, NaN or Infinity. The
    common case costs one regular-expression scan over the text beside orjson's parse."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:  # e.g. a number beyond a double's range
        return _checked(text, _UNREAD)
    if _SUSPECT.search(text) is None:
        return value
    return _checked(text, value)


class _Number(str):
    """A number's token as written, kept by the precise check's parse."""


def _checked(text: str, value: Any) -> Any:
    try:
        tree = json.loads(text, parse_float=_Number, parse_int=_Number, parse_constant=_Number)
        if type(tree) is _Number:
            problem = number_problem(tree)
            if problem:
                raise MalformedOutput(problem)
        elif isinstance(tree, dict | list):
            _check(tree)
    except RecursionError:  # jsonb nests thousands of levels deep; orjson reads 1,024
        raise MalformedOutput("nested too deeply to read") from None
    return loads(text) if value is _UNREAD else value


def _check(node: dict[str, Any] | list[Any]) -> None:
    for key, item in node.items() if isinstance(node, dict) else enumerate(node):
        if type(item) is _Number:
            problem = number_problem(item)
            if problem:
                raise MalformedOutput(problem, key)
        elif isinstance(item, dict | list):
            try:
                _check(item)
            except MalformedOutput as exc:
                raise exc.inside(key) from None


def digits(token: str) -> int | None:
    """How many digits a JSON number needs, written out in full without leading zeros or
    trailing zeros after the point (`1e400`: 401, `0.000120`: 5, `4.90`: 2); None when it is
    not a finite number."""
    try:
        number = Decimal(token)
    except (InvalidOperation, ValueError):
        return None
    if not number.is_finite():
        return None
    _, coefficient, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if coefficient == (0,):
        return 1
    n = len(coefficient)
    while exponent < 0 and coefficient[n - 1] == 0:
        n -= 1
        exponent += 1
    return n + exponent if exponent >= 0 else max(n, -exponent)


def number_problem(token: str) -> str | None:
    """Why QuickBooks cannot be sent this JSON number exactly, or None."""
    count = digits(token)
    if count is None:
        return f"{token} is not a number QuickBooks takes"
    if count <= MAX_DIGITS:
        return None
    shown = token if len(token) <= 24 else f"{token[:12]}…{token[-6:]}"
    return (f"the number {shown} has {count} digits: QuickBooks takes at most {MAX_DIGITS} "
            "(10 before the point, 5 after) and a double would round it; round it in the "
            "mapping (or send text as a JSON string)")
