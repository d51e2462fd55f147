"""Many rows through QuickBooks' batch endpoint (30 operations a request, 40 requests a
minute per realm): used when the backlog is large, e.g. a backfill. What to do with each row
is decided as for a row pushed alone (`decide.decide`); this module groups the plans into
requests.

Batches cannot chain (an item cannot see what an earlier item created), so dependencies go
first, in batches of their own. Sales forms whose earlier attempt may have reached
QuickBooks (Row.may_exist: after a lost answer, or the many rows a killed daemon held) are
looked up by DocNumber, 30 to a query, and go in the batch as an adoption (an update of
what was found) or a create. Anything else that needs care — a void, a row to look up by a
name or by qbsync's marker (a payment, a sales form QuickBooks numbers itself), a row due
for its final lookup, a duplicate-name or stale-token fault, a dependency that would not
batch — takes the one-by-one path of `Pusher.push`, which knows how to handle it. The
batch requestid is derived from its rows' request ids and the bodies they send, so a resent
batch is deduplicated by QuickBooks like a single request, and a batch of the same rows
with a changed body (after retry_dead) is never answered with the old batch's replay.

Under a rate limiter a batch slot is worth 30 operations and a plain request one, and plain
requests have a budget of their own (what the batches leave of the 500 a minute): so only
batches at least `min_fill` full are sent as batches, and the rest of a push (the last few
new customers or items, the last few invoices) goes as single requests, which waste nothing.
With 40 batch slots a minute, the order matters too: every batch request of the process
takes its turn (`Turns`), dependencies before invoices and, among those, the ones the
most rows wait for first.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from typing import Any, TypeVar

from .decide import (
    Create,
    Depend,
    Output,
    Plan,
    Update,
    body_hash,
    mapping_failure,
    parse_body,
    read,
    resolve,
)
from .errors import ReconnectRequired
from .model import Mapped, Outcome, Pushed, PushFailed, Ref, Row, Skipped
from .qbo.client import quote_value
from .qbo.errors import (
    AuthError,
    DuplicateDocNumber,
    DuplicateName,
    Forbidden,
    QboError,
    StaleObject,
    Throttled,
    error_from_batch_item,
)
from .queries import load as load_queries
from .sync import (
    DEPENDENCY_NAMESPACE,
    DEPENDENCY_TYPES,
    Pusher,
    dependency_request_id,
    qbo_failure,
)

Q = load_queries()
# a dependency to create: its reference, QuickBooks type, body to send, body hash
Creatable = tuple[Ref, str, dict[str, Any], str]
# one operation of a batch: the row, QuickBooks type, create | update | adopt, the body
# (for an adoption, an update of the object found), the hash of the row's body
Op = tuple[Row, str, str, dict[str, Any], str]
BATCH_NAMESPACE = uuid.UUID("0b6f0d5e-8f8e-4f0a-9d77-3c2a1e5b7a10")
# Faults the one-by-one path resolves (adopt, disambiguate, re-read the SyncToken).
RESOLVED_ONE_BY_ONE = (DuplicateName, DuplicateDocNumber, StaleObject)
T = TypeVar("T")


def chunks(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


async def gather_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """Their results, together; the first exception is raised once all have finished, so
    that none is left running (sending requests, writing outcomes) behind a failure."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results  # type: ignore[return-value]


def by_entity(pairs: Iterable[tuple[str, T]]) -> Iterator[tuple[str, list[T]]]:
    ordered = sorted(pairs, key=lambda pair: pair[0])
    for entity, group in itertools.groupby(ordered, key=lambda pair: pair[0]):
        yield entity, [item for _, item in group]


class Turns:
    """At most `width` holders at once; the waiters are served highest priority first, in
    arrival order among equals. The batch requests of every push in this process take
    turns by it: QuickBooks allows 40 a minute, so which goes first matters more than how
    many wait, and a dependency many rows are waiting for should not queue behind an
    invoice batch or a batch of customers only one order needs."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.busy = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = itertools.count()

    @contextlib.asynccontextmanager
    async def turn(self, priority: int) -> AsyncIterator[None]:
        if self.busy < self.width and not self._waiting:
            self.busy += 1
        else:
            given: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (-priority, next(self._arrivals), given))
            try:
                await given
            except asyncio.CancelledError:
                if given.done() and not given.cancelled():
                    self._next()  # the turn came with the cancellation: pass it on
                raise
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        self.busy -= 1
        while self._waiting and self.busy < self.width:
            _, _, given = heapq.heappop(self._waiting)
            if not given.done():  # a cancelled waiter is skipped
                self.busy += 1
                given.set_result(None)


class BatchPusher:
    def __init__(self, pusher: Pusher, size: int = 30, *, min_fill: int = 1,
                 at_once: int = 2) -> None:
        self.pusher = pusher
        self.size = size
        self.min_fill = max(1, min(min_fill, size))  # fewer operations go one by one
        # batch requests under way at once; under a limiter, 2: one on its way and the
        # next ready for its slot
        self.turns = Turns(at_once)

    async def push(self, rows: list[Row]) -> dict[int, Outcome]:
        """The outcome of every row, by row id."""
        p = self.pusher
        out: dict[int, Outcome] = {}
        outputs: dict[int, Output] = {}
        # due for their final lookup: the one-by-one path, not even mapped here (a row whose
        # daemon keeps stopping may be one whose mapping stops it)
        one_by_one = [r.id for r in rows if r.lookup_due]
        for entity, group in by_entity((r.entity, r) for r in rows if not r.lookup_due):
            try:
                await p.entity(entity, group[0].label)
            except PushFailed as failure:
                out.update({r.id: failure.copy_for(r) for r in group})
                continue
            mapped = await p.pool.fetch(Q.map_many, entity, [r.key for r in group])
            for row, rec in zip(group, mapped, strict=True):
                try:
                    if rec["error_code"]:
                        raise mapping_failure(row.label, rec["error_code"], rec["error_message"])
                    outputs[row.id] = read(parse_body(row.label, rec["body"]))
                except PushFailed as failure:
                    out[row.id] = failure
        by_id = {r.id: r for r in rows}
        refs: set[Ref] = set().union(*(o.refs for o in outputs.values()))
        await p.known_entities(refs)
        # the references and the rows themselves, in one lookup (a NULL body needs none)
        known = await p.mapped(refs | {(by_id[i].entity, by_id[i].key)
                                       for i, output in outputs.items()
                                       if output.body is not None})

        def decide(i: int) -> Plan:
            row = by_id[i]
            return p.decide(row, p.entities[row.entity], outputs[i], known)

        plans = {i: decide(i) for i in outputs}
        needs = {i: plan.refs for i, plan in plans.items() if isinstance(plan, Depend)}
        if needs:
            # created (or found created) meanwhile: what entity_map holds for them now
            uses = Counter(ref for refs_i in needs.values() for ref in refs_i)
            now = await self._dependencies(set(uses), known, uses)
            known.update(now)
            # decided again: the rows that waited for them, and those they are (a customer
            # its order's batch just created is unchanged now)
            for i in plans:
                if i in needs or (by_id[i].entity, by_id[i].key) in now:
                    plans[i] = decide(i)
        ops: list[Op] = []
        to_find: list[Op] = []  # creates that may exist already: looked up first
        for i, plan in plans.items():
            row = by_id[i]
            qbo_type = p.entities[row.entity].qbo_type
            if isinstance(plan, Skipped | PushFailed):
                out[i] = plan
            elif isinstance(plan, Update):
                # (after an update whose outcome is unknown, its SyncToken may be stale:
                # QuickBooks says 5010, and the one-by-one path re-reads it)
                ops.append((row, qbo_type, "update",
                            {**plan.body, "Id": plan.existing.qbo_id,
                             "SyncToken": plan.existing.sync_token, "sparse": True},
                            plan.hashed))
            elif isinstance(plan, Create) and plan.found_by is not None and not plan.look_up:
                ops.append((row, qbo_type, "create",
                            p.creatable(row.entity, row.key, qbo_type, plan.body), plan.hashed))
            elif isinstance(plan, Create) and plan.found_by == "DocNumber":
                to_find.append((row, qbo_type, "create",
                                p.creatable(row.entity, row.key, qbo_type, plan.body),
                                plan.hashed))
            else:
                # the single path: a void or delete; a dependency that did not batch (it
                # says why); a create that only the single path can look up (by a name,
                # by the marker: a payment's, one query per row) or that cannot be looked
                # up at all (a customer without DisplayName)
                one_by_one.append(i)
        looked: set[int] = set()  # rows whose object QuickBooks was just asked for
        if to_find:
            ops += await self._look_up(to_find, one_by_one, looked)
        sends = []
        for chunk in chunks(ops, self.size):
            if len(chunk) < self.min_fill:
                one_by_one += [row.id for row, _, _, _, _ in chunk]
            else:
                sends.append(self._send(chunk, out, looked))
        for again in await gather_all(sends):
            one_by_one += again

        async def single(i: int) -> None:
            try:
                out[i] = await p.push(by_id[i])
            except PushFailed as failure:
                out[i] = failure
            except Exception as exc:  # one row's bug must not cost the others their outcome
                out[i] = PushFailed("retry", f"{by_id[i].label}: internal error: "
                                             f"{type(exc).__name__}: {exc}")

        # together: the limiter paces them (and the dependency locks order them)
        await asyncio.gather(*(single(i) for i in one_by_one))
        return out

    async def _look_up(self, to_find: list[Op], one_by_one: list[int], looked: set[int]
                       ) -> list[Op]:
        """Creates whose earlier attempt may have reached QuickBooks, looked up by
        DocNumber, up to a batch's worth a query: what is found is adopted (updated with the
        row's body, as the one-by-one path does), the rest created. A row whose number
        QuickBooks has twice, or whose query failed, goes one by one."""
        p = self.pusher
        ops: list[Op] = []
        for qbo_type, group in by_entity((op[1], op) for op in to_find):
            for chunk in chunks(group, self.size):
                numbers = sorted({str(body["DocNumber"]) for _, _, _, body, _ in chunk})
                try:
                    found = await p.client.query(
                        f"SELECT * FROM {qbo_type} WHERE DocNumber IN "
                        f"({', '.join(quote_value(n) for n in numbers)}) "
                        f"MAXRESULTS {len(numbers) + 10}")
                except (QboError, ReconnectRequired, TimeoutError):
                    one_by_one += [row.id for row, _, _, _, _ in chunk]
                    continue
                by_number: dict[str, list[dict[str, Any]]] = {}
                for obj in found:
                    by_number.setdefault(str(obj.get("DocNumber")), []).append(obj)
                for row, _, _, body, hashed in chunk:
                    same = by_number.get(str(body["DocNumber"]), [])
                    if len(same) > 1:
                        one_by_one.append(row.id)
                        continue
                    looked.add(row.id)
                    if same:
                        ops.append((row, qbo_type, "adopt",
                                    {**body, "Id": same[0]["Id"],
                                     "SyncToken": same[0]["SyncToken"]}, hashed))
                    else:
                        ops.append((row, qbo_type, "create", body, hashed))
        return ops

    async def _send(self, chunk: list[Op], out: dict[int, Outcome], looked: set[int]
                    ) -> list[int]:
        """One batch request; fills `out`, returns the rows to retry one by one. `looked`:
        the rows whose object was just looked up (a create of one of them that fails
        knowingly leaves nothing in QuickBooks)."""
        p = self.pusher
        items = [{"bId": f"r{n}", "operation": "update" if op == "adopt" else op,
                  qbo_type: payload}
                 for n, (_, qbo_type, op, payload, _) in enumerate(chunk)]
        # the rows and the bodies they send: QuickBooks answers a repeated requestid with
        # the first answer, whatever the new body
        request_id = uuid.uuid5(BATCH_NAMESPACE, ",".join(sorted(
            f"{row.request_id}:{op}:{payload.get('Id', '') if op == 'adopt' else ''}:{hashed}"
            for row, _, op, payload, hashed in chunk)))

        def failed(row: Row, op: str, error: Exception) -> PushFailed:
            failure = qbo_failure(row.label, error, f"{op} (batch)", p.time_scale)
            # nothing to look up before the row may go dead: the object is linked (an
            # update), or was just looked for and this create did nothing; an adoption that
            # failed leaves an object QuickBooks has and the row is not linked to
            failure.settled = op == "update" or (op == "create" and row.id in looked
                                                 and not failure.unknown)
            failure.unknown = failure.unknown or op == "adopt"
            return failure

        try:
            async with self.turns.turn(0):  # after every dependency batch
                started = time.perf_counter()
                answers = await p.client.batch(items, request_id=str(request_id))
        except (QboError, ReconnectRequired, TimeoutError) as exc:
            for row, _, op, _, _ in chunk:
                out[row.id] = failed(row, op, exc)
            return []
        again = []
        for (row, qbo_type, op, payload, hashed), answer in zip(chunk, answers, strict=True):
            error = error_from_batch_item(answer)
            if error is None:
                result = p.result(qbo_type, answer[qbo_type], payload, op, started,
                                  body_hash=hashed)
                result["operation"] = f"{op} (batch)"
                out[row.id] = Pushed(result)
            elif isinstance(error, RESOLVED_ONE_BY_ONE):
                again.append(row.id)
            else:
                out[row.id] = failed(row, op, error)
        return again

    async def _dependencies(self, refs: set[Ref], known: dict[Ref, Mapped],
                            uses: Counter[Ref]) -> dict[Ref, Mapped]:
        """Create the shop rows these references need, in batches; what does not batch
        cleanly is left for the one-by-one path of the rows that need it. `known`: what
        entity_map held for them a moment ago. Returns what entity_map holds now for the
        missing ones (those created here, or by someone else meanwhile; a failed one is
        left out, or stays as it was), so that the caller need not look them up again.

        Those no other task of this process is creating go first, without waiting; then,
        holding nothing, those that another task is creating (their locks are held): by
        then it has usually finished, and they are only looked up. So a batch that shares
        one new customer with another waits for that customer only, not for all of the
        other batch's dependencies."""
        missing = sorted(refs - _active(known))
        if not missing:
            return {}
        locks = self.pusher.dependency_lock
        busy = [ref for ref in missing if locks(ref).locked()]
        free = [ref for ref in missing if not locks(ref).locked()]
        now = await self._create_dependencies(free, uses) if free else {}
        if busy:
            now.update(await self._create_dependencies(busy, uses))
        return now

    async def _create_dependencies(self, missing: list[Ref], uses: Counter[Ref]
                                   ) -> dict[Ref, Mapped]:
        """_dependencies for these (sorted) references, under their locks. The requests go
        out together (the limiter paces them; the batches take their turns most used
        first), and each reference's lock is let go as soon as it is settled: a row pushed
        one by one that needs a product waits for that product's request only. Requests
        sent one after another, or locks held to the end, would make every row pushed one
        by one in a backfill's first minute wait for the few batch slots that create the
        catalogue's items, leaving the single-request budget idle."""
        p = self.pusher
        held: set[Ref] = set()

        def release(refs: Iterable[Ref]) -> None:
            for ref in held.intersection(refs):
                held.discard(ref)
                p.dependency_lock(ref).release()

        try:
            for ref in missing:  # sorted: locks are always taken in the same order
                await p.dependency_lock(ref).acquire()
                held.add(ref)
            now, creates = await self._creatable(missing)
            if len(_active(now)) < len(now):  # mapped, but not active
                return now  # re-creating a deleted object: the one-by-one path seeds its requestid
            release(set(missing) - {ref for ref, _, _, _ in creates})  # nothing to send

            async def settle(refs: list[Ref], send: Awaitable[dict[Ref, Mapped]]
                             ) -> dict[Ref, Mapped]:
                try:
                    return await send
                finally:
                    release(refs)

            # the most used first: a product on many of the push's orders is also on
            # the orders that other tasks push one by one, which wait for it
            creates.sort(key=lambda create: -uses[create[0]])
            sends = []
            for chunk in chunks(creates, self.size):
                if len(chunk) >= self.min_fill:
                    sends.append(settle([ref for ref, _, _, _ in chunk], self._create_batch(
                        chunk, priority=1 + uses[chunk[0][0]])))
                else:  # too few to be worth a batch slot: single requests
                    sends += [settle([create[0]], self._create_one(*create))
                              for create in chunk]
            for result in await gather_all(sends):
                now.update(result)
            return now
        finally:
            release(list(held))

    async def _creatable(self, missing: list[Ref]
                         ) -> tuple[dict[Ref, Mapped], list[Creatable]]:
        """Under the locks, each entity's entity_map rows again (another task may just have
        created some: those are returned as mapped) and the bodies of the others, in one
        round trip; what would not batch cleanly is left out of both."""
        p = self.pusher
        now: dict[Ref, Mapped] = {}
        creates: list[Creatable] = []
        for entity, keys in by_entity(missing):
            try:
                info = await p.entity(entity, f"{entity} {keys[0]}")
            except PushFailed:
                continue
            if info.qbo_type not in DEPENDENCY_TYPES:
                continue  # a transaction: its rows wait for it (one by one says so)
            for rec in await p.pool.fetch(Q.map_dependencies, p.realm.realm_id, entity, keys):
                key = rec["key"]
                if rec["qbo_status"] is not None:
                    now[(entity, key)] = Mapped(rec["qbo_id"], rec["sync_token"],
                                                rec["doc_number"], rec["qbo_status"],
                                                rec["body_hash"])
                    continue
                if rec["error_code"] or rec["body"] is None:
                    continue
                label = f"{entity} {key}"
                try:
                    body = parse_body(label, rec["body"]) or {}
                except PushFailed:
                    continue  # malformed: the rows that need it fail, saying where
                body.pop("$op", None)  # as the single path: a dependency is created
                output = read(body)
                if output.refs:
                    continue  # a dependency with dependencies of its own: one by one
                resolved = resolve(label, output, {}, p.realm, p.entities)
                if not isinstance(resolved, dict):
                    continue  # malformed, or a setting missing: the single path says so
                body = resolved
                creates.append(((entity, key), info.qbo_type,
                                p.creatable(entity, key, info.qbo_type, body),
                                body_hash(info.qbo_type, body)))
        return now, creates

    async def _create_batch(self, chunk: list[Creatable], *, priority: int
                            ) -> dict[Ref, Mapped]:
        """One batch request creating these dependencies (its turn: `priority`, above every
        invoice batch); an item QuickBooks refused is left to the row that needs it, whose
        one-by-one push handles it and says why. So is the whole chunk when the request
        fails (a 5xx, a lost answer: a one-by-one create then meets 6240 and adopts): the
        failure is not the rows' own, and failing them all would cost a try of each of the
        up to 90 rows of the push. A throttle or a refused token is raised (it costs none)."""
        p = self.pusher
        items = [{"bId": f"d{n}", "operation": "create", qbo_type: body}
                 for n, (_, qbo_type, body, _) in enumerate(chunk)]
        # "batch/": a batch of one must not share the requestid of that object's single
        # create, or QuickBooks answers one with the other's replay; the bodies' hashes: nor
        # a batch of the same objects with other bodies
        request_id = uuid.uuid5(DEPENDENCY_NAMESPACE, "batch/" + p.realm.realm_id + "/"
                                + ",".join(f"{e}/{k}/{h}" for (e, k), _, _, h in chunk))
        try:
            async with self.turns.turn(priority):
                started = time.perf_counter()
                answers = await p.client.batch(items, request_id=str(request_id))
        except (Throttled, AuthError, Forbidden, ReconnectRequired) as exc:
            raise qbo_failure(f"dependencies {chunk[0][0][0]} …", exc,
                              "create (batch)", p.time_scale) from exc
        except (QboError, TimeoutError):
            return {}
        done: list[dict[str, Any]] = []
        for ((entity, key), qbo_type, body, hashed), answer in zip(chunk, answers,
                                                                  strict=True):
            if error_from_batch_item(answer) is not None:
                continue
            result = p.result(qbo_type, answer[qbo_type], body, "create (batch)", started,
                              body_hash=hashed)
            result["message"] = f"{entity} {key} pushed as a dependency (batch)"
            done.append({"entity": entity, "key": key, "result": result})
        if done:  # one transaction (one commit) for the chunk
            await p.pool.execute(Q.record_successes, p.realm.realm_id, done, p.worker_id)
            for d in done:
                p.recorded(d["entity"], d["result"]["operation"])
        return {(d["entity"], d["key"]): _recorded(d["result"]) for d in done}

    async def _create_one(self, ref: Ref, qbo_type: str, body: dict[str, Any],
                          hashed: str) -> dict[Ref, Mapped]:
        """One dependency as a single request (its lock is held by the caller), with the
        requestid the one-by-one path would use; a fault leaves it to the row that needs it,
        whose one-by-one push handles it and says why."""
        p = self.pusher
        entity, key = ref
        request_id = dependency_request_id(p.realm.realm_id, entity, key, hashed)
        started = time.perf_counter()
        try:
            obj = await p.client.create(qbo_type, body, request_id=str(request_id))
        except (QboError, ReconnectRequired, TimeoutError):
            return {}
        result = p.result(qbo_type, obj, body, "create", started, body_hash=hashed)
        result["message"] = f"{entity} {key} pushed as a dependency (beside a batch)"
        result["request_id"] = str(request_id)
        await p.pool.execute(Q.record_success, p.realm.realm_id, entity, key, result,
                             p.worker_id)
        p.recorded(entity, "create")
        return {ref: _recorded(result)}


def _active(found: dict[Ref, Mapped]) -> set[Ref]:
    return {ref for ref, m in found.items() if m.qbo_status == "active"}


def _recorded(result: dict[str, Any]) -> Mapped:
    """The entity_map row record_successes just wrote for a created object."""
    return Mapped(str(result["qbo_id"]), result.get("sync_token"), result.get("doc_number"),
                  "active", result.get("body_hash"))
