"""Parser and executor for the QuickBooks query language subset real clients send.

``SELECT * | COUNT(*) | *, Sku | f1, f2 FROM Entity [WHERE c AND c ...]
[ORDERBY|ORDER BY f [ASC|DESC], ...] [STARTPOSITION n] [MAXRESULTS m]``

Conditions: ``f = v``, ``!=``/``<>``, ``<``, ``<=``, ``>``, ``>=``, ``f IN (v, ...)``,
``f LIKE '%x%'``. Values: ``'strings'`` (``\\'`` escapes a quote), numbers, ``true``/``false``.

Decisions where the fact sheet is silent ([U]):

* string comparisons (``=``, ``IN``, ``LIKE``) are case-insensitive;
* references (``CustomerRef = '12'``) compare on their ``value``;
* values that look like dates/datetimes are compared as instants (``MetaData.LastUpdatedTime``);
* like QBO's name lists, Customer, Item, Account and PaymentMethod queries return only active
  records unless the WHERE clause mentions ``Active``;
* without ORDERBY, rows come in ascending numeric Id order;
* an unknown entity or syntax error -> 4000 "Error parsing query" (QueryParserError); a
  MAXRESULTS above 1000 -> 4001 "Invalid query" (QueryValidationError: Max allowed value is 1000).

As QuickBooks does, a condition on a field its API reference does not mark filterable is
refused: 4001 "Invalid query", "QueryValidationError: property 'X' is not queryable" (the
answers quoted in ruckus/quickbooks-ruby#403 and intuit/QuickBooks-V3-DotNET-SDK#163, where
Intuit says only the fields marked filterable can be queried). The emulator knows one such
field, ``PrivateNote``, of every entity (not filterable on Invoice, Payment or RefundReceipt
in the CData and Gravity QuickBooks Online table references, which list what is filterable;
[V2]): the field a client looking for its own note in a transaction would filter on.
CustomerRef, TxnDate and DocNumber are filterable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from . import faults
from .clock import parse_iso
from .store import ALL_ENTITIES, Company

MAX_RESULTS = 1000
DEFAULT_RESULTS = 100
NAME_LISTS = ("Customer", "Item", "Account", "PaymentMethod")
NOT_QUERYABLE = frozenset({"privatenote"})
_ENTITIES = {e.lower(): e for e in ALL_ENTITIES}
_TOKEN = re.compile(
    r"\s*(?:(?P<str>'(?:\\.|[^'\\])*')|(?P<num>-?\d+(?:\.\d+)?)(?![\w.])"
    r"|(?P<op><=|>=|!=|<>|=|<|>)|(?P<punct>[(),*])|(?P<id>[A-Za-z_][\w.]*))"
)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


@dataclass
class Cond:
    field: str
    op: str  # = != < <= > >= in like
    values: list[Any]


@dataclass
class Query:
    entity: str
    count: bool = False
    fields: list[str] | None = None  # None = *
    extra: list[str] = field(default_factory=list)  # "*, Sku"
    where: list[Cond] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)  # (field, descending)
    start: int = 1
    max_results: int = DEFAULT_RESULTS


def tokenize(text: str) -> list[tuple[str, Any]]:
    tokens: list[tuple[str, Any]] = []
    pos = 0
    text = text.strip().rstrip(";")
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise faults.query_parse_error(
                f'Encountered " "{text[pos : pos + 10]}"" at line 1, column {pos + 1}.'
            )
        pos = m.end()
        kind = m.lastgroup
        value = m.group(kind or "")
        if kind == "str":
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        tokens.append((kind or "", value))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def error(self, what: str = "") -> faults.QBOFault:
        tok = self.peek()
        found = tok[1] if tok else "<EOF>"
        return faults.query_parse_error(
            f'Encountered " "{found}"" {what}in query: {self.text}'.replace("  ", " ")
        )

    def next(self) -> tuple[str, Any]:
        tok = self.peek()
        if tok is None:
            raise self.error()
        self.i += 1
        return tok

    def kw(self, *words: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "id" and tok[1].upper() in words:
            self.i += 1
            return True
        return False

    def expect_kw(self, word: str) -> None:
        if not self.kw(word):
            raise self.error()

    def punct(self, p: str) -> bool:
        tok = self.peek()
        if tok and tok[0] == "punct" and tok[1] == p:
            self.i += 1
            return True
        return False

    def ident(self) -> str:
        kind, value = self.next()
        if kind != "id":
            self.i -= 1
            raise self.error()
        return value

    def value(self) -> Any:
        kind, value = self.next()
        if kind == "str":
            return value
        if kind == "num":
            return Decimal(value)
        if kind == "id" and value.lower() in ("true", "false"):
            return value.lower() == "true"
        self.i -= 1
        raise self.error()

    def integer(self) -> int:
        kind, value = self.next()
        if kind != "num" or "." in value:
            self.i -= 1
            raise self.error()
        return int(value)

    def parse(self) -> Query:
        self.expect_kw("SELECT")
        count = False
        fields: list[str] | None = None
        extra: list[str] = []
        if self.kw("COUNT"):
            if not (self.punct("(") and self.punct("*") and self.punct(")")):
                raise self.error()
            count = True
        elif self.punct("*"):
            while self.punct(","):
                extra.append(self.ident())
        else:
            fields = [self.ident()]
            while self.punct(","):
                fields.append(self.ident())
        self.expect_kw("FROM")
        name = self.ident()
        entity = _ENTITIES.get(name.lower())
        if entity is None:
            raise faults.query_parse_error(f"Invalid entity name: {name}")
        q = Query(entity=entity, count=count, fields=fields, extra=extra)
        if self.kw("WHERE"):
            q.where.append(self.cond())
            while self.kw("AND"):
                q.where.append(self.cond())
        if self.kw("ORDERBY") or (self.kw("ORDER") and (self.kw("BY") or self._raise())):
            while True:
                f = self.ident()
                desc = False
                if self.kw("DESC"):
                    desc = True
                else:
                    self.kw("ASC")
                q.order.append((f, desc))
                if not self.punct(","):
                    break
        if self.kw("STARTPOSITION"):
            q.start = max(1, self.integer())
        if self.kw("MAXRESULTS"):
            q.max_results = self.integer()
            if q.max_results > MAX_RESULTS:
                raise faults.query_validation_error(
                    f"value {q.max_results} is too large. Max allowed value is {MAX_RESULTS}"
                )
        if self.peek() is not None:
            raise self.error()
        return q

    def _raise(self) -> bool:
        raise self.error()

    def cond(self) -> Cond:
        f = self.ident()
        if f.lower() in NOT_QUERYABLE:
            raise faults.query_validation_error(f"property '{f}' is not queryable")
        if self.kw("IN"):
            if not self.punct("("):
                raise self.error()
            values = [self.value()]
            while self.punct(","):
                values.append(self.value())
            if not self.punct(")"):
                raise self.error()
            return Cond(f, "in", values)
        if self.kw("LIKE"):
            return Cond(f, "like", [self.value()])
        kind, op = self.next()
        if kind != "op":
            self.i -= 1
            raise self.error()
        return Cond(f, "!=" if op == "<>" else op, [self.value()])


def parse(text: str) -> Query:
    if not text or not text.strip():
        raise faults.query_parse_error("empty query")
    return _Parser(text).parse()


# --- evaluation --------------------------------------------------------------------------


def _field(obj: dict[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        if part in cur:
            cur = cur[part]
        else:  # field names are case-insensitive in QBO queries
            low = part.lower()
            cur = next((v for k, v in cur.items() if k.lower() == low), None)
    if isinstance(cur, dict) and "value" in cur:
        return cur["value"]
    return cur


def _num(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, Decimal):
        return v
    try:
        return Decimal(str(v))
    except InvalidOperation:
        return None


def _cmp(a: Any, b: Any, equality: bool = False) -> int | None:
    """Compare a field value with a literal: -1/0/1, None if incomparable."""
    if a is None:
        return None
    if isinstance(b, bool) or isinstance(a, bool):
        a_b = a if isinstance(a, bool) else str(a).lower() == "true"
        return 0 if a_b == b else 1
    if isinstance(a, str) and isinstance(b, str):
        if _DATE.match(b) and _DATE.match(a):
            try:
                x, y = parse_iso(a), parse_iso(b)
                return (x > y) - (x < y)
            except ValueError:
                pass
        if not equality and a.isdigit() and b.isdigit():  # numeric Ids ordered numerically
            x2, y2 = int(a), int(b)
            return (x2 > y2) - (x2 < y2)
        sa, sb = a.casefold(), b.casefold()
        return (sa > sb) - (sa < sb)
    na, nb = _num(a), _num(b)
    if na is not None and nb is not None:
        return (na > nb) - (na < nb)
    sa, sb = str(a).casefold(), str(b).casefold()
    return (sa > sb) - (sa < sb)


def _like(value: Any, pattern: str) -> bool:
    if value is None:
        return False
    rx = "".join(".*" if ch == "%" else re.escape(ch) for ch in str(pattern))
    return re.fullmatch(rx, str(value), re.IGNORECASE | re.DOTALL) is not None


def matches(obj: dict[str, Any], conds: list[Cond]) -> bool:
    for c in conds:
        v = _field(obj, c.field)
        if c.op == "in":
            if not any(_cmp(v, x, True) == 0 for x in c.values):
                return False
        elif c.op == "like":
            if not _like(v, c.values[0]):
                return False
        else:
            r = _cmp(v, c.values[0], c.op in ("=", "!="))
            if r is None:
                return False
            ok = {"=": r == 0, "!=": r != 0, "<": r < 0, "<=": r <= 0, ">": r > 0, ">=": r >= 0}[
                c.op
            ]
            if not ok:
                return False
    return True


def _candidates(company: Company, q: Query) -> list[dict[str, Any]]:
    """Use the O(1) indexes for the common lookups (Id, DisplayName/Name, DocNumber)."""
    for c in q.where:
        if c.op != "=" or not isinstance(c.values[0], str | Decimal):
            continue
        key = c.field.lower()
        value = str(c.values[0])
        if key == "id":
            obj = company.get(q.entity, value)
            return [obj] if obj is not None else []
        if (q.entity, key) in (("Customer", "displayname"), ("Item", "name")):
            id_ = company.id_by_name(q.entity, value)
            obj = company.get(q.entity, id_) if id_ else None
            return [obj] if obj is not None else []
        if key == "docnumber" and q.entity in company.docnums:
            objs = [company.get(q.entity, i) for i in company.ids_by_docnum(q.entity, value)]
            return [o for o in objs if o is not None]
    return company.visible(q.entity)


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (2, "")
    n = _num(value)
    if n is not None and not isinstance(value, bool):
        return (0, n)
    return (1, str(value).casefold())


def execute(company: Company, text: str) -> dict[str, Any]:
    """Run a query; returns the ``QueryResponse`` object (without the envelope)."""
    q = parse(text)
    rows = [o for o in _candidates(company, q) if matches(o, q.where)]
    if q.entity in NAME_LISTS and not any(c.field.lower() == "active" for c in q.where):
        rows = [o for o in rows if o.get("Active", True) is not False]
    if q.count:
        return {"totalCount": len(rows)}
    if q.order:
        for f, desc in reversed(q.order):
            rows.sort(key=lambda o, f=f: _sort_key(_field(o, f)), reverse=desc)
    else:
        rows.sort(key=lambda o: _sort_key(o.get("Id")))
    page = rows[q.start - 1 : q.start - 1 + q.max_results]
    if not page:
        return {}
    if q.fields is not None:
        keep = {f.lower() for f in q.fields} | {"id", "synctoken", "domain", "metadata"}
        page = [{k: v for k, v in o.items() if k.lower() in keep} | {"sparse": True} for o in page]
    elif q.entity == "Item" and not any(e.lower() == "sku" for e in q.extra):
        page = [{k: v for k, v in o.items() if k != "Sku"} if "Sku" in o else o for o in page]
    return {q.entity: page, "startPosition": q.start, "maxResults": len(page)}
