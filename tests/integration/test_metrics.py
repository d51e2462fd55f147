"""The metrics of an in-process daemon: label values stay within small, fixed vocabularies
after 10,000 orders (never a key or an id), and the database's gauges are read by one
query the daemon's role may run, correct whichever daemon runs it."""

from __future__ import annotations

import re
import socket

import psycopg
import pytest

from qbsync.queries import load as load_queries
from qbsync.startup import PHASES
from tests.daemon_support import Shop, drained, running
from tests.metrics_support import parse, total

pytestmark = pytest.mark.slow
Q = load_queries()

STATES = {"pending", "running", "dead", "waiting"}
OUTCOMES = {"created", "updated", "adopted", "voided", "deleted", "pushed", "skipped",
            "failed", "waiting", "dead"}


async def test_label_values_stay_bounded_after_10000_orders(
    shop: Shop, dixis_db: psycopg.Connection
) -> None:
    # the order path only (payments and refunds would double the run, not the labels)
    dixis_db.execute("SELECT qbsync.untrack(tbl::text, entity) FROM qbsync.tracked"
                     " WHERE entity NOT IN ('order', 'customer', 'product')")
    dixis_db.execute("SELECT dixis.generate(10000, 0.3)")
    dixis_db.commit()
    entities = {e for e, in dixis_db.execute("SELECT entity FROM qbsync.entities")}
    async with running(shop, metrics_listen="127.0.0.1:0") as daemon:
        await drained(shop.url, within=280)
        assert daemon.metrics is not None
        samples = parse((await daemon.metrics.exposition(daemon.pool)).decode())
    ours = [s for s in samples if s.name.startswith("qbsync_")]
    orders = dixis_db.execute("SELECT count(*) FROM dixis.orders").fetchone()
    assert orders is not None
    assert orders[0] >= 10000
    assert total(ours, "qbsync_pushes_total") >= 10000
    vocabulary = {
        "entity": entities, "state": STATES, "outcome": OUTCOMES, "realm": {shop.realm_id},
        "kind": {"request", "batch"}, "status": {"connected", "needs_reconnect",
                                                  "disconnected"},
        "phase": set(PHASES),
    }
    for s in ours:
        for label, value in s.labels.items():
            if label == "le":
                assert value == "+Inf" or float(value) >= 0
            elif label == "status" and s.name.startswith("qbsync_quickbooks_requests"):
                assert re.fullmatch(r"[1-5][0-9][0-9]|none", value), value
            elif label == "endpoint":
                assert re.fullmatch(r"[a-z]+", value), value
            elif label == "operation":
                assert re.fullmatch(r"[a-z]+(\.[a-z]+)?", value), value
            elif label == "version":
                assert s.name == "qbsync_build_info"
            else:
                assert value in vocabulary[label], (s.name, label, value)
    # a few hundred series at most, whatever the number of orders
    assert len(ours) < 500, len(ours)
    operations = {s.labels["operation"] for s in ours if s.name == "qbsync_pushes_total"}
    endpoints = {s.labels["endpoint"] for s in ours
                 if s.name == "qbsync_quickbooks_requests_total"}
    assert len(operations) <= 12, operations
    assert len(endpoints) <= 12, endpoints


def test_the_gauges_query_runs_as_the_daemon_role(dixis_db: psycopg.Connection) -> None:
    """What any daemon reads at a scrape: every entity and state (0 when empty), captured
    changes counted as pending, dead rows, notices, drift, connection and budget."""
    realm = "9341000000000777"
    dixis_db.execute(
        "INSERT INTO qbsync.connections (realm_id, api_base_url, company_name, tokens, key_id,"
        " status) VALUES (%s, 'http://qbo.emulator', 'Dixis', '\\xdeadbeef', 'k1',"
        " 'needs_reconnect')", (realm,))
    dixis_db.execute("SELECT dixis.generate(20, 0.5)")
    dixis_db.execute("SELECT qbsync.collect_changes()")
    dixis_db.execute("UPDATE qbsync.outbox SET state = 'dead', enqueued_at = now() - "
                     "interval '1 hour' WHERE id IN (SELECT min(id) FROM qbsync.outbox "
                     "WHERE entity = 'order')")
    dixis_db.execute("UPDATE qbsync.outbox SET enqueued_at = now() - interval '10 minutes'"
                     " WHERE id IN (SELECT max(id) FROM qbsync.outbox WHERE entity = 'order')")
    dixis_db.execute("SELECT dixis.generate(5, 0.5)")  # captured, not collected yet
    dixis_db.execute("SELECT qbsync.raise_notice('critical', 'dead_row', 'order x is dead')")
    notices = dixis_db.execute("SELECT count(*) FROM qbsync.open_notices").fetchone()
    assert notices is not None
    assert notices[0] >= 1
    expected = dict(dixis_db.execute(
        "SELECT entity, count(*) FROM (SELECT entity FROM qbsync.outbox WHERE state ="
        " 'pending' UNION ALL SELECT entity FROM qbsync.changes) x GROUP BY 1").fetchall())
    try:
        with dixis_db.transaction(force_rollback=True):
            dixis_db.execute("SET LOCAL ROLE qbsync_daemon")
            rows = dixis_db.execute(Q.metrics_gauges).fetchall()
    finally:
        dixis_db.rollback()
    got: dict[str, dict[tuple[str, str], float]] = {}
    for family, a, b, value in rows:
        got.setdefault(family, {})[(a, b)] = value
    entities = {e for e, in dixis_db.execute("SELECT entity FROM qbsync.entities")}
    assert {a for a, _ in got["outbox_rows"]} == entities
    assert {b for _, b in got["outbox_rows"]} == STATES
    assert {a: v for (a, b), v in got["outbox_rows"].items() if b == "pending" and v} == \
        expected
    assert got["outbox_rows"][("order", "dead")] == 1
    assert 600 <= got["oldest_pending"][("order", "")] < 3600  # the dead row is not pending
    assert got["open_notices"] == {("", ""): notices[0]}
    assert got["open_drift"] == {("", ""): 0}
    assert got["connection"] == {(realm, "connected"): 0, (realm, "needs_reconnect"): 1,
                                 (realm, "disconnected"): 0}
    assert got["budget"] == {(realm, "request"): 500, (realm, "batch"): 40}


async def test_an_address_in_use_is_a_warning_and_the_daemon_syncs_on(
    shop: Shop, dixis_db: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        dixis_db.execute("SELECT dixis.generate(3, 1.0)")
        dixis_db.commit()
        async with running(shop, metrics_listen=f"127.0.0.1:{port}"):
            await drained(shop.url)
    assert [r for r in caplog.records
            if f"metrics_listen 127.0.0.1:{port}: cannot listen" in r.getMessage()]
