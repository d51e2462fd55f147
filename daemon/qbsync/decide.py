"""What to do with one outbox row, decided the same way whichever path pushes it: alone
(`sync.Pusher`) or in a batch (`batch.BatchPusher`).

`decide` is pure: a row, its entity's registration, the mapping's output (`read`), what
entity_map holds for the row's key and its references, and the company's settings in; a
plan out. Nothing here reads the database or talks to QuickBooks, so every outcome is
tested without either (tests/unit/test_decide.py). The plans:

* `Skipped`: nothing to send (the mapping returned NULL, the order has its invoice, the
  body is the one QuickBooks got last, nothing to void);
* `PushFailed`: kind "permanent" for output qbsync cannot send (malformed, an unknown
  `$op` or entity, a CurrencyRef the company cannot take), kind "setting" for a row that
  waits, burning no try, for settings the company has no value for;
* `Depend`: references entity_map has no active object for: they are pushed first, then
  the row is decided again with what they became;
* `Void` (a void or a delete), `Update`, `Create`: what to send, with its requestid.

How a plan is carried out is the path's business: the single path sends one request (and
handles what QuickBooks answers: duplicate names, stale SyncTokens, adoptions), the batch
path groups the updates and creates that batch cleanly and leaves the rest to the single
path.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from . import fastjson
from .errors import MalformedOutput, UnresolvedSetting
from .model import UNCHANGED, EntityInfo, Mapped, PushFailed, Ref, Row, Skipped, currency_code
from .refs import collect, substitute, where

# SQLSTATE classes after which the same mapping call may well succeed: connection,
# resources, lock/serialization, operator intervention.
TRANSIENT_SQLSTATE_CLASSES = {"08", "40", "53", "55", "57", "58"}
# Rows that update an invoiced order's invoice: a captured change, and a dead row queued
# again (it was not skipped when it died, so it is not skipped now). Any other origin (a
# resync) skips an order that has its invoice unless forced (skip_invoiced_orders).
UPDATES_INVOICE = frozenset({"capture", "retry_dead"})
# last_error_code of a row whose mapping output is malformed (beside the mapping's own
# QB001 and QB002)
MALFORMED = "QB003"
# last_error_code of a row whose body is in a currency the company does not take
CURRENCY = "QB005"
# Sales forms: found by DocNumber when QuickBooks keeps the shop's numbers, else by
# qbsync's marker in PrivateNote.
SALES_FORMS = ("Invoice", "CreditMemo", "RefundReceipt")
# Created with qbsync's marker in PrivateNote, to be found again by it: the sales forms,
# and payments (which have no DocNumber).
MARKED = (*SALES_FORMS, "Payment")


class Company(Protocol):
    """What the decision reads of a connected company (`realm.Realm`)."""

    realm_id: str
    settings: dict[str, Any]

    @property
    def custom_txn_numbers(self) -> bool: ...

    @property
    def home_currency(self) -> str | None: ...

    @property
    def multicurrency(self) -> bool | None: ...

    def missing(self, names: set[str]) -> list[str]: ...


# -- the mapping's output ---------------------------------------------------------------

def mapping_failure(label: str, sqlstate: str, message: str) -> PushFailed:
    """QB001/QB002 are the mapping's own verdicts; another error is a bug in the mapping
    (permanent) unless its SQLSTATE class says a retry may work."""
    kind = "retry" if sqlstate[:2] in TRANSIENT_SQLSTATE_CLASSES else "permanent"
    text = message if sqlstate in ("QB001", "QB002") else f"mapping failed: {message}"
    return PushFailed(kind, f"{label}: {text}", sqlstate, "map")


def malformed(label: str, exc: MalformedOutput) -> PushFailed:
    """Mapping output qbsync cannot send: no try can change it, so the row fails at once,
    saying where and what."""
    at = f" at {exc.path}" if exc.parts else ""
    return PushFailed("permanent", f"{label}: mapping output{at}: {exc.problem}", MALFORMED,
                      "map")


def parse_body(label: str, text: str | None) -> dict[str, Any] | None:
    """The mapping's body; a PushFailed (permanent) when it is not a JSON object or has a
    number QuickBooks cannot be sent exactly (fastjson.loads_exact)."""
    if text is None:
        return None
    try:
        body = fastjson.loads_exact(text)
    except MalformedOutput as exc:
        raise malformed(label, exc) from exc
    if not isinstance(body, dict):
        kind = {list: "an array", str: "a string", type(None): "null", bool: "a boolean"
                }.get(type(body), "a number")
        raise malformed(label, MalformedOutput(f"the mapping returned {kind}, not a JSON "
                                               "object (SQL NULL means nothing to push)"))
    return body


@dataclass(frozen=True)
class Output:
    """A mapping's body as the decision reads it: the operation it asks for and, for an
    upsert, the references and settings it uses (collected in one walk), or why it is
    malformed."""

    body: dict[str, Any] | None
    op: Any = "upsert"
    refs: frozenset[Ref] = field(default_factory=frozenset)
    settings: frozenset[str] = field(default_factory=frozenset)
    malformed: MalformedOutput | None = None


def read(body: dict[str, Any] | None) -> Output:
    """The body, as `decide` takes it (the body itself is not changed)."""
    if body is None:
        return Output(None)
    op = body.get("$op", "upsert")
    if op != "upsert":
        return Output(body, op)
    try:
        refs, names = collect(body)
    except MalformedOutput as exc:
        return Output(body, op, malformed=exc)
    return Output(body, op, frozenset(refs), frozenset(names))


def setting_failure(label: str, realm_id: str, names: list[str]) -> PushFailed:
    """The row waits, burning no try, for settings the company has no value for (kind
    "setting": recorded by qbsync.wait_for_settings, not qbsync.fail)."""
    which = ", ".join(f'"{n}"' for n in names)
    return PushFailed(
        "setting",
        f"{label}: waits for the QuickBooks setting {which} (company {realm_id} has no value "
        "for it); it goes on once the setting is set: qbsync settings --refresh looks it up "
        f"again, or SELECT qbsync.override_setting ('{names[0]}', "
        """'{"value": "<QuickBooks Id>"}') sets it""",
        None, "wait.setting", details={"settings": names})


def currency_refusal(label: str, body: dict[str, Any], company: Company
                     ) -> PushFailed | None:
    """Why QuickBooks cannot take a body's currency, or None. A CurrencyRef other than the
    company's home currency cannot be booked in a company with multicurrency off: the row
    fails on its first try, before anything is sent for it (its customer included). One
    that is not {"value": "<ISO 4217 code>"} is malformed. Nothing is refused while the
    company's currency or its multicurrency preference is unknown (not looked up yet, or
    the look-up was refused), nor in a multicurrency company, where QuickBooks decides
    (the customer's currency must match). A {"$setting": …} is judged once resolved."""
    ref = body.get("CurrencyRef")
    if ref is None or (isinstance(ref, dict) and "$setting" in ref):
        return None
    code = currency_code(ref) if isinstance(ref, dict) and isinstance(
        ref.get("value"), str) else None
    if code is None:
        return malformed(label, MalformedOutput(
            'CurrencyRef must be {"value": "<ISO 4217 currency code>"}', "CurrencyRef"))
    home = company.home_currency
    if home is None or company.multicurrency is not False or code == home:
        return None
    return PushFailed(
        "permanent",
        f"{label}: the body is in {code} (CurrencyRef) but QuickBooks company "
        f"{company.realm_id} keeps its books in {home} and has multicurrency off: QuickBooks "
        f"cannot book it, and nothing was sent. Map it in {home}, or leave such rows out in "
        "the mapping (NULL, or refuse them with QB001); or turn multicurrency on in "
        "QuickBooks (Account and settings > Advanced > Currency; it cannot be turned off "
        "again), then qbsync settings --refresh and SELECT qbsync.retry_dead()",
        CURRENCY, "map", details={"currency": code, "home_currency": home})


# -- bodies and requestids --------------------------------------------------------------

def body_hash(qbo_type: str, body: dict[str, Any]) -> str:
    """What entity_map.body_hash keeps of a pushed body (references resolved, before
    qbsync adds Id, SyncToken, its PrivateNote marker or a disambiguated name): equal
    hashes, equal bodies. Keys sorted, so that the order a mapping builds them in does not
    matter. Not the digest (digest.py), which is what QuickBooks answered."""
    try:
        data = orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS)
    except TypeError:
        data = json.dumps(body, sort_keys=True, ensure_ascii=False,
                          separators=(",", ":")).encode()
    return "b1:" + hashlib.blake2b(qbo_type.encode() + b"\0" + data,
                                   digest_size=16).hexdigest()


def unchanged(row: Row, existing: Mapped | None, hashed: str) -> Skipped | None:
    """Skipped, when the row's body is the one QuickBooks got at the key's last
    successful push and nothing since may have changed the object: not forced, no earlier
    attempt that may have reached QuickBooks (Row.may_exist), the object active, the hash
    kept (failures, drift and voids clear it)."""
    if (existing is None or existing.qbo_status != "active" or row.force
            or row.may_exist or existing.body_hash != hashed):
        return None
    return Skipped(f"{row.label}: unchanged since its last push (QuickBooks Id "
                   f"{existing.qbo_id}); nothing sent", UNCHANGED)


def marker(entity: str, key: str) -> str:
    """What qbsync writes into the PrivateNote of a transaction it creates, to find it
    again."""
    return f"qbsync:{entity}:{key};"


def found_by(qbo_type: str, body: dict[str, Any], custom_txn_numbers: bool) -> str | None:
    """The field an object already in QuickBooks is looked up by: a customer's
    DisplayName, an item's Name, a sales form's DocNumber (when QuickBooks keeps the
    shop's numbers) or else qbsync's marker in the PrivateNote of a transaction (a sales
    form, a payment). None: nothing to search it by (a customer without DisplayName)."""
    if qbo_type == "Customer":
        return "DisplayName" if body.get("DisplayName") else None
    if qbo_type == "Item":
        return "Name" if body.get("Name") else None
    if qbo_type in SALES_FORMS and body.get("DocNumber") and custom_txn_numbers:
        return "DocNumber"
    if qbo_type in MARKED:
        return "PrivateNote"
    return None


def searchable(qbo_type: str, body: dict[str, Any]) -> bool:
    """Can an earlier create of this object be looked up in QuickBooks?"""
    return found_by(qbo_type, body, True) is not None


def creatable(entity: str, key: str, qbo_type: str, body: dict[str, Any],
              custom_txn_numbers: bool) -> dict[str, Any]:
    """The body as created: transactions carry qbsync's marker in PrivateNote (to find
    them again), and sales forms no DocNumber when QuickBooks numbers them itself."""
    if qbo_type in MARKED:
        note = str(body.get("PrivateNote") or "")
        body = {**body, "PrivateNote": (note + " " + marker(entity, key)).strip()[-4000:]}
    if qbo_type in SALES_FORMS and not custom_txn_numbers:
        body.pop("DocNumber", None)
    return body


def create_request_id(row: Row, hashed: str) -> uuid.UUID:
    """A create's requestid: one per body, so that a resend of this body is deduplicated
    and another body is not answered with this one's replay (nor with a refusal of it,
    should QuickBooks keep those). The requestid is not what finds an earlier create: it
    is not always honoured (two Payments made under one RequestId:
    intuit/QuickBooks-V3-DotNET-SDK#352), so a create whose earlier attempt's outcome is
    unknown looks the object up first."""
    return uuid.uuid5(row.request_id, f"create:{hashed}")


# -- the plans ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Depend:
    """References without an active QuickBooks object: pushed first (sorted)."""

    refs: tuple[Ref, ...]


@dataclass(frozen=True)
class Void:
    """Void (op "void") or delete (op "delete") the transaction the row was pushed as."""

    op: str
    existing: Mapped
    request_id: uuid.UUID


@dataclass(frozen=True)
class Update:
    """Bring the linked object up to date with `body` (references resolved)."""

    body: dict[str, Any]
    existing: Mapped
    hashed: str
    request_id: uuid.UUID


@dataclass(frozen=True)
class Create:
    """Create the object from `body` (references resolved; `creatable` adds the marker).
    `look_up`: an earlier attempt may have made it, so it is looked up first, by
    `found_by` (None: nothing to look it up by)."""

    body: dict[str, Any]
    hashed: str
    request_id: uuid.UUID
    look_up: bool
    found_by: str | None


Plan = Skipped | PushFailed | Depend | Void | Update | Create


def decide(row: Row, info: EntityInfo, output: Output, known: Mapping[Ref, Mapped],
           company: Company, entities: Collection[str], *, skip_invoiced: bool = True
           ) -> Plan:
    """The plan for `row`. `known`: entity_map's rows for the row's own key and its
    references (absent: none); `entities`: the registered entity names."""
    label = row.label
    if output.body is None:
        return Skipped(f"{label}: the mapping returned NULL (nothing to push)")
    existing = known.get((row.entity, row.key))
    if output.op in ("void", "delete"):
        return _void(row, info, existing, output.op)
    if output.op != "upsert":
        return PushFailed("permanent", f'{label}: unknown "$op" {output.op!r} in mapping output')
    if (existing and info.qbo_type == "Invoice" and row.origin not in UPDATES_INVOICE
            and not row.force and skip_invoiced):
        return Skipped(
            f"{label} already has invoice {existing.doc_number or existing.qbo_id} "
            f"(QuickBooks Id {existing.qbo_id}); resync with force to push it again"
        )
    body = resolve(label, output, known, company, entities)
    if not isinstance(body, dict):
        return body
    hashed = body_hash(info.qbo_type, body)
    skipped = unchanged(row, existing, hashed)
    if skipped is not None:
        return skipped
    if existing and existing.qbo_status == "active":
        return Update(body, existing, hashed,
                      # per body, as a create's: a changed body is not answered with an
                      # earlier replay
                      uuid.uuid5(row.request_id, f"update:{existing.qbo_id}:{hashed}"))
    return Create(body, hashed, create_request_id(row, hashed), row.may_exist,
                  found_by(info.qbo_type, body, company.custom_txn_numbers))


def resolve(label: str, output: Output, known: Mapping[Ref, Mapped], company: Company,
            entities: Collection[str], *, said_of: str | None = None
            ) -> dict[str, Any] | PushFailed | Depend:
    """The body with its references replaced by QuickBooks Ids and its settings by their
    values; else why not (malformed output, a reference to an unknown entity, a currency
    the company does not take, a setting the company lacks: before anything is created for
    it) or the references to push first. `said_of`: the row a setting removed meanwhile is
    reported for, if not `label` (a dependency's row)."""
    if output.malformed is not None:
        return malformed(label, output.malformed)
    assert output.body is not None
    refused = currency_refusal(label, output.body, company)
    if refused is not None:
        return refused
    unknown = {entity for entity, _ in output.refs if entity not in entities}
    if unknown:
        entity = min(unknown)
        return malformed(label, MalformedOutput(
            f'reference to unknown entity "{entity}" (not in qbsync.entities; register '
            "it with qbsync.define_entity)", *where(output.body, entity)))
    missing = company.missing(set(output.settings))
    if missing:
        return setting_failure(label, company.realm_id, missing)
    ids: dict[Ref, str] = {}
    for ref in output.refs:
        mapped = known.get(ref)
        if mapped is not None and mapped.qbo_status == "active":
            ids[ref] = mapped.qbo_id
    if len(ids) < len(output.refs):
        return Depend(tuple(sorted(output.refs - ids.keys())))
    try:
        body = substitute(output.body, ids, company.settings, realm_id=company.realm_id)
    except UnresolvedSetting as exc:  # a setting removed since it was checked
        return setting_failure(said_of or label, company.realm_id, [exc.name])
    # a CurrencyRef given as a setting, now that it has its value
    return currency_refusal(label, body, company) or body


def _void(row: Row, info: EntityInfo, existing: Mapped | None, op: str) -> Plan:
    """Nothing to do when the transaction never reached QuickBooks or is already gone."""
    done = {"void": "voided", "delete": "deleted"}[op]
    if existing is None:
        return Skipped(f"{row.label}: nothing to {op}: it never reached QuickBooks")
    if existing.qbo_status == done:
        return Skipped(f"{row.label}: {info.qbo_type} {existing.qbo_id} is already {done}")
    return Void(op, existing, uuid.uuid5(row.request_id, f"{op}:{existing.qbo_id}"))


def with_created(known: Mapping[Ref, Mapped], ids: Mapping[Ref, str]) -> dict[Ref, Mapped]:
    """`known` and the references just pushed (`ids`: their QuickBooks Ids), active."""
    return {**known, **{ref: Mapped(qbo_id, None, None, "active") for ref, qbo_id in ids.items()}}
