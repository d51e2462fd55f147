"""The queue's SQL functions on their own (migration 0002): claim, leases, per-key order,
expired leases, extend_leases and skip_many's grouped, lease-checked skips, and the plans
the claim and skip_many keep however stale the outbox's statistics are."""

from __future__ import annotations

from collections.abc import Sequence

import psycopg
import pytest
from psycopg import errors

from tests.waiting import wait_until


@pytest.fixture
def q(db: psycopg.Connection) -> psycopg.Connection:
    db.autocommit = True
    db.execute("SELECT qbsync.define_entity('thing', 'Item')")
    return db


def capture(conn: psycopg.Connection, *keys: str) -> None:
    """What capture triggers do: append (entity, key) to qbsync.changes."""
    conn.execute("INSERT INTO qbsync.changes (entity, key)"
                 " SELECT 'thing', k FROM unnest(%s::text[]) AS k", (list(keys),))


def claim(conn: psycopg.Connection, worker: str, n: int, lease: str = "1 minute"
          ) -> list[tuple[int, str]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT id, key FROM qbsync.claim(%s, %s, %s::interval)", (worker, n, lease))]


def past(conn: psycopg.Connection, moment: str, params: Sequence[object] = ()) -> bool:
    """Whether `moment` (a query for one timestamp) is before the database's now(), the
    clock the queue's functions compare leases with."""
    row = conn.execute(f"SELECT ({moment}) < now()", params).fetchone()
    return bool(row and row[0])


def skip_many(conn: psycopg.Connection, worker: str, ids: list[int],
              reasons: list[str] | None = None) -> list[int]:
    row = conn.execute("SELECT qbsync.skip_many(%s, 'realm-1', %s::bigint[], %s::text[])",
                       (worker, ids, reasons or ["nothing to push"] * len(ids))).fetchone()
    assert row is not None
    return list(row[0])


def outbox(conn: psycopg.Connection) -> list[tuple[str, str]]:
    return [(r[0], r[1]) for r in conn.execute(
        "SELECT key, state::text FROM qbsync.outbox ORDER BY key, state")]


def test_claim_collects_and_takes_oldest_first_counting_the_try(q: psycopg.Connection) -> None:
    capture(q, "a", "b", "a", "c")  # "a" twice: one row
    rows = claim(q, "w1", 2)
    assert [k for _, k in rows] == ["a", "b"]
    state = q.execute(
        "SELECT key, attempts, lease_owner, lease_expires_at > now(),"
        " next_attempt_at = lease_expires_at, request_id IS NOT NULL"
        " FROM qbsync.outbox WHERE state = 'running' ORDER BY key").fetchall()
    # a running row's next_attempt_at is its lease expiry
    assert state == [("a", 1, "w1", True, True, True), ("b", 1, "w1", True, True, True)]
    assert outbox(q) == [("a", "running"), ("b", "running"), ("c", "pending")]


def test_a_running_key_is_never_claimed_twice(q: psycopg.Connection) -> None:
    capture(q, "a")
    [(first, _)] = claim(q, "w1", 10)
    capture(q, "a", "b")  # a change of "a" while it is pushed queues one row behind it
    assert outbox(q) == [("a", "running")]  # not collected yet
    assert [k for _, k in claim(q, "w2", 10)] == ["b"]
    assert outbox(q) == [("a", "pending"), ("a", "running"), ("b", "running")]
    # once the running row is finished, the queued one is claimable: per-key order
    assert skip_many(q, "w1", [first]) == []
    assert [k for _, k in claim(q, "w2", 10)] == ["a"]


def test_expired_lease_is_reclaimed_and_the_old_holder_cannot_finish(
        q: psycopg.Connection) -> None:
    capture(q, "a", "b")
    rows = claim(q, "w1", 10, "700 milliseconds")
    assert claim(q, "w2", 10) == []  # leases still held
    wait_until(lambda: past(q, "SELECT max(lease_expires_at) FROM qbsync.outbox"), 30,
               "the leases expired")
    retaken = claim(q, "w2", 10)
    assert sorted(retaken) == sorted(rows)
    # an interruption, not a try: the same try again (tests/integration/test_tries_sql.py)
    assert q.execute("SELECT array_agg(attempts ORDER BY key),"
                     " array_agg(interruptions ORDER BY key) FROM qbsync.outbox"
                     ).fetchone() == ([1, 1], [1, 1])
    # w1's outcome is discarded: reported lost, nothing logged, the row stays w2's
    ids = [i for i, _ in rows]
    assert sorted(skip_many(q, "w1", ids)) == sorted(ids)
    assert q.execute("SELECT count(*) FROM qbsync.integration_logs").fetchone() == (0,)
    assert q.execute("SELECT DISTINCT lease_owner FROM qbsync.outbox").fetchall() == [("w2",)]
    assert skip_many(q, "w2", ids) == []
    assert outbox(q) == []


def test_extended_lease_is_not_reclaimed(q: psycopg.Connection) -> None:
    capture(q, "a")
    [(row_id, _)] = claim(q, "w1", 1, "200 milliseconds")
    first_lease = q.execute("SELECT lease_expires_at FROM qbsync.outbox").fetchone()
    held = q.execute("SELECT qbsync.extend_leases('w1', %s::bigint[], '1 minute')",
                     ([row_id],)).fetchall()
    assert held == [(row_id,)]
    assert q.execute("SELECT next_attempt_at = lease_expires_at,"
                     " lease_expires_at > now() + interval '50 seconds' FROM qbsync.outbox"
                     ).fetchone() == (True, True)
    wait_until(lambda: past(q, "SELECT %s::timestamptz", first_lease), 30,
               "the first lease's end")
    assert claim(q, "w2", 10) == []
    # another worker cannot extend it
    assert q.execute("SELECT qbsync.extend_leases('w2', %s::bigint[], '1 minute')",
                     ([row_id],)).fetchall() == []


def test_skip_many_logs_each_row_as_skip_does(q: psycopg.Connection) -> None:
    capture(q, "a", "b", "c")
    rows = dict((k, i) for i, k in claim(q, "w1", 10))
    request_ids = dict(q.execute("SELECT key, request_id FROM qbsync.outbox").fetchall())
    lost = skip_many(q, "w1", [rows["c"], rows["a"]], ["c: order not completed", "a: deleted"])
    assert lost == []
    assert outbox(q) == [("b", "running")]
    logs = q.execute(
        "SELECT operation, model_type, model_id, status, error_message, request_id, realm_id,"
        " attempt, actor, details FROM qbsync.integration_logs ORDER BY id").fetchall()
    assert logs == [
        ("skip", "thing", "c", "skipped", "c: order not completed", request_ids["c"],
         "realm-1", 1, "w1", None),
        ("skip", "thing", "a", "skipped", "a: deleted", request_ids["a"], "realm-1", 1, "w1",
         None),
    ]
    # the same as qbsync.skip of one row logs
    q.execute("SELECT qbsync.skip(%s, 'w1', 'realm-1', 'b: deleted')", (rows["b"],))
    assert q.execute(
        "SELECT operation, status, error_message, request_id, attempt, actor, details"
        " FROM qbsync.integration_logs WHERE model_id = 'b'").fetchall() == [
        ("skip", "skipped", "b: deleted", request_ids["b"], 1, "w1", None)]


def test_skip_many_reports_unknown_and_finished_ids_as_lost(q: psycopg.Connection) -> None:
    capture(q, "a")
    [(row_id, _)] = claim(q, "w1", 1)
    assert skip_many(q, "w1", [row_id, 999999]) == [999999]
    assert skip_many(q, "w1", [row_id]) == [row_id]  # already finished
    assert skip_many(q, "w1", []) == []
    with pytest.raises(errors.InvalidParameterValue, match="2 ids but 1 reasons"):
        skip_many(q, "w1", [1, 2], ["one reason"])


def test_claim_and_skip_many_read_the_outbox_by_index_with_stale_statistics(
        q: psycopg.Connection) -> None:
    """The statistics of an empty outbox (a quiet shop, then a burst): the claim and
    skip_many must still find rows through their indexes, not by reading every row
    finished since the last VACUUM (a sequential scan, or all running rows through the
    state index once per candidate row)."""
    q.execute("VACUUM ANALYZE qbsync.outbox, qbsync.changes")
    capture(q, *(f"k{i:04}" for i in range(600)))
    with psycopg.connect(q.info.dsn, autocommit=True) as w:  # a new session: fresh plans
        for _ in range(30):  # past the plan cache's custom plans, finished rows piling up
            ids = [i for i, _ in claim(w, "w1", 10)]
            assert len(ids) == 10
            assert skip_many(w, "w1", ids) == []
        # (the xact counters also hold what earlier transactions have not flushed yet:
        # compare before and after)
        counts = ("SELECT seq_scan, idx_scan,"
                  " pg_stat_get_xact_numscans('qbsync.outbox_state_time'::regclass)"
                  " FROM pg_stat_xact_user_tables WHERE relid = 'qbsync.outbox'::regclass")
        w.autocommit = False
        before = w.execute(counts).fetchone()
        ids = [i for i, _ in claim(w, "w1", 10)]
        assert skip_many(w, "w1", ids) == []
        after = w.execute(counts).fetchone()
        w.rollback()
    assert before is not None
    assert after is not None
    seq, idx, state_index_scans = (a - b for a, b in zip(after, before, strict=True))
    assert seq == 0
    assert idx > 0
    # the ready rows and the expired leases: one scan each, none per candidate row
    assert state_index_scans == 2


def test_a_claim_planned_on_an_empty_outbox_stays_cheap_in_a_burst(
        q: psycopg.Connection) -> None:
    """An idle daemon's session has cached the claim's plans while the outbox was empty
    (measured in bench/throughput.py: 18 ms a claim in a burst, against ~1). Then the key
    probe of each candidate must still be a lookup of its own key, not a scan of the whole
    key index, and the UPDATE must not scan the state index."""
    q.execute("VACUUM ANALYZE qbsync.outbox, qbsync.changes")
    with psycopg.connect(q.info.dsn, autocommit=True) as w:  # the idle daemon's session
        for _ in range(10):  # its polls: past the plan cache's custom plans
            assert claim(w, "w1", 10) == []
        capture(q, *(f"k{i:04}" for i in range(600)))  # the burst
        for _ in range(20):  # finished rows piling up in the key index
            ids = [i for i, _ in claim(w, "w1", 10)]
            assert len(ids) == 10
            assert skip_many(w, "w1", ids) == []
        counts = ("SELECT pg_stat_get_xact_tuples_returned('qbsync.outbox_key_state'::regclass),"
                  " pg_stat_get_xact_numscans('qbsync.outbox_state_time'::regclass)")
        w.autocommit = False
        before = w.execute(counts).fetchone()
        assert len(claim(w, "w1", 10)) == 10
        after = w.execute(counts).fetchone()
        w.rollback()
    assert before is not None
    assert after is not None
    key_entries_read, state_index_scans = (a - b for a, b in zip(after, before, strict=True))
    assert key_entries_read <= 30  # each candidate's own entries (the plan's: ~8,000)
    assert state_index_scans == 2  # the ready rows and the expired leases
