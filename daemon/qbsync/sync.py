"""Push one outbox row to QuickBooks: map it, decide what to send (`decide.decide`), push
its missing dependencies first, create / update / void, and say how it went.

Exactly once: every write carries a QuickBooks requestid derived from the row's request_id,
the step and the body sent, so a resend of the same body is deduplicated by QuickBooks (which
answers a repeated requestid with its first answer, whatever the new body) and a changed body
is never answered with the old one's replay; and a create whose earlier attempt may have
reached QuickBooks (Row.may_exist: a try failed, an answer was lost, a daemon stopped) first
looks the object up by its natural key (DocNumber, DisplayName, Name or qbsync's marker in
a transaction's PrivateNote) and adopts what it finds: QuickBooks does not always honour a
requestid. A row that would go dead after such an attempt gets one last attempt that only
looks QuickBooks up (Pusher.final_lookup), so that `failed` never hides an object
QuickBooks has.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable
from typing import Any

import asyncpg

from .decide import (
    SALES_FORMS,
    Create,
    Depend,
    Output,
    Plan,
    Update,
    Void,
    body_hash,
    creatable,
    create_request_id,
    decide,
    found_by,
    mapping_failure,
    marker,
    parse_body,
    read,
    resolve,
    searchable,
    with_created,
)
from .digest import digest, marked_voided
from .errors import ReconnectRequired
from .model import (
    EntityInfo,
    Mapped,
    OutcomeObserver,
    Pushed,
    PushFailed,
    Ref,
    Row,
    Skipped,
    plain_operation,
    success_outcome,
)
from .qbo.client import QboClient, quote_value
from .qbo.errors import (
    AuthError,
    DuplicateDocNumber,
    DuplicateName,
    Forbidden,
    QboError,
    StaleObject,
    Throttled,
    TransientError,
    UnknownOutcome,
)
from .queries import load as load_queries
from .realm import Realm

Q = load_queries()
# requestids of dependency creates are derived from this namespace, the realm and the key:
# two daemons creating the same customer at once send the same requestid.
DEPENDENCY_NAMESPACE = uuid.UUID("6f1c1f2e-3b1a-4a53-9a51-2a4d1b7c9e01")
MAX_DEPENDENCY_DEPTH = 4
# Name-list entities are pushed on demand as dependencies; a reference to a transaction
# (an invoice a payment applies to) waits for that transaction's own push instead, which
# has its own exactly-once machinery.
DEPENDENCY_TYPES = frozenset({"Customer", "Item"})
WAIT_FOR_TRANSACTION = 5.0  # seconds before a row waiting for another row's push retries
# last_error_code of a row whose daemon stopped past max_interruptions while it was being
# looked up (qbsync.interruption_verdict): it goes dead without another lookup
LOOKUP_INTERRUPTED = "interrupted-lookup"


async def load_entities(pool: asyncpg.Pool) -> dict[str, EntityInfo]:
    return {
        r["entity"]: EntityInfo(r["entity"], r["qbo_type"], r["max_attempts"],
                                r["deadline_seconds"])
        for r in await pool.fetch(Q.entities)
    }


def qbo_failure(label: str, exc: Exception, operation: str, time_scale: float = 1.0
                ) -> PushFailed:
    """Classify a QuickBooks or transport error into what happens to the row. Waits are in
    QuickBooks seconds, shrunk by time_scale against a faster emulator."""
    code = getattr(exc, "code", None)
    message = f"{label}: {exc.describe() if isinstance(exc, QboError) else exc}"
    details: dict[str, Any] = {}
    tid = getattr(exc, "intuit_tid", None)
    if tid:
        details["intuit_tid"] = tid
    if isinstance(exc, Throttled):
        return PushFailed("throttled", message, code, operation, exc.retry_after / time_scale,
                          details)
    if isinstance(exc, ReconnectRequired):  # also TokensUnreadable (a shorter retry_after)
        return PushFailed("paused", f"{label}: {exc}", None, operation,
                          exc.retry_after / time_scale, details)
    if isinstance(exc, Forbidden):
        # 3100 / 130: the token is not valid for this company; every row would get the same
        # answer, and only connecting the company again cures it
        return PushFailed("paused", f"{message}: QuickBooks refused the connection; the "
                          "company is paused until it is connected again (`qbsync connect`)",
                          code, operation, ReconnectRequired.retry_after / time_scale,
                          details, needs_reconnect=True)
    if isinstance(exc, AuthError):
        return PushFailed("auth", message, code, operation, 5.0 / time_scale, details)
    if isinstance(exc, TransientError | TimeoutError):
        # a write whose answer never came, or cut off by a deadline: may have been applied
        return PushFailed("retry", message, code, operation, None, details,
                          unknown=isinstance(exc, UnknownOutcome | TimeoutError))
    return PushFailed("permanent", message, code, operation, None, details)


def dependency_request_id(realm_id: str, entity: str, key: str, hashed: str,
                          gone: str | None = None) -> uuid.UUID:
    """The requestid of a dependency's create: stable across daemons and retries for one
    body (two daemons creating the same customer at once send the same one), another for
    another body (QuickBooks would answer it with the first body's replay). After a
    deletion in QuickBooks, seeded with the deleted Id, so that the create is not answered
    with the old one's replay."""
    after = f"/after:{gone}" if gone else ""
    return uuid.uuid5(DEPENDENCY_NAMESPACE, f"{realm_id}/{entity}/{key}{after}/{hashed}")


def _same_party(found: dict[str, Any], body: dict[str, Any]) -> bool:
    """Is the QuickBooks customer/item with our name the same one we mean to push?"""
    if "Sku" in body or "Type" in body:  # Item
        return (found.get("Sku") or None) == (body.get("Sku") or None)
    ours = ((body.get("PrimaryEmailAddr") or {}).get("Address") or "").strip().lower()
    theirs = ((found.get("PrimaryEmailAddr") or {}).get("Address") or "").strip().lower()
    if ours or theirs:
        return ours == theirs
    return (found.get("GivenName"), found.get("FamilyName")) == (
        body.get("GivenName"), body.get("FamilyName"))


def _disambiguated(qbo_type: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    field_name, limit = ("DisplayName", 500) if qbo_type == "Customer" else ("Name", 100)
    suffix = f" ({key})"
    base = str(body.get(field_name) or "")[: limit - len(suffix)]
    return {**body, field_name: base + suffix}


class Pusher:
    def __init__(
        self,
        pool: asyncpg.Pool,
        client: QboClient,
        realm: Realm,
        entities: dict[str, EntityInfo],
        *,
        skip_invoiced: bool = True,
        time_scale: float = 1.0,
        worker_id: str = "daemon",
        observer: OutcomeObserver | None = None,
    ) -> None:
        self.pool = pool
        self.observer = observer  # told of the dependencies it records
        self.client = client
        self.realm = realm
        self.entities = entities
        self.skip_invoiced = skip_invoiced
        self.time_scale = time_scale
        self.worker_id = worker_id
        self._dependency_locks: dict[Ref, asyncio.Lock] = {}
        # Rows this process is pushing one by one, by key, done when their outcome is
        # recorded: a payment claimed together with its order waits for it here instead of
        # coming back later.
        self.in_flight: dict[Ref, asyncio.Future[None]] = {}

    # -- the row ---------------------------------------------------------------------

    async def entity(self, entity: str, label: str) -> EntityInfo:
        """The entity's registration; re-read once when a DBA defined it after start."""
        if entity not in self.entities:
            self.entities = await load_entities(self.pool)
        info = self.entities.get(entity)
        if info is None:
            raise PushFailed("permanent", f'{label}: unknown entity "{entity}" (not in '
                             "qbsync.entities; register it with qbsync.define_entity)")
        return info

    async def push(self, row: Row) -> Pushed | Skipped:
        if row.lookup_due:
            return await self.final_lookup(row)
        info = await self.entity(row.entity, row.label)
        output = read(await self._map(row.entity, row.key, row.label))
        own = (row.entity, row.key)
        known: dict[Ref, Mapped] = {}
        if output.body is not None:  # (NULL: skipped, whatever entity_map holds)
            await self.known_entities(output.refs)
            # the row's own mapping and its references' in one lookup
            known = await self.mapped({own, *output.refs})
        plan = self.decide(row, info, output, known)
        if isinstance(plan, Depend):
            ids = {ref: await self._ensure_dependency(ref, (own,), row.label)
                   for ref in plan.refs}
            plan = self.decide(row, info, output, with_created(known, ids))
        if isinstance(plan, Skipped):
            return plan
        if isinstance(plan, PushFailed):
            raise plan
        if isinstance(plan, Void):
            return await self._void(row, info, plan)
        assert isinstance(plan, Update | Create), plan
        started = time.perf_counter()
        if isinstance(plan, Update):
            operation = "update"
            obj = await self._update(info.qbo_type, plan, row)
        else:
            obj, operation = await self._create(
                row.entity, row.key, info.qbo_type, plan.body, plan.request_id,
                may_exist=plan.look_up, label=row.label,
            )
        return Pushed(self.result(info.qbo_type, obj, plan.body, operation, started,
                                  body_hash=plan.hashed))

    def decide(self, row: Row, info: EntityInfo, output: Output, known: dict[Ref, Mapped]
               ) -> Plan:
        """decide.decide with this company's settings and this daemon's options."""
        return decide(row, info, output, known, self.realm, self.entities,
                      skip_invoiced=self.skip_invoiced)

    async def final_lookup(self, row: Row) -> Pushed:
        """The attempt of a row that would have gone dead after an attempt whose outcome is
        unknown (out of tries, or stopped max_interruptions times): it only asks QuickBooks
        whether it holds the object, and adopts what is there, brought up to date when it
        can be (else as it is: the shop row then says synced, with the Id QuickBooks has,
        and the log says why it was not updated). Raises the verdict otherwise, settled
        (the row goes dead; qbsync.fail puts the error that made the lookup due first),
        or a failed lookup (tried again, as many times as the entity has tries)."""
        label = row.label
        if row.last_error_code == LOOKUP_INTERRUPTED:
            raise PushFailed("permanent", f"{label}: gave up without looking it up in "
                             "QuickBooks", None, "lookup", settled=True)
        info = await self.entity(row.entity, label)
        own = (row.entity, row.key)
        existing = (await self.mapped({own})).get(own)
        if existing is not None and existing.qbo_status == "active":
            raise PushFailed("permanent", f"{label}: linked to {info.qbo_type} "
                             f"{existing.qbo_id} already; nothing to look up", None,
                             "lookup", settled=True)
        why = ""
        try:
            body = await self._map(row.entity, row.key, label)
        except PushFailed as failure:
            body, why = None, failure.message
        if body is not None and body.pop("$op", "upsert") != "upsert":
            body, why = None, f"{label}: the mapping asks for a void or delete"
        if body is None:
            raise PushFailed("permanent", f"{label}: could not be looked up in QuickBooks "
                             f"({why or 'the mapping returned NULL'}): look for it there "
                             "before retry_dead", None, "lookup", settled=True)
        started = time.perf_counter()
        resolved: dict[str, Any] | None = None
        try:
            # what the object was created with: the marker is looked for among the
            # transactions of its customer
            resolved = await self._resolve(body, (own,), label)
        except PushFailed as failure:  # looked up by what the body says without it
            why = failure.message
        except (QboError, ReconnectRequired, TimeoutError) as exc:
            raise qbo_failure(label, exc, "lookup", self.time_scale) from exc
        sought = self.creatable(row.entity, row.key, info.qbo_type,
                                resolved if resolved is not None else body)
        if not searchable(info.qbo_type, sought):
            raise PushFailed("permanent", f"{label}: qbsync cannot look this {info.qbo_type} "
                             "up in QuickBooks (it has no "
                             f"{'DisplayName' if info.qbo_type == 'Customer' else 'Name'}): "
                             "look for it there before retry_dead", None, "lookup",
                             settled=True)
        try:
            found = await self._find_existing(row.entity, row.key, info.qbo_type, sought)
        except (QboError, ReconnectRequired, TimeoutError) as exc:
            raise qbo_failure(label, exc, "lookup", self.time_scale) from exc
        if found is None:
            raise PushFailed("permanent", f"{label}: not in QuickBooks either (looked up "
                             "before giving up)", None, "lookup", settled=True)
        note = f"{label}: adopted {info.qbo_type} {found['Id']} found in QuickBooks"
        if resolved is not None:
            try:
                hashed = body_hash(info.qbo_type, resolved)
                obj = await self._adopt(info.qbo_type, found, sought,
                                        create_request_id(row, hashed))
                result = self.result(info.qbo_type, obj, resolved, "adopt", started,
                                     body_hash=hashed)
                result["message"] = note + " (looked up before giving up)"
                return Pushed(result)
            except (QboError, ReconnectRequired, TimeoutError) as exc:
                why = qbo_failure(label, exc, "adopt", self.time_scale).message
        # as it is: no body hash, so the key's next push sends the shop's version
        result = self.result(info.qbo_type, found, body, "adopt", started)
        result["message"] = f"{note} as it is (looked up before giving up; not brought up " \
                            f"to date: {why})"
        return Pushed(result)

    def recorded(self, entity: str, operation: str) -> None:
        """A dependency's success was recorded (its outbox row, if any, is pushed later)."""
        if self.observer is not None:
            self.observer.outcome(entity, plain_operation(operation),
                                  success_outcome(operation))

    def result(self, qbo_type: str, obj: dict[str, Any], body: dict[str, Any],
                operation: str, started: float, *, body_hash: str | None = None
                ) -> dict[str, Any]:
        """What record_successes takes of a push. body_hash: of the body sent (None for a
        void or delete, which clears entity_map's)."""
        result = {
            "qbo_type": qbo_type,
            "qbo_id": obj["Id"],
            "sync_token": obj.get("SyncToken"),
            "doc_number": obj.get("DocNumber"),
            "sent_doc_number": body.get("DocNumber"),
            "total_amount": obj.get("TotalAmt"),
            "operation": operation,
            "qbo_status": "active",
            "body_hash": body_hash,
            # QuickBooks' own answer time when the client measured it, else the whole step
            "response_time_ms": self.client.last_response_ms
            or round((time.perf_counter() - started) * 1000),
        }
        # entity_map keeps the object's digest, for drift detection: computed here (a few
        # fields to send instead of the whole object), or by PostgreSQL when it is unsure
        summary = digest(qbo_type, obj)
        if summary is not None:
            result["digest"] = summary
        else:
            result["object"] = obj
        return result

    # -- mapping and references -------------------------------------------------------

    async def _map(self, entity: str, key: str, label: str) -> dict[str, Any] | None:
        try:
            text = await self.pool.fetchval(Q.map, entity, key)
        except asyncpg.PostgresError as exc:
            raise mapping_failure(label, getattr(exc, "sqlstate", "") or "", str(exc)) from exc
        return parse_body(label, text)

    async def mapped(self, refs: set[Ref]) -> dict[Ref, Mapped]:
        if not refs:
            return {}
        entities, keys = zip(*sorted(refs), strict=True)
        rows = await self.pool.fetch(Q.mapped, self.realm.realm_id, list(entities), list(keys))
        return {
            (r["entity"], r["key"]): Mapped(r["qbo_id"], r["sync_token"], r["doc_number"],
                                            r["qbo_status"], r["body_hash"])
            for r in rows
        }

    async def _resolve(self, body: dict[str, Any], chain: tuple[Ref, ...], label: str
                       ) -> dict[str, Any]:
        """A dependency's body (or a looked-up row's) with its references replaced by
        QuickBooks Ids, created first where missing (decide.resolve says what is missing,
        or why the body cannot be sent)."""
        whose = label if len(chain) < 2 else f"{label}: its {chain[-1][0]} {chain[-1][1]}"
        output = read(body)
        await self.known_entities(output.refs)
        known = await self.mapped(set(output.refs))
        resolved = resolve(whose, output, known, self.realm, self.entities, said_of=label)
        if isinstance(resolved, Depend):
            ids = {ref: await self._ensure_dependency(ref, chain, label)
                   for ref in resolved.refs}
            resolved = resolve(whose, output, with_created(known, ids), self.realm,
                               self.entities, said_of=label)
        if isinstance(resolved, PushFailed):
            raise resolved
        assert isinstance(resolved, dict), resolved
        return resolved

    async def known_entities(self, refs: Iterable[Ref]) -> None:
        """Re-read the registered entities once when a reference names one this process
        does not know (a DBA may have defined it after start); decide fails the row if it
        is still unknown, before any dependency is created."""
        if any(entity not in self.entities for entity, _ in refs):
            self.entities = await load_entities(self.pool)

    async def _ensure_dependency(self, ref: Ref, chain: tuple[Ref, ...], label: str) -> str:
        entity, key = ref
        if ref in chain or len(chain) >= MAX_DEPENDENCY_DEPTH:
            path = " -> ".join(f"{e} {k}" for e, k in (*chain, ref))
            raise PushFailed("permanent", f"{label}: circular or too deep references: {path}")
        async with self.dependency_lock(ref):
            done = (await self.mapped({ref})).get(ref)
            if done and done.qbo_status == "active":
                return done.qbo_id
            info = await self.entity(entity, f"{label}: its {entity} {key}")
            if info.qbo_type not in DEPENDENCY_TYPES:
                pushing = self.in_flight.get(ref)
                if pushing is not None and ref not in chain:
                    # bounded: past it, the row is released as waiting and tried again,
                    # which is always correct
                    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                        await asyncio.wait_for(asyncio.shield(pushing),
                                               min(info.deadline_seconds,
                                                   WAIT_FOR_TRANSACTION / self.time_scale))
                    pushed = (await self.mapped({ref})).get(ref)
                    if pushed and pushed.qbo_status == "active":
                        return pushed.qbo_id
                raise PushFailed(
                    "waiting", f"{label}: waits for {entity} {key} to reach QuickBooks first "
                    f"(its {info.qbo_type} does not exist yet)", None, "wait",
                    WAIT_FOR_TRANSACTION / self.time_scale)
            body = await self._map(entity, key, f"{label}: its {entity} {key}")
            if body is None:
                raise PushFailed(
                    "permanent",
                    f"{label}: refers to {entity} {key}, whose mapping returned NULL "
                    "(deleted or not syncable)", None, "map")
            body.pop("$op", None)
            body = await self._resolve(body, (*chain, ref), label)
            hashed = body_hash(info.qbo_type, body)
            started = time.perf_counter()
            request_id = dependency_request_id(self.realm.realm_id, entity, key, hashed,
                                               done.qbo_id if done else None)
            obj, operation = await self._create(
                entity, key, info.qbo_type, body, request_id, may_exist=False,
                label=f"{label}: its {entity} {key}")
            result = self.result(info.qbo_type, obj, body, operation, started,
                                 body_hash=hashed)
            result["message"] = f"{entity} {key} pushed as a dependency of {label}"
            result["request_id"] = str(request_id)
            await self.pool.execute(Q.record_success, self.realm.realm_id, entity, key, result,
                                    self.worker_id)
            self.recorded(entity, operation)
            return str(obj["Id"])

    # -- QuickBooks writes --------------------------------------------------------------

    async def _find_existing(self, entity: str, key: str, qbo_type: str,
                             body: dict[str, Any]) -> dict[str, Any] | None:
        by = found_by(qbo_type, body, self.realm.custom_txn_numbers)
        if by == "DisplayName":
            return await self.client.find_one("Customer", "DisplayName", body["DisplayName"])
        if by == "Name":
            # `*, Sku`: QuickBooks leaves Sku out of `SELECT *`, and _same_party compares it
            # (without it, a create whose answer was lost would make a second Item
            # "Name (key)")
            rows = await self.client.query(
                f"SELECT *, Sku FROM Item WHERE Name = {quote_value(body['Name'])} MAXRESULTS 1")
            return rows[0] if rows else None
        if by == "DocNumber":
            return await self.client.find_one(qbo_type, "DocNumber", body["DocNumber"])
        if by == "PrivateNote":
            return await self._find_marked(entity, key, qbo_type, body)
        return None

    async def _find_marked(self, entity: str, key: str, qbo_type: str,
                           body: dict[str, Any]) -> dict[str, Any] | None:
        """The transaction qbsync created for this key: the one whose PrivateNote carries
        its marker. QuickBooks cannot filter on PrivateNote (not a filterable field: 4001
        "property 'PrivateNote' is not queryable"), so the transactions of the body's
        customer and date (its resolved CustomerRef and its TxnDate, those it has) are read
        page by page (QboClient.query_pages) until one carries the marker."""
        sought = marker(entity, key)
        where = []
        customer = body.get("CustomerRef")
        customer_id = customer.get("value") if isinstance(customer, dict) else None
        if isinstance(customer_id, str) and customer_id:
            where.append(f"CustomerRef = {quote_value(customer_id)}")
        if isinstance(body.get("TxnDate"), str) and body["TxnDate"]:
            where.append(f"TxnDate = {quote_value(body['TxnDate'])}")
        select = f"SELECT * FROM {qbo_type}" + (f" WHERE {' AND '.join(where)}"
                                                if where else "")
        async for page in self.client.query_pages(select):
            for obj in page:
                if sought in str(obj.get("PrivateNote") or ""):
                    return obj
        return None

    def creatable(self, entity: str, key: str, qbo_type: str, body: dict[str, Any]
                  ) -> dict[str, Any]:
        """decide.creatable for this company."""
        return creatable(entity, key, qbo_type, body, self.realm.custom_txn_numbers)

    def dependency_lock(self, ref: Ref) -> asyncio.Lock:
        return self._dependency_locks.setdefault(ref, asyncio.Lock())

    async def _create(self, entity: str, key: str, qbo_type: str, body: dict[str, Any],
                      request_id: uuid.UUID, *, may_exist: bool, label: str
                      ) -> tuple[dict[str, Any], str]:
        body = self.creatable(entity, key, qbo_type, body)
        looked = False  # QuickBooks was asked, and had nothing
        adopting = False  # QuickBooks has the object, not linked to the row yet
        try:
            if may_exist and searchable(qbo_type, body):
                found = await self._find_existing(entity, key, qbo_type, body)
                if found is not None:
                    adopting = True
                    return await self._adopt(qbo_type, found, body, request_id), "adopt"
                looked = True
            # (nothing to search it by, a customer without DisplayName: its requestid, one
            # per body, is all that deduplicates a resend)
            try:
                return await self.client.create(qbo_type, body, request_id=str(request_id)), \
                    "create"
            except DuplicateName:
                found = await self._find_existing(entity, key, qbo_type, body)
                if found is not None and _same_party(found, body):
                    return await self._adopt(qbo_type, found, body, request_id), "adopt"
                renamed = _disambiguated(qbo_type, body, key)
                obj = await self.client.create(
                    qbo_type, renamed, request_id=str(uuid.uuid5(request_id, "renamed")))
                return obj, "create"
            except DuplicateDocNumber as exc:
                found = await self._find_existing(entity, key, qbo_type, body)
                ours = marker(entity, key) in str((found or {}).get("PrivateNote") or "")
                if found is not None and ours:
                    return await self._adopt(qbo_type, found, body, request_id), "adopt"
                raise PushFailed(
                    "permanent",
                    f"{label}: DocNumber {body.get('DocNumber')} is already used by "
                    f"{qbo_type} {getattr(exc, 'existing_id', None) or '?'} that qbsync did "
                    "not create", exc.code, "create", settled=True) from exc
        except PushFailed:
            raise
        except (QboError, ReconnectRequired, TimeoutError) as exc:
            failure = qbo_failure(label, exc, "adopt" if adopting else "create",
                                  self.time_scale)
            failure.settled = looked and not failure.unknown
            # an object QuickBooks has and the row is not linked to: not dead before a
            # final lookup has adopted it (as it is, if it cannot be updated)
            failure.unknown = failure.unknown or adopting
            raise failure from exc

    async def _adopt(self, qbo_type: str, found: dict[str, Any], body: dict[str, Any],
                     request_id: uuid.UUID) -> dict[str, Any]:
        """Take over an object that is already ours in QuickBooks, bringing it up to date.
        The requestid follows the create's, which is per body."""
        payload = {**body, "Id": found["Id"], "SyncToken": found["SyncToken"]}
        return await self.client.update(
            qbo_type, payload, request_id=str(uuid.uuid5(request_id, f"adopt:{found['Id']}")))

    async def _update(self, qbo_type: str, plan: Update, row: Row) -> dict[str, Any]:
        existing = plan.existing
        payload = {**plan.body, "Id": existing.qbo_id, "SyncToken": existing.sync_token}
        if qbo_type in SALES_FORMS and not self.realm.custom_txn_numbers:
            payload.pop("DocNumber", None)
        request_id = plan.request_id
        try:
            try:
                return await self.client.update(qbo_type, payload, request_id=str(request_id))
            except StaleObject:
                # Someone (an accountant, another process) wrote it meanwhile: re-read the
                # SyncToken and apply our change on top, once.
                current = await self.client.read(qbo_type, existing.qbo_id)
                payload["SyncToken"] = current["SyncToken"]
                return await self.client.update(
                    qbo_type, payload,
                    request_id=str(uuid.uuid5(request_id, f"stale:{current['SyncToken']}")))
        except (QboError, ReconnectRequired, TimeoutError) as exc:
            failure = qbo_failure(row.label, exc, "update", self.time_scale)
            failure.settled = True  # the object is linked: nothing to look up
            raise failure from exc

    async def _void(self, row: Row, info: EntityInfo, plan: Void) -> Pushed:
        """Void (or delete) the transaction a row became."""
        op, existing = plan.op, plan.existing
        done = {"void": "voided", "delete": "deleted"}[op]
        started = time.perf_counter()
        request_id = plan.request_id
        call = self.client.void if op == "void" else self.client.delete
        try:
            try:
                obj = await call(info.qbo_type, existing.qbo_id, existing.sync_token or "0",
                                 request_id=str(request_id))
            except StaleObject:
                current = await self.client.read(info.qbo_type, existing.qbo_id)
                obj = await call(
                    info.qbo_type, existing.qbo_id, current["SyncToken"],
                    request_id=str(uuid.uuid5(request_id, f"stale:{current['SyncToken']}")))
        except (QboError, ReconnectRequired, TimeoutError) as exc:
            failure = qbo_failure(row.label, exc, op, self.time_scale)
            failure.settled = True  # the object is linked: nothing to look up
            raise failure from exc
        # QuickBooks' void answer has no Voided field: marked as drift marks a void seen in CDC
        obj = marked_voided(info.qbo_type, {"Id": existing.qbo_id, **obj})
        result = self.result(info.qbo_type, obj, {}, op, started)
        result["qbo_status"] = done
        result["doc_number"] = result["doc_number"] or existing.doc_number
        return Pushed(result)
