"""Role boundaries of migration 0004: qbsync_reader, qbsync_admin, qbsync_daemon. Each check
runs in a transaction with SET LOCAL ROLE, rolled back afterwards."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import errors

REALM = "9341000000000888"
READER_VIEWS = ("dashboard", "recent_activity", "sync_logs", "failed", "recent_failures",
                "queue_health", "connection_status", "open_notices", "report_comparison",
                "rate_limit_status")


@pytest.fixture
def conn(dixis_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dixis_url) as c:
        c.execute(
            "INSERT INTO qbsync.connections (realm_id, api_base_url, company_name, tokens, key_id)"
            " VALUES (%s, 'http://qbo.emulator', 'Dixis', '\\xdeadbeef', 'k1')", (REALM,))
        c.execute("SELECT dixis.generate(10, 0.4)")
        c.commit()
        yield c


def as_role(conn: psycopg.Connection, role: str, query: str, params: object = ()) -> list:
    """Run one statement as `role`, in a transaction that is rolled back."""
    try:
        with conn.transaction(force_rollback=True):
            conn.execute(f"SET LOCAL ROLE {role}")
            cur = conn.execute(query, params)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
    finally:
        conn.rollback()


def refused(conn: psycopg.Connection, role: str, query: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege):
        as_role(conn, role, query)


def test_roles_are_nologin_groups(conn: psycopg.Connection) -> None:
    rows = conn.execute("SELECT rolname, rolcanlogin, rolsuper FROM pg_roles"
                        " WHERE rolname IN ('qbsync_admin', 'qbsync_daemon', 'qbsync_owner',"
                        " 'qbsync_reader') ORDER BY 1").fetchall()
    assert rows == [("qbsync_admin", False, False), ("qbsync_daemon", False, False),
                    ("qbsync_owner", False, False), ("qbsync_reader", False, False)]


@pytest.mark.parametrize("view", READER_VIEWS)
def test_reader_and_admin_read_every_view(conn: psycopg.Connection, view: str) -> None:
    as_role(conn, "qbsync_reader", f"SELECT * FROM qbsync.{view}")
    as_role(conn, "qbsync_admin", f"SELECT * FROM qbsync.{view}")


def test_reader_sees_the_dashboard_numbers(conn: psycopg.Connection) -> None:
    # the mapping's count runs with the reader's rights: without the shop's grants it is
    # unknown, and the note says which grant is missing
    rows = as_role(conn, "qbsync_reader",
                   "SELECT realm_id, orders_pending, orders_pending_note FROM qbsync.dashboard")
    assert rows == [(REALM, None, "unknown (qbsync_map.order_unsynced_count() failed:"
                                  " permission denied for schema dixis)")]
    conn.execute("GRANT USAGE ON SCHEMA dixis TO qbsync_reader")
    conn.execute("GRANT SELECT ON dixis.orders TO qbsync_reader")
    rows = as_role(conn, "qbsync_reader",
                   "SELECT realm_id, orders_pending, orders_pending_note FROM qbsync.dashboard")
    unsynced = conn.execute("SELECT count(*) FROM dixis.orders WHERE status = 'completed'"
                            " AND quickbooks_invoice_id IS NULL").fetchone()
    assert rows == [(REALM, unsynced[0] if unsynced else None, None)]


@pytest.mark.parametrize("query", [
    "SELECT tokens FROM qbsync.connections",
    "SELECT realm_id FROM qbsync.connections",
    "SELECT * FROM qbsync.outbox",
    "SELECT * FROM qbsync.changes",
    "SELECT qbsync.collect_changes()",
    "SELECT * FROM qbsync.integration_logs",
    "SELECT * FROM qbsync.admin_requests",
    "SELECT * FROM qbsync.reports",
    "SELECT * FROM qbsync.notices",
    "SELECT qbsync.resync('order', '1')",
    "SELECT qbsync.resync_many('order', ARRAY['1'])",
    "SELECT qbsync.retry_dead()",
    "SELECT qbsync.sync_catalog()",
    "SELECT qbsync.sync_all_customers()",
    "SELECT qbsync.request_report('month')",
    "SELECT qbsync.request_connection_test()",
    "SELECT qbsync.acknowledge_all()",
    "SELECT qbsync.enqueue('order', '1')",
    "SELECT * FROM qbsync.claim('w', 1, '1 minute')",
    "SELECT qbsync.rebuild_stats()",
])
def test_reader_cannot(conn: psycopg.Connection, query: str) -> None:
    refused(conn, "qbsync_reader", query)


def test_no_role_but_the_daemon_reaches_tokens(conn: psycopg.Connection) -> None:
    for role in ("qbsync_reader", "qbsync_admin"):
        assert conn.execute("SELECT has_column_privilege(%s, 'qbsync.connections', 'tokens',"
                            " 'SELECT')", (role,)).fetchone() == (False,)
        # no function they may call returns bytea (the only type tokens could travel in)
        leaking = conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.pronamespace IN ('qbsync'::regnamespace, 'qbsync_map'::regnamespace)"
            " AND has_function_privilege(%s, p.oid, 'EXECUTE')"
            " AND ('bytea'::regtype = p.prorettype OR 'bytea'::regtype = ANY(p.proallargtypes))",
            (role,)).fetchall()
        assert leaking == []
    assert conn.execute("SELECT has_column_privilege('qbsync_daemon', 'qbsync.connections',"
                        " 'tokens', 'UPDATE')").fetchone() == (True,)


def test_admin_calls_the_functions_as_itself(conn: psycopg.Connection) -> None:
    key = conn.execute("SELECT min(id)::text FROM dixis.orders").fetchone()
    assert key is not None
    try:
        with conn.transaction(force_rollback=True):
            # resync and the syncs ask the mapping with the admin's own rights
            conn.execute("GRANT USAGE ON SCHEMA dixis TO qbsync_admin")
            conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA dixis TO qbsync_admin")
            conn.execute("SET LOCAL ROLE qbsync_admin")
            assert conn.execute("SELECT qbsync.resync('order', %s, true)", key).fetchone() \
                == (True,)
            conn.execute("SELECT qbsync.resync_many('product', ARRAY['fee:cod'])")
            conn.execute("SELECT qbsync.sync_catalog(), qbsync.sync_all_customers()")
            conn.execute("SELECT qbsync.retry_dead()")
            rid = conn.execute("SELECT qbsync.request_report('month')").fetchone()
            conn.execute("SELECT qbsync.request_connection_test()")
            conn.execute("SELECT qbsync.acknowledge_all()")
            assert conn.execute("SELECT requested_by, state FROM qbsync.admin_requests"
                                " WHERE id = %s", rid).fetchone() \
                == ("qbsync_admin (postgres)", "pending")
            actors = conn.execute("SELECT DISTINCT actor FROM qbsync.sync_logs"
                                  " WHERE operation = 'resync'").fetchall()
            assert actors == [("qbsync_admin (postgres)",)]
            conn.execute("SELECT * FROM qbsync.reports")
    finally:
        conn.rollback()


@pytest.mark.parametrize("query", [
    "SELECT tokens FROM qbsync.connections",
    "UPDATE qbsync.outbox SET attempts = 0",
    "SELECT qbsync.enqueue('order', '1')",
    "SELECT * FROM qbsync.claim('w', 1, '1 minute')",
    "SELECT qbsync.complete(1, 'w', 'r', '{}')",
    "UPDATE qbsync.admin_requests SET state = 'done'",
    "INSERT INTO qbsync.reports (realm_id, period, start_date, end_date, report)"
    " VALUES ('r', 'x', now(), now(), '{}')",
])
def test_admin_cannot_act_as_the_daemon(conn: psycopg.Connection, query: str) -> None:
    refused(conn, "qbsync_admin", query)


def _grant_shop_to_daemon(conn: psycopg.Connection) -> None:
    """What the DBA does for the daemon role: read the shop, write the quickbooks_* columns."""
    conn.execute("GRANT USAGE ON SCHEMA dixis TO qbsync_daemon")
    conn.execute("GRANT SELECT ON ALL TABLES IN SCHEMA dixis TO qbsync_daemon")
    conn.execute("GRANT UPDATE (quickbooks_invoice_id, quickbooks_invoice_number,"
                 " quickbooks_realm_id, quickbooks_sync_status, quickbooks_synced_at,"
                 " quickbooks_sync_error, quickbooks_last_sync_attempt)"
                 " ON dixis.orders TO qbsync_daemon")


def test_daemon_runs_its_cycle(conn: psycopg.Connection) -> None:
    try:
        with conn.transaction(force_rollback=True):
            _grant_shop_to_daemon(conn)
            conn.execute("DELETE FROM qbsync.changes")
            conn.execute("DELETE FROM qbsync.outbox")
            key = conn.execute("SELECT min(id)::text FROM dixis.orders"
                               " WHERE status = 'completed'").fetchone()
            assert key is not None
            conn.execute("SELECT qbsync.enqueue('order', %s), qbsync.enqueue('order', '1000001')",
                         key)
            conn.execute("SET LOCAL ROLE qbsync_daemon")
            conn.execute("SELECT qbsync.register_worker('w', 'h', 1)")
            conn.execute("SELECT qbsync.announce_waiting('w', '1 second')")
            conn.execute("SELECT qbsync.stop_waiting('w')")
            conn.execute("SELECT * FROM qbsync.rotate_logs()")
            rows = conn.execute("SELECT id, key FROM qbsync.claim('w', 10, '1 minute')"
                                " ORDER BY key = %s DESC", key).fetchall()
            assert len(rows) == 2
            body = conn.execute("SELECT qbsync.map('order', %s)", key).fetchone()
            assert body is not None
            assert body[0]["DocNumber"].startswith("DX-")
            assert conn.execute(
                "SELECT qbsync.complete(%s, 'w', %s, %s::jsonb)",
                (rows[0][0], REALM, json.dumps({"qbo_type": "Invoice", "qbo_id": "77",
                                                "doc_number": "DX-1"}))).fetchone() == (True,)
            assert conn.execute("SELECT qbsync.fail(%s, 'w', %s, %s::jsonb)",
                                (rows[1][0], REALM, json.dumps({"kind": "permanent",
                                                                "message": "nope"}))
                                ).fetchone() == ("dead",)
            conn.execute("SELECT tokens FROM qbsync.connections")
            conn.execute("UPDATE qbsync.connections SET token_generation = token_generation + 1")
            conn.execute("SELECT * FROM qbsync.take_permit(%s)", (REALM,))
            conn.execute("SELECT qbsync.log('token.refresh', 'connection', %s, 'info', %s)",
                         (REALM, REALM))
    finally:
        conn.rollback()


def test_daemon_answers_admin_requests(conn: psycopg.Connection) -> None:
    conn.execute("SELECT qbsync.request_report('2024-01-01', '2024-12-31')")
    conn.commit()
    try:
        with conn.transaction(force_rollback=True):
            _grant_shop_to_daemon(conn)
            conn.execute("SET LOCAL ROLE qbsync_daemon")
            (rid,) = conn.execute("SELECT id FROM qbsync.claim_admin_requests('w')").fetchone() \
                or (None,)
            assert rid is not None
            report = {"Rows": {"Row": [{"group": "Income", "Summary": {"ColData": [
                {"value": "Total Income"}, {"value": "12.50"}]}}]}}
            conn.execute("SELECT qbsync.store_report(%s, %s, 'custom', '2024-01-01',"
                         " '2024-12-31', 'Accrual', %s::jsonb)", (rid, REALM, json.dumps(report)))
            assert conn.execute("SELECT qbsync.finish_admin_request(%s, 'w', '{}')",
                                (rid,)).fetchone() == (True,)
            assert conn.execute("SELECT qbo_income FROM qbsync.reports").fetchone() is not None
    finally:
        conn.rollback()


@pytest.mark.parametrize("query", [
    "SELECT qbsync.resync('order', '1')",
    "SELECT qbsync.retry_dead()",
    "SELECT qbsync.sync_catalog()",
    "SELECT qbsync.request_report('month')",
    "SELECT qbsync.acknowledge_all()",
    "SELECT * FROM qbsync.dashboard",
    "SELECT * FROM qbsync.notices",
    "DELETE FROM qbsync.integration_logs",
    "UPDATE qbsync.integration_logs SET status = 'success'",
    "DELETE FROM qbsync.entity_map",
    "INSERT INTO qbsync.outbox (entity, key) VALUES ('order', '1')",
    "DELETE FROM qbsync.changes",
    "DELETE FROM qbsync.reports",
    "SELECT qbsync.rebuild_stats()",
])
def test_daemon_cannot(conn: psycopg.Connection, query: str) -> None:
    refused(conn, "qbsync_daemon", query)


def test_public_has_nothing_in_qbsync(conn: psycopg.Connection) -> None:
    executable = conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " WHERE p.pronamespace = 'qbsync'::regnamespace"
        " AND EXISTS (SELECT 1 FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner)))"
        "             WHERE grantee = 0 AND privilege_type = 'EXECUTE')").fetchall()
    assert executable == []
    tables = conn.execute(
        "SELECT c.oid::regclass::text FROM pg_class c"
        " WHERE c.relnamespace = 'qbsync'::regnamespace AND c.relkind IN ('r', 'v', 'p')"
        " AND EXISTS (SELECT 1 FROM aclexplode(c.relacl) WHERE grantee = 0)").fetchall()
    assert tables == []


def test_security_definer_functions_pin_search_path(conn: psycopg.Connection) -> None:
    loose = conn.execute(
        "SELECT p.oid::regprocedure::text FROM pg_proc p"
        " WHERE p.pronamespace = 'qbsync'::regnamespace AND p.prosecdef"
        " AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c"
        "                 WHERE c LIKE 'search\\_path=pg\\_catalog%, pg\\_temp')"
        ).fetchall()
    assert loose == []


DAEMON_SOURCES = ("sql/queries.sql", "daemon/qbsync/daemon.py", "daemon/qbsync/worker.py",
                  "daemon/qbsync/sync.py", "daemon/qbsync/tokens.py", "daemon/qbsync/realm.py",
                  "daemon/qbsync/refs.py", "daemon/qbsync/batch.py",
                  "daemon/qbsync/admin_requests.py", "daemon/qbsync/qbo/ratelimit.py")


def test_daemon_may_call_every_function_its_code_calls(conn: psycopg.Connection) -> None:
    """Every qbsync.<function>( in the daemon's SQL and modules is executable by the role."""
    root = Path(__file__).resolve().parents[2]
    called: set[str] = set()
    for source in DAEMON_SOURCES:
        path = root / source
        assert path.exists(), f"{source} is gone: name the module that took its calls"
        called |= set(re.findall(r"\bqbsync\.([a-z_]+)\(", path.read_text(encoding="utf-8")))
    missing = conn.execute(
        "SELECT DISTINCT p.proname FROM pg_proc p"
        " WHERE p.pronamespace = 'qbsync'::regnamespace AND p.proname = ANY(%s)"
        " AND NOT has_function_privilege('qbsync_daemon', p.oid, 'EXECUTE')",
        (sorted(called),)).fetchall()
    assert {"claim", "complete", "fail", "take_permit", "claim_admin_requests"} <= called
    assert missing == []
