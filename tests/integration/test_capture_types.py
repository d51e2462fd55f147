"""Capture never fails a shop's write: tracked columns of every type (json, xml, the
geometric types, arrays and composites of them, domains, enums, ranges, money) compare on
UPDATE, and a change is captured exactly when a tracked value changed; keys that qbsync
cannot queue (empty, over max_key_bytes) die alone, as one dead row each, while other rows
are claimed."""

from __future__ import annotations

import hashlib

import psycopg
import pytest

SHOP = """
CREATE SCHEMA shop;
CREATE TYPE shop.mood AS ENUM ('happy', 'sad');
CREATE TYPE shop.place AS (at point, info json);
CREATE DOMAIN shop.doc AS json;
CREATE DOMAIN shop.spot AS point;
CREATE TABLE shop.things (
    id int PRIMARY KEY, label text, j json, x xml, pt point, ln line, ls lseg, bx box,
    pa path, pg polygon, ci circle, jarr json[], ptarr point[], place shop.place,
    placearr shop.place[], doc shop.doc, spot shop.spot, mood shop.mood, rng int4range,
    tr tstzrange, m money, jb jsonb);
SELECT qbsync.define_entity('thing', 'Item');
SELECT qbsync.define_entity('anything', 'Item');
"""

# column -> (value at INSERT, another value)
VALUES: dict[str, tuple[str, str]] = {
    "label": ("'a'", "'b'"),
    "j": ("""'{"a": 1}'""", """'{"a": 2}'"""),
    "x": ("'<a/>'", "'<b/>'"),
    "pt": ("'(1,2)'", "'(1,3)'"),
    "ln": ("'{1,2,3}'", "'{1,2,4}'"),
    "ls": ("'[(0,0),(1,1)]'", "'[(0,0),(1,2)]'"),
    "bx": ("'(1,1),(0,0)'", "'(2,2),(0,0)'"),
    "pa": ("'((0,0),(1,1))'", "'((0,0),(1,2))'"),
    "pg": ("'((0,0),(1,1),(1,0))'", "'((0,0),(2,2),(1,0))'"),
    "ci": ("'<(0,0),1>'", "'<(0,0),2>'"),
    "jarr": ("""ARRAY['{"a": 1}'::json]""", """ARRAY['{"a": 2}'::json]"""),
    "ptarr": ("""'{"(1,2)"}'""", """'{"(1,3)"}'"""),
    "place": ("""ROW('(1,2)', '{"a": 1}')""", """ROW('(1,2)', '{"a": 2}')"""),
    "placearr": ("""ARRAY[ROW('(1,2)', '{"a": 1}')::shop.place]""",
                 """ARRAY[ROW('(1,2)', '{"a": 2}')::shop.place]"""),
    "doc": ("""'{"d": 1}'""", """'{"d": 2}'"""),
    "spot": ("'(5,5)'", "'(5,6)'"),
    "mood": ("'happy'", "'sad'"),
    "rng": ("'[1,5)'", "'[1,6)'"),
    "tr": ("'[2026-01-01,2026-02-01)'", "'[2026-01-01,2026-03-01)'"),
    "m": ("1.50", "2.50"),
    "jb": ("""'{"b": 1}'""", """'{"b": 2}'"""),
}
COLUMNS = list(VALUES)


@pytest.fixture
def shop(db: psycopg.Connection) -> psycopg.Connection:
    db.execute(SHOP)
    # one rule over the columns named, one over every column
    db.execute("SELECT qbsync.track('shop.things', 'thing', 'id', %s)", (COLUMNS,))
    db.execute("SELECT qbsync.track('shop.things', 'anything', 'id')")
    db.commit()
    return db


def captured(conn: psycopg.Connection) -> list[tuple[str, str]]:
    """What the last statement captured, in its own transaction (capture remembers the keys
    a transaction captured); the changes are cleared for the next one."""
    conn.commit()
    rows = conn.execute("SELECT entity, key FROM qbsync.changes ORDER BY entity, key").fetchall()
    conn.execute("DELETE FROM qbsync.changes")
    conn.commit()
    return rows


BOTH = [("anything", "1"), ("thing", "1")]


def test_every_column_type_inserts_updates_and_deletes(shop: psycopg.Connection) -> None:
    shop.execute(f"INSERT INTO shop.things (id, {', '.join(COLUMNS)}) "
                 f"VALUES (1, {', '.join(v for v, _ in VALUES.values())})")
    assert captured(shop) == BOTH
    shop.execute(f"UPDATE shop.things SET {', '.join(f'{c} = {c}' for c in COLUMNS)}")
    assert captured(shop) == []  # the same values written again
    for column, (before, after) in VALUES.items():
        shop.execute(f"UPDATE shop.things SET {column} = {before}")  # equal, written anew
        assert captured(shop) == [], column
        shop.execute(f"UPDATE shop.things SET {column} = {after}")
        assert captured(shop) == BOTH, column
        shop.execute(f"UPDATE shop.things SET {column} = NULL")
        assert captured(shop) == BOTH, column
        shop.execute(f"UPDATE shop.things SET {column} = NULL")
        assert captured(shop) == [], column
    shop.execute("DELETE FROM shop.things")
    assert captured(shop) == BOTH


def test_a_json_column_added_later_is_compared_too(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.things (id) VALUES (1)")
    captured(shop)
    shop.execute("ALTER TABLE shop.things ADD COLUMN extra json")
    shop.commit()
    shop.execute("""UPDATE shop.things SET extra = '{"e": 1}'""")
    assert captured(shop) == [("anything", "1")]  # the rule over every column
    shop.execute("""UPDATE shop.things SET extra = '{"e": 1}'""")
    assert captured(shop) == []


def test_ordinary_columns_keep_the_equality_comparison(shop: psycopg.Connection) -> None:
    """Columns with a btree equality compare with IS DISTINCT FROM (what it cost before);
    the others by record image."""
    change = shop.execute("SELECT qbsync.capture_change('shop.things', %s)",
                          (["label", "mood", "rng", "jb", "j", "place"],)).fetchone()
    assert change == ("(OLD.label, OLD.mood) IS DISTINCT FROM (NEW.label, NEW.mood) OR "
                      "ROW(OLD.rng, OLD.jb, OLD.j, OLD.place)::pg_catalog.record "
                      "OPERATOR(pg_catalog.*<>) "
                      "ROW(NEW.rng, NEW.jb, NEW.j, NEW.place)::pg_catalog.record",)


EQUAL_BUT_CHANGED = """
CREATE EXTENSION IF NOT EXISTS citext;
CREATE COLLATION shop.nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE TABLE shop.people (
    id int PRIMARY KEY, name citext, nick text COLLATE shop.nocase, price numeric,
    data jsonb, took interval, weight float8, tags text[] COLLATE shop.nocase);
SELECT qbsync.define_entity('person', 'Customer');
SELECT qbsync.track('shop.people', 'person', 'id',
                    ARRAY['name', 'nick', 'price', 'data', 'took', 'weight', 'tags']);
INSERT INTO shop.people VALUES (1, 'ada', 'ada', 1.0, '{"n": 1.0}', '1 day', 0, '{ada}');
"""


@pytest.mark.parametrize(("column", "after"), [
    ("name", "'Ada'"), ("nick", "'ADA'"), ("price", "1.00"), ("data", """'{"n": 1.00}'"""),
    ("took", "'24 hours'"), ("weight", "'-0'"), ("tags", "'{Ada}'")])
def test_a_value_its_type_calls_equal_but_that_reads_otherwise_is_a_change(
    shop: psycopg.Connection, column: str, after: str
) -> None:
    """'ada' = 'Ada' for citext and a case-insensitive collation, 1.0 = 1.00, 1 day = 24
    hours, 0 = -0: the mapping reads the new value, so it is a change to capture."""
    shop.execute(EQUAL_BUT_CHANGED)
    captured(shop)
    assert shop.execute(f"SELECT {column} = {after} FROM shop.people").fetchone() == (True,)
    shop.execute(f"UPDATE shop.people SET {column} = {after}")
    assert captured(shop) == [("person", "1")]
    shop.execute(f"UPDATE shop.people SET {column} = {after}")
    assert captured(shop) == []


# --- keys ------------------------------------------------------------------------------------

KEYS = """
CREATE SCHEMA guests;
CREATE TABLE guests.orders (id int PRIMARY KEY, email text);
SELECT qbsync.define_entity('guest', 'Customer');
SELECT qbsync.track('guests.orders', 'guest', 'email');
"""


def test_keys_qbsync_cannot_queue_die_alone(db: psycopg.Connection) -> None:
    db.execute(KEYS)
    db.commit()
    # incompressible: a compressible key fits btree's 2,704 bytes once compressed
    long_a = "".join(hashlib.sha256(str(i).encode()).hexdigest() for i in range(47))[:3000]
    long_b = long_a[:-1] + "x"
    db.execute("INSERT INTO guests.orders VALUES (1, 'ada@example.com'), (2, NULL), (3, ''), "
               "(4, %s), (5, %s), (6, 'grace@example.com')", (long_a, long_b))
    db.commit()  # the shop's write went through
    claimed = db.execute("SELECT key FROM qbsync.claim('w', 10, '1 minute') ORDER BY key")
    assert claimed.fetchall() == [("ada@example.com",), ("grace@example.com",)]
    dead = db.execute("SELECT key, last_error_code, last_error, attempts FROM qbsync.outbox"
                      " WHERE state = 'dead' ORDER BY key").fetchall()
    assert [(k[:64], code, attempts) for k, code, _, attempts in dead] == [
        ("", "QB004", 0), (long_a[:64], "QB004", 0), (long_a[:64], "QB004", 0)]
    assert "empty" in dead[0][2]
    for key, _, error, _ in dead[1:]:
        assert "3000 bytes" in error, error
        assert "bound of 1000 bytes" in error, error
        assert len(key.encode()) < 200, key
    assert {k for k, *_ in dead[1:]} == {
        f"{long_a[:64]}…[3000 bytes, md5 {md5}]"
        for md5 in db.execute("SELECT md5(%s), md5(%s)", (long_a, long_b)).fetchone() or ()}
    notices = db.execute("SELECT count(*) FROM qbsync.notices WHERE kind = 'dead_row'"
                         " AND details->>'code' = 'QB004'").fetchone()
    assert notices == (3,)
    # later changes still flow
    db.execute("UPDATE guests.orders SET email = 'ada@example.org' WHERE id = 1")
    db.execute("UPDATE guests.orders SET email = %s WHERE id = 6", (long_a + long_b,))
    db.commit()
    # grace@example.com's new row waits behind the one still running
    assert db.execute("SELECT key FROM qbsync.claim('w', 10, '1 minute') ORDER BY key"
                      ).fetchall() == [("ada@example.org",)]
    assert db.execute("SELECT count(*) FROM qbsync.outbox WHERE state = 'dead'").fetchone() == (4,)
    db.commit()


def test_a_key_at_the_bound_is_queued(db: psycopg.Connection) -> None:
    db.execute(KEYS)
    db.commit()
    at_bound = "é" * 500  # 1,000 bytes
    db.execute("INSERT INTO guests.orders VALUES (1, %s), (2, %s)", (at_bound, at_bound + "x"))
    db.commit()
    assert db.execute("SELECT key FROM qbsync.claim('w', 10, '1 minute')").fetchall() == [
        (at_bound,)]
    assert db.execute("SELECT count(*) FROM qbsync.outbox WHERE state = 'dead'").fetchone() == (1,)


def test_enqueue_refuses_such_a_key_as_its_dead_row(db: psycopg.Connection) -> None:
    """qbsync.enqueue (by hand, or from a shop's own trigger) does the same, without an
    error."""
    db.execute(KEYS)
    assert db.execute("SELECT qbsync.enqueue('guest', %s)", ("é" * 501,)).fetchone() == (False,)
    assert db.execute("SELECT qbsync.enqueue('guest', 'ada@example.com')").fetchone() == (True,)
    name = db.execute("SELECT qbsync.refused_key_name(%s)", ("é" * 501,)).fetchone()
    assert name is not None
    rows = db.execute("SELECT key, state::text, last_error_code FROM qbsync.outbox ORDER BY id")
    assert rows.fetchall() == [(name[0], "dead", "QB004"), ("ada@example.com", "pending", None)]


def test_retry_dead_leaves_a_refused_key_dead(db: psycopg.Connection) -> None:
    """Its key is qbsync's name for a key it cannot queue, which no mapping knows."""
    db.execute(KEYS)
    db.execute("INSERT INTO guests.orders VALUES (1, ''), (2, 'ada@example.com')")
    db.commit()
    db.execute("SELECT qbsync.claim('w', 10, '1 minute')")
    db.execute("SELECT qbsync.fail(id, 'w', NULL, '{\"kind\": \"permanent\", \"message\": "
               "\"no\"}'::jsonb) FROM qbsync.outbox WHERE key = 'ada@example.com'")
    db.commit()
    assert db.execute("SELECT count(*) FROM qbsync.outbox WHERE state = 'dead'").fetchone() == (2,)
    assert db.execute("SELECT qbsync.retry_dead()").fetchone() == (1,)
    rows = db.execute("SELECT key, state::text FROM qbsync.outbox ORDER BY key").fetchall()
    assert rows == [("", "dead"), ("ada@example.com", "pending")]
