"""The SQL of rows waiting for a setting (migration 0009) on its own: a wait burns no try and
is never claimed, a recheck brings the row back on a bound, one waiting row per key, a
setting written (by anyone allowed to) releases the rows at once, and the look-up's store
keeps overrides and removes what QuickBooks no longer has."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest

REALM = "4620816365"


@pytest.fixture
def q(db: psycopg.Connection) -> psycopg.Connection:
    db.autocommit = True
    db.execute("INSERT INTO qbsync.connections (realm_id, api_base_url, tokens, key_id) "
               "VALUES (%s, 'http://qbo.test', '\\x00', 'k')", (REALM,))
    db.execute("SELECT qbsync.define_entity('order', 'Invoice')")
    return db


def claim(conn: psycopg.Connection) -> list[tuple[int, str, int]]:
    return [(r[0], r[1], r[2]) for r in conn.execute(
        "SELECT id, key, attempts FROM qbsync.claim('w1', 10, '1 minute')")]


def wait(conn: psycopg.Connection, row_id: int, *settings: str) -> str:
    row = conn.execute("SELECT qbsync.wait_for_settings(%s, 'w1', %s, %s, %s)",
                       (row_id, REALM, list(settings),
                        f"waits for {', '.join(settings)}")).fetchone()
    assert row is not None
    return str(row[0])


def rows(conn: psycopg.Connection) -> list[tuple[Any, ...]]:
    return [tuple(r) for r in conn.execute(
        "SELECT key, state::text, attempts, waiting_for, force FROM qbsync.outbox "
        "ORDER BY key, state")]


def enqueue(conn: psycopg.Connection, key: str, force: bool = False) -> None:
    conn.execute("SELECT qbsync.enqueue('order', %s, %s)", (key, force))


def test_a_wait_burns_no_try_and_the_row_is_not_claimed(q: psycopg.Connection) -> None:
    enqueue(q, "1")
    [(row_id, _, attempts)] = claim(q)
    assert attempts == 1
    assert wait(q, row_id, "tax_code:13", "income_account") == "waiting"
    assert rows(q) == [("1", "waiting", 0, ["income_account", "tax_code:13"], False)]
    assert claim(q) == []
    assert q.execute("SELECT qbsync.backlog()").fetchone() == (1,)  # not drained
    [(_, count, keys)] = q.execute(
        "SELECT setting, rows_waiting, some_keys FROM qbsync.missing_settings "
        "WHERE setting = 'tax_code:13'").fetchall()
    assert (count, keys) == (1, ["order 1"])
    assert wait(q, row_id, "tax_code:13") == "lost"  # no longer held


def test_a_recheck_brings_the_row_back_and_it_waits_again_without_a_try(
        q: psycopg.Connection) -> None:
    enqueue(q, "1")
    [(row_id, _, _)] = claim(q)
    wait(q, row_id, "tax_code:13")
    next_check = q.execute("SELECT next_attempt_at - now() FROM qbsync.outbox").fetchone()
    assert next_check is not None
    assert 890 < next_check[0].total_seconds() <= 900  # setting_recheck_seconds
    assert q.execute("SELECT qbsync.release_setting_waits(%s)", (REALM,)).fetchone() == (0,)
    for _ in range(3):  # its recheck time comes; still missing; waits again
        q.execute("UPDATE qbsync.outbox SET next_attempt_at = now() - interval '1 second'")
        assert q.execute("SELECT qbsync.release_setting_waits(%s)", (REALM,)).fetchone() == (1,)
        [(again, _, attempts)] = claim(q)
        assert (again, attempts) == (row_id, 1)
        assert wait(q, row_id, "tax_code:13") == "waiting"
    assert rows(q) == [("1", "waiting", 0, ["tax_code:13"], False)]
    # logged once: when it started waiting (the waits after a recheck are the same wait)
    assert q.execute("SELECT count(*) FROM qbsync.integration_logs "
                     "WHERE operation = 'wait.setting'").fetchone() == (1,)


def test_one_waiting_row_per_key(q: psycopg.Connection) -> None:
    enqueue(q, "1")
    [(first, _, _)] = claim(q)
    wait(q, first, "tax_code:13")
    enqueue(q, "1", force=True)  # the shop row changed: a second row of the key
    [(second, _, _)] = claim(q)
    assert second != first
    assert wait(q, second, "tax_code:13", "tax_code:6") == "waiting"
    # merged into the older row, which keeps its request id
    assert rows(q) == [("1", "waiting", 0, ["tax_code:13", "tax_code:6"], True)]
    assert q.execute("SELECT id FROM qbsync.outbox").fetchone() == (first,)


def test_writing_the_setting_releases_the_rows_at_once(q: psycopg.Connection) -> None:
    for key in ("1", "2", "3"):
        enqueue(q, key)
    claimed = claim(q)
    for row_id, key, _ in claimed:
        wait(q, row_id, "tax_code:13" if key != "3" else "payment_method:card")
    enqueue(q, "1")  # a change of order 1 queued while it waits
    q.execute("SELECT qbsync.override_setting('tax_code:13', '{\"value\": \"7\"}')")
    assert rows(q) == [("1", "pending", 0, None, False), ("2", "pending", 0, None, False),
                       ("3", "waiting", 0, ["payment_method:card"], False)]
    released = q.execute("SELECT model_id FROM qbsync.integration_logs "
                         "WHERE operation = 'wait.released' ORDER BY model_id").fetchall()
    assert released == [("1",), ("2",)]
    # an alias counts: payment_method:card -> payment_method:credit_card
    q.execute("INSERT INTO qbsync.setting_aliases (name, target) "
              "VALUES ('payment_method:card', 'payment_method:credit_card')")
    assert rows(q)[2][1] == "waiting"
    q.execute("INSERT INTO qbsync.realm_settings (realm_id, name, value) "
              "VALUES (%s, 'payment_method:credit_card', '{\"value\": \"3\"}')", (REALM,))
    assert rows(q)[2][1:4] == ("pending", 0, None)


def test_a_setting_set_while_the_row_was_mapped_makes_it_ready_at_once(
        q: psycopg.Connection) -> None:
    enqueue(q, "1")
    [(row_id, _, _)] = claim(q)
    q.execute("SELECT qbsync.override_setting('tax_code:13', '{\"value\": \"7\"}')")
    assert wait(q, row_id, "tax_code:13") == "pending"
    assert rows(q) == [("1", "pending", 0, None, False)]
    assert claim(q) == [(row_id, "1", 1)]  # the try the claim counted was given back


def test_notice_names_the_setting_and_closes_once_it_is_set(q: psycopg.Connection) -> None:
    enqueue(q, "1")
    [(row_id, _, _)] = claim(q)
    wait(q, row_id, "income_account")
    [(message, details)] = q.execute(
        "SELECT message, details FROM qbsync.open_notices WHERE kind = 'setting_missing'"
        ).fetchall()
    assert f'QuickBooks company {REALM} has no value for setting "income_account"' in message
    assert "1 row(s) wait for it (order 1)" in message
    assert "SELECT qbsync.override_setting('income_account', '{\"value\": \"<QuickBooks Id>\"}');" \
        in message
    assert details["override"].startswith("SELECT qbsync.override_setting('income_account'")
    q.execute("SELECT qbsync.override_setting('income_account', '{\"value\": \"1\"}')")
    assert q.execute("SELECT count(*) FROM qbsync.open_notices "
                     "WHERE kind = 'setting_missing'").fetchone() == (0,)


def store(q: psycopg.Connection, found: dict[str, Any], done: list[str],
          problems: dict[str, Any] | None = None) -> dict[str, Any]:
    row = q.execute("SELECT qbsync.store_lookup(%s, %s::jsonb, %s, %s::jsonb)",
                    (REALM, json.dumps(found), done, json.dumps(problems or {}))).fetchone()
    assert row is not None
    return dict(row[0])


def settings(q: psycopg.Connection) -> dict[str, tuple[str, str]]:
    return {r[0]: (r[1], r[2]) for r in q.execute(
        "SELECT name, value->>'value', source FROM qbsync.realm_settings ORDER BY name")}


def test_a_look_up_keeps_overrides_and_refused_groups_and_drops_what_is_gone(
        q: psycopg.Connection) -> None:
    store(q, {"tax_code:24": {"value": "1"}, "tax_code:13": {"value": "2"},
              "payment_method:cash": {"value": "1"}, "income_account": {"value": "1"}},
          ["tax_code", "payment_method", "income_account"])
    q.execute("SELECT qbsync.override_setting('tax_code:6', '{\"value\": \"9\"}')")
    # next look-up: 13 % gone from QuickBooks, payment methods refused
    summary = store(q, {"tax_code:24": {"value": "1"}, "income_account": {"value": "4"}},
                    ["tax_code", "income_account"],
                    {"refused": {"payment_method": "QuickBooks 4000 Error parsing query"}})
    assert settings(q) == {"income_account": ("4", "lookup"),
                           "payment_method:cash": ("1", "lookup"),  # kept: not looked up
                           "tax_code:24": ("1", "lookup"), "tax_code:6": ("9", "override")}
    assert (summary["saved"], summary["removed"]) == (1, 1)
    [(key, message)] = q.execute("SELECT key, message FROM qbsync.open_notices "
                                 "WHERE kind = 'lookup_refused'").fetchall()
    assert key == "payment_method"
    assert "QuickBooks 4000 Error parsing query" in message
    refused = q.execute("SELECT settings_lookup_refused FROM qbsync.connection_status"
                        ).fetchone()
    assert refused == ({"payment_method": "QuickBooks 4000 Error parsing query"},)
    store(q, {"payment_method:cash": {"value": "1"}}, ["payment_method"])
    assert q.execute("SELECT count(*) FROM qbsync.open_notices "
                     "WHERE kind = 'lookup_refused'").fetchone() == (0,)
