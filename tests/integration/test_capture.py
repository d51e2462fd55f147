"""Capture triggers installed by qbsync.track(): keys, predicates, column filter,
coalescing, in-flight rows, self-write suppression, clear errors, no grants needed."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from tests.support import conn_url as conninfo

SHOP = """
CREATE SCHEMA shop;
CREATE TABLE shop.orders (id serial PRIMARY KEY, status text NOT NULL DEFAULT 'pending',
                          total numeric(12,2) NOT NULL DEFAULT 0, note text,
                          quickbooks_invoice_id text);
CREATE TABLE shop.order_lines (id serial PRIMARY KEY, order_id int NOT NULL, qty int);
CREATE TABLE shop."Weird Table" ("Order Id" int, "select" text);
SELECT qbsync.define_entity('order', 'Invoice', 3, '{60,300,900}', 120);
SELECT qbsync.track('shop.orders', 'order', 'id', ARRAY['status', 'total'],
                    $$status = 'completed'$$);
SELECT qbsync.track('shop.order_lines', 'order', 'order_id', NULL,
                    $$EXISTS (SELECT 1 FROM shop.orders o WHERE o.id = r.order_id
                                                         AND o.status = 'completed')$$);
"""


@pytest.fixture
def shop(db: psycopg.Connection) -> psycopg.Connection:
    db.execute(SHOP)
    db.commit()
    return db


def clear_outbox(conn: psycopg.Connection) -> None:
    """A fresh start, in a new transaction (capture remembers, per transaction, which keys
    it already captured, and a shop transaction never deletes outbox rows)."""
    conn.commit()
    conn.execute("DELETE FROM qbsync.changes")
    conn.execute("DELETE FROM qbsync.outbox")
    conn.commit()


def outbox(conn: psycopg.Connection) -> list[tuple[str, str, str]]:
    """The outbox once the captured changes are collected into it (as a claim does)."""
    conn.execute("SELECT qbsync.collect_changes()")
    return conn.execute("SELECT entity, key, state FROM qbsync.outbox ORDER BY id").fetchall()


def test_predicate_gates_capture(shop: psycopg.Connection) -> None:
    shop.execute(
        "INSERT INTO shop.orders (status, total) VALUES ('pending', 10), ('completed', 20)"
    )
    assert outbox(shop) == [("order", "2", "pending")]


def test_order_captured_when_it_becomes_completed(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('pending')")
    assert outbox(shop) == []
    shop.execute("UPDATE shop.orders SET status = 'completed' WHERE id = 1")
    assert outbox(shop) == [("order", "1", "pending")]


def test_leaving_the_predicate_is_captured_too(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    clear_outbox(shop)
    shop.execute("UPDATE shop.orders SET status = 'cancelled' WHERE id = 1")
    assert outbox(shop) == [("order", "1", "pending")]


def test_unlisted_columns_enqueue_nothing(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    clear_outbox(shop)
    shop.execute("UPDATE shop.orders SET note = 'gift wrap' WHERE id = 1")
    shop.execute("UPDATE shop.orders SET total = total WHERE id = 1")  # listed, unchanged
    assert outbox(shop) == []
    shop.execute("UPDATE shop.orders SET total = 99 WHERE id = 1")
    assert outbox(shop) == [("order", "1", "pending")]


def test_repeated_changes_coalesce(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    for total in range(1, 6):
        shop.execute("UPDATE shop.orders SET total = %s WHERE id = 1", (total,))
    assert outbox(shop) == [("order", "1", "pending")]


def test_change_while_in_flight_queues_one_more(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    shop.commit()
    assert outbox(shop) == [("order", "1", "pending")]
    shop.execute(  # a daemon claims it
        "UPDATE qbsync.outbox SET state = 'running', lease_owner = 'w1', "
        "lease_expires_at = now() + interval '1 minute'"
    )
    shop.commit()
    shop.execute("UPDATE shop.orders SET total = 5 WHERE id = 1")
    shop.execute("UPDATE shop.orders SET total = 6 WHERE id = 1")
    assert outbox(shop) == [("order", "1", "running"), ("order", "1", "pending")]


def test_changes_of_many_transactions_coalesce_when_collected(
    shop: psycopg.Connection,
) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed'), ('completed')")
    shop.commit()
    for total in range(1, 4):
        shop.execute("UPDATE shop.orders SET total = %s", (total,))
        shop.commit()
    assert shop.execute("SELECT count(*) FROM qbsync.changes").fetchone() == (8,)
    assert outbox(shop) == [("order", "1", "pending"), ("order", "2", "pending")]
    assert shop.execute("SELECT count(*) FROM qbsync.changes").fetchone() == (0,)


def test_uncommitted_change_is_not_collected(shop: psycopg.Connection) -> None:
    # What the daemon cannot see, it cannot push early: a change joins the outbox only
    # once its transaction has committed, and capture holds no lock a daemon waits on.
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    shop.commit()
    assert outbox(shop) == [("order", "1", "pending")]
    shop.commit()
    with psycopg.connect(conninfo(shop), autocommit=True) as daemon:
        shop.execute("UPDATE shop.orders SET total = 7 WHERE id = 1")
        daemon.execute("SET lock_timeout = '2s'")
        assert daemon.execute("SELECT qbsync.collect_changes()").fetchone() == (0,)
        daemon.execute("UPDATE qbsync.outbox SET state = 'running'")  # claimed and pushed
        daemon.execute("DELETE FROM qbsync.outbox")
        shop.commit()
        assert daemon.execute("SELECT qbsync.collect_changes()").fetchone() == (1,)
    assert outbox(shop) == [("order", "1", "pending")]


def test_concurrent_collectors_take_disjoint_changes(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) SELECT 'completed' FROM generate_series(1, 50)")
    shop.commit()
    with psycopg.connect(conninfo(shop)) as one, psycopg.connect(conninfo(shop)) as two:
        taken_one = one.execute("SELECT qbsync.collect_changes(20)").fetchone()
        two.execute("SET lock_timeout = '2s'")  # SKIP LOCKED: two never waits for one
        taken_two = two.execute("SELECT qbsync.collect_changes()").fetchone()
        one.commit()
        two.commit()
    assert (taken_one, taken_two) == ((20,), (30,))
    assert sorted(int(key) for _, key, _ in outbox(shop)) == list(range(1, 51))


def test_child_row_enqueues_parent_key(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('pending'), ('completed')")
    clear_outbox(shop)
    shop.execute("INSERT INTO shop.order_lines (order_id, qty) VALUES (1, 1), (2, 3), (2, 4)")
    assert outbox(shop) == [("order", "2", "pending")]
    clear_outbox(shop)
    shop.execute("DELETE FROM shop.order_lines WHERE order_id = 2 AND qty = 3")
    assert outbox(shop) == [("order", "2", "pending")]


def test_moving_a_child_enqueues_both_parents(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed'), ('completed')")
    shop.execute("INSERT INTO shop.order_lines (order_id, qty) VALUES (1, 1)")
    clear_outbox(shop)
    shop.execute("UPDATE shop.order_lines SET order_id = 2")
    assert sorted(outbox(shop)) == [("order", "1", "pending"), ("order", "2", "pending")]


def test_daemon_writes_are_not_captured(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    clear_outbox(shop)
    shop.commit()
    with shop.transaction():
        shop.execute("SET LOCAL qbsync.origin = 'daemon'")
        shop.execute("UPDATE shop.orders SET total = 50, quickbooks_invoice_id = '7'")
        shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    assert outbox(shop) == []
    shop.execute("UPDATE shop.orders SET total = 51 WHERE id = 1")  # setting was LOCAL
    assert outbox(shop) == [("order", "1", "pending")]


def test_expression_key_and_quoted_identifiers(shop: psycopg.Connection) -> None:
    shop.execute("SELECT qbsync.define_entity('customer', 'Customer')")
    shop.execute(
        """SELECT qbsync.track('shop."Weird Table"', 'customer',
                               $$'guest:' || lower("select")$$, ARRAY['Order Id', 'select'])"""
    )
    shop.execute("""INSERT INTO shop."Weird Table" VALUES (1, 'Μαρία@Example.GR')""")
    assert outbox(shop) == [("customer", "guest:μαρία@example.gr", "pending")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("shop.nope", "order", "id"), 'table "shop.nope" does not exist'),
        (("shop.orders", "nope", "id"), 'unknown entity "nope"'),
        (("shop.orders", "order", "idx"), 'column "idx" does not exist'),
        (("shop.orders", "order", "id", ["status", "colour"]), "has no column"),
        (("shop.orders", "order", "id", None, "state = 'x'"), '"when" predicate'),
    ],
)
def test_track_errors_are_clear(
    shop: psycopg.Connection, args: tuple[object, ...], message: str
) -> None:
    query = sql.SQL("SELECT qbsync.track({})").format(
        sql.SQL(", ").join(sql.Literal(a) for a in args)
    )
    with pytest.raises(psycopg.Error, match=message):
        shop.execute(query)


def test_untrack_removes_triggers_and_functions(shop: psycopg.Connection) -> None:
    def functions() -> list[str]:
        rows = shop.execute("SELECT proname FROM pg_proc WHERE proname LIKE %s ORDER BY 1",
                            (f"{base}%",)).fetchall()
        return [r[0] for r in rows]

    row = shop.execute(
        "SELECT function_name FROM qbsync.tracked WHERE tbl = 'shop.orders'::regclass"
    ).fetchone()
    assert row is not None
    base = row[0]
    assert functions() == [f"{base}_delete", f"{base}_insert", f"{base}_update"]
    assert shop.execute("SELECT qbsync.untrack('shop.orders', 'order')").fetchone() == (True,)
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    assert outbox(shop) == []
    assert functions() == []
    assert shop.execute("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'shop.orders'::regclass "
                        "AND tgname LIKE 'qbsync%'").fetchone() == (0,)
    assert shop.execute("SELECT qbsync.untrack('shop.orders', 'order')").fetchone() == (False,)


def test_shop_role_needs_no_grant_on_qbsync(shop: psycopg.Connection) -> None:
    shop.execute("DROP ROLE IF EXISTS qbsync_test_shop")
    shop.execute("CREATE ROLE qbsync_test_shop")
    shop.execute("GRANT USAGE ON SCHEMA shop TO qbsync_test_shop")
    shop.execute("GRANT ALL ON ALL TABLES IN SCHEMA shop TO qbsync_test_shop")
    shop.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA shop TO qbsync_test_shop")
    shop.commit()
    try:
        with shop.transaction():
            shop.execute("SET LOCAL ROLE qbsync_test_shop")
            shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
            with pytest.raises(psycopg.errors.InsufficientPrivilege), shop.transaction():
                shop.execute("SELECT * FROM qbsync.outbox")
        assert outbox(shop) == [("order", "1", "pending")]
    finally:
        shop.execute("DROP OWNED BY qbsync_test_shop")
        shop.execute("DROP ROLE qbsync_test_shop")
        shop.commit()


def test_entities_of_one_table_share_its_triggers(shop: psycopg.Connection) -> None:
    shop.execute("SELECT qbsync.define_entity('payment', 'Payment')")
    shop.execute("ALTER TABLE shop.orders ADD COLUMN paid boolean NOT NULL DEFAULT false")
    shop.execute("""SELECT qbsync.track('shop.orders', 'payment', 'id', ARRAY['paid'],
                                        'paid AND status = ''completed''')""")
    triggers = shop.execute(
        "SELECT tgname FROM pg_trigger "
        "WHERE tgrelid = 'shop.orders'::regclass AND NOT tgisinternal ORDER BY 1").fetchall()
    assert triggers == [("qbsync_capture_delete",), ("qbsync_capture_insert",),
                        ("qbsync_capture_update",)]  # one call per row, whatever the rules
    shop.execute("INSERT INTO shop.orders (status, paid) VALUES ('completed', true)")
    assert sorted(outbox(shop)) == [("order", "1", "pending"), ("payment", "1", "pending")]
    clear_outbox(shop)
    shop.execute("UPDATE shop.orders SET paid = false")  # only the payment's column
    assert outbox(shop) == [("payment", "1", "pending")]
    clear_outbox(shop)
    assert shop.execute("SELECT qbsync.untrack('shop.orders', 'order')").fetchone() == (True,)
    shop.execute("UPDATE shop.orders SET total = 3, paid = true")
    assert outbox(shop) == [("payment", "1", "pending")]


def test_capture_survives_a_new_column(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    shop.commit()
    shop.execute("ALTER TABLE shop.orders ADD COLUMN coupon text")
    shop.execute("ALTER TABLE shop.orders DROP COLUMN note")
    shop.commit()
    shop.execute("INSERT INTO shop.orders (status, coupon) VALUES ('completed', 'X')")
    assert outbox(shop) == [("order", "1", "pending"), ("order", "2", "pending")]


def test_lines_of_an_order_already_captured_add_nothing(shop: psycopg.Connection) -> None:
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    shop.execute("INSERT INTO shop.order_lines (order_id, qty) VALUES (1, 1), (1, 2), (1, 3)")
    assert shop.execute("SELECT entity, key FROM qbsync.changes").fetchall() == [("order", "1")]
    shop.commit()
    shop.execute("INSERT INTO shop.order_lines (order_id, qty) VALUES (1, 4)")  # new txn
    assert shop.execute("SELECT count(*) FROM qbsync.changes").fetchone() == (2,)


def test_the_memo_is_checked_before_the_predicate(shop: psycopg.Connection) -> None:
    """A predicate may be a query: a key this transaction already captured skips it."""
    shop.execute("""CREATE FUNCTION shop.never(int) RETURNS boolean LANGUAGE plpgsql
                    AS $$BEGIN RAISE EXCEPTION 'predicate evaluated for %', $1; END$$""")
    shop.execute("SELECT qbsync.track('shop.order_lines', 'order', 'order_id', NULL, "
                 "'shop.never(order_id)')")
    shop.commit()
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    shop.execute("INSERT INTO shop.order_lines (order_id, qty) VALUES (1, 1), (1, 2)")
    with pytest.raises(psycopg.errors.RaiseException, match="predicate evaluated for 2"):
        shop.execute("INSERT INTO shop.order_lines (order_id, qty) VALUES (2, 1)")


def test_a_column_predicate_is_tested_before_the_key(shop: psycopg.Connection) -> None:
    """A predicate of column tests alone goes first: where it fails (an unpaid order's
    payment rule), the key is not computed and the memo not read."""
    shop.execute("""CREATE FUNCTION shop.loud_key(int) RETURNS text LANGUAGE plpgsql
                    AS $$BEGIN RAISE EXCEPTION 'key computed for %', $1; END$$""")
    shop.execute("SELECT qbsync.define_entity('payment', 'Payment')")
    shop.execute("SELECT qbsync.track('shop.orders', 'payment', 'shop.loud_key(id)', NULL, "
                 "$$status = 'paid'$$)")
    shop.commit()
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    assert shop.execute("SELECT entity, key FROM qbsync.changes").fetchall() == [("order", "1")]
    with pytest.raises(psycopg.errors.RaiseException, match="key computed for 2"):
        shop.execute("INSERT INTO shop.orders (status) VALUES ('paid')")


def test_a_key_written_over_r_compiles(shop: psycopg.Connection) -> None:
    shop.execute("SELECT qbsync.track('shop.order_lines', 'order', 'r.order_id')")
    shop.execute("INSERT INTO shop.order_lines (order_id, qty) VALUES (7, 1)")
    shop.execute("UPDATE shop.order_lines SET order_id = 8")
    shop.execute("DELETE FROM shop.order_lines")
    assert shop.execute("SELECT DISTINCT key FROM qbsync.changes ORDER BY key").fetchall() == [
        ("7",), ("8",)]


def test_a_key_with_a_subquery_is_captured_without_the_memo_filter(
    shop: psycopg.Connection,
) -> None:
    shop.execute("""SELECT qbsync.track('shop.order_lines', 'order',
                        '(SELECT o.id FROM shop.orders o WHERE o.id = order_id)')""")
    shop.execute("INSERT INTO shop.orders (status) VALUES ('pending')")
    shop.execute("INSERT INTO shop.order_lines (order_id, qty) VALUES (1, 1)")
    assert outbox(shop) == [("order", "1", "pending")]


def test_a_hostile_search_path_cannot_hijack_the_append(shop: psycopg.Connection) -> None:
    """The capture functions run as the writing role without a pinned search_path (pinning
    it costs every captured row), and daemon_waiting() is inlined into them: nothing they
    run may resolve through the writer's path."""
    shop.execute("INSERT INTO qbsync.workers (worker_id, hostname, pid) VALUES ('w', 'h', 0)")
    shop.execute("SELECT qbsync.announce_waiting('w', '1 hour')")  # the NOTIFY path too
    shop.execute("CREATE SCHEMA evil")
    for signature, returns in (("clock_timestamp()", "timestamptz"),
                               ("now()", "timestamptz"),
                               ("pg_notify(text, text)", "void"),
                               ("set_config(text, text, boolean)", "text"),
                               ("current_setting(text, boolean)", "text"),
                               ("date_part(text, timestamptz)", "double precision"),
                               ("pg_sequence_last_value(regclass)", "bigint"),
                               ("later(bigint, double precision)", "boolean")):
        shop.execute(f"""CREATE FUNCTION evil.{signature} RETURNS {returns} LANGUAGE plpgsql
                         AS $$BEGIN RAISE EXCEPTION 'hijacked: {signature}'; END$$""")
    shop.execute("CREATE OPERATOR evil.> (LEFTARG = bigint, RIGHTARG = double precision, "
                 "FUNCTION = evil.later)")
    shop.execute("CREATE TABLE evil.changes (entity text, key text)")
    shop.execute("CREATE TABLE evil.workers (waiting_until timestamptz)")
    shop.execute("CREATE TABLE evil.changes_order (key text)")
    shop.commit()
    shop.execute("LISTEN qbsync_wakeup")
    shop.execute("SET search_path = evil, pg_catalog, shop")  # this session's first capture
    shop.execute("INSERT INTO shop.orders (status) VALUES ('completed')")
    shop.commit()
    assert [n.channel for n in shop.notifies(timeout=1, stop_after=1)] == ["qbsync_wakeup"]
    shop.execute("RESET search_path")
    assert shop.execute("SELECT entity, key FROM qbsync.changes").fetchall() == [("order", "1")]
    assert shop.execute("SELECT count(*) FROM evil.changes").fetchone() == (0,)
