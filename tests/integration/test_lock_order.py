"""Functions that lock several outbox rows lock them in id order, whatever the plan: a
daemon extends the leases of all the rows it works on (qbsync.extend_leases) while its
outcome groups lock their own rows (qbsync.complete_many, ORDER BY id FOR UPDATE). Rows
locked in their physical order instead (a sequential or bitmap scan visits them so, and
every lease extension moves a row) deadlock with a group that locks the same rows in id
order, and PostgreSQL then aborts one of the two. Shop rows likewise: groups writing back
an order's invoice and another order's payment crosswise (both onto the Dixis order rows)
take the rows of a key one group at a time.

Each test holds one row in a third transaction so that both calls are under way, each
holding a row, before either can go on: the order they then lock the rest in decides."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import psycopg

from tests.support import conn_url
from tests.waiting import wait_until

REALM = "realm-1"


def claimed(db: psycopg.Connection, physical: str) -> tuple[int, int, int]:
    """Three rows claimed by w1, ids y < z < x, lying in the table in the `physical` order
    of their names ("xzy": x first)."""
    db.autocommit = True
    db.execute("SELECT qbsync.define_entity('thing', 'Item', 3, '{30,120,300}')")
    db.execute("INSERT INTO qbsync.changes (entity, key) VALUES ('thing', 'a'), ('thing', 'b'),"
               " ('thing', 'c')")
    y, z, x = sorted(i for i, in db.execute("SELECT id FROM qbsync.claim('w1', 10, '1 minute')"))
    named = {"x": x, "y": y, "z": z}
    for name in physical:  # each extension writes a new version of the row at the end
        db.execute("SELECT qbsync.extend_leases('w1', ARRAY[%s]::bigint[], '1 minute')",
                   (named[name],))
    placed = [i for i, in db.execute("SELECT id FROM qbsync.outbox ORDER BY ctid")]
    assert placed == [named[name] for name in physical]
    return y, z, x


def waiting_for_a_lock(db: psycopg.Connection, pid: int) -> bool:
    row = db.execute("SELECT cardinality(pg_blocking_pids(%s)) > 0", (pid,)).fetchone()
    return bool(row and row[0])


class Session:
    """A connection running one statement in a thread; `error` is what it raised."""

    def __init__(self, url: str, setup: str = "") -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        if setup:
            self.conn.execute(setup)
        self.pid = self.conn.info.backend_pid
        self.error: BaseException | None = None
        self.result: Any = None
        self.thread: threading.Thread | None = None

    def start(self, call: Callable[[psycopg.Connection], Any]) -> None:
        def run() -> None:
            try:
                self.result = call(self.conn)
            except psycopg.Error as exc:
                self.error = exc

        self.thread = threading.Thread(target=run)
        self.thread.start()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(30)
        assert not self.thread.is_alive()
        self.conn.close()


def hold(url: str, row_id: int) -> psycopg.Connection:
    """A transaction holding one row (as another transaction might), so that both calls of
    a test are under way before either can finish."""
    gate = psycopg.connect(url)
    gate.execute("SELECT 1 FROM qbsync.outbox WHERE id = %s FOR UPDATE", (row_id,))
    return gate


def race(db: psycopg.Connection, gate: psycopg.Connection, first: Session,
         first_call: Callable[[psycopg.Connection], Any], second: Session,
         second_call: Callable[[psycopg.Connection], Any]) -> None:
    """`first` runs until it waits for a lock, then `second` does; then the gate lets go."""
    first.start(first_call)
    wait_until(lambda: waiting_for_a_lock(db, first.pid), what="the first call waiting")
    second.start(second_call)
    wait_until(lambda: waiting_for_a_lock(db, second.pid), what="the second call waiting")
    gate.rollback()
    gate.close()
    first.join()
    second.join()
    for session in (first, second):
        assert not isinstance(session.error, psycopg.errors.DeadlockDetected), session.error
        assert session.error is None


def extend(ids: list[int]) -> Callable[[psycopg.Connection], Any]:
    return lambda c: c.execute(
        "SELECT qbsync.extend_leases('w1', %s::bigint[], '1 minute')", (ids,)).fetchall()


def test_extending_leases_never_deadlocks_with_a_group_being_recorded(
    db: psycopg.Connection
) -> None:
    y, z, x = claimed(db, "xzy")
    url = conn_url(db)
    group = Session(url)
    # the plan a large outbox gets visits the rows in their physical order
    leases = Session(url, "SET enable_indexscan = off")
    # the group locks y and waits for z; the extension must not hold x meanwhile
    race(db, hold(url, z), group, lambda c: c.execute(
        "SELECT qbsync.complete_many('w1', %s, %s::jsonb)",
        (REALM, json.dumps([{"id": i, "skip": "unchanged"} for i in (x, z, y)]))).fetchone(),
        leases, extend([x, z, y]))
    assert group.result == ([],)  # every outcome recorded: no lease was lost
    assert leases.result == []    # the rows are done: none left to extend
    assert db.execute("SELECT count(*) FROM qbsync.outbox").fetchone() == (0,)


def test_extending_leases_never_deadlocks_with_skips_being_recorded(
    db: psycopg.Connection
) -> None:
    y, z, x = claimed(db, "yzx")
    url = conn_url(db)
    skips, leases = Session(url), Session(url)
    # outcomes come in any order: the skips must not hold x while they wait for z
    race(db, hold(url, z), skips, lambda c: c.execute(
        "SELECT qbsync.skip_many('w1', %s, %s::bigint[], %s::text[])",
        (REALM, [x, z, y], ["nothing to push"] * 3)).fetchone(),
        leases, extend([x, z, y]))
    assert skips.result == ([],)
    assert leases.result == []
    assert db.execute("SELECT count(*) FROM qbsync.outbox").fetchone() == (0,)


def test_releasing_never_deadlocks_with_a_group_being_recorded(
    db: psycopg.Connection
) -> None:
    y, z, x = claimed(db, "xzy")
    url = conn_url(db)
    group, releasing = Session(url), Session(url, "SET enable_indexscan = off")
    race(db, hold(url, z), group, lambda c: c.execute(
        "SELECT qbsync.complete_many('w1', %s, %s::jsonb)",
        (REALM, json.dumps([{"id": i, "skip": "unchanged"} for i in (x, z, y)]))).fetchone(),
        releasing, lambda c: c.execute(
            "SELECT qbsync.release('w1', %s::bigint[])", ([x, z, y],)).fetchone())
    assert group.result == ([],)
    assert releasing.result == (0,)


def pushed(entity: str, key: int) -> dict[str, Any]:
    return {"entity": entity, "key": str(key), "result": {
        "qbo_type": "Invoice" if entity == "order" else "Payment",
        "qbo_id": f"{entity}-{key}", "sync_token": "0", "digest": {}}}


def test_groups_writing_back_orders_and_payments_crosswise_never_deadlock(
    dixis_db: psycopg.Connection
) -> None:
    """A Dixis payment's write-back updates its order's row: one group records the invoice
    of x and the payments of z and y, the other the invoice of y and the payment of x."""
    dixis_db.execute("SELECT dixis.generate(5, 0.5)")
    dixis_db.commit()
    x, y, z = [i for i, in dixis_db.execute("SELECT id FROM dixis.orders ORDER BY id LIMIT 3")]
    url = conn_url(dixis_db)
    record = "SELECT qbsync.record_successes(%s, %s::jsonb, 'w1', false)"
    first, second = Session(url), Session(url)
    # the first group writes back x and waits for z; the second must not hold y meanwhile
    gate = psycopg.connect(url)
    gate.execute("SELECT 1 FROM dixis.orders WHERE id = %s FOR UPDATE", (z,))
    race(dixis_db, gate, first, lambda c: c.execute(record, (REALM, json.dumps(
        [pushed("order", x), pushed("payment", z), pushed("payment", y)]))).fetchone(),
        second, lambda c: c.execute(record, (REALM, json.dumps(
            [pushed("order", y), pushed("payment", x)]))).fetchone())
    written = dixis_db.execute(
        "SELECT id, quickbooks_invoice_id, quickbooks_payment_id FROM dixis.orders"
        " WHERE id = ANY (%s) ORDER BY id", ([x, y, z],)).fetchall()
    assert written == [(x, f"order-{x}", f"payment-{x}"), (y, f"order-{y}", f"payment-{y}"),
                       (z, None, f"payment-{z}")]
