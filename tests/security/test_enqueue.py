"""Only writers of a tracked table enqueue its entity.

Capture appends through qbsync_capture.changes_<entity>, as the role that writes the shop's
row. INSERT on that view is granted to the roles that may write a table tracked for the
entity, and to nobody else: a role with no grants, or one that only reads the table, cannot
queue a key (it could queue 100,000 keys, or a 50 MB one, when PUBLIC could). The grants
follow the table's: track/untrack and GRANT/REVOKE on the table (an event trigger) keep them
in step, and nobody gains a privilege through it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import errors, sql

from tests.security.conftest import Cast, Shop, expected_privileges, privileges
from tests.support import url_for

ENQUEUE = "INSERT INTO qbsync_capture.changes_order (key) VALUES ('forged')"


@pytest.fixture
def tracked(shop: Shop) -> Iterator[Shop]:
    """The shop's orders tracked by the DBA, and one more login role with no grant at all."""
    with psycopg.connect(url_for(shop.cast.dbname), autocommit=True) as su:
        su.execute("SELECT qbsync.track('shop.orders', 'order', 'id')")
    with psycopg.connect(url_for("postgres"), autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(nobody(shop.cast))))
    try:
        yield shop
    finally:
        with psycopg.connect(url_for(shop.cast.dbname), autocommit=True) as su:
            su.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(
                sql.Identifier(nobody(shop.cast))))
        with psycopg.connect(url_for("postgres"), autocommit=True) as su:
            su.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(
                sql.Identifier(nobody(shop.cast))))


def nobody(cast: Cast) -> str:
    return f"{cast.shop}_nobody"


def enqueues(cast: Cast, role: str, statement: str = ENQUEUE) -> bool:
    """Whether `role` can run `statement` (rolled back either way)."""
    with psycopg.connect(cast.url(role)) as conn:
        try:
            conn.execute(statement.encode())
        except errors.InsufficientPrivilege:
            return False
        finally:
            conn.rollback()
    return True


def changes(cast: Cast) -> list[tuple[str, str]]:
    with psycopg.connect(url_for(cast.dbname)) as su:
        return su.execute("SELECT entity, key FROM qbsync.changes ORDER BY key").fetchall()


@pytest.mark.parametrize("who", ["nobody", "reader"])
def test_roles_that_cannot_write_the_table_cannot_enqueue(tracked: Shop, who: str) -> None:
    cast = tracked.cast
    role = nobody(cast) if who == "nobody" else cast.reader
    assert not enqueues(cast, role)
    assert not enqueues(cast, role,
                        "INSERT INTO qbsync.changes (entity, key) VALUES ('order', 'x')")
    assert not enqueues(cast, role, "SELECT qbsync.enqueue('order', 'x')")
    assert changes(cast) == []
    assert privileges(cast) == expected_privileges(cast)


def test_the_tables_writers_enqueue(tracked: Shop) -> None:
    cast = tracked.cast
    tracked.as_shop("INSERT INTO shop.orders (id, status, total) VALUES (9, 'completed', 1)")
    assert enqueues(cast, cast.shop)   # the table's owner may also append by hand
    assert changes(cast) == [("order", "9")]
    assert privileges(cast) == expected_privileges(cast)


def test_grants_follow_the_tables(tracked: Shop) -> None:
    """The shop's role grants and revokes on its own table: the enqueue right follows (the
    event trigger runs as qbsync_owner, whoever granted). So does a column UPDATE grant, and
    untrack takes the right away from everyone."""
    cast = tracked.cast
    role = nobody(cast)
    grant = "GRANT USAGE ON SCHEMA shop TO {r}; GRANT INSERT ON shop.orders TO {r}"
    tracked.as_shop(grant.format(r=role))
    assert enqueues(cast, role)
    with psycopg.connect(cast.url(role), autocommit=True) as conn:
        conn.execute("INSERT INTO shop.orders (id, status, total) VALUES (10, 'completed', 1)")
    assert changes(cast) == [("order", "10")]
    tracked.as_shop(f"REVOKE INSERT ON shop.orders FROM {role}")
    assert not enqueues(cast, role)
    tracked.as_shop(f"GRANT UPDATE (status) ON shop.orders TO {role}")
    assert enqueues(cast, role)
    tracked.as_shop(f"REVOKE UPDATE (status) ON shop.orders FROM {role}")
    assert not enqueues(cast, role)
    tracked.as_shop("GRANT INSERT ON shop.orders TO PUBLIC")
    assert enqueues(cast, cast.reader)
    tracked.as_shop("REVOKE INSERT ON shop.orders FROM PUBLIC")
    assert not enqueues(cast, cast.reader)
    with psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
        su.execute("SELECT qbsync.untrack('shop.orders', 'order')")
    assert not enqueues(cast, cast.shop)
    assert privileges(cast) == expected_privileges(cast)


def test_the_shop_role_gains_nothing_from_the_event_trigger(tracked: Shop) -> None:
    """The event trigger runs as qbsync_owner after the shop role's own DDL; it reads the
    catalogs and qbsync's tables only, and grants on qbsync's views only what the table's
    ACL says. A role name that is an injection stays a name."""
    cast = tracked.cast
    odd = f'{cast.shop}_x"; GRANT qbsync_owner TO "{cast.shop}'
    with psycopg.connect(url_for("postgres"), autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(odd)))
    try:
        quoted = '"' + odd.replace('"', '""') + '"'
        tracked.as_shop(f"GRANT INSERT ON shop.orders TO {quoted}")
        with psycopg.connect(url_for(cast.dbname)) as su:
            granted = su.execute(
                "SELECT has_column_privilege(%s, 'qbsync_capture.changes_order', 'key',"
                " 'INSERT')",
                (odd,)).fetchone()
        assert granted == (True,)
        assert privileges(cast) == expected_privileges(cast)
    finally:
        with psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
            su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(odd)))
        with psycopg.connect(url_for("postgres"), autocommit=True) as su:
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(odd)))


def test_a_readers_own_view_over_the_table_gives_no_enqueue_right(tracked: Shop) -> None:
    """A reader may create a view over the table it reads; it owns every right on its view,
    but the view writes the table with the reader's rights, which are none."""
    cast = tracked.cast
    with psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
        su.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(
            sql.Identifier(cast.reader), sql.Identifier(cast.reader)))
    with cast.connect(cast.reader) as conn:
        conn.execute(sql.SQL("CREATE VIEW {}.orders AS SELECT * FROM shop.orders").format(
            sql.Identifier(cast.reader)))
        conn.execute(sql.SQL("GRANT INSERT, UPDATE ON {}.orders TO PUBLIC").format(
            sql.Identifier(cast.reader)))
    assert not enqueues(cast, cast.reader)
    assert not enqueues(cast, nobody(cast))
    with psycopg.connect(url_for(cast.dbname), autocommit=True) as su:  # a writer's view
        su.execute(sql.SQL("CREATE VIEW shop.orders_view AS SELECT * FROM shop.orders"))
        su.execute(sql.SQL("GRANT INSERT ON shop.orders_view TO {}").format(
            sql.Identifier(nobody(cast))))
    assert enqueues(cast, nobody(cast))
    assert not enqueues(cast, cast.reader)


def test_an_over_long_key_from_a_writer_is_one_dead_row(tracked: Shop) -> None:
    """The bound on keys: a writer that appends a 50 MB key by hand queues one dead row,
    and the queue goes on."""
    cast = tracked.cast
    with psycopg.connect(cast.url(cast.shop), autocommit=True) as conn:
        conn.execute("INSERT INTO qbsync_capture.changes_order (key) VALUES (%s)",
                     (os.urandom(25 * 1024 * 1024).hex(),))
    tracked.as_shop("INSERT INTO shop.orders (id, status, total) VALUES (11, 'completed', 1)")
    with psycopg.connect(cast.url(cast.daemon)) as conn:
        claimed = conn.execute("SELECT key FROM qbsync.claim('w', 10, '1 minute')").fetchall()
    assert claimed == [("11",)]
    with psycopg.connect(url_for(cast.dbname)) as su:
        dead = su.execute("SELECT octet_length(key) < 200, last_error_code FROM qbsync.outbox"
                          " WHERE state = 'dead'").fetchall()
    assert dead == [(True, "QB004")]
