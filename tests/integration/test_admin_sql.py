"""The admin surface in SQL (migration 0004 + sql/shops/dixis/admin.sql): views, functions,
notices and counters, against a real database with the Dixis shop."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg
import pytest
from psycopg import errors

from tests.support import INVOICED
from tests.waiting import wait_until

REALM = "9341000000000777"
VIEWS = ("dashboard", "recent_activity", "sync_logs", "failed", "recent_failures",
         "queue_health", "connection_status", "open_notices", "report_comparison")


@pytest.fixture
def conn(dixis_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(dixis_url, autocommit=True) as c:
        c.execute("UPDATE qbsync.settings SET value = '\"UTC\"' WHERE name = 'dashboard_time_zone'")
        c.execute("SELECT qbsync.rebuild_stats()")
        yield c


def connect_company(conn: psycopg.Connection, realm: str = REALM) -> None:
    conn.execute(
        "INSERT INTO qbsync.connections (realm_id, api_base_url, company_name, tokens, key_id,"
        " access_expires_at, refresh_expires_at)"
        " VALUES (%s, 'http://qbo.emulator', 'Dixis Test', '\\xdeadbeef', 'k1',"
        " now() + interval '1 hour', now() + interval '100 days')", (realm,))


def scalar(conn: psycopg.Connection, query: str, params: Any = ()) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def dead_row(conn: psycopg.Connection, entity: str, key: str, *, message: str = "boom",
             code: str = "6000", force: bool = False) -> int:
    """Enqueue, claim and fail permanently through the daemon's own functions."""
    conn.execute("SELECT qbsync.enqueue(%s, %s, %s, 'test')", (entity, key, force))
    rows = conn.execute("SELECT id, key FROM qbsync.claim('w1', 100, '1 minute')").fetchall()
    row_id = next(i for i, k in rows if k == key)
    assert scalar(conn, "SELECT qbsync.fail(%s, 'w1', %s, %s::jsonb)",
                  (row_id, REALM, json.dumps({"kind": "permanent", "message": message,
                                              "code": code}))) == "dead"
    # anything else claimed goes back
    conn.execute("SELECT qbsync.release('w1')")
    return row_id


def dashboard(conn: psycopg.Connection) -> dict[str, Any]:
    cur = conn.execute("SELECT * FROM qbsync.dashboard")
    row = cur.fetchone()
    assert row is not None
    assert cur.description is not None
    return dict(zip([c.name for c in cur.description], row, strict=True))


# --- documentation ------------------------------------------------------------------------

def test_every_view_and_dashboard_column_is_documented(conn: psycopg.Connection) -> None:
    for view in VIEWS:
        comment = scalar(conn, "SELECT obj_description(%s::regclass, 'pg_class')",
                         (f"qbsync.{view}",))
        assert comment, f"qbsync.{view} has no COMMENT"
    undocumented = conn.execute(
        "SELECT a.attname FROM pg_attribute a WHERE a.attrelid = 'qbsync.dashboard'::regclass"
        " AND a.attnum > 0 AND col_description(a.attrelid, a.attnum) IS NULL"
        " AND a.attname <> 'as_of'").fetchall()
    assert undocumented == []


# --- dashboard ------------------------------------------------------------------------------

def test_dashboard_numbers_on_a_known_dataset(conn: psycopg.Connection) -> None:
    conn.execute("SELECT dixis.generate(40, 0.3)")
    conn.execute("DELETE FROM qbsync.changes")
    conn.execute("DELETE FROM qbsync.outbox")
    connect_company(conn)
    now = datetime.now(UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    stamps = [now, now - timedelta(minutes=1), month_start + timedelta(seconds=1),
              now - timedelta(days=45), now - timedelta(days=400)]
    for n, at in enumerate(stamps):
        conn.execute("INSERT INTO qbsync.entity_map (realm_id, entity, key, qbo_type, qbo_id,"
                     " created_at) VALUES (%s, 'order', %s, 'Invoice', %s, %s)",
                     (REALM, str(n + 1), str(100 + n), at))
    # another realm and another entity do not count as this company's orders
    conn.execute("INSERT INTO qbsync.entity_map (realm_id, entity, key, qbo_type, qbo_id)"
                 " VALUES ('other', 'order', '1', 'Invoice', '1'),"
                 " (%s, 'customer', '1', 'Customer', '1')", (REALM,))
    for status in ("success", "success", "success", "retry", "dead"):
        conn.execute("SELECT qbsync.log('create', 'order', '1', %s, %s, '{}'::jsonb)",
                     (status, REALM))
    conn.execute("SELECT qbsync.log('create', 'customer', '1', 'skipped', %s, '{}'::jsonb)",
                 (REALM,))
    conn.execute("INSERT INTO qbsync.integration_logs (created_at, operation, model_type,"
                 " model_id, status, realm_id) VALUES (now() - interval '2 days', 'create',"
                 " 'order', '9', 'failed', %s)", (REALM,))
    conn.execute("SELECT qbsync.enqueue('order', '501'), qbsync.enqueue('order', '502')")
    dead_row(conn, "product", "7")
    conn.execute("INSERT INTO qbsync.workers (worker_id, hostname, pid) VALUES ('w1', 'h', 1)")

    d = dashboard(conn)
    today = sum(1 for at in stamps if at.date() == now.date())
    month = sum(1 for at in stamps if at >= month_start)
    assert d["realm_id"] == REALM
    assert d["company_name"] == "Dixis Test"
    assert d["connection_status"] == "connected"
    assert d["order_entity"] == "order"
    assert (d["orders_synced_today"], d["orders_synced_this_month"],
            d["orders_synced_total"]) == (today, month, 5)
    unsynced = scalar(conn, "SELECT count(*) FROM dixis.orders WHERE status = 'completed'"
                            " AND quickbooks_invoice_id IS NULL")
    assert unsynced > 0
    assert d["orders_pending"] == unsynced
    assert d["pushes_today"] == 3
    assert d["errors_today"] == 3  # retry + dead logged above + the dead product
    assert d["error_rate_today"] == Decimal("50.0")
    assert d["queue_depth"] == 2
    assert d["queue_running"] == 0
    assert d["dead"] == 1
    assert d["oldest_pending_age"] >= timedelta(0)
    assert d["open_notices"] == 1
    assert d["daemons_alive"] == 1

    # the trigger-kept counters agree with a recount from scratch
    before = conn.execute("SELECT model_type, day, status, realm_id, sum(n) FROM qbsync.log_counts"
                          " GROUP BY 1, 2, 3, 4 HAVING sum(n) <> 0 ORDER BY 1, 2, 3, 4").fetchall()
    conn.execute("SELECT qbsync.rebuild_stats()")
    after = conn.execute("SELECT model_type, day, status, realm_id, sum(n) FROM qbsync.log_counts"
                         " GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4").fetchall()
    assert before == after
    assert dashboard(conn)["orders_synced_total"] == 5


def test_counters_follow_deletes_and_partition_moves(conn: psycopg.Connection) -> None:
    conn.execute("SELECT qbsync.log('create', 'order', '1', 'success', %s, '{}'::jsonb)",
                 (REALM,))
    conn.execute("DELETE FROM qbsync.integration_logs WHERE model_id = '1'")
    assert scalar(conn, "SELECT coalesce(sum(n), 0) FROM qbsync.log_counts") == 0
    conn.execute("INSERT INTO qbsync.entity_map (realm_id, entity, key, qbo_type, qbo_id)"
                 " VALUES (%s, 'order', '1', 'Invoice', '1')", (REALM,))
    conn.execute("UPDATE qbsync.entity_map SET created_at = now() - interval '90 days'")
    conn.execute("SELECT qbsync.record_success(%s, 'order', '1', %s::jsonb)",
                 (REALM, json.dumps({"qbo_type": "Invoice", "qbo_id": "1"})))
    rows = conn.execute("SELECT day, sum(n) FROM qbsync.map_counts GROUP BY 1"
                        " HAVING sum(n) <> 0").fetchall()
    assert rows == [((datetime.now(UTC) - timedelta(days=90)).date(), 1)]


def test_dashboard_without_connection_or_shop_function(db: psycopg.Connection) -> None:
    d = dashboard(db)
    assert d["connection_status"] == "not connected"
    assert d["realm_id"] is None
    assert d["orders_pending"] is None  # no mapping, no Invoice entity
    assert d["queue_depth"] == 0


# --- log views ------------------------------------------------------------------------------

def test_recent_activity_is_the_last_ten(conn: psycopg.Connection) -> None:
    for n in range(12):
        conn.execute("INSERT INTO qbsync.integration_logs (created_at, operation, model_type,"
                     " model_id, status, error_message, qbo_id) VALUES"
                     " (now() - make_interval(mins => %s), 'create', 'order', %s, %s, %s, %s)",
                     (n, str(n), "failed" if n == 0 else "success",
                      "QuickBooks 6000 bad" if n == 0 else None, None if n == 0 else str(n)))
    rows = conn.execute("SELECT key, status, message FROM qbsync.recent_activity").fetchall()
    assert [r[0] for r in rows] == [str(n) for n in range(10)]
    assert rows[0] == ("0", "failed", "QuickBooks 6000 bad")
    assert rows[1][2] == "QuickBooks id 1"


def test_sync_logs_and_recent_failures(conn: psycopg.Connection) -> None:
    conn.execute("INSERT INTO qbsync.integration_logs (created_at, operation, model_type,"
                 " model_id, status, error_message, error_code) VALUES"
                 " (now() - interval '10 days', 'create', 'order', 'old', 'dead', 'x', '6000'),"
                 " (now() - interval '1 hour', 'create', 'order', 'a', 'retry', 'y', NULL),"
                 " (now(), 'update', 'customer', 'b', 'success', NULL, NULL)")
    keys = [r[0] for r in conn.execute("SELECT key FROM qbsync.sync_logs").fetchall()]
    assert keys == ["b", "a", "old"]
    assert conn.execute("SELECT key FROM qbsync.sync_logs WHERE entity = 'order'"
                        " AND status = 'dead'").fetchall() == [("old",)]
    assert conn.execute("SELECT key, status FROM qbsync.recent_failures").fetchall() == [
        ("a", "retry")]


# --- failed, notices --------------------------------------------------------------------------

def test_dead_row_is_in_failed_with_a_notice(conn: psycopg.Connection) -> None:
    connect_company(conn)
    dead_row(conn, "order", "42", message="QuickBooks 6000 Invalid Reference Id", code="6000")
    failed = conn.execute("SELECT entity, key, last_error, last_error_code, attempts,"
                          " max_attempts, queued_again, retry_with FROM qbsync.failed").fetchall()
    assert failed == [("order", "42", "QuickBooks 6000 Invalid Reference Id", "6000", 1, 3, False,
                       "SELECT qbsync.retry_dead('order', '42');")]
    notices = conn.execute("SELECT id, severity, kind, entity, key, realm_id, message, details"
                           " FROM qbsync.open_notices").fetchall()
    assert len(notices) == 1
    nid, severity, kind, entity, key, realm, message, details = notices[0]
    assert (severity, kind, entity, key, realm) == ("critical", "dead_row", "order", "42", REALM)
    assert "Invalid Reference Id" in message
    assert details["retry"] == "SELECT qbsync.retry_dead('order', '42');"

    assert scalar(conn, "SELECT qbsync.acknowledge(%s)", (nid,)) is True
    assert scalar(conn, "SELECT qbsync.acknowledge(%s)", (nid,)) is False
    assert conn.execute("SELECT * FROM qbsync.open_notices").fetchall() == []
    assert scalar(conn, "SELECT acknowledged_by FROM qbsync.notices WHERE id = %s",
                  (nid,)) == "postgres"
    with pytest.raises(errors.NoDataFound, match="no notice 999999"):
        conn.execute("SELECT qbsync.acknowledge(999999)")


def test_repeated_deaths_bump_one_notice(conn: psycopg.Connection) -> None:
    dead_row(conn, "order", "5")
    conn.execute("DELETE FROM qbsync.outbox")  # deleting the dead row settles its notice
    assert scalar(conn, "SELECT count(*) FROM qbsync.open_notices") == 0
    dead_row(conn, "order", "5")
    conn.execute("SELECT qbsync.retry_dead()")
    dead_row(conn, "order", "6")
    assert scalar(conn, "SELECT qbsync.acknowledge_all()") == 1
    dead_row(conn, "order", "6", message="again")
    dead_row(conn, "order", "7")
    conn.execute("UPDATE qbsync.outbox SET state = 'pending' WHERE key = '7'")
    conn.execute("UPDATE qbsync.outbox SET state = 'dead' WHERE key = '7'")
    rows = conn.execute("SELECT key, occurrences FROM qbsync.open_notices ORDER BY key").fetchall()
    assert rows == [("6", 1), ("7", 2)]


def test_needs_reconnect_notice_closes_on_reconnect(conn: psycopg.Connection) -> None:
    connect_company(conn)
    conn.execute("UPDATE qbsync.connections SET status = 'needs_reconnect',"
                 " last_error = 'invalid_grant'")
    rows = conn.execute("SELECT severity, kind, realm_id, message FROM qbsync.open_notices"
                        ).fetchall()
    assert len(rows) == 1
    assert rows[0][:3] == ("critical", "needs_reconnect", REALM)
    assert "invalid_grant" in rows[0][3]
    conn.execute("UPDATE qbsync.connections SET status = 'connected'")
    assert conn.execute("SELECT * FROM qbsync.open_notices").fetchall() == []


# --- resync ---------------------------------------------------------------------------------

def test_resync_queues_with_origin_and_log(conn: psycopg.Connection) -> None:
    conn.execute("SELECT dixis.generate(5, 0.1)")
    conn.execute("DELETE FROM qbsync.changes")
    conn.execute("DELETE FROM qbsync.outbox")
    key = str(scalar(conn, "SELECT min(id) FROM dixis.orders"))
    assert scalar(conn, "SELECT qbsync.resync('order', %s)", (key,)) is True
    assert scalar(conn, "SELECT qbsync.resync('order', %s)", (key,)) is False  # pending already
    assert scalar(conn, "SELECT qbsync.resync('order', %s, true)", (key,)) is True  # forced now
    assert conn.execute("SELECT entity, key, origin, force, state FROM qbsync.outbox").fetchall() \
        == [("order", key, "resync", True, "pending")]
    logs = conn.execute("SELECT operation, status, actor, error_message"
                        " FROM qbsync.integration_logs WHERE operation = 'resync' ORDER BY id"
                        ).fetchall()
    assert len(logs) == 3
    assert logs[2] == ("resync", "info", "postgres", "resync requested by postgres (forced)")
    conn.execute("INSERT INTO dixis.orders (status, billing_first_name, billing_last_name,"
                 " billing_email) VALUES ('pending', 'Μαρία', 'Κ', 'Maria.K@Example.gr')")
    product_keys = ["fee:cod", str(scalar(conn, "SELECT min(id) FROM dixis.products"))]
    assert scalar(conn, "SELECT qbsync.resync_many('product', %s)", (product_keys,)) == 2
    assert scalar(conn, "SELECT qbsync.resync('customer', 'guest:maria.k@example.gr')") is True
    with pytest.raises(errors.NoDataFound, match=r"guest:nobody@example\.gr"):
        conn.execute("SELECT qbsync.resync('customer', 'guest:nobody@example.gr')")


def test_resync_errors_name_what_is_wrong(conn: psycopg.Connection) -> None:
    with pytest.raises(errors.InvalidParameterValue, match=r'unknown entity \'invoice\'') as exc:
        conn.execute("SELECT qbsync.resync('invoice', '1')")
    hint = exc.value.diag.message_hint or ""
    assert hint.startswith("Known entities: customer, order")
    assert "product" in hint
    with pytest.raises(errors.NoDataFound, match=r"1 unknown order key.*: 424242"):
        conn.execute("SELECT qbsync.resync('order', '424242')")


def test_resync_many_names_every_unknown_key_and_queues_nothing(conn: psycopg.Connection) -> None:
    conn.execute("SELECT dixis.generate(5, 0.1)")
    conn.execute("DELETE FROM qbsync.changes")
    conn.execute("DELETE FROM qbsync.outbox")
    known = [str(r[0]) for r in conn.execute("SELECT id FROM dixis.orders ORDER BY id LIMIT 2")]
    with pytest.raises(errors.NoDataFound) as exc:
        conn.execute("SELECT qbsync.resync_many('order', %s)",
                     ([known[0], "999999", "abc", known[1], "999999", None],))
    message = str(exc.value.diag.message_primary)
    assert "3 unknown order key(s): 999999, abc, (null)" in message
    assert "nothing was enqueued" in message
    assert scalar(conn, "SELECT count(*) FROM qbsync.outbox") == 0
    assert scalar(conn, "SELECT qbsync.resync_many('order', %s)", (known + known,)) == 2
    assert scalar(conn, "SELECT qbsync.resync_many('order', '{}')") == 0


def test_resync_falls_back_to_keys_function(conn: psycopg.Connection) -> None:
    conn.execute("DROP FUNCTION qbsync_map.product_key_exists(text)")
    with pytest.raises(errors.NoDataFound, match="fee:nope"):
        conn.execute("SELECT qbsync.resync_many('product', ARRAY['fee:cod', 'fee:nope'])")
    assert scalar(conn, "SELECT qbsync.resync('product', 'fee:cod')") is True


# --- bulk syncs -----------------------------------------------------------------------------

def test_sync_all_customers_queues_only_unmapped(conn: psycopg.Connection) -> None:
    conn.execute("SELECT dixis.generate(30, 0.2)")
    conn.execute("DELETE FROM qbsync.changes")
    conn.execute("DELETE FROM qbsync.outbox")
    connect_company(conn)
    keys = [r[0] for r in conn.execute("SELECT * FROM qbsync_map.customer_keys()")]
    assert len(keys) > 3
    for key in keys[:3]:
        conn.execute("INSERT INTO qbsync.entity_map (realm_id, entity, key, qbo_type, qbo_id)"
                     " VALUES (%s, 'customer', %s, 'Customer', %s)", (REALM, key, key))
    # a mapping in another company does not count
    conn.execute("INSERT INTO qbsync.entity_map (realm_id, entity, key, qbo_type, qbo_id)"
                 " VALUES ('other', 'customer', %s, 'Customer', '1')", (keys[3],))
    assert scalar(conn, "SELECT qbsync.sync_all_customers()") == len(keys) - 3
    queued = {r[0] for r in conn.execute(
        "SELECT key FROM qbsync.outbox WHERE entity = 'customer'"
        " AND origin = 'sync_all_customers'")}
    assert queued == set(keys[3:])
    assert scalar(conn, "SELECT qbsync.sync_all_customers()") == 0  # all pending already


def test_sync_catalog_queues_every_item_key(conn: psycopg.Connection) -> None:
    conn.execute("SELECT dixis.generate(5, 0.2)")
    conn.execute("DELETE FROM qbsync.changes")
    conn.execute("DELETE FROM qbsync.outbox")
    keys = {r[0] for r in conn.execute("SELECT * FROM qbsync_map.product_keys()")}
    assert {"fee:shipping", "fee:cod", "fee:discount"} <= keys
    assert scalar(conn, "SELECT qbsync.sync_catalog()") == len(keys)
    assert {r[0] for r in conn.execute("SELECT key FROM qbsync.outbox WHERE entity = 'product'")} \
        == keys
    assert scalar(conn, "SELECT count(*) FROM qbsync.integration_logs"
                        " WHERE operation = 'sync_catalog'") == 1


# --- retry_dead -----------------------------------------------------------------------------

def test_retry_dead_requeues_and_logs(conn: psycopg.Connection) -> None:
    dead_row(conn, "order", "1")
    dead_row(conn, "order", "2")
    dead_row(conn, "product", "3")
    request_id = scalar(conn, "SELECT request_id FROM qbsync.outbox WHERE key = '1'")
    assert scalar(conn, "SELECT qbsync.retry_dead('order', '1')") == 1
    row = conn.execute("SELECT state, attempts, origin, last_error, request_id"
                       " FROM qbsync.outbox WHERE key = '1'").fetchone()
    assert row == ("pending", 0, "retry_dead", None, request_id)
    assert scalar(conn, "SELECT qbsync.retry_dead('order')") == 1
    assert scalar(conn, "SELECT qbsync.retry_dead()") == 1
    assert scalar(conn, "SELECT qbsync.retry_dead()") == 0
    assert scalar(conn, "SELECT count(*) FROM qbsync.outbox WHERE state = 'pending'") == 3
    logs = conn.execute("SELECT model_id, status, actor, error_message FROM qbsync.integration_logs"
                        " WHERE operation = 'retry_dead' ORDER BY model_id").fetchall()
    assert [(k, s, a) for k, s, a, _ in logs] == [("1", "info", "postgres"),
                                                  ("2", "info", "postgres"),
                                                  ("3", "info", "postgres")]
    assert "was: boom" in logs[0][3]
    assert scalar(conn, "SELECT count(*) FROM qbsync.open_notices") == 0
    with pytest.raises(errors.InvalidParameterValue, match="unknown entity"):
        conn.execute("SELECT qbsync.retry_dead('nope')")


def test_retry_dead_merges_into_a_pending_row(conn: psycopg.Connection) -> None:
    dead_row(conn, "order", "1", force=True)
    conn.execute("SELECT qbsync.enqueue('order', '1')")  # a newer change of the same key
    dead_row(conn, "order", "2")
    assert scalar(conn, "SELECT count(*) FROM qbsync.outbox WHERE key = '1'") == 2
    assert scalar(conn, "SELECT qbsync.retry_dead()") == 2
    rows = conn.execute("SELECT key, state::text, force, attempts FROM qbsync.outbox"
                        " ORDER BY key").fetchall()
    assert rows == [("1", "pending", True, 0), ("2", "pending", False, 0)]


# --- admin requests, reports ------------------------------------------------------------------

def test_request_report_periods(conn: psycopg.Connection) -> None:
    listener = psycopg.connect(conn.info.dsn, autocommit=True)
    try:
        listener.execute("LISTEN qbsync_wakeup")
        ids = {p: scalar(conn, "SELECT qbsync.request_report(%s)", (p,))
               for p in ("week", "month", "quarter", "year")}
        assert len(list(listener.notifies(timeout=2, stop_after=4))) == 4
    finally:
        listener.close()
    today = datetime.now(UTC).date()
    params = {r[0]: r[1] for r in conn.execute(
        "SELECT id, params FROM qbsync.admin_requests WHERE id = ANY(%s)", (list(ids.values()),))}
    week = params[ids["week"]]
    start = today - timedelta(days=today.weekday())
    assert (week["start_date"], week["end_date"]) == (str(start), str(start + timedelta(days=6)))
    assert params[ids["year"]]["start_date"] == f"{today.year}-01-01"
    assert params[ids["year"]]["end_date"] == f"{today.year}-12-31"
    assert params[ids["month"]]["start_date"] == str(today.replace(day=1))
    q = (today.month - 1) // 3 * 3 + 1
    assert params[ids["quarter"]]["start_date"] == str(today.replace(month=q, day=1))
    assert {p["period"] for p in params.values()} == {"week", "month", "quarter", "year"}
    state = conn.execute("SELECT kind, state, requested_by FROM qbsync.admin_requests"
                         " WHERE id = %s", (ids["week"],)).fetchone()
    assert state == ("report", "pending", "postgres")

    rid = scalar(conn, "SELECT qbsync.request_report('2024-01-01', '2024-03-31')")
    p = scalar(conn, "SELECT params FROM qbsync.admin_requests WHERE id = %s", (rid,))
    assert (p["period"], p["start_date"], p["end_date"]) == ("custom", "2024-01-01", "2024-03-31")
    with pytest.raises(errors.InvalidParameterValue, match="week, month, quarter or year"):
        conn.execute("SELECT qbsync.request_report('decade')")
    with pytest.raises(errors.InvalidParameterValue, match="from_date <= to_date"):
        conn.execute("SELECT qbsync.request_report('2024-02-01', '2024-01-01')")
    test_id = scalar(conn, "SELECT qbsync.request_connection_test()")
    assert scalar(conn, "SELECT kind FROM qbsync.admin_requests WHERE id = %s",
                  (test_id,)) == "connection_test"


def test_claim_admin_requests_skips_locked(conn: psycopg.Connection) -> None:
    for _ in range(3):
        conn.execute("SELECT qbsync.request_connection_test()")
    with psycopg.connect(conn.info.dsn) as a, psycopg.connect(conn.info.dsn) as b:
        first = [r[0] for r in a.execute("SELECT id FROM qbsync.claim_admin_requests('a', 2)")]
        second = [r[0] for r in b.execute("SELECT id FROM qbsync.claim_admin_requests('b', 5)")]
        assert len(first) == 2
        assert len(second) == 1
        assert not set(first) & set(second)
        assert scalar(a, "SELECT qbsync.finish_admin_request(%s, 'a', '{\"ok\": true}')",
                      (first[0],)) is True
        # only the claiming worker finishes a request
        assert scalar(b, "SELECT qbsync.finish_admin_request(%s, 'b', '{}')",
                      (second[0] + 1000,)) is False
        a.commit()
        b.commit()
    states = dict(conn.execute("SELECT state, count(*) FROM qbsync.admin_requests GROUP BY 1"
                               ).fetchall())
    assert states == {"done": 1, "running": 2}


def _pnl(income: str) -> dict[str, Any]:
    return {"Header": {"ReportName": "ProfitAndLoss"}, "Rows": {"Row": [
        {"group": "Income", "type": "Section",
         "Summary": {"ColData": [{"value": "Total Income"}, {"value": income}]}},
        {"group": "NetIncome", "type": "Section",
         "Summary": {"ColData": [{"value": "Net Income"}, {"value": income}]}}]}}


def test_store_report_and_comparison(conn: psycopg.Connection) -> None:
    conn.execute("SELECT dixis.generate(60, 0.5)")
    net, gross, orders = conn.execute(
        "SELECT * FROM qbsync_map.order_revenue('2000-01-01', '2100-01-01')").fetchone() or ()
    assert orders == scalar(conn, "SELECT count(*) FROM dixis.orders WHERE " + INVOICED)
    assert gross == scalar(
        conn, "SELECT sum(total) - (SELECT coalesce(sum(amount), 0) FROM dixis.refunds r"
              " WHERE qbsync_map.refund(r.id::text) ? 'Line') FROM dixis.orders WHERE " + INVOICED)
    assert 0 < net < gross

    conn.execute("SELECT qbsync.store_report(NULL, %s, 'custom', '2000-01-01', '2100-01-01',"
                 " 'Accrual', %s::jsonb)", (REALM, json.dumps(_pnl(str(net)))))
    conn.execute("SELECT qbsync.store_report(NULL, %s, 'custom', '2000-01-01', '2100-01-01',"
                 " 'Accrual', %s::jsonb)", (REALM, json.dumps(_pnl(str(net - 10)))))
    rows = conn.execute("SELECT qbo_income, shop_revenue_net, difference, verdict,"
                        " shop_revenue_gross, shop_orders FROM qbsync.report_comparison").fetchall()
    assert rows == [(net - 10, net, Decimal("-10.00"), "DIFFERENT", gross, orders),
                    (net, net, Decimal("0.00"), "match", gross, orders)]
    notice = conn.execute("SELECT kind, severity, message FROM qbsync.open_notices").fetchall()
    assert len(notice) == 1
    assert notice[0][:2] == ("report_difference", "warning")
    assert "difference -10.00" in notice[0][2]


def test_dixis_revenue_net_matches_the_invoices_the_mapping_makes(
        conn: psycopg.Connection) -> None:
    """order_revenue's net is what QuickBooks computes from the mapped invoices: per VAT
    code, gross - round(gross x rate / (100 + rate), 2) (coupons split like the mapping)."""
    conn.execute("SELECT dixis.generate(150, 0.7)")
    assert scalar(conn, "SELECT count(*) FROM dixis.orders WHERE status = 'completed'"
                        " AND discount > 0") > 0
    def mapped_net(entity: str, key: str) -> Decimal:
        body = scalar(conn, f'SELECT qbsync_map."{entity}"(%s)', (key,))
        per_code: dict[Decimal, Decimal] = defaultdict(Decimal)
        for line in (body or {}).get("Line", []):  # NULL: nothing pushed (e.g. not delivered)
            code = line["SalesItemLineDetail"]["TaxCodeRef"]["$setting"]
            rate = Decimal(re.sub(r"^tax_code:", "", code))
            per_code[rate] += Decimal(str(line["Amount"]))
        return sum((gross - (gross * rate / (100 + rate)).quantize(Decimal("0.01"), ROUND_HALF_UP)
                    for rate, gross in per_code.items()), Decimal(0))

    # invoices of the orders that keep one, less the refund receipts
    expected = sum((mapped_net("order", key) for (key,) in conn.execute(
        "SELECT id::text FROM dixis.orders WHERE " + INVOICED).fetchall()), Decimal(0))
    expected -= sum((mapped_net("refund", key) for (key,) in conn.execute(
        "SELECT id::text FROM dixis.refunds").fetchall()), Decimal(0))
    net = scalar(conn, "SELECT net FROM qbsync_map.order_revenue('2000-01-01', '2100-01-01')")
    assert net == expected


# --- queue_health, connection_status ---------------------------------------------------------

def test_queue_health_sections(conn: psycopg.Connection) -> None:
    conn.execute("SELECT qbsync.enqueue('order', '1'), qbsync.enqueue('order', '2')")
    conn.execute("SELECT qbsync.enqueue('customer', '3')")
    conn.execute("UPDATE qbsync.outbox SET next_attempt_at = now() + interval '1 hour'"
                 " WHERE key = '2'")
    conn.execute("SELECT qbsync.register_worker('w1', 'host-a', 123)")
    conn.execute("SELECT * FROM qbsync.claim('w1', 1, '1 minute')")  # order 1
    conn.execute("UPDATE qbsync.outbox SET lease_expires_at = now() - interval '1 second'"
                 " WHERE state = 'running'")
    entity = {r[0]: r[1:] for r in conn.execute(
        "SELECT name, pending, running, dead, ready_now, expired_leases, max_attempts,"
        " attempt_limit FROM qbsync.queue_health WHERE section = 'entity'")}
    assert entity["order"] == (1, 1, 0, 0, 1, 1, 3)
    assert entity["customer"] == (1, 0, 0, 1, 0, 0, 3)
    assert entity["product"] == (0, 0, 0, 0, 0, None, 3)
    workers = conn.execute("SELECT name, running, waiting, detail FROM qbsync.queue_health"
                           " WHERE section = 'worker'").fetchall()
    assert workers == [("w1", 1, False, workers[0][3])]
    assert workers[0][3].startswith("host-a pid 123")

    # a transaction open for longer than long_transaction_seconds shows up
    conn.execute("UPDATE qbsync.settings SET value = '0' WHERE name = 'long_transaction_seconds'")
    with psycopg.connect(conn.info.dsn) as old:
        old.execute("SELECT txid_current()")
        pid = old.info.backend_pid

        def aged() -> bool:  # older than the next statement's now(), by however little
            row = conn.execute("SELECT now() > xact_start FROM pg_stat_activity"
                               " WHERE pid = %s", (pid,)).fetchone()
            return bool(row and row[0])

        wait_until(aged, 30, "the transaction's age above 0")
        rows = conn.execute("SELECT name, age, detail FROM qbsync.queue_health"
                            " WHERE section = 'xmin'").fetchall()
        assert any(name == f"transaction pid {pid}" and age > timedelta(0)
                   for name, age, _ in rows), rows


def test_connection_status_has_no_token_material(conn: psycopg.Connection) -> None:
    connect_company(conn)
    cur = conn.execute("SELECT * FROM qbsync.connection_status")
    assert cur.description is not None
    cols = {c.name for c in cur.description}
    assert {"realm_id", "company_name", "status", "access_expires_at", "refresh_expires_at",
            "last_refresh", "last_error", "active"} <= cols
    assert not cols & {"tokens", "key_id", "token_generation"}
    row = cur.fetchone()
    assert row is not None
    assert not any(isinstance(v, bytes | memoryview) for v in row)
    # no view in the database reads connections.tokens
    readers = conn.execute(
        "SELECT DISTINCT v.oid::regclass::text FROM pg_depend d"
        " JOIN pg_rewrite r ON r.oid = d.objid JOIN pg_class v ON v.oid = r.ev_class"
        " JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid"
        " WHERE d.refobjid = 'qbsync.connections'::regclass AND a.attname = 'tokens'"
        " AND v.oid <> 'qbsync.connections'::regclass").fetchall()
    assert readers == []
