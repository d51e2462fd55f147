"""Symbolic references in mapping output.

`{"$ref": ["customer", "42"]}` names a shop row; it becomes `{"value": "<QuickBooks Id>"}`.
`{"$id": ["order", "42"]}` names one too and becomes the plain Id string (for fields such as
`LinkedTxn.TxnId` that take an Id, not a reference object).
`{"$setting": "tax_code:24"}` names a per-realm configuration value (qbsync.realm_settings);
it becomes that stored value. Beside `$ref`, "name" and "type" (a QuickBooks reference's
other fields) are kept as they are. collect() refuses anything else, naming its JSON path.
"""

from __future__ import annotations

from typing import Any

from . import fastjson
from .errors import MalformedOutput, UnresolvedSetting
from .model import Ref

DIRECTIVES = ("$ref", "$id", "$setting")
# Beside "$ref", the other fields of a QuickBooks reference; anything else is a mistake
# ("value" would replace the Id qbsync resolves; a "$" key is a directive mistyped).
REF_FIELDS = frozenset({"$ref", "name", "type"})
# What to_jsonb makes of a NaN or infinite numeric or float8: strings, which QuickBooks
# refuses where it wants a number.
NON_FINITE = frozenset({"NaN", "Infinity", "-Infinity"})
# QuickBooks objects nest a few levels (a group line's lines: 6); far deeper output is a
# mistake, and would exhaust Python's recursion on the way (jsonb takes thousands)
MAX_DEPTH = 64
# The number fields of the objects qbsync pushes (where such a string is a mistake; in a
# text field it may be a name)
NUMBER_FIELDS = frozenset({
    "Amount", "Qty", "UnitPrice", "RatePercent", "TaxPercent", "DiscountPercent",
    "MarkupPercent", "TotalAmt", "HomeTotalAmt", "Balance", "HomeBalance", "BalanceWithJobs",
    "UnappliedAmt", "ExchangeRate", "TotalTax", "NetAmountTaxable", "TaxInclusiveAmount",
    "QtyOnHand", "PurchaseCost", "ReorderPoint", "Deposit", "DiscountAmount", "TaxAmount",
})


def collect(body: Any) -> tuple[set[Ref], set[str]]:
    """All shop references and setting names used anywhere in a mapping's output, checked
    on the way (one walk): MalformedOutput, naming the JSON path, for a `$ref`, `$id` or
    `$setting` of the wrong shape or type or with keys it does not take, a key starting
    with "$" that is none of them (`$op` only at the top), NaN/Infinity in a number field,
    or nesting deeper than MAX_DEPTH. What substitute() then replaces is well formed."""
    refs: set[Ref] = set()
    settings: set[str] = set()
    if isinstance(body, dict):
        if "$ref" in body or "$id" in body or "$setting" in body:
            raise MalformedOutput("the body itself is a reference: a mapping returns the "
                                  "QuickBooks object")
        _walk(body, refs, settings)
    elif isinstance(body, list):
        _walk_list(body, refs, settings, 0)
    return refs, settings


# The walk is on every push's path: plain loops, the common case first (zero-cost `try`).
def _walk(node: dict[str, Any], refs: set[Ref], settings: set[str], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise MalformedOutput(f"nested more than {MAX_DEPTH} levels deep")
    for key, value in node.items():
        # `key < "%"` first: almost free, and false for every key not starting with "$"
        # or a character below it
        if key < "%" and key[:1] == "$" and not (depth == 0 and key == "$op"):
            raise MalformedOutput(f"unknown key {_shown(key)} (qbsync reads \"$ref\", \"$id\" "
                                  'and "$setting" objects, and "$op" at the top)', key)
        kind = value.__class__
        if kind is dict:
            try:
                if "$ref" in value or "$id" in value or "$setting" in value:
                    _directive(value, refs, settings)
                else:
                    _walk(value, refs, settings, depth + 1)
            except MalformedOutput as exc:
                raise exc.inside(key) from None
        elif kind is list:
            try:
                _walk_list(value, refs, settings, depth + 1)
            except MalformedOutput as exc:
                raise exc.inside(key) from None
        elif kind is str and key in NUMBER_FIELDS and value in NON_FINITE:
            raise MalformedOutput(f'"{value}" is not a number QuickBooks takes (a NaN or '
                                  "infinite value in the shop's data)", key)


def _walk_list(node: list[Any], refs: set[Ref], settings: set[str], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise MalformedOutput(f"nested more than {MAX_DEPTH} levels deep")
    for index, value in enumerate(node):
        kind = value.__class__
        if kind is dict:
            try:
                if "$ref" in value or "$id" in value or "$setting" in value:
                    _directive(value, refs, settings)
                else:
                    _walk(value, refs, settings, depth + 1)
            except MalformedOutput as exc:
                raise exc.inside(index) from None
        elif kind is list:
            try:
                _walk_list(value, refs, settings, depth + 1)
            except MalformedOutput as exc:
                raise exc.inside(index) from None


def _directive(node: dict[str, Any], refs: set[Ref], settings: set[str]) -> None:
    """One {"$ref": …}, {"$id": …} or {"$setting": …} object, checked and noted."""
    if len(node) == 1:  # the common case: nothing beside it
        for kind, value in node.items():
            if kind == "$setting":
                if value.__class__ is str and value:
                    settings.add(value)
                    return
            elif (value.__class__ is list and len(value) == 2
                    and value[0].__class__ is str and value[0]
                    and ((value[1].__class__ is str and value[1])
                         or value[1].__class__ is int)):
                refs.add((value[0], str(value[1])))
                return
    refs.add(_named_ref(node))


def _named_ref(node: dict[str, Any]) -> Ref:
    """The reference of a directive object off the common path: a `$ref` with a "name" or
    "type"; anything else raises MalformedOutput saying what is wrong."""
    present = [d for d in DIRECTIVES if d in node]
    if len(present) > 1:
        raise MalformedOutput(f'both "{present[0]}" and "{present[1]}" in one object')
    kind = present[0]
    allowed = REF_FIELDS if kind == "$ref" else (kind,)
    extra = sorted(k for k in node if k not in allowed)
    if extra:
        why = ('a reference may carry only "name" and "type"; qbsync sets "value"'
               if kind == "$ref" else "it takes no other key")
        raise MalformedOutput(f'{_shown(extra[0])} beside "{kind}" ({why})')
    value = node[kind]
    if kind == "$setting":
        raise MalformedOutput(f'"$setting" must name a setting (a non-empty string), not '
                              f"{_shown(value)}")
    if not (value.__class__ is list and len(value) == 2
            and value[0].__class__ is str and value[0]
            and ((value[1].__class__ is str and value[1]) or value[1].__class__ is int)):
        raise MalformedOutput(f'"{kind}" must be ["entity", "key"] (two non-empty strings; '
                              f"the key may be an integer), not {_shown(value)}")
    for name in ("name", "type"):
        if name in node and not (node[name] is None or node[name].__class__ is str):
            raise MalformedOutput(f'"{name}" of a reference must be a string, not '
                                  f"{_shown(node[name])}")
    return value[0], str(value[1])


def _shown(value: Any) -> str:
    """A value for a message: its JSON, cut short."""
    try:
        text = fastjson.dumps(value)
    except (TypeError, ValueError, RecursionError):  # nested beyond the encoders' limits
        text = f"a deeply nested {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def where(body: Any, entity: str) -> list[str | int]:
    """The path (innermost key first, as MalformedOutput takes it) of the first reference
    to `entity` in a body collect() accepted."""
    pairs = body.items() if isinstance(body, dict) else (
        enumerate(body) if isinstance(body, list) else ())
    for key, value in pairs:
        if isinstance(value, dict) and ("$ref" in value or "$id" in value):
            if value.get("$ref", value.get("$id"))[0] == entity:
                return [key]
        else:
            found = where(value, entity)
            if found:
                return [*found, key]
    return []


def substitute(
    body: Any, ids: dict[Ref, str], settings: dict[str, Any], *, realm_id: str = ""
) -> Any:
    """A copy of body with every reference replaced; ids must cover every $ref."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$id" in node:
                return ids[(str(node["$id"][0]), str(node["$id"][1]))]
            if "$ref" in node:
                ref = (str(node["$ref"][0]), str(node["$ref"][1]))
                extra = {k: v for k, v in node.items() if k != "$ref"}
                return {"value": ids[ref], **extra}
            if "$setting" in node:
                name = str(node["$setting"])
                if name not in settings:
                    raise UnresolvedSetting(
                        f'setting "{name}" has no value for QuickBooks company {realm_id}: '
                        "look it up again (qbsync settings --refresh) or set it with "
                        f"""SELECT qbsync.override_setting ('{name}', '{{"value": "<Id>"}}')""",
                        name)
                return settings[name]
            return {k: walk(v) for k, v in node.items() if not k.startswith("$")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(body)
