"""Capture wakes a daemon with NOTIFY only while one is waiting, and the idle loop's
re-check closes the race with transactions that read the flag before it was set."""

from __future__ import annotations

import psycopg
import pytest

from tests.support import conn_url
from tests.waiting import wait_until


@pytest.fixture
def shop(db: psycopg.Connection) -> psycopg.Connection:
    db.execute(
        """
        CREATE TABLE public.products (id int PRIMARY KEY, price numeric);
        SELECT qbsync.define_entity('product', 'Item');
        SELECT qbsync.track('public.products', 'product', 'id');
        INSERT INTO qbsync.workers (worker_id, hostname, pid) VALUES ('w1', 'test', 1);
        """
    )
    db.commit()
    return db


@pytest.fixture
def listener(shop: psycopg.Connection) -> psycopg.Connection:
    conn = psycopg.connect(conn_url(shop), autocommit=True)
    conn.execute("LISTEN qbsync_wakeup")
    yield conn
    conn.close()


def wakeups(listener: psycopg.Connection) -> int:
    """The wake-ups sent since the last call: read up to a marker notified now. PostgreSQL
    delivers notifications in commit order, so every wake-up of an earlier commit comes
    before it, and none is missed however slow the delivery."""
    with psycopg.connect(conn_url(listener), autocommit=True) as other:
        other.execute("NOTIFY qbsync_wakeup, 'test-marker'")
    for count, note in enumerate(listener.notifies(timeout=30)):
        if note.payload == "test-marker":
            return count
    raise AssertionError("the marker notification did not arrive within 30 s")


def waiting(shop: psycopg.Connection) -> bool:
    """What a capturing transaction would read now: does a daemon wait for a NOTIFY?"""
    row = shop.execute("SELECT qbsync_capture.daemon_waiting()").fetchone()
    shop.rollback()
    return bool(row and row[0])


def write(shop: psycopg.Connection, *ids: int) -> None:
    for i in ids:
        shop.execute("INSERT INTO products VALUES (%s, 1) ON CONFLICT (id) DO UPDATE SET price = "
                     "products.price + 1", (i,))
    shop.commit()


def test_no_notify_while_nobody_waits(
    shop: psycopg.Connection, listener: psycopg.Connection
) -> None:
    write(shop, 1, 2, 3)
    assert wakeups(listener) == 0


def test_notify_while_waiting_once_per_transaction(
    shop: psycopg.Connection, listener: psycopg.Connection
) -> None:
    shop.execute("SELECT qbsync.announce_waiting('w1', interval '1 minute')")
    shop.commit()
    write(shop, 1, 2, 3)  # one transaction, three new rows: NOTIFY folds them into one
    assert wakeups(listener) == 1
    write(shop, 1)  # each committed transaction with a change wakes the waiting daemon
    assert wakeups(listener) == 1
    write(shop)  # ...and one without a change does not
    assert wakeups(listener) == 0


def test_no_notify_after_stop_waiting_or_expiry(
    shop: psycopg.Connection, listener: psycopg.Connection
) -> None:
    shop.execute("SELECT qbsync.announce_waiting('w1', interval '1 minute')")
    shop.execute("SELECT qbsync.stop_waiting('w1')")
    shop.commit()
    write(shop, 1)
    assert wakeups(listener) == 0
    # A daemon killed while waiting leaves a flag that expires by itself: once the
    # database's clock has passed it, capture no longer notifies.
    shop.execute("SELECT qbsync.announce_waiting('w1', interval '0.3 s')")
    shop.commit()
    wait_until(lambda: not waiting(shop), 30, "the waiting flag expired")
    write(shop, 2)
    assert wakeups(listener) == 0


def test_one_daemon_stopping_leaves_the_other_waiting(
    shop: psycopg.Connection, listener: psycopg.Connection
) -> None:
    shop.execute("INSERT INTO qbsync.workers (worker_id, hostname, pid) VALUES ('w2', 'test', 2)")
    shop.execute("SELECT qbsync.announce_waiting('w1', interval '1 minute')")
    shop.execute("SELECT qbsync.announce_waiting('w2', interval '2 minutes')")
    shop.execute("SELECT qbsync.stop_waiting('w2')")  # w1 still sleeps on LISTEN
    shop.commit()
    write(shop, 1)
    assert wakeups(listener) == 1
    shop.execute("SELECT qbsync.unregister_worker('w1')")
    shop.commit()
    write(shop, 2)
    assert wakeups(listener) == 0


def test_switch_turns_notify_off(shop: psycopg.Connection, listener: psycopg.Connection) -> None:
    shop.execute("UPDATE qbsync.settings SET value = 'false' WHERE name = 'wakeup_notify'")
    shop.execute("SELECT qbsync.announce_waiting('w1', interval '1 minute')")
    shop.commit()
    write(shop, 1)
    assert wakeups(listener) == 0


def test_snapshot_settles_after_racing_transaction_commits(shop: psycopg.Connection) -> None:
    # A shop transaction wrote (and read "nobody waits") before the daemon announced.
    racer = psycopg.connect(conn_url(shop))
    racer.execute("INSERT INTO products VALUES (42, 1)")
    snap = shop.execute("SELECT qbsync.announce_waiting('w1', interval '1 minute')").fetchone()
    shop.commit()
    assert snap is not None
    settled = "SELECT qbsync.snapshot_settled(%s::pg_snapshot)"
    assert shop.execute(settled, (snap[0],)).fetchone() == (False,)
    shop.commit()
    racer.commit()  # it will not notify: it read the flag before it was set...
    racer.close()
    # ...but the daemon's second re-check, once the snapshot settles, sees its row.
    assert shop.execute(settled, (snap[0],)).fetchone() == (True,)
    assert shop.execute("SELECT key FROM qbsync.changes").fetchall() == [("42",)]


def test_announcing_beside_a_later_open_transaction(shop: psycopg.Connection) -> None:
    # A transaction that got its id after the announcing one's and is still open when the
    # announcement takes its snapshot (on a busy server, any write in between, in any
    # database of the server) is not listed: the snapshot's xmax already counts it as not
    # yet visible. It shows in the server's snapshot once an even later one has committed.
    shop.execute("SELECT pg_current_xact_id()")  # the announcing transaction's id first
    later = psycopg.connect(conn_url(shop))
    later.execute("INSERT INTO products VALUES (43, 1)")  # a later id, left open
    with psycopg.connect(conn_url(shop)) as latest:
        latest.execute("INSERT INTO products VALUES (44, 1)")  # committed after it
    snap = shop.execute("SELECT qbsync.announce_waiting('w1', interval '1 minute')").fetchone()
    shop.commit()
    assert snap is not None
    settled = "SELECT qbsync.snapshot_settled(%s::pg_snapshot)"
    assert shop.execute(settled, (snap[0],)).fetchone() == (True,)
    shop.commit()
    later.commit()
    later.close()
