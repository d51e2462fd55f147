"""The mapping contract says everything the product relies on: every optional qbsync_map
function the migrations look up is documented in README "Mapping a shop", and the dashboard
says what is missing instead of leaving a blank."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from qbsync.cli_status import status_command
from tests.support import conn_url

ROOT = Path(__file__).resolve().parents[2]

# How the migrations find a mapping function of an entity: mapping_function(entity,
# '_suffix', ...), or a name built as entity || '_suffix' in a statement about qbsync_map.
LOOKUP = re.compile(r"mapping_function\([^,()]+,\s*'(_[a-z_]+)'")
BUILT = re.compile(r"\|\|\s*'(_[a-z_]+)'")


def _looked_up_suffixes() -> set[str]:
    found: set[str] = set()
    for path in sorted((ROOT / "sql" / "migrations").glob("*.sql")):
        text = re.sub(r"--[^\n]*", "", path.read_text(encoding="utf-8"))
        found |= set(LOOKUP.findall(text))
        for statement in text.split(";"):
            if "qbsync_map" in statement:
                found |= set(BUILT.findall(statement))
    return found


def _mapping_section() -> str:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("## Mapping a shop")
    return readme[start:readme.index("\n## ", start + 1)]


def test_the_scan_finds_the_known_lookups() -> None:
    assert {"_keys", "_outcome", "_outcomes", "_key_exists", "_unsynced_count", "_revenue",
            "_ledger"} <= _looked_up_suffixes()


@pytest.mark.parametrize("suffix", sorted(_looked_up_suffixes()))
def test_every_optional_mapping_function_is_documented(suffix: str) -> None:
    section = _mapping_section()
    assert f"qbsync_map.<entity>{suffix}(" in section, \
        f"README 'Mapping a shop' does not document qbsync_map.<entity>{suffix}()"


def dashboard(conn: psycopg.Connection) -> tuple[object, object]:
    row = conn.execute("SELECT orders_pending, orders_pending_note FROM qbsync.dashboard"
                       ).fetchone()
    assert row is not None
    return row[0], row[1]


@pytest.mark.parametrize("entity", ["order", "sale"])
def test_dashboard_says_which_function_is_missing(db: psycopg.Connection, entity: str) -> None:
    db.execute("SELECT qbsync.define_entity(%s, 'Invoice')", (entity,))
    assert dashboard(db) == (None, f"unknown (define qbsync_map.{entity}_unsynced_count())")
    db.execute(f"CREATE FUNCTION qbsync_map.{entity}_unsynced_count() RETURNS bigint"
               " LANGUAGE sql AS 'SELECT 7::bigint'")
    assert dashboard(db) == (7, None)


def test_dashboard_says_why_the_count_failed(db: psycopg.Connection) -> None:
    db.execute("SELECT qbsync.define_entity('order', 'Invoice')")
    db.execute("CREATE FUNCTION qbsync_map.order_unsynced_count() RETURNS bigint"
               " LANGUAGE sql AS 'SELECT 1 / 0'")
    assert dashboard(db) == (
        None, "unknown (qbsync_map.order_unsynced_count() failed: division by zero)")


def test_dashboard_without_an_invoice_entity(db: psycopg.Connection) -> None:
    pending, note = dashboard(db)
    assert pending is None
    assert isinstance(note, str)
    assert note.startswith("unknown (no entity has qbo_type Invoice")


def test_status_prints_the_note(db: psycopg.Connection) -> None:
    db.execute("SELECT qbsync.define_entity('order', 'Invoice')")
    db.commit()
    done = CliRunner().invoke(status_command, ["--database-url", conn_url(db)])
    assert done.exit_code == 0, done.output
    line = next(x for x in done.output.splitlines() if "orders without an invoice" in x)
    assert "unknown (define qbsync_map.order_unsynced_count())" in line
