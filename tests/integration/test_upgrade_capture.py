"""A 0.1.0 database's capture rules are generated again by the upgrade: a tracked json
column, whose every UPDATE failed under 0.1.0's capture functions, compares afterwards, and
the change view that 0.1.0 granted to PUBLIC is granted to the tracked table's writers
only. Nothing here names a migration after 0006."""

from __future__ import annotations

import os

import psycopg
import pytest
from psycopg import errors, sql

from qbsync.migrate import migrate
from tests.schema_support import fresh_database, migrate_released
from tests.support import PG_USER, url_for

SHOP = """
CREATE SCHEMA shop;
CREATE TABLE shop.orders (id int PRIMARY KEY, status text NOT NULL, shipping_address json);
GRANT USAGE ON SCHEMA shop TO {writer}, {stranger};
GRANT SELECT, INSERT, UPDATE, DELETE ON shop.orders TO {writer};
SELECT qbsync.define_entity('order', 'Invoice');
SELECT qbsync.track('shop.orders', 'order', 'id', ARRAY['status', 'shipping_address']);
INSERT INTO shop.orders VALUES (1, 'completed', '{{"city": "Athens"}}');
"""

UPDATE = """UPDATE shop.orders SET shipping_address = '{"city": "Volos"}' WHERE id = 1"""


def test_a_0_1_0_database_gets_the_new_capture() -> None:
    writer, stranger = (f"qbup{os.getpid()}_{r}" for r in ("writer", "stranger"))
    with psycopg.connect(url_for("postgres"), autocommit=True) as su:
        for role in (writer, stranger):
            su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        with fresh_database("upgrade_capture") as url:
            migrate_released(url)
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(SHOP.format(writer=writer, stranger=stranger).encode())
                with pytest.raises(errors.UndefinedFunction, match="json = json"):
                    conn.execute(UPDATE.encode())  # what 0.1.0's capture did
            migrate(url)
            as_writer, as_stranger = (url.replace(f"{PG_USER}@", f"{r}@", 1)
                                      for r in (writer, stranger))
            with psycopg.connect(as_writer, autocommit=True) as conn:
                conn.execute(UPDATE.encode())
                conn.execute(UPDATE.encode())  # the same value again: no change
            with psycopg.connect(url, autocommit=True) as conn:
                assert conn.execute("SELECT entity, key FROM qbsync.changes").fetchall() == [
                    ("order", "1"), ("order", "1")]  # the INSERT's, then the UPDATE's
            with psycopg.connect(as_stranger) as conn, pytest.raises(
                    errors.InsufficientPrivilege):
                conn.execute("INSERT INTO qbsync_capture.changes_order (key) VALUES ('x')")
            with psycopg.connect(url, autocommit=True) as conn:
                for role in (writer, stranger):
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    finally:
        with psycopg.connect(url_for("postgres"), autocommit=True) as su:
            for role in (writer, stranger):
                su.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
