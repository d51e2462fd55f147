"""Tries and interruptions in the queue's SQL (migration 0013): a try is spent when an
attempt ends in a recorded failure; an attempt cut off by a stopping daemon (an expired
lease, a restart under the same name, a release) spends none and is counted apart, up to
max_interruptions; a row is not let go dead while QuickBooks may hold its object unseen
before one more attempt has looked it up."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

REALM = "realm-1"


@pytest.fixture
def q(db: psycopg.Connection) -> psycopg.Connection:
    db.autocommit = True
    db.execute("SELECT qbsync.define_entity('thing', 'Item', 3, '{30,120,300}')")
    db.execute("INSERT INTO qbsync.changes (entity, key) VALUES ('thing', 'a')")
    return db


def claim(conn: psycopg.Connection, worker: str = "w1") -> dict[str, Any] | None:
    cur = conn.execute("SELECT * FROM qbsync.claim(%s, 10, '1 minute')", (worker,))
    assert cur.description is not None
    rows = [dict(zip([c.name for c in cur.description], r, strict=True)) for r in cur]
    assert len(rows) <= 1
    return rows[0] if rows else None


def expire(conn: psycopg.Connection) -> None:
    """What a killed daemon leaves behind: its leases run out."""
    conn.execute("UPDATE qbsync.outbox SET lease_expires_at = now() - interval '1 second',"
                 " next_attempt_at = now() - interval '1 second' WHERE state = 'running'")


def due(conn: psycopg.Connection) -> None:
    """The backoff has passed."""
    conn.execute("UPDATE qbsync.outbox SET next_attempt_at = now() - interval '1 second'"
                 " WHERE state = 'pending'")


def fail(conn: psycopg.Connection, row_id: int, kind: str = "retry", **error: Any) -> str:
    row = conn.execute("SELECT qbsync.fail(%s, 'w1', %s, %s::jsonb)", (
        row_id, REALM, json.dumps({"kind": kind, "message": f"boom ({kind})", **error}))
    ).fetchone()
    assert row is not None
    return str(row[0])


def state(conn: psycopg.Connection) -> tuple[Any, ...]:
    row = conn.execute("SELECT state::text, attempts, interruptions, outcome_unknown, lookup_due"
                       " FROM qbsync.outbox").fetchone()
    assert row is not None
    return tuple(row)


def test_an_expired_lease_returns_the_row_without_a_try(q: psycopg.Connection) -> None:
    first = claim(q)
    assert first is not None
    assert (first["attempts"], first["interruptions"], first["outcome_unknown"]) == (1, 0, False)
    expire(q)
    again = claim(q, "w2")
    assert again is not None
    # the same try again, the interruption counted apart, its outcome unknown
    assert (again["id"], again["attempts"], again["interruptions"], again["outcome_unknown"],
            again["lookup_due"]) == (first["id"], 1, 1, True, False)
    assert again["request_id"] == first["request_id"]


def test_a_recorded_failure_counts_a_try_and_interruptions_do_not(
        q: psycopg.Connection) -> None:
    """5xx answers spend the entity's tries as before (3, backoff 30/120 s), however many
    times the row's daemon was killed in between (15 in all, 5 in a row at most: under the
    bound of 20 that a run of interruptions has)."""
    for n in (1, 2, 3):
        row = claim(q)
        assert row is not None
        for _ in range(5):  # killed five times during this try
            expire(q)
            row = claim(q)
            assert row is not None
        assert row["attempts"] == n
        verdict = fail(q, row["id"], code="10000")
        if n < 3:
            assert verdict == "pending"
            wait = q.execute("SELECT extract(epoch FROM next_attempt_at - last_attempt_at)"
                             " FROM qbsync.outbox").fetchone()
            assert wait is not None
            assert round(float(wait[0])) == (30, 120)[n - 1]
            due(q)
    assert verdict == "dead"
    logged = q.execute("SELECT status, attempt, error_code, (details->>'interruptions')::int"
                       " FROM qbsync.integration_logs WHERE operation = 'push' ORDER BY id"
                       ).fetchall()
    assert logged == [("retry", 1, "10000", 5), ("retry", 2, "10000", 5),
                      ("dead", 3, "10000", 5)]


def test_a_throttle_spends_no_try(q: psycopg.Connection) -> None:
    row = claim(q)
    assert row is not None
    assert fail(q, row["id"], "throttled", retry_after=0) == "pending"
    assert state(q) == ("pending", 0, 0, False, False)


def test_a_restart_under_the_same_name_and_a_release_spend_no_try(
        q: psycopg.Connection) -> None:
    assert claim(q) is not None
    q.execute("SELECT qbsync.register_worker('w1', 'host', 1)")  # w1 restarted
    assert state(q) == ("pending", 0, 1, True, False)
    assert claim(q) is not None
    assert q.execute("SELECT qbsync.release('w1')").fetchone() == (1,)  # SIGTERM
    assert state(q) == ("pending", 0, 2, True, False)
    row = claim(q)
    assert row is not None
    assert (row["attempts"], row["interruptions"]) == (1, 2)


def test_the_interruption_bound_sends_a_row_dead_after_its_lookup(
        q: psycopg.Connection) -> None:
    q.execute("UPDATE qbsync.settings SET value = '3' WHERE name = 'max_interruptions'")
    assert claim(q) is not None
    for _ in range(2):
        expire(q)
        row = claim(q)
        assert row is not None
        assert not row["lookup_due"]
    expire(q)
    row = claim(q)  # the third interruption: the bound
    assert row is not None
    assert (row["attempts"], row["interruptions"], row["lookup_due"],
            row["last_error_code"]) == (1, 3, True, "interrupted")
    assert row["last_error"] == "thing a: the daemon stopped 3 times while pushing this row"
    # the daemon looked QuickBooks up and found nothing: dead, saying why
    assert fail(q, row["id"], "permanent", message="thing a: not in QuickBooks either") == "dead"
    dead = q.execute("SELECT last_error, last_error_code, interruptions, lookup_due,"
                     " outcome_unknown FROM qbsync.outbox WHERE state = 'dead'").fetchone()
    assert dead == ("thing a: the daemon stopped 3 times while pushing this row; "
                    "thing a: not in QuickBooks either", "interrupted", 0, False, True)
    notice = q.execute("SELECT message FROM qbsync.open_notices WHERE kind = 'dead_row'"
                       ).fetchone()
    assert notice is not None
    assert "the daemon stopped 3 times while pushing this row" in notice[0]


def test_a_recorded_outcome_ends_a_run_of_interruptions(q: psycopg.Connection) -> None:
    """The bound is on interruptions in a row: an attempt that ended with its outcome
    recorded did not stop its daemon, whatever the rows it was held with."""
    q.execute("UPDATE qbsync.settings SET value = '3' WHERE name = 'max_interruptions'")
    for _ in range(2):
        assert claim(q) is not None
        for _ in range(2):
            expire(q)
            row = claim(q)
            assert row is not None
        assert (row["interruptions"], row["lookup_due"]) == (2, False)
        assert fail(q, row["id"], "throttled", retry_after=0) == "pending"
        assert state(q)[2] == 0
        due(q)


def test_a_lookup_cut_off_past_the_bound_is_not_tried_again(q: psycopg.Connection) -> None:
    q.execute("UPDATE qbsync.settings SET value = '2' WHERE name = 'max_interruptions'")
    assert claim(q) is not None
    expire(q)
    assert claim(q) is not None
    expire(q)
    row = claim(q)
    assert row is not None
    assert (row["lookup_due"], row["last_error_code"]) == (True, "interrupted")
    expire(q)  # its daemon stopped during the lookup too
    row = claim(q)
    assert row is not None
    assert (row["interruptions"], row["last_error_code"]) == (3, "interrupted-lookup")
    assert row["last_error"] == (
        "thing a: the daemon stopped 3 times while pushing this row, the last time while "
        "looking it up in QuickBooks (not looked up again: look for it there before "
        "retry_dead)")


def test_no_dead_row_before_an_unknown_outcome_is_looked_up(q: psycopg.Connection) -> None:
    """The last try's answer was lost: the row goes back at once for a lookup, and dies
    only on that lookup's verdict, the lost answer's error first."""
    for _ in range(2):
        row = claim(q)
        assert row is not None
        assert fail(q, row["id"], code="10000") == "pending"
        due(q)
    row = claim(q)
    assert row is not None
    assert row["attempts"] == 3
    lost = {"message": "thing a: no answer; the write may have been applied", "unknown": True,
            "unsettled": True}
    assert fail(q, row["id"], **lost) == "pending"  # not dead: looked up first
    assert state(q) == ("pending", 3, 0, True, True)
    back = q.execute("SELECT next_attempt_at <= now(), last_error FROM qbsync.outbox"
                     ).fetchone()
    assert back == (True, lost["message"])
    write_backs = q.execute("SELECT status, details->>'lookup_due' FROM qbsync.integration_logs"
                            " ORDER BY id DESC LIMIT 1").fetchone()
    assert write_backs == ("retry", "true")
    row = claim(q)
    assert row is not None
    assert (row["attempts"], row["lookup_due"]) == (4, True)
    assert fail(q, row["id"], "permanent", message="thing a: not in QuickBooks either") == "dead"
    assert q.execute("SELECT last_error FROM qbsync.outbox").fetchone() == (
        f"{lost['message']}; thing a: not in QuickBooks either",)
    # retry_dead starts afresh, but the next push still looks the object up first
    q.execute("SELECT qbsync.retry_dead('thing', 'a')")
    assert state(q) == ("pending", 0, 0, True, False)


def test_failed_lookups_are_bounded(q: psycopg.Connection) -> None:
    """QuickBooks cannot be asked (every lookup fails): as many lookups as tries, then dead,
    saying that QuickBooks may hold the object."""
    verdicts = []
    for _ in range(6):
        row = claim(q)
        assert row is not None
        verdicts.append(fail(q, row["id"], code="10000", unsettled=True))
        due(q)
    assert verdicts == ["pending"] * 5 + ["dead"]
    last_error = q.execute("SELECT last_error FROM qbsync.outbox").fetchone()
    assert last_error is not None
    assert "QuickBooks could not be looked up before giving up, so it may hold thing a " \
           "already" in last_error[0]


def test_the_shop_row_is_not_written_back_failed_while_a_lookup_is_due(
        dixis_db: psycopg.Connection) -> None:
    conn = dixis_db
    conn.autocommit = True
    conn.execute("SELECT dixis.generate(1, 0.5)")
    conn.execute("UPDATE qbsync.entities SET max_attempts = 1 WHERE entity = 'order'")
    row = conn.execute("SELECT id, key FROM qbsync.claim('w1', 10, '1 minute')"
                       " WHERE entity = 'order'").fetchone()
    assert row is not None
    assert fail(conn, row[0], unknown=True, unsettled=True) == "pending"
    status = conn.execute("SELECT quickbooks_sync_status FROM dixis.orders WHERE id = %s",
                          (int(row[1]),)).fetchone()
    assert status == ("pending",)
