"""No role gains a privilege through qbsync's functions.

The attacker is the shop's own role, which owns the shop's tables (and so can put a view in
a table's place, or a trigger on it), or a member of qbsync_reader, qbsync_admin or
qbsync_daemon. Each test lets qbsync run the attacker's code through one path, then checks
that no role of the test became a superuser or joined a qbsync role, and that the code ran
with no more rights than the role that called qbsync (never as a superuser, never as
qbsync_owner)."""

from __future__ import annotations

import contextlib
import json

import psycopg
import pytest
from psycopg import errors, sql

from qbsync.queries import load
from tests.security.conftest import Cast, Shop, expected_privileges, privileges
from tests.support import url_for


def call_as(cast: Cast, who: str, query: str) -> list[tuple]:
    """Run one statement as the login role `who` of the cast; it must succeed."""
    role = getattr(cast, who)
    with cast.connect(role) as conn:
        cur = conn.execute(query.encode())
        return cur.fetchall() if cur.description else []


def assert_no_escalation(shop: Shop, caller: str, *, ran: bool = True) -> None:
    """Nobody gained anything; the attacker's code ran (when the path runs shop code) and
    only as `caller`, an ordinary role."""
    cast = shop.cast
    assert privileges(cast) == expected_privileges(cast)
    ran_as = shop.ran_as()
    if ran:
        assert ran_as, "the path never ran the shop's code: the test proves nothing"
    assert ran_as in ([], [(caller, False)]), f"the attacker's code ran as {ran_as}"


# --- a table swapped for a view whose WHERE calls the attacker's function ---------------------

# (who calls, what, the table the mapping function it runs reads)
READ_PATHS = [
    pytest.param("reader", "SELECT orders_pending FROM qbsync.dashboard", "orders",
                 id="reader-dashboard"),
    pytest.param("admin", "SELECT orders_pending FROM qbsync.dashboard", "orders",
                 id="admin-dashboard"),
    pytest.param("admin", "SELECT qbsync.resync('order', '1')", "orders", id="admin-resync"),
    pytest.param("admin", "SELECT qbsync.resync_many('order', ARRAY['1', '2'], true)", "orders",
                 id="admin-resync_many"),
    pytest.param("admin", "SELECT qbsync.sync_catalog()", "products", id="admin-sync_catalog"),
    pytest.param("admin", "SELECT qbsync.sync_all_customers()", "customers",
                 id="admin-sync_all_customers"),
    pytest.param("daemon", "SELECT qbsync.map('order', '1')", "orders", id="daemon-map"),
    pytest.param("daemon", "SELECT count(*) FROM qbsync.map_many('order', ARRAY['1', '2'])",
                 "orders", id="daemon-map_many"),
    pytest.param("daemon", "SELECT (qbsync.store_report(NULL, 'r', 'custom', '2024-01-01',"
                           " '2024-12-31', 'Accrual', '{}')).id", "orders",
                 id="daemon-store_report"),
    pytest.param("daemon", "SELECT count(*) FROM qbsync.shop_ledger('2024-01-01', '2024-12-31')",
                 "orders", id="daemon-reconcile_ledger"),
]


@pytest.mark.parametrize(("who", "query", "table"), READ_PATHS)
def test_table_swapped_for_a_view(shop: Shop, who: str, query: str, table: str) -> None:
    shop.swap_for_view(table)
    call_as(shop.cast, who, query)
    assert_no_escalation(shop, getattr(shop.cast, who))


def _connected(cast: Cast) -> None:
    with psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
        su.execute("INSERT INTO qbsync.connections (realm_id, api_base_url, tokens, key_id)"
                   " VALUES ('r', 'https://quickbooks.api.intuit.com', '\\x00', 'k')")


def _daemon_complete(cast: Cast) -> str:
    with psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
        su.execute("SELECT qbsync.enqueue('order', '1')")
    (row_id,) = call_as(cast, "daemon", "SELECT id FROM qbsync.claim('w', 1, '1 minute')")[0]
    result = json.dumps({"qbo_type": "Invoice", "qbo_id": "9", "doc_number": "T-1"})
    return f"SELECT qbsync.complete({row_id}, 'w', 'r', '{result}'::jsonb)"


def _daemon_fail(cast: Cast) -> str:
    with psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
        su.execute("SELECT qbsync.enqueue('order', '1')")
    (row_id,) = call_as(cast, "daemon", "SELECT id FROM qbsync.claim('w', 1, '1 minute')")[0]
    return (f"SELECT qbsync.fail({row_id}, 'w', 'r',"
            " '{\"kind\": \"permanent\", \"message\": \"refused\"}'::jsonb)")


def _admin_accepts_drift(cast: Cast) -> str:
    with psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
        (drift_id,) = su.execute(
            "INSERT INTO qbsync.drift_log (realm_id, entity, key, qbo_type, qbo_id, change)"
            " VALUES ('r', 'order', '1', 'Invoice', '9', 'voided') RETURNING id").fetchone() \
            or (None,)
    return f"SELECT qbsync.resolve_drift({drift_id}, 'accept')"


WRITE_PATHS = [
    pytest.param("daemon", _daemon_complete, id="daemon-complete"),
    pytest.param("daemon", _daemon_fail, id="daemon-fail"),
    pytest.param("admin", _admin_accepts_drift, id="admin-resolve_drift"),
]


@pytest.mark.parametrize("how", ["view", "trigger"])
@pytest.mark.parametrize(("who", "prepare"), WRITE_PATHS)
def test_write_back_onto_a_table_the_shop_controls(shop: Shop, who: str, prepare: object,
                                                  how: str) -> None:
    """The write-back (qbsync_map.<entity>_outcome) updates the shop's table: a view in its
    place, or a trigger of the shop's role on it, runs the attacker's code."""
    _connected(shop.cast)
    if how == "view":
        shop.swap_for_view("orders")
    else:
        shop.as_shop("CREATE TRIGGER evil AFTER UPDATE ON shop.orders"
                     " FOR EACH ROW EXECUTE FUNCTION shop.evil_trigger()")
    query = prepare(shop.cast)  # type: ignore[operator]
    call_as(shop.cast, who, query)
    assert_no_escalation(shop, getattr(shop.cast, who))
    # the write-back itself went through, with the caller's rights
    with psycopg.connect(url_for(shop.cast.dbname)) as su:
        table = "orders_data" if how == "view" else "orders"
        status = su.execute(f"SELECT quickbooks_sync_status FROM shop.{table} WHERE id = 1"
                            ).fetchone()
    assert status in (("synced",), ("failed",), ("voided",))


ADMIN_PATHS_WITHOUT_SHOP_CODE = [
    pytest.param("SELECT qbsync.retry_dead()", id="retry_dead"),
    pytest.param("SELECT qbsync.request_report('month')", id="request_report"),
    pytest.param("SELECT qbsync.request_reconcile('2024-01-01', '2024-12-31')",
                 id="request_reconcile"),
    pytest.param("SELECT qbsync.reconcile_fix((SELECT max(id) FROM qbsync.reconcile_runs))",
                 id="reconcile_fix"),
    pytest.param("SELECT count(*) FROM qbsync.reconcile((SELECT max(id) FROM"
                 " qbsync.reconcile_runs))", id="reconcile"),
]


@pytest.mark.parametrize("query", ADMIN_PATHS_WITHOUT_SHOP_CODE)
def test_admin_functions_that_run_no_shop_code(shop: Shop, query: str) -> None:
    """retry_dead, the report and reconciliation requests and fixes keep their owner's
    rights: they must run no code of the shop's, whatever the shop's role did to its
    tables."""
    for table in ("orders", "customers", "products"):
        shop.swap_for_view(table)
    with psycopg.connect(url_for(shop.cast.dbname), autocommit=True) as su:
        su.execute("SELECT qbsync.enqueue('order', '1')")
        su.execute("UPDATE qbsync.outbox SET state = 'dead', last_error = 'x'")
        run = su.execute("INSERT INTO qbsync.reconcile_runs (realm_id, from_date, to_date,"
                         " qbo_types, finished_at) VALUES ('r', '2024-01-01', '2024-12-31',"
                         " '{Invoice}', now()) RETURNING id").fetchone()
        assert run is not None
        su.execute("INSERT INTO qbsync.reconcile_results (run_id, qbo_type, entity, key,"
                   " status) VALUES (%s, 'Invoice', 'order', '2', 'missing_in_quickbooks')",
                   run)
    call_as(shop.cast, "admin", query)
    assert_no_escalation(shop, shop.cast.admin, ran=False)


# --- a mapping function redefined by its owner -------------------------------------------------

# Who calls, and what: each path runs one of the order's mapping functions.
MAPPING_PATHS = [
    pytest.param("reader", "SELECT orders_pending FROM qbsync.dashboard", id="reader-dashboard"),
    pytest.param("admin", "SELECT qbsync.resync('order', '1')", id="admin-resync"),
    pytest.param("daemon", "SELECT qbsync.map('order', '1')", id="daemon-map"),
    pytest.param("daemon", "SELECT count(*) FROM qbsync.map_many('order', ARRAY['1', '2'])",
                 id="daemon-map_many"),
]


@pytest.mark.parametrize(("who", "query"), MAPPING_PATHS)
def test_mapping_function_redefined_by_its_owner(shop: Shop, who: str, query: str) -> None:
    """The DBA let the shop's role maintain its mapping functions (its migrations define
    them): it redefines them to run its own code."""
    with psycopg.connect(url_for(shop.cast.dbname), autocommit=True) as su:
        su.execute(sql.SQL("GRANT CREATE ON SCHEMA qbsync_map TO {}").format(
            sql.Identifier(shop.cast.shop)))
        for fn in ("order_unsynced_count()", "order_key_exists(text)", '"order"(text)'):
            su.execute(sql.SQL("ALTER FUNCTION qbsync_map.{} OWNER TO {}").format(
                sql.SQL(fn), sql.Identifier(shop.cast.shop)))
    shop.as_shop("""
        CREATE OR REPLACE FUNCTION qbsync_map.order_unsynced_count() RETURNS bigint
        LANGUAGE plpgsql AS $$ BEGIN PERFORM shop.evil(); RETURN 0; END $$;
        CREATE OR REPLACE FUNCTION qbsync_map.order_key_exists(key text) RETURNS boolean
        LANGUAGE plpgsql AS $$ BEGIN RETURN shop.evil(); END $$;
        CREATE OR REPLACE FUNCTION qbsync_map."order"(key text) RETURNS jsonb
        LANGUAGE plpgsql
        AS $$ BEGIN PERFORM shop.evil(); RETURN jsonb_build_object('DocNumber', key); END $$;
    """)
    call_as(shop.cast, who, query)
    assert_no_escalation(shop, getattr(shop.cast, who))


# --- functions and operators planted in public -------------------------------------------------

PLANTED = {
    # a lower(varchar) in public: an exact match wins over pg_catalog.lower(text)
    "function": ("lower(o.status) = 'completed'", """
        CREATE FUNCTION public.lower(s varchar) RETURNS text
        LANGUAGE plpgsql AS $$ BEGIN PERFORM shop.evil(); RETURN pg_catalog.lower(s::text); END $$;
    """),
    # an = (varchar, varchar) in public: varchar = 'literal' resolves to it
    "operator": ("o.status = 'completed'", """
        CREATE FUNCTION public.varchar_eq(a varchar, b varchar) RETURNS boolean
        LANGUAGE plpgsql AS $$ BEGIN PERFORM shop.evil(); RETURN a::text = b::text; END $$;
        CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar,
                                  FUNCTION = public.varchar_eq);
    """),
}


# The DBA's mapping functions, with public on their search_path, testing {condition}.
MAPPED_THROUGH_PUBLIC = {
    "order_unsynced_count": """
        CREATE OR REPLACE FUNCTION qbsync_map.order_unsynced_count() RETURNS bigint
        LANGUAGE sql STABLE SET search_path = shop, public
        AS $$ SELECT count(*) FROM orders o
              WHERE {condition} AND o.quickbooks_invoice_id IS NULL $$""",
    "order": """
        CREATE OR REPLACE FUNCTION qbsync_map."order"(key text) RETURNS jsonb
        LANGUAGE sql STABLE SET search_path = shop, public
        AS $$ SELECT jsonb_build_object('DocNumber', 'T-' || o.id) FROM orders o
              WHERE o.id::text = key AND {condition} $$""",
}

# (who calls, the mapping function its path runs, what, what it must answer: the planted
# object took part)
PLANT_PATHS = [
    pytest.param("reader", "order_unsynced_count", "SELECT orders_pending FROM qbsync.dashboard",
                 2, id="reader-dashboard"),
    pytest.param("admin", "order_unsynced_count", "SELECT orders_pending FROM qbsync.dashboard",
                 2, id="admin-dashboard"),
    pytest.param("daemon", "order", "SELECT qbsync.map('order', '1')->>'DocNumber'", "T-1",
                 id="daemon-map"),
    pytest.param("daemon", "order", "SELECT count(body) FROM qbsync.map_many('order',"
                                    " ARRAY['1', '2', '3'])", 2, id="daemon-map_many"),
]


@pytest.mark.parametrize(("who", "mapping", "query", "answer"), PLANT_PATHS)
@pytest.mark.parametrize("planted", sorted(PLANTED))
def test_planted_in_public(shop: Shop, planted: str, who: str, mapping: str, query: str,
                           answer: object) -> None:
    """The shop's role may create objects in public (its tables often live there). A
    mapping function that puts public on its search_path (for an extension's function,
    say) then resolves to what the shop's role planted there."""
    condition, plant = PLANTED[planted]
    with psycopg.connect(url_for(shop.cast.dbname), autocommit=True) as su:
        su.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(
            sql.Identifier(shop.cast.shop)))
        su.execute(MAPPED_THROUGH_PUBLIC[mapping].format(condition=condition).encode())
    shop.as_shop(plant)
    assert call_as(shop.cast, who, query) == [(answer,)]
    assert_no_escalation(shop, getattr(shop.cast, who))


# What each role calls, with its temporary tables and search_path in the way.
CALLS = {
    "reader": ["SELECT * FROM qbsync.dashboard", "SELECT count(*) FROM qbsync.queue_health",
               "SELECT count(*) FROM qbsync.open_notices", "SELECT count(*) FROM qbsync.failed"],
    "admin": ["SELECT * FROM qbsync.dashboard", "SELECT qbsync.resync('order', '1')",
              "SELECT qbsync.retry_dead()", "SELECT count(*) FROM qbsync.queue_health"],
    "daemon": ["SELECT qbsync.collect_changes()", "SELECT count(*) FROM qbsync.claim('w', 10,"
               " '1 minute')", "SELECT qbsync.map('order', '1')",
               "SELECT count(*) FROM qbsync.map_many('order', ARRAY['1', '2'])"],
}


@pytest.mark.parametrize("who", sorted(CALLS))
def test_qbsync_functions_ignore_what_callers_plant(shop: Shop, who: str) -> None:
    """qbsync's own functions pin their search_path: a caller's temporary tables and its
    search_path change nothing, and nothing planted in public runs."""
    with psycopg.connect(url_for(shop.cast.dbname), autocommit=True) as su:
        su.execute(sql.SQL("GRANT CREATE ON SCHEMA public TO {}").format(
            sql.Identifier(shop.cast.shop)))
        su.execute("SELECT qbsync.enqueue('order', '2')")
    shop.as_shop("""
        CREATE FUNCTION public.varchar_eq(a varchar, b varchar) RETURNS boolean
        LANGUAGE plpgsql AS $$ BEGIN PERFORM shop.evil(); RETURN a::text = b::text; END $$;
        CREATE OPERATOR public.= (LEFTARG = varchar, RIGHTARG = varchar,
                                  FUNCTION = public.varchar_eq);
        CREATE FUNCTION public.now() RETURNS timestamptz
        LANGUAGE plpgsql AS $$ BEGIN PERFORM shop.evil(); RETURN pg_catalog.now(); END $$;
    """)
    role = getattr(shop.cast, who)
    with shop.cast.connect(role) as conn:
        conn.execute("SET search_path = pg_temp, public, qbsync")
        for table in ("outbox", "entities", "connections", "notices", "changes"):
            conn.execute(f"CREATE TEMP TABLE {table} (x int)".encode())
        for query in CALLS[who]:
            conn.execute(query.encode()).fetchall()
    assert_no_escalation(shop, role, ran=False)


# --- a temporary table created before a qbsync function creates its own -----------------------

def test_daemon_cannot_plant_a_temporary_table(shop: Shop) -> None:
    """maintain_log_partitions held moved log rows in a temporary table it created unless
    it existed: a qbsync_daemon member created it first, with a trigger of its own, and
    asked for new partitions; the trigger ran with the function owner's rights."""
    cast = shop.cast
    with psycopg.connect(url_for(cast.dbname), autocommit=True) as su:
        # enough months ahead that the daemon's own call creates partitions too
        su.execute("UPDATE qbsync.settings SET value = '40' WHERE name = 'log_partitions_ahead'")
        (columns,) = su.execute(
            "SELECT string_agg(format('%I %s', attname, format_type(atttypid, atttypmod)),"
            " ', ' ORDER BY attnum) FROM pg_attribute"
            " WHERE attrelid = 'qbsync.integration_logs'::regclass AND attnum > 0"
            " AND NOT attisdropped").fetchone() or (None,)
    with cast.connect(cast.daemon) as conn:
        conn.execute(f"""
            CREATE FUNCTION pg_temp.evil() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                INSERT INTO shop.ran_as
                SELECT current_user, r.rolsuper FROM pg_roles r WHERE r.rolname = current_user;
                BEGIN
                    ALTER ROLE {cast.daemon} SUPERUSER;
                EXCEPTION WHEN OTHERS THEN NULL;
                END;
                RETURN NULL;
            END $$""".encode())
        conn.execute(f"CREATE TEMP TABLE qbsync_moved_logs ({columns})".encode())
        conn.execute("CREATE TRIGGER evil BEFORE INSERT ON pg_temp.qbsync_moved_logs"
                     " FOR EACH STATEMENT EXECUTE FUNCTION pg_temp.evil()")
        for query in ("SELECT * FROM qbsync.maintain_log_partitions(40)",
                      load().maintain_log_partitions):
            # the daemon may not choose the months itself (refused), but rotates by settings
            with contextlib.suppress(errors.InsufficientPrivilege):
                conn.execute(query)
    assert_no_escalation(shop, cast.daemon, ran=False)
    with psycopg.connect(url_for(cast.dbname)) as su:
        made = su.execute("SELECT count(*) FROM pg_inherits"
                          " WHERE inhparent = 'qbsync.integration_logs'::regclass").fetchone()
    assert made is not None
    assert made[0] > 40  # the daemon's call did create them


def test_daemon_may_not_choose_the_log_retention(shop: Shop) -> None:
    """maintain_log_partitions(retention_months => 0) drops every past month of the audit
    log: the daemon rotates partitions with the settings' values only."""
    with shop.cast.connect(shop.cast.daemon) as conn:
        with pytest.raises(errors.InsufficientPrivilege):
            conn.execute("SELECT * FROM qbsync.maintain_log_partitions(0, 0)")
        conn.execute(load().maintain_log_partitions)


# --- triggers on qbsync's own tables -----------------------------------------------------------

def test_only_the_owner_role_may_put_a_trigger_on_qbsync_tables(shop: Shop) -> None:
    """A trigger on qbsync's tables runs inside every function that writes them, with that
    function's rights. Among roles that are not superusers, only qbsync_owner may create
    one, and nobody logs in as it or can become it; the cast's roles try and are refused."""
    cast = shop.cast
    with psycopg.connect(url_for(cast.dbname)) as su:
        relations = su.execute(
            "SELECT c.oid::regclass::text, c.relkind = 'v' FROM pg_class c"
            " WHERE c.relnamespace IN ('qbsync'::regnamespace, 'qbsync_capture'::regnamespace)"
            " AND c.relkind IN ('r', 'p', 'v') ORDER BY 1").fetchall()
        may = su.execute(
            "SELECT DISTINCT r.rolname FROM pg_roles r, pg_class c"
            " WHERE c.relnamespace IN ('qbsync'::regnamespace, 'qbsync_capture'::regnamespace)"
            " AND c.relkind IN ('r', 'p', 'v') AND NOT r.rolsuper"
            " AND (pg_has_role(r.oid, c.relowner, 'USAGE')"
            "      OR has_table_privilege(r.oid, c.oid, 'TRIGGER'))").fetchall()
        owner = su.execute(
            "SELECT r.rolcanlogin, ARRAY(SELECT m.member::regrole::text FROM pg_auth_members m"
            "                            WHERE m.roleid = r.oid)"
            " FROM pg_roles r WHERE r.rolname = 'qbsync_owner'").fetchone()
    assert may == [("qbsync_owner",)]
    assert owner == (False, [])
    for role in cast.everyone:
        with cast.connect(role) as conn:
            for relation, is_view in relations:
                when = "INSTEAD OF INSERT" if is_view else "BEFORE INSERT"
                with pytest.raises(errors.InsufficientPrivilege):
                    conn.execute(f"CREATE TRIGGER evil {when} ON {relation} FOR EACH ROW"
                                 " EXECUTE FUNCTION shop.evil_trigger()".encode())
    assert_no_escalation(shop, cast.shop, ran=False)
