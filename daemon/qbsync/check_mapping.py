"""`qbsync check-mapping`: the mapping functions run over keys of the shop (a sample, all of
them, or the ones given) the way the daemon runs them, and each body is checked against
what QuickBooks enforces and what qbsync knows, without contacting QuickBooks.

* Set-based: keys come from `qbsync.keys_of` (the entity's `_keys()`), bodies from
  `qbsync.map_many` in chunks, references from `qbsync.unknown_keys` once per referenced
  entity; one read-only snapshot, with the rights of the role that runs the check (the
  mapping runs as the caller, as the daemon's does).
* Per body: the daemon's own output checks (`decide.parse_body`: `fastjson.loads_exact` and
  the object test; `refs.collect`), then the QuickBooks rules of `qbsync.check_rules`.
* Across bodies: references that resolve (the customers and items a body `$ref`s are mapped
  and checked too: the daemon pushes them first), settings the connected company resolves,
  its currency, DocNumbers unique, totals against the shop's own `<invoice entity>_ledger`.
* Per entity: the contract's functions and their signatures, and the capture rules against
  the columns the body function reads (`qbsync.reads`).
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

import psycopg
from psycopg.rows import dict_row

from .check_rules import (
    ERROR,
    INFO,
    RULES,
    SALES_TYPES,
    TAX_RATE_SETTING,
    US_CODES,
    WARNING,
    CompanyCurrency,
    Finding,
    TaxContext,
    check_body,
    document_total,
    duplicate_doc_numbers,
    number,
    path_of,
    reference_types,
)
from .errors import MalformedOutput, QbsyncError, describe_db_error
from .model import currency_code
from .queries import load_cli
from .reads import Analyser, Catalog, Function, Relation, clean
from .reads import _path as search_path
from .refs import collect

Q = load_cli()

CHUNK = 500  # keys per map_many call
DEPENDENCY_TYPES = frozenset({"Customer", "Item"})  # pushed first by the daemon (sync.py)
MAX_DEPENDENCY_DEPTH = 4
# Setting names the daemon looks up in every company (qbsync.realm): anything else needs an
# override per company, or an alias onto one of these.
LOOKED_UP = re.compile(r"^(tax_code:(-?[0-9]+(\.[0-9]*[1-9])?|TAX|NON)|income_account|"
                       r"payment_method:[a-z0-9_]+|deposit_account:(undeposited_funds|bank)|"
                       r"custom_txn_numbers|home_currency|multicurrency)$")
DIRECTIVE = re.compile(r"qbsync:uncaptured\b([^\n]*)")


class UnknownEntity(QbsyncError):
    """--entity names no registered entity."""


# --- the contract's functions ---------------------------------------------------------------

@dataclass(frozen=True)
class Contract:
    suffix: str
    args: tuple[str, ...]
    absent: str  # the level of a finding when it is not defined
    invoice_only: bool
    cost: str  # what qbsync does without it


# Only the body function is required: the daemon pushes an entity without the others. The
# two whose absence a DBA rarely means (no key list, no write-back) are warnings; the rest,
# notes. A function of the wrong signature is an error whatever its level.
CONTRACT = (
    Contract("", ("text",), ERROR, False, "the daemon cannot map the entity (QB002)"),
    Contract("_keys", (), WARNING, False, "sync_all_customers / sync_catalog fail naming it, "
             "resync takes any key, and check-mapping lists no key of {entity} (it checks "
             "only --keys, and references to {entity} keys are not checked)"),
    Contract("_outcome", ("text", "jsonb"), WARNING, False, "nothing is written back onto "
             "the shop's rows (qbsync's own tables still say everything)"),
    Contract("_outcomes", ("text[]", "jsonb[]"), INFO, False, "grouped successes write back "
             "with one _outcome call per row"),
    Contract("_key_exists", ("text",), INFO, False, "resync checks keys with one pass over "
             "_keys()"),
    Contract("_unsynced_count", (), INFO, True, "the dashboard says unknown (define "
             "qbsync_map.{entity}_unsynced_count()) instead of the orders without an invoice"),
    Contract("_revenue", ("date", "date"), INFO, True, "reports are stored with no shop "
             "figure (verdict: no shop figure)"),
    Contract("_ledger", ("date", "date"), INFO, True, "qbsync reconcile fails naming it, and "
             "check-mapping cannot compare totals with the shop's own figures"),
)
TABLE_COLUMNS = {"_revenue": ("net", "gross", "orders"),
                 "_ledger": ("entity", "key", "doc_number", "txn_date", "amount")}
COUNT_TYPES = ("bigint", "integer", "smallint", "numeric")


def fn_name(entity: str, suffix: str, args: Iterable[str] = ()) -> str:
    name = entity + suffix
    shown = name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) and name not in (
        "order", "user", "group", "table", "select", "check", "default") else f'"{name}"'
    return f"qbsync_map.{shown}({', '.join(args)})"


def check_functions(entity: str, qbo_type: str, functions: list[dict[str, Any]]
                    ) -> tuple[list[Finding], list[dict[str, str]]]:
    """Findings (rule "function") and a line per contract function: present, absent (and
    what that costs) or wrong."""
    findings: list[Finding] = []
    table: list[dict[str, str]] = []
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for f in functions:
        by_name[f["name"]].append(f)
    for c in CONTRACT:
        if c.invoice_only and qbo_type != "Invoice":
            continue
        name = fn_name(entity, c.suffix, c.args)
        candidates = by_name.get(entity + c.suffix, [])
        match = next((f for f in candidates if tuple(f["args"]) == c.args), None)
        if match is None:
            others = "; ".join(fn_name(entity, c.suffix, f["args"]) for f in candidates)
            if others:
                problem = f"qbsync calls {name}, which does not exist: there is {others}"
                findings.append(Finding("function", ERROR, problem, name))
                table.append({"function": name, "status": "wrong signature", "note": problem})
            elif c.absent == ERROR:
                problem = f"{name} is missing: {c.cost.format(entity=entity)}"
                findings.append(Finding("function", ERROR, problem, name))
                table.append({"function": name, "status": "missing", "note": c.cost.format(
                    entity=entity)})
            else:
                note = c.cost.format(entity=entity)
                findings.append(Finding("function", c.absent, f"{name} is not defined: "
                                        f"{note}", name))
                table.append({"function": name, "status": "absent", "note": note})
            continue
        problem = _signature_problem(c, match)
        if problem:
            findings.append(Finding("function", ERROR, f"{name} {problem}", name))
            table.append({"function": name, "status": "wrong signature", "note": problem})
        else:
            table.append({"function": name, "status": "ok", "note": ""})
    return findings, table


def _signature_problem(c: Contract, f: dict[str, Any]) -> str | None:
    if f["kind"] != "f":
        return "is a procedure: qbsync calls functions"
    returns, retset = f["returns"], f["retset"]
    if c.suffix == "":
        if retset or returns not in ("jsonb", "json"):
            return (f"returns {'SETOF ' if retset else ''}{returns}: the daemon reads one "
                    "jsonb body per key")
    elif c.suffix == "_keys" and not retset:
        return f"returns {returns}, not a set of keys (RETURNS SETOF text)"
    elif c.suffix == "_key_exists" and (retset or returns != "boolean"):
        return f"returns {returns}: resync wants a boolean"
    elif c.suffix == "_unsynced_count" and (retset or returns not in COUNT_TYPES):
        return f"returns {returns}: the dashboard wants a count (bigint)"
    elif c.suffix in TABLE_COLUMNS:
        names = {column.split(" ")[0] for column in f["out_columns"]}
        missing = [n for n in TABLE_COLUMNS[c.suffix] if n not in names]
        if not retset or missing:
            want = ", ".join(TABLE_COLUMNS[c.suffix])
            return f"must return TABLE ({want}); missing: {', '.join(missing) or 'a set'}"
    return None


# --- the report -----------------------------------------------------------------------------

@dataclass
class KeyResult:
    entity: str
    key: str
    status: str = "ok"            # ok, null (nothing to push), void, delete, error
    findings: list[Finding] = field(default_factory=list)
    dependency_of: str | None = None

    @property
    def level(self) -> str:
        levels = {f.level for f in self.findings}
        return ERROR if ERROR in levels else WARNING if WARNING in levels else \
            INFO if INFO in levels else ""

    def as_json(self) -> dict[str, Any]:
        return {"entity": self.entity, "key": self.key, "status": self.status,
                "level": self.level or None, "dependency_of": self.dependency_of,
                "findings": [f.as_json() for f in self.findings]}


@dataclass
class EntityReport:
    entity: str
    qbo_type: str
    keys_total: int | None = None
    keys_checked: int = 0
    dependencies: int = 0
    functions: list[dict[str, str]] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    reads: dict[str, Any] | None = None

    def as_json(self) -> dict[str, Any]:
        return {"entity": self.entity, "qbo_type": self.qbo_type,
                "keys_total": self.keys_total, "keys_checked": self.keys_checked,
                "dependencies_checked": self.dependencies, "functions": self.functions,
                "findings": [f.as_json() for f in self.findings], "reads": self.reads}


@dataclass
class Report:
    company: dict[str, Any]
    tax_model: str | None
    tax_model_source: str
    entities: list[EntityReport]
    keys: list[KeyResult]
    seconds: float = 0.0

    def findings(self) -> Iterator[Finding]:
        for e in self.entities:
            yield from e.findings
        for k in self.keys:
            yield from k.findings

    def count(self, level: str) -> int:
        return sum(1 for f in self.findings() if f.level == level)

    @property
    def ok(self) -> bool:
        return self.count(ERROR) == 0

    def as_json(self) -> dict[str, Any]:
        by_rule: dict[str, dict[str, int]] = {}
        for f in self.findings():
            counts = by_rule.setdefault(f.rule, {ERROR: 0, WARNING: 0, INFO: 0})
            counts[f.level] += 1
        return {
            "ok": self.ok, "company": self.company, "tax_model": self.tax_model,
            "tax_model_source": self.tax_model_source,
            "summary": {"errors": self.count(ERROR), "warnings": self.count(WARNING),
                        "info": self.count(INFO), "keys": len(self.keys),
                        "keys_with_errors": sum(1 for k in self.keys if k.level == ERROR),
                        "by_rule": by_rule, "seconds": round(self.seconds, 3)},
            "rules": RULES,
            "entities": [e.as_json() for e in self.entities],
            "keys": [k.as_json() for k in self.keys],
        }


# --- the run --------------------------------------------------------------------------------

@dataclass
class Mapped:
    """What the cross-body checks keep of one mapped key."""

    result: KeyResult
    qbo_type: str
    refs: list[tuple[str, str, str, str]] = field(default_factory=list)  # path, kind, e, k
    settings: list[tuple[str, str]] = field(default_factory=list)        # path, name
    doc_number: str | None = None
    total: Decimal | None = None
    txn_date: date | None = None


class Check:
    def __init__(self, conn: psycopg.Connection[Any], *, entities: list[str] | None,
                 sample: int | None, keys: list[str] | None, seed: float,
                 tax_model: str | None, capture: bool = True, ledger: bool | None = None
                 ) -> None:
        self.conn = conn
        self.cur = conn.cursor(row_factory=dict_row)
        self.wanted = entities
        self.sample = sample
        self.given = keys
        self.seed = seed
        self.tax_option = tax_model
        self.capture = capture
        # the checks over the shop's whole ledger map every document of the period: worth it
        # (and meaningful) when every key is checked, not for a sample or a few keys
        self.ledger = ledger if ledger is not None else (sample is None and keys is None)
        self.mapped: dict[tuple[str, str], Mapped] = {}
        self.results: list[KeyResult] = []

    def run(self) -> Report:
        started = time.perf_counter()
        with self.conn.transaction():
            self.conn.execute(Q.check_snapshot)
            report = self._map_and_check()
        if self.capture:
            # probes compile temporary functions: their own transaction, rolled back
            with self.conn.transaction(force_rollback=True):
                for entity_report in report.entities:
                    self._capture(entity_report)
        report.seconds = time.perf_counter() - started
        return report

    # -- reading what the check needs ------------------------------------------------------

    def _map_and_check(self) -> Report:
        self.types = {r["entity"]: r["qbo_type"]
                      for r in self.cur.execute(Q.check_entities).fetchall()}
        unknown = [e for e in self.wanted or [] if e not in self.types]
        if unknown:
            known = ", ".join(sorted(self.types)) or "none: register them with define_entity"
            raise UnknownEntity(f"no entity {', '.join(unknown)} in qbsync.entities "
                                f"(registered: {known})")
        company = self.cur.execute(Q.check_company).fetchone()
        self.realm = company["realm_id"] if company else None
        self.settings: dict[str, Any] = {}
        # the daemon looks a company's settings up at its start: until then (just connected)
        # their values cannot be checked, only their names
        self.looked_up = False
        if self.realm:
            rows = self.cur.execute(Q.check_realm_settings, (self.realm,)).fetchall()
            self.settings = {r["name"]: r["value"] for r in rows}
            self.looked_up = any(r["source"] == "lookup" for r in rows)
        self.aliases = {r["name"]: r["target"]
                        for r in self.cur.execute(Q.check_aliases).fetchall()}
        # the daemon's verdict on a CurrencyRef needs both (decide.currency_refusal)
        multi = self.settings.get("multicurrency")
        self.currency = CompanyCurrency(
            currency_code(self.settings.get("home_currency")),
            None if multi is None else multi is True or str(multi).lower() == "true")
        self.tax, source = self._tax_context(company)
        self.functions = self.cur.execute(Q.check_mapping_functions).fetchall()
        selected = self.wanted or sorted(self.types)
        reports: list[EntityReport] = []
        self.entity_reports: dict[str, EntityReport] = {}
        self.extra_reports: list[EntityReport] = []
        for entity in selected:
            report = EntityReport(entity, self.types[entity])
            report.findings, report.functions = check_functions(
                entity, report.qbo_type, [f for f in self.functions
                                          if f["name"].startswith(entity)])
            reports.append(report)
            self.entity_reports[entity] = report
            if any(f["function"] == fn_name(entity, "", ("text",)) and f["status"] != "ok"
                   for f in report.functions):
                continue  # nothing to map
            keys = self._guarded(report, f"listing the keys of {entity}", self._keys, report)
            report.keys_checked = len(keys or [])
            self._map(entity, keys or [], None)
        self._dependencies()
        self._references()
        self._settings()
        self._doc_numbers()
        self._ledger()
        return Report({"realm_id": self.realm,
                       "company_name": company["company_name"] if company else None,
                       "country": company["country"] if company else None,
                       "settings_looked_up": self.looked_up,
                       "home_currency": self.currency.home,
                       "multicurrency": self.currency.multicurrency},
                      self.tax.model, source, reports + self.extra_reports, self.results)

    def _guarded(self, report: EntityReport, what: str, step: Any, *args: Any) -> Any:
        """A step that runs shop code (a _keys() or _key_exists() that may be broken): its
        error becomes a finding of the entity, and the check goes on."""
        try:
            with self.conn.transaction():   # a savepoint: the snapshot stays usable
                return step(*args)
        except psycopg.Error as exc:
            report.findings.append(Finding("function", ERROR, f"{what} failed: "
                                           f"{describe_db_error(exc)}"))
            return None

    def _report_for(self, entity: str) -> EntityReport:
        """The entity's report; one (checked for nothing else) when the entity was not
        selected but its keys are referenced."""
        if entity not in self.entity_reports:
            self.entity_reports[entity] = EntityReport(entity, self.types[entity])
            self.extra_reports.append(self.entity_reports[entity])
        return self.entity_reports[entity]

    def _tax_context(self, company: dict[str, Any] | None) -> tuple[TaxContext, str]:
        codes = None
        if self.realm:
            codes = {}
            for name in {*self.settings, *self.aliases}:
                value = self.settings.get(name)
                if value is None and name in self.aliases:
                    value = self.settings.get(self.aliases[name])
                if isinstance(value, dict) and "value" in value:
                    codes[name] = str(value["value"])
        if company:
            us = company["country"] == "US" or "tax_code:TAX" in self.settings
            return (TaxContext("us" if us else "vat", self.aliases, codes),
                    f"QuickBooks company {company['realm_id']}"
                    + (f" (country {company['country']})" if company["country"] else ""))
        if self.tax_option:
            return TaxContext(self.tax_option, self.aliases, codes), "--tax-model"
        return (TaxContext(None, self.aliases, codes),
                "no company connected and no --tax-model: each body is checked against the "
                "tax codes it names")

    def _keys(self, report: EntityReport) -> list[str]:
        entity = report.entity
        if self.given is not None:
            row = self.cur.execute(Q.check_unknown_keys, (entity, self.given)).fetchone()
            unknown = set(row["unknown_keys"] if row else [])
            for key in self.given:
                if key in unknown:
                    result = KeyResult(entity, key, "error", [Finding(
                        "keys", ERROR, f"{entity} {key} is not a key of the shop (per "
                        f"{fn_name(entity, '_key_exists', ('text',))} or "
                        f"{fn_name(entity, '_keys')})")])
                    self.results.append(result)
            return [k for k in dict.fromkeys(self.given) if k not in unknown]
        if not any(f["function"] == fn_name(entity, "_keys") and f["status"] == "ok"
                   for f in report.functions):
            return []
        if self.sample is None:
            keys = [r["k"] for r in self.cur.execute(Q.check_keys, (entity,)).fetchall()]
            report.keys_total = len(keys)
            return keys
        self.cur.execute(Q.check_setseed, (self.seed,))
        rows = self.cur.execute(Q.check_keys_sample, (entity, self.sample)).fetchall()
        report.keys_total = int(rows[0]["total"]) if rows else 0
        return [r["k"] for r in rows]

    # -- mapping and the per-body rules ------------------------------------------------------

    def _map(self, entity: str, keys: list[str], dependency_of: dict[str, str] | None) -> None:
        qbo_type = self.types[entity]
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            for row in self.cur.execute(Q.check_map_many, (entity, chunk)).fetchall():
                key = row["key"]
                result = KeyResult(entity, key, dependency_of=(dependency_of or {}).get(key))
                self.results.append(result)
                item = Mapped(result, qbo_type)
                self.mapped[(entity, key)] = item
                if row["error_code"] is not None:
                    self._mapping_error(result, row["error_code"], row["error_message"])
                    continue
                self._body(item, row["body"])

    @staticmethod
    def _mapping_error(result: KeyResult, code: str, message: str) -> None:
        result.status = "refused" if code == "QB001" else "error"
        if code == "QB001":
            result.findings.append(Finding("refused", WARNING, f"the mapping refuses it: "
                                           f"{message} (the row would go dead with this "
                                           "message)"))
        else:
            result.findings.append(Finding("map_error", ERROR, f"the mapping failed "
                                           f"(SQLSTATE {code}): {message}"))

    def _body(self, item: Mapped, text: str | None) -> None:
        from .decide import parse_body  # the daemon's own reading of a body
        from .model import PushFailed

        result = item.result
        label = f"{result.entity} {result.key}"
        try:
            body = parse_body(label, text)
        except PushFailed as exc:
            result.status = "error"
            cause = exc.__cause__
            if isinstance(cause, MalformedOutput):
                result.findings.append(Finding("malformed", ERROR, cause.problem, cause.path))
            else:
                result.findings.append(Finding("malformed", ERROR, str(exc).removeprefix(
                    f"{label}: mapping output: ")))
            return
        if body is None:
            result.status = "null"
            return
        op = body.get("$op", "upsert")
        if op not in ("upsert", "void", "delete"):
            result.status = "error"
            result.findings.append(Finding("malformed", ERROR, f'unknown "$op" {op!r}: the '
                                           'daemon takes "void" and "delete"', "$op"))
            return
        if op != "upsert":
            result.status = op
            return
        try:
            collect(body)
        except MalformedOutput as exc:
            result.status = "error"
            result.findings.append(Finding("malformed", ERROR, exc.problem, exc.path))
            return
        found = list(_directives(body, ("$ref", "$id", "$setting")))
        item.refs = [d for d in found if d[1] != "$setting"]
        item.settings = [(path, name) for path, kind, name, _ in found if kind == "$setting"]
        tax = self.tax if self.tax.model else TaxContext(
            _model_of(item.settings, self.tax), self.tax.aliases, self.tax.codes)
        result.findings += check_body(item.qbo_type, body, tax, self.currency)
        result.findings += reference_types(body, self.types)
        doc = body.get("DocNumber")
        if isinstance(doc, str | int) and item.qbo_type not in ("Customer", "Item"):
            item.doc_number = str(doc)
        if item.qbo_type in SALES_TYPES:
            item.total = document_total(body)
        elif item.qbo_type == "Payment":
            item.total = number(body.get("TotalAmt"))
        try:
            item.txn_date = date.fromisoformat(str(body.get("TxnDate")))
        except ValueError:
            item.txn_date = None

    # -- across bodies -----------------------------------------------------------------------

    def _dependencies(self) -> None:
        """The customers and items bodies `$ref`: the daemon pushes them first, so they are
        mapped and checked too (a few levels deep, as the daemon goes)."""
        for _ in range(MAX_DEPENDENCY_DEPTH):
            todo: dict[str, dict[str, str]] = defaultdict(dict)
            for (entity, key), item in list(self.mapped.items()):
                for _, kind, target, target_key in item.refs:
                    if kind != "$ref" or self.types.get(target) not in DEPENDENCY_TYPES:
                        continue
                    if (target, target_key) not in self.mapped:
                        todo[target].setdefault(target_key, f"{entity} {key}")
            if not todo:
                return
            for target, keys in sorted(todo.items()):
                self._report_for(target).dependencies += len(keys)
                self._map(target, sorted(keys), keys)

    def _references(self) -> None:
        wanted: dict[str, set[str]] = defaultdict(set)
        for item in self.mapped.values():
            for _, _, target, key in item.refs:
                if target in self.types:
                    wanted[target].add(key)
        unknown: dict[str, set[str]] = {}
        active: dict[str, set[str]] = {}
        for target, keys in sorted(wanted.items()):
            ordered = sorted(keys)
            if target not in self.types:
                continue
            row = self._guarded(self._report_for(target),
                                f"checking the keys references name of {target}",
                                lambda t=target, o=ordered: self.cur.execute(
                                    Q.check_unknown_keys, (t, o)).fetchone())
            unknown[target] = set(row["unknown_keys"] if row else [])
            if self.realm and self.types[target] in DEPENDENCY_TYPES:
                active[target] = {r["key"] for r in self.cur.execute(
                    Q.check_active_map, (self.realm, target, ordered)).fetchall()}
        for item in list(self.mapped.values()):
            for path, kind, target, key in item.refs:
                finding = self._reference(path, kind, target, key, unknown, active)
                if finding is not None:
                    item.result.findings.append(finding)

    def _reference(self, path: str, kind: str, target: str, key: str,
                   unknown: dict[str, set[str]], active: dict[str, set[str]]
                   ) -> Finding | None:
        if target not in self.types:
            return Finding("reference", ERROR, f'reference to unknown entity "{target}" (not '
                           "in qbsync.entities; register it with qbsync.define_entity): the "
                           "daemon fails the row (QB003)", path)
        if key in unknown.get(target, ()):
            return Finding("reference", ERROR, f"{target} {key} is not a key of the shop "
                           f"(per {fn_name(target, '_key_exists', ('text',))} or "
                           f"{fn_name(target, '_keys')})", path)
        if kind != "$ref" or self.types[target] not in DEPENDENCY_TYPES \
                or key in active.get(target, ()):
            return None
        dependency = self.mapped.get((target, key))
        if dependency is None:
            return None
        if dependency.result.status == "null":
            return Finding("reference", ERROR, f"{target} {key}'s mapping returns NULL: the "
                           "daemon cannot push it first, and fails this row", path)
        if dependency.result.level == ERROR or dependency.result.status in ("void", "delete"):
            return Finding("reference", ERROR, f"{target} {key}, which the daemon pushes "
                           "first, fails its own checks (see it below)", path)
        return None

    def _settings(self) -> None:
        for item in self.mapped.values():
            for path, name in item.settings:
                finding = self._setting(path, name)
                if finding is not None:
                    item.result.findings.append(finding)

    def _setting(self, path: str, name: str) -> Finding | None:
        target = self.aliases.get(name, name)
        rate = TAX_RATE_SETTING.match(target)
        if rate and format(Decimal(rate[1]).normalize(), "f") != rate[1]:
            good = f"tax_code:{format(Decimal(rate[1]).normalize(), 'f')}"
            return Finding("setting", ERROR, f'"{name}" is never looked up: qbsync names '
                           f'rates without trailing zeros ("{good}"); use trim_scale(rate)',
                           path)
        if name in self.settings or target in self.settings:
            return None
        if self.realm and self.looked_up:
            return Finding("setting", ERROR, f'QuickBooks company {self.realm} has no value '
                           f'for setting "{name}"' + (f' (alias of "{target}")'
                                                      if target != name else "")
                           + ": rows would wait for it; qbsync settings --refresh, or SELECT "
                           f"qbsync.override_setting('{name}', '{{\"value\": \"<Id>\"}}')",
                           path)
        if LOOKED_UP.match(target):
            return None
        why = (f"company {self.realm}'s settings have not been looked up yet" if self.realm
               else "no company is connected")
        return Finding("setting", WARNING, f'"{name}" is not a setting qbsync looks up in '
                       "QuickBooks (tax_code:<rate>, income_account, payment_method:<name>, "
                       "deposit_account:undeposited_funds|bank, home_currency) nor an alias "
                       "of one "
                       "(qbsync.setting_aliases): every company needs an override "
                       f"({why}, so names alone were checked)", path)

    def _doc_numbers(self) -> None:
        docs = [(item.result.entity, item.result.key, item.qbo_type, item.doc_number)
                for item in self.mapped.values() if item.doc_number is not None]
        for where, finding in duplicate_doc_numbers(docs).items():
            self.mapped[where].result.findings.append(finding)
        if not self.realm or not docs:
            return
        used = self.cur.execute(Q.check_doc_numbers_used,
                                (self.realm, sorted({d for *_, d in docs}))).fetchall()
        owners = {(r["qbo_type"], r["doc_number"]): (r["entity"], r["key"]) for r in used}
        for entity, key, qbo_type, doc in docs:
            owner = owners.get((qbo_type, doc))
            if owner is not None and owner != (entity, key):
                self.mapped[(entity, key)].result.findings.append(Finding(
                    "doc_number", ERROR, f"DocNumber {doc!r} is already {owner[0]} {owner[1]}'s "
                    f"{qbo_type} in QuickBooks company {self.realm} (qbsync.entity_map): "
                    "QuickBooks refuses it (6140)", "DocNumber"))

    def _ledger(self) -> None:
        """Against the shop's own figures, when the invoice entity has a `_ledger(from, to)`:
        each body's total against what the shop says it billed, and each DocNumber against
        every document of the period (those not checked too). The ledger maps every document
        of the period: on by default over all keys only (--ledger / --no-ledger)."""
        invoice = next((e for e, t in sorted(self.types.items()) if t == "Invoice"), None)
        if invoice is None or not any(
                f["name"] == invoice + "_ledger" and tuple(f["args"]) == ("date", "date")
                for f in self.functions):
            return
        name = fn_name(invoice, "_ledger", ("date", "date"))
        dated = [item for item in self.mapped.values()
                 if item.total is not None and item.txn_date is not None]
        if not dated:
            return
        if not self.ledger:
            self._report_for(invoice).findings.append(Finding(
                "totals", INFO, f"the checks against the shop's ledger ({name}: each body's "
                "total, each DocNumber against every document of the period) were skipped: "
                "they map every document of the period, and run by default only when every "
                "key is checked; --ledger runs them", name))
            return
        first = min(item.txn_date for item in dated if item.txn_date)
        last = max(item.txn_date for item in dated if item.txn_date)
        rows = self.cur.execute(Q.check_ledger, (first, last)).fetchall()
        ledger = {(r["entity"], r["key"]): r["amount"] for r in rows}
        for item in dated:
            amount = ledger.get((item.result.entity, item.result.key))
            if amount is not None and item.total is not None and Decimal(amount) != item.total:
                item.result.findings.append(Finding(
                    "totals", ERROR, f"the body makes {item.total}, the shop's ledger "
                    f"({name}) says {amount}",
                    "TotalAmt" if item.qbo_type == "Payment" else "Line"))
        # DocNumbers of the documents not checked (the checked ones are compared above)
        owners: dict[tuple[str, str], tuple[str, str]] = {}
        for r in rows:
            entity, doc = r["entity"], r["doc_number"]
            if doc is None or entity not in self.types or (entity, r["key"]) in self.mapped:
                continue
            owners.setdefault((self.types[entity], str(doc)), (entity, r["key"]))
        for item in self.mapped.values():
            if item.doc_number is None or any(f.rule == "doc_number"
                                              for f in item.result.findings):
                continue
            owner = owners.get((item.qbo_type, item.doc_number))
            if owner is not None:
                item.result.findings.append(Finding(
                    "doc_number", ERROR, f"DocNumber {item.doc_number!r} is also {owner[0]} "
                    f"{owner[1]}'s in the shop's ledger ({name}): QuickBooks refuses a second "
                    f"{item.qbo_type} with it (error 6140)", "DocNumber"))

    # -- capture ---------------------------------------------------------------------------

    def _capture(self, report: EntityReport) -> None:
        if not report.functions:   # referenced, not selected: its own checks were not asked
            return
        body = next((f for f in self.functions if f["name"] == report.entity
                     and tuple(f["args"]) == ("text",)), None)
        if body is None:
            return
        if not hasattr(self, "_analyser"):
            catalog = Catalog(self.conn)
            self._catalog = catalog
            self._analyser = Analyser(catalog)
            self._tracked = self.cur.execute(Q.check_tracked).fetchall()
            self._triggers = self.cur.execute(Q.check_enqueue_triggers).fetchall()
            self._written = written_back(catalog, self._analyser)
        cat = self._catalog
        reads = self._analyser.reads(int(body["oid"]))
        report.reads = {
            "functions": {name: reads.methods.get(name, "") for name in reads.functions},
            "columns": sorted(f"{cat.relations[r].qualified}.{c}" for r, c in reads.columns
                              if r in cat.relations),
        }
        covered: dict[int, set[str] | None] = {}
        for rule in self._tracked:
            if rule["entity"] == report.entity:
                _cover(covered, int(rule["rel"]), rule["columns"])
        for trigger in self._triggers:
            if trigger["on_update"] and report.entity in _enqueued(trigger["source"]):
                _cover(covered, int(trigger["rel"]), trigger["columns"] or None)
        if not covered:
            report.findings.append(Finding(
                "capture", WARNING, f"no capture rule or trigger enqueues {report.entity}: "
                "it is pushed only as a dependency, by a sync or by resync"))
        acknowledged = _acknowledged(cat.functions[int(body["oid"])].source,
                                     cat.functions[int(body["oid"])].comment)
        missing: dict[int, list[str]] = defaultdict(list)
        for rel, column in sorted(reads.columns):
            relation = cat.relations.get(rel)
            if relation is None or column in relation.primary_key \
                    or (rel, column) in self._written:
                continue
            cover = covered.get(rel, set())
            if cover is None or column in cover:
                continue
            missing[rel].append(column)
        for rel, columns in sorted(missing.items(), key=lambda m: cat.relations[m[0]].qualified):
            relation = cat.relations[rel]
            open_ = [c for c in columns if (relation.qualified, c) not in acknowledged
                     and (relation.qualified, "*") not in acknowledged]
            said = [c for c in columns if c not in open_]
            if said:
                report.findings.append(Finding(
                    "capture", INFO, f"{report.entity} reads {relation.qualified} "
                    f"({', '.join(said)}), not captured for it, as its mapping says "
                    "(qbsync:uncaptured)", relation.qualified))
            if open_:
                listed = " ".join(f"{relation.qualified}.{c}" for c in open_)
                rule = "add them to its columns" if rel in covered else \
                    f"track it: qbsync.track('{relation.qualified}', '{report.entity}', <key>)"
                report.findings.append(Finding(
                    "capture", ERROR, f"{fn_name(report.entity, '', ('text',))} reads "
                    f"{relation.qualified} ({', '.join(open_)}), but no capture rule of "
                    f"{report.entity} covers {'them' if len(open_) > 1 else 'it'}: a change "
                    f"there alone does not push the {report.entity} again. Either {rule}, "
                    f"or, if that is meant, say so in the function: -- qbsync:uncaptured "
                    f"{listed}", relation.qualified))
        for note in dict.fromkeys(reads.notes):
            report.findings.append(Finding("capture", WARNING, f"capture check incomplete: "
                                           f"{note}"))


def _cover(covered: dict[int, set[str] | None], rel: int, columns: list[str] | None) -> None:
    if columns is None or covered.get(rel, set()) is None:
        covered[rel] = None
    else:
        existing = covered.setdefault(rel, set())
        assert existing is not None
        existing.update(columns)


_ENQUEUES = re.compile(r"qbsync\.enqueue\s*\(\s*'([a-z][a-z0-9_]*)'"
                       r"|qbsync_capture\.\"?changes_([a-z][a-z0-9_]*)")


def _enqueued(source: str) -> set[str]:
    """The entities a trigger function appends (INSERT INTO qbsync_capture.changes_<entity>)
    or enqueues (qbsync.enqueue('<entity>', ...))."""
    return {called or appended for called, appended in _ENQUEUES.findall(source or "")}


def _acknowledged(source: str, comment: str | None) -> set[tuple[str, str]]:
    """(relation, column or "*") named by `qbsync:uncaptured` lines in the body function's
    source or comment: reads that are not captured on purpose."""
    out: set[tuple[str, str]] = set()
    for line in DIRECTIVE.findall(f"{source}\n{comment or ''}"):
        names = re.split(r"\s--\s|\s—\s", line, maxsplit=1)[0]
        for name in re.split(r"[\s,]+", names.strip()):
            parts = name.rsplit(".", 1)
            if len(parts) == 2 and "." in parts[0]:
                out.add((parts[0], parts[1]))
    return out


def written_back(catalog: Catalog, analyser: Analyser | None = None) -> set[tuple[int, str]]:
    """Columns the mapping's `_outcome` / `_outcomes` functions write, themselves or through
    the functions they call (the `SET` lists of their UPDATEs, the column lists of their
    INSERTs and `ON CONFLICT DO UPDATE SET`s): qbsync's write-back, which is never captured
    (the daemon's own writes are not) and needs no capture rule."""
    out: set[tuple[int, str]] = set()
    writers: set[int] = set()
    for fn in catalog.functions.values():
        if fn.schema != "qbsync_map" or not re.search(r"_outcomes?$", fn.name):
            continue
        writers.add(fn.oid)
        if analyser is not None:
            writers |= analyser.reads(fn.oid).reached
    for oid in sorted(writers):
        fn = catalog.functions.get(oid)
        if fn is None:
            continue
        text, _ = clean(fn.source)
        path = _path_of(fn, catalog)
        for match in re.finditer(r"\bupdate\s+(?:only\s+)?([\w\".]+)(?:\s+(?:as\s+)?\w+)?\s+"
                                 r"set\s+(.*?)(?=\bfrom\b|\bwhere\b|\breturning\b|;|$)",
                                 text, re.IGNORECASE | re.DOTALL):
            rel = _target(catalog, match[1], path)
            if rel is None:
                continue
            for column in re.findall(r"(?:^|,)\s*\"?(\w+)\"?\s*=", _top_level(match[2])):
                out.add((rel.oid, column.lower()))
        for match in re.finditer(r"\binsert\s+into\s+([\w\".]+)(?:\s+as\s+\w+)?\s*\(([^()]*)\)"
                                 r"(.*?)(?=;|$)", text, re.IGNORECASE | re.DOTALL):
            rel = _target(catalog, match[1], path)
            if rel is None:
                continue
            for column in match[2].split(","):
                out.add((rel.oid, column.strip().strip('"').lower()))
            upsert = re.search(r"\bon\s+conflict\b.*?\bdo\s+update\s+set\s+(.*?)"
                               r"(?=\bwhere\b|\breturning\b|$)", match[3],
                               re.IGNORECASE | re.DOTALL)
            if upsert:
                for column in re.findall(r"(?:^|,)\s*\"?(\w+)\"?\s*=", _top_level(upsert[1])):
                    out.add((rel.oid, column.lower()))
    return out


def _path_of(fn: Function, catalog: Catalog) -> list[str]:
    """The search_path a function's unqualified names resolve through."""
    return search_path(fn.search_path) if fn.search_path is not None else catalog.default_path


def _target(catalog: Catalog, name: str, path: list[str]) -> Relation | None:
    target = [p.strip('"') for p in name.split(".")]
    schema, rel = (target[0], target[1]) if len(target) == 2 else (None, target[0])
    return catalog.relation(schema, rel if schema else rel.lower(), path)


def _top_level(text: str) -> str:
    """The text with everything inside parentheses removed."""
    out, depth = [], 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)


def _directives(body: Any, kinds: tuple[str, ...]
                ) -> Iterator[tuple[str, str, str, str]]:
    """(path, kind, entity or setting name, key) of each directive of `kinds` in a body
    collect() accepted."""

    def walk(node: Any, parts: tuple[str | int, ...]) -> Iterator[tuple[str, str, str, str]]:
        pairs = node.items() if isinstance(node, dict) else (
            enumerate(node) if isinstance(node, list) else ())
        for key, value in pairs:
            at = (*parts, key)
            if isinstance(value, dict) and any(k in value for k in ("$ref", "$id", "$setting")):
                for kind in kinds:
                    if kind in value:
                        target = value[kind]
                        if kind == "$setting":
                            yield path_of(at), kind, str(target), ""
                        else:
                            yield path_of(at), kind, str(target[0]), str(target[1])
            elif isinstance(value, dict | list):
                yield from walk(value, at)

    yield from walk(body, ())


def _model_of(settings: list[tuple[str, str]], tax: TaxContext) -> str | None:
    """The tax model a body's own tax codes imply, when the company's is unknown."""
    kinds = set()
    for _, name in settings:
        target = (tax.aliases or {}).get(name, name)
        if target.startswith("tax_code:"):
            kinds.add("us" if target.partition(":")[2] in US_CODES else "vat")
    return kinds.pop() if len(kinds) == 1 else None


def check_mapping(conn: psycopg.Connection[Any], *, entities: list[str] | None = None,
                  sample: int | None = None, keys: list[str] | None = None, seed: float = 0.0,
                  tax_model: str | None = None, capture: bool = True,
                  ledger: bool | None = None) -> Report:
    """Run the check (see the module's docstring); `conn` must not be in a transaction."""
    return Check(conn, entities=entities, sample=sample, keys=keys, seed=seed,
                 tax_model=tax_model, capture=capture, ledger=ledger).run()
