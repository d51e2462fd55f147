"""qbsync's objects belong to qbsync_owner, a NOLOGIN role without members that `qbsync
migrate` creates; SECURITY DEFINER functions are few, owned by it, and reach no mapping
code. The checks are generic (every object of the schemas, every SECURITY DEFINER
function), so they keep holding, or fail, as later migrations add objects."""

from __future__ import annotations

import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from qbsync import shop as shops
from qbsync.errors import MigrationError
from qbsync.migrate import ensure_owner_role, migrate
from qbsync.resources import sql_path
from tests.schema_support import install_shop_0_1_0
from tests.security.conftest import RUN_ROLE_PREFIX
from tests.support import PG_HOST, PG_PORT, PG_USER, conn_url, url_for

# Objects of qbsync's schemas (found through their dependency on the schema, whatever their
# kind) and the schemas themselves, whose owner is not qbsync_owner.
NOT_OWNED = """
SELECT o.type || ' ' || o.identity
FROM pg_depend d CROSS JOIN LATERAL pg_identify_object(d.classid, d.objid, 0) AS o
WHERE d.refclassid = 'pg_namespace'::regclass AND d.deptype = 'n'
  AND d.refobjid IN (SELECT oid FROM pg_namespace WHERE nspname IN ('qbsync', 'qbsync_capture'))
  AND NOT EXISTS (
      SELECT 1 FROM pg_shdepend s
      WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
        AND s.classid = d.classid AND s.objid = d.objid AND s.deptype = 'o'
        AND s.refobjid = to_regrole('qbsync_owner'))
UNION ALL
SELECT 'schema ' || nspname FROM pg_namespace
WHERE nspname IN ('qbsync', 'qbsync_capture', 'qbsync_map')
  AND nspowner IS DISTINCT FROM to_regrole('qbsync_owner')
ORDER BY 1
"""

# SECURITY DEFINER functions of qbsync's schemas owned by a superuser (or by no
# qbsync_owner at all).
SUPERUSER_DEFINERS = """
SELECT p.oid::regprocedure::text
FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
WHERE p.pronamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('qbsync', 'qbsync_capture'))
  AND p.prosecdef AND (r.rolsuper OR p.proowner IS DISTINCT FROM to_regrole('qbsync_owner'))
ORDER BY 1
"""

# The SECURITY DEFINER functions, each reviewed: it reads and writes qbsync's own tables
# and catalogs only. A new one must be added here after the same review.
DEFINERS = {
    "qbsync.snapshot_settled(pg_snapshot)",      # other roles' transaction ids
    "qbsync.collect_changes(integer)",           # moves qbsync.changes into the outbox
    "qbsync.backlog()",
    "qbsync.count_log_rows()", "qbsync.count_log_row()",      # dashboard counters (triggers)
    "qbsync.count_map_rows()", "qbsync.count_map_row()",
    "qbsync.fold_stats()", "qbsync.rebuild_stats()",
    "qbsync.raise_notice(text,text,text,jsonb,text,text,text)",
    "qbsync.close_notices(text,text,text,text,text)",
    "qbsync.notice_dead_row()", "qbsync.settle_dead_row()", "qbsync.notice_connection()",
    "qbsync.acknowledge(bigint)", "qbsync.acknowledge_all()",
    "qbsync.request(text,jsonb)", "qbsync.request_report(date,date,text)",
    "qbsync.request_report(text)", "qbsync.request_connection_test()",
    "qbsync.request_reconcile(date,date)", "qbsync.reconcile_fix(bigint)",
    "qbsync.retry_dead(text,text)",
    "qbsync.dashboard_row()", "qbsync.xmin_holders()",
    "qbsync.rotate_logs()",                      # partitions by the settings
    "qbsync.enqueue_resync(text,text[],boolean)",               # halves of the admin
    "qbsync.enqueue_sync(text,text,text[],boolean)",            # functions that ask the
    "qbsync.settle_drift(bigint,text)",                         # mapping as the caller
    "qbsync.log_write_back_failure(text,text,text,text,text)",
    "qbsync.notice_setting_waits(text,text[],boolean)",  # notices of rows waiting for a
    "qbsync.settings_changed()",                         # setting; releasing them when one
    "qbsync.override_setting(text,jsonb,text)",          # is set; a DBA's own value; the
    "qbsync.request_settings_refresh()",                 # admin request to look them up
    "qbsync.withdraw_request(bigint)",           # an admin request, before a daemon takes it
    "qbsync.company_setting(text)",              # a setting's value, for mappings (a read)
    # the event trigger after a GRANT/REVOKE/ALTER TABLE by any role (the shop's on its own
    # tables): grants INSERT on qbsync_capture's views as their owner, to the roles the
    # tracked tables' ACLs name; reads qbsync.tracked and the catalogs, runs no shop code
    "qbsync.enqueue_grants_changed()",
}


def rows(url: str, query: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute(query.encode())]


@pytest.mark.parametrize("database", ["db_url", "dixis_url"])
def test_every_qbsync_object_belongs_to_the_owner_role(request: pytest.FixtureRequest,
                                                       database: str) -> None:
    """A migrated database, and one with the Dixis shop installed (track() generated its
    capture functions and views)."""
    url = request.getfixturevalue(database)
    assert rows(url, NOT_OWNED) == []
    assert rows(url, SUPERUSER_DEFINERS) == []


# Functions outside qbsync's schemas (the shop's own, its mapping in qbsync_map, a sample
# shop's helpers) that run with a superuser's or qbsync_owner's rights.
SHOP_DEFINERS = """
SELECT p.oid::regprocedure::text || ' (owned by ' || r.rolname || ')'
FROM pg_proc p JOIN pg_roles r ON r.oid = p.proowner
WHERE p.pronamespace NOT IN ('pg_catalog'::regnamespace, 'information_schema'::regnamespace,
                             'qbsync'::regnamespace, 'qbsync_capture'::regnamespace)
  AND p.prosecdef AND (r.rolsuper OR r.rolname = 'qbsync_owner')
ORDER BY 1
"""

# Trigger functions outside qbsync's schemas, on any table, that run as their owner rather
# than as the role whose write fired them.
SHOP_DEFINER_TRIGGERS = """
SELECT DISTINCT t.tgrelid::regclass::text || ': ' || p.oid::regprocedure::text
FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid
WHERE NOT t.tgisinternal AND p.prosecdef
  AND p.pronamespace NOT IN ('qbsync'::regnamespace, 'qbsync_capture'::regnamespace)
ORDER BY 1
"""

SHOP_SCHEMAS = {"dixis": {"dixis", "qbsync_map"},
                "medusa": {"medusa", "medusa_qbsync", "qbsync_map"}}


@pytest.mark.parametrize("name", shops.SHOPS)
def test_no_sample_shop_function_runs_as_a_superuser(request: pytest.FixtureRequest,
                                                     name: str) -> None:
    """What `qbsync shop install` puts into the shop's schemas (as the superuser who runs
    it): no function there is SECURITY DEFINER owned by a superuser or by qbsync_owner, and
    no trigger function runs as anyone but the writer. The fan-out triggers read tables the
    shop's role may own: tests/security/test_fan_out.py is what such a definer let it do."""
    url = conn_url(request.getfixturevalue(f"{name}_db"))
    schemas = set(rows(url, "SELECT DISTINCT pronamespace::regnamespace::text FROM pg_proc"))
    assert SHOP_SCHEMAS[name] <= schemas   # the check covers the shop's functions
    assert rows(url, SHOP_DEFINERS) == []
    assert rows(url, SHOP_DEFINER_TRIGGERS) == []


def test_track_and_untrack_leave_what_they_make_to_the_owner_role(db_url: str) -> None:
    """A bare qbsync.track() by the DBA, with no `qbsync migrate` after it: the capture
    functions it generated, and a change view it made, belong to qbsync_owner when it
    returns; so do the functions untrack generates again, and allow_enqueue's view."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.items (id int PRIMARY KEY, name text, price numeric)")
        conn.execute("SELECT qbsync.define_entity(e, 'Item')"
                     " FROM unnest(ARRAY['item', 'price', 'stock']) AS e")
        conn.execute("SELECT qbsync.track('public.items', 'item', 'id')")
        conn.execute("SELECT qbsync.track('public.items', 'price', 'id',"
                     " columns => ARRAY['price'])")
        generated = "SELECT count(*)::text FROM pg_proc WHERE proname LIKE 'capture\\_items\\_%'"
        assert rows(db_url, generated) == ["3"]
        assert rows(db_url, NOT_OWNED) == []
        conn.execute("SELECT qbsync.untrack('public.items', 'price')")
        assert rows(db_url, generated) == ["3"]
        assert rows(db_url, NOT_OWNED) == []
        conn.execute("SELECT qbsync.allow_enqueue('public.items', 'stock')")
        assert rows(db_url, "SELECT 'qbsync_capture.changes_stock'::regclass::text") \
            == ["qbsync_capture.changes_stock"]
        assert rows(db_url, NOT_OWNED) == []


def test_owner_role_is_nologin_without_powers_or_members(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb, rolreplication,"
            " rolbypassrls, ARRAY(SELECT m.member::regrole::text FROM pg_auth_members m"
            "                     WHERE m.roleid = r.oid)"
            " FROM pg_roles r WHERE rolname = 'qbsync_owner'").fetchone()
    assert row == (False, False, False, False, False, False, [])


def test_security_definer_functions_are_the_reviewed_ones(db_url: str) -> None:
    with psycopg.connect(db_url) as conn:
        found = {r[0] for r in conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p"
            " WHERE p.pronamespace IN ('qbsync'::regnamespace, 'qbsync_capture'::regnamespace)"
            " AND p.prosecdef")}
    assert found - DEFINERS == set(), "new SECURITY DEFINER functions: review and list them"
    assert DEFINERS - found == set()


def _strip_comments(src: str) -> str:
    return re.sub(r"--[^\n]*", "", src)


def test_no_security_definer_function_reaches_mapping_code(db_url: str) -> None:
    """From every SECURITY DEFINER function, and every trigger function on qbsync's
    relations (a SECURITY DEFINER function's write fires it with the owner's rights),
    through every qbsync function it calls: none names qbsync_map or looks a function up."""
    with psycopg.connect(db_url) as conn:
        procs = conn.execute(
            "SELECT p.proname, p.prosecdef, p.prosrc FROM pg_proc p"
            " WHERE p.pronamespace IN ('qbsync'::regnamespace, 'qbsync_capture'::regnamespace)"
        ).fetchall()
        triggered = {r[0] for r in conn.execute(
            "SELECT DISTINCT p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
            " JOIN pg_class c ON c.oid = t.tgrelid"
            " WHERE c.relnamespace IN ('qbsync'::regnamespace, 'qbsync_capture'::regnamespace)"
            " AND NOT t.tgisinternal")}
    calls: dict[str, set[str]] = {}
    shop_code: set[str] = set()
    for name, _, src in procs:
        body = _strip_comments(src)
        calls.setdefault(name, set()).update(re.findall(r"\bqbsync\.([a-z_][a-z0-9_]*)\s*\(",
                                                        body))
        if "qbsync_map" in body or "to_regprocedure" in body:
            shop_code.add(name)
    roots = {name for name, definer, _ in procs if definer} | triggered
    reaching: dict[str, list[str]] = {}
    for root in sorted(roots):
        seen, todo = {root}, [root]
        while todo:
            for callee in calls.get(todo.pop(), ()):
                if callee not in seen:
                    seen.add(callee)
                    todo.append(callee)
        if seen & shop_code:
            reaching[root] = sorted(seen & shop_code)
    assert reaching == {}


def test_owner_views_read_only_qbsync_relations(db_url: str) -> None:
    """A view runs with its owner's rights on the relations it reads: qbsync's views read
    only qbsync's relations and the catalogs. The dashboard reads none itself (it asks the
    mapping through unsynced_orders) and runs as its reader."""
    with psycopg.connect(db_url) as conn:
        foreign = conn.execute(
            "SELECT DISTINCT v.oid::regclass::text, c.oid::regclass::text"
            " FROM pg_class v JOIN pg_rewrite w ON w.ev_class = v.oid"
            " JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = w.oid"
            "  AND d.refclassid = 'pg_class'::regclass"
            " JOIN pg_class c ON c.oid = d.refobjid AND c.oid <> v.oid"
            " WHERE v.relkind = 'v'"
            "   AND v.relnamespace IN ('qbsync'::regnamespace, 'qbsync_capture'::regnamespace)"
            "   AND c.relnamespace NOT IN ('qbsync'::regnamespace,"
            "                              'qbsync_capture'::regnamespace,"
            "                              'pg_catalog'::regnamespace)").fetchall()
        invoker = conn.execute(
            "SELECT coalesce('security_invoker=true' = ANY(reloptions), false) FROM pg_class"
            " WHERE oid = 'qbsync.dashboard'::regclass").fetchone()
    assert foreign == []
    assert invoker == (True,)


# --- migrate ---------------------------------------------------------------------------------

def _data_at_0006(url: str) -> dict[str, int]:
    """A database migrated to 0006 (the released schema), with the shop 0.1.0 installed,
    its capture rules and a little of everything; returns its row counts."""
    with psycopg.connect(url, autocommit=True) as conn:
        install_shop_0_1_0(conn)
        conn.execute("SELECT dixis.generate(20, 0.5)")
        conn.execute("INSERT INTO qbsync.connections (realm_id, api_base_url, company_name,"
                     " tokens, key_id) VALUES ('r1', 'https://quickbooks.api.intuit.com', 'Dixis',"
                     " '\\xdeadbeef', 'k1')")
        conn.execute("SELECT qbsync.collect_changes()")
        conn.execute("UPDATE qbsync.outbox SET state = 'dead', last_error = 'x'"
                     " WHERE id = (SELECT min(id) FROM qbsync.outbox)")
        conn.execute("INSERT INTO qbsync.entity_map (realm_id, entity, key, qbo_type, qbo_id)"
                     " VALUES ('r1', 'order', '1', 'Invoice', '100')")
        conn.execute("SELECT qbsync.log('create', 'order', '1', 'success', 'r1')")
        conn.execute("SELECT qbsync.raise_notice('warning', 'test', 'a notice')")
        return _counts(conn)


def _counts(conn: psycopg.Connection) -> dict[str, int]:
    out = {}
    for table in ("outbox", "entity_map", "integration_logs", "connections", "notices",
                  "tracked", "log_counts", "map_counts"):
        row = conn.execute(sql.SQL("SELECT count(*) FROM qbsync.{}").format(
            sql.Identifier(table))).fetchone()
        out[table] = row[0] if row else -1
    return out


def test_upgrade_from_0006_hands_everything_to_the_owner_role(empty_db_url: str,
                                                              tmp_path: Path) -> None:
    released = tmp_path / "released"
    released.mkdir()
    for path in sorted(sql_path("migrations").glob("000[1-6]_*.sql")):
        shutil.copy(path, released / path.name)
    assert [m.name for m in migrate(empty_db_url, directory=released)][-1] == "0006_reconcile.sql"
    before = _data_at_0006(empty_db_url)
    assert rows(empty_db_url, NOT_OWNED) != []   # the superuser that migrated owns it all

    applied = migrate(empty_db_url)
    assert "0010_security.sql" in [m.name for m in applied]
    assert rows(empty_db_url, NOT_OWNED) == []
    assert rows(empty_db_url, SUPERUSER_DEFINERS) == []
    with psycopg.connect(empty_db_url) as conn:
        assert _counts(conn) == before
        # the capture functions track() generated at 0006 too
        owned = conn.execute(
            "SELECT count(*) FILTER (WHERE p.proname LIKE 'capture\\_%'),"
            "       count(*) FILTER (WHERE p.proowner = 'qbsync_owner'::regrole)"
            " FROM pg_proc p WHERE p.pronamespace = 'qbsync'::regnamespace"
            " AND p.proname LIKE 'capture\\_%'").fetchone()
        assert owned is not None
        assert owned[0] > 0
        assert owned[0] == owned[1]
        # the shop still captures, through the view qbsync_owner now owns
        conn.execute("UPDATE dixis.orders SET billing_city = billing_city || '.' WHERE id ="
                     " (SELECT min(id) FROM dixis.orders WHERE completed_at IS NOT NULL)")
        assert conn.execute("SELECT entity FROM qbsync.changes").fetchall() == [("order",)]


def test_installing_a_sample_shop_again_after_the_upgrade_replaces_its_definers(
        empty_db_url: str, tmp_path: Path) -> None:
    """The fan-out triggers the Dixis shop of 0.1.0 installed stay SECURITY DEFINER
    functions of the superuser through `qbsync migrate` (it leaves the shop's schemas
    alone); `qbsync shop install dixis` again, as the upgrade notes say, replaces them."""
    released = tmp_path / "released"
    released.mkdir()
    for path in sorted(sql_path("migrations").glob("000[1-6]_*.sql")):
        shutil.copy(path, released / path.name)
    migrate(empty_db_url, directory=released)
    with psycopg.connect(empty_db_url, autocommit=True) as conn:
        install_shop_0_1_0(conn)
    migrate(empty_db_url)
    assert rows(empty_db_url, SHOP_DEFINERS) == [
        f"dixis.category_vat_changed() (owned by {PG_USER})",
        f"dixis.order_refunds_changed() (owned by {PG_USER})"]
    with psycopg.connect(empty_db_url) as conn:
        shops.install_shop(conn, "dixis")
    assert rows(empty_db_url, SHOP_DEFINERS) == []
    assert rows(empty_db_url, SHOP_DEFINER_TRIGGERS) == []


def test_every_run_hands_new_objects_to_the_owner_role(db_url: str) -> None:
    """Objects created since the last run (what track() generated, a DBA's hand-made view)
    belong to qbsync_owner after the next `qbsync migrate`."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("CREATE VIEW qbsync_capture.changes_by_hand AS"
                     " SELECT entity, key FROM qbsync.changes")
    assert rows(db_url, NOT_OWNED) == ["view qbsync_capture.changes_by_hand"]
    assert migrate(db_url) == []
    assert rows(db_url, NOT_OWNED) == []


LATER = """
CREATE TABLE qbsync.later (id bigint GENERATED ALWAYS AS IDENTITY, note text);
CREATE VIEW qbsync.later_notes AS SELECT note FROM qbsync.later;
CREATE SEQUENCE qbsync_capture.later_seq;
CREATE TYPE qbsync.later_kind AS ENUM ('a', 'b');
CREATE FUNCTION qbsync.later_count() RETURNS bigint LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp AS 'SELECT count(*) FROM qbsync.later';
"""


def test_objects_of_later_migrations_belong_to_the_owner_role(empty_db_url: str,
                                                              tmp_path: Path) -> None:
    """A migration written after this one, run as the migrating superuser like all of them:
    what it creates belongs to qbsync_owner when it is recorded."""
    migrations = tmp_path / "migrations"
    shutil.copytree(sql_path("migrations"), migrations)
    (migrations / "9999_later.sql").write_text(LATER)
    migrate(empty_db_url, directory=migrations)
    assert rows(empty_db_url, NOT_OWNED) == []
    assert rows(empty_db_url, SUPERUSER_DEFINERS) == []


def test_objects_of_strangers_are_refused_not_adopted(db_url: str) -> None:
    """An object a role that did not install qbsync put into qbsync's schemas (say, a
    SECURITY DEFINER function) is not handed to qbsync_owner, which would give it the
    owner's rights: migrate stops and names it."""
    stranger = f"{RUN_ROLE_PREFIX}_stranger"
    with psycopg.connect(url_for("postgres"), autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {}").format(sql.Identifier(stranger)))
    try:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("GRANT CREATE ON SCHEMA qbsync TO {}").format(
                sql.Identifier(stranger)))
            conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(stranger)))
            conn.execute("CREATE FUNCTION qbsync.planted() RETURNS int LANGUAGE sql"
                         " SECURITY DEFINER AS 'SELECT 1'")
        with pytest.raises(MigrationError, match=rf"FUNCTION qbsync\.planted\(\) \(owned by "
                                                 rf"{stranger}\)"):
            migrate(db_url)
    finally:
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(stranger)))
        with psycopg.connect(url_for("postgres"), autocommit=True) as su:
            su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(stranger)))


# The owner role is cluster-wide and shared by every parallel run: these use a role of
# their own name, made and dropped by the test.

@pytest.fixture
def owner_name() -> Iterator[str]:
    name = f"{RUN_ROLE_PREFIX}_owner"
    yield name
    with psycopg.connect(url_for("postgres"), autocommit=True) as su:
        for role in (f"{name}_member", f"{name}_migrator", name):
            su.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_owner_role_is_created_once_by_concurrent_migrations(owner_name: str) -> None:
    """Migrations of several databases at once (each holds only its own database's lock)
    all create the role: one creates it, the others find it."""
    start = threading.Barrier(4)
    results: list[object] = []

    def run() -> None:
        with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
            start.wait()
            try:
                ensure_owner_role(conn, owner_name)
                results.append("ok")
            except Exception as exc:  # reported below
                results.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == ["ok"] * 4
    with psycopg.connect(url_for("postgres")) as conn:
        assert conn.execute("SELECT rolcanlogin, pg_has_role(oid, 'pg_read_all_stats', 'MEMBER')"
                            " FROM pg_roles WHERE rolname = %s", (owner_name,)).fetchall() \
            == [(False, True)]


@pytest.mark.parametrize(("change", "message"), [
    ("ALTER ROLE {owner} LOGIN", r"must have no powers, but it has LOGIN: ALTER ROLE \S+ NOLOGIN"),
    ("ALTER ROLE {owner} CREATEROLE", r"has CREATEROLE"),
    ("CREATE ROLE {member} IN ROLE {owner}", r"has members: \S+_member; REVOKE"),
])
def test_an_owner_role_with_powers_or_members_is_refused(owner_name: str, change: str,
                                                        message: str) -> None:
    with psycopg.connect(url_for("postgres"), autocommit=True) as conn:
        ensure_owner_role(conn, owner_name)
        conn.execute(sql.SQL(change).format(  # type: ignore[arg-type]
            owner=sql.Identifier(owner_name), member=sql.Identifier(f"{owner_name}_member")))
        with pytest.raises(MigrationError, match=message):
            ensure_owner_role(conn, owner_name)


def test_a_migrating_role_that_is_not_a_superuser_joins_the_owner_role(owner_name: str) -> None:
    """A role that may create roles but is no superuser (a managed service's administrator)
    migrates: it creates the owner role and becomes its one member, which only it may be;
    a superuser's migrate then refuses that member, as any other."""
    migrator = f"{owner_name}_migrator"
    with psycopg.connect(url_for("postgres"), autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(migrator)))
    with psycopg.connect(f"postgresql://{migrator}@{PG_HOST}:{PG_PORT}/postgres",
                         autocommit=True) as conn:
        ensure_owner_role(conn, owner_name)
        ensure_owner_role(conn, owner_name)   # its own membership, again
    with psycopg.connect(url_for("postgres"), autocommit=True) as su:
        members = su.execute("SELECT ARRAY(SELECT m.member::regrole::text FROM pg_auth_members m"
                             " WHERE m.roleid = %s::regrole)", (owner_name,)).fetchone()
        assert members == ([migrator],)
        with pytest.raises(MigrationError, match=rf"has members: {migrator}; REVOKE"):
            ensure_owner_role(su, owner_name)
