"""`qbsync shop new`: the starting mapping does not install until the DBA fills the marked
places; filled for a small schema qbsync did not design (tests/integration/kit_fixture.py),
it installs on an empty database with psql, its own test.sql passes, and `qbsync
check-mapping` finds nothing wrong, for both tax models. Then a real daemon pushes its
first invoice to the emulator."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner

from qbsync.cli import main
from qbsync.emulator import Emulator
from tests.daemon_support import connect_quick_retry_shop, drained, running
from tests.integration.kit_fixture import DATA, FILLS, SCHEMA, fill
from tests.support import PG_HOST, PG_PORT, PG_USER, conn_url

ALL = "customer,product,order,payment,refund"


def cli(*args: str) -> Any:
    env = {k: None for k in os.environ if k.startswith("QBSYNC_")}
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def psql(db: psycopg.Connection, file: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", PG_HOST, "-p", str(PG_PORT),
         "-U", PG_USER, "-d", db.info.dbname, "-f", str(file)],
        capture_output=True, text=True, timeout=120, check=False)


def new_shop(tmp_path: Path, model: str = "vat") -> Path:
    where = tmp_path / "tinyshop"
    done = cli("shop", "new", "tinyshop", "--dir", str(where), "--entities", ALL,
               "--tax-model", model)
    assert done.exit_code == 0, done.output
    return where


def installed(db: psycopg.Connection, tmp_path: Path, model: str = "vat",
              fills: dict[str, str] = FILLS) -> Path:
    where = new_shop(tmp_path, model)
    assert sorted(fill(where, fills)) == sorted(FILLS)
    db.execute(SCHEMA)  # type: ignore[arg-type]  # the fixture's own SQL
    db.execute(DATA)  # type: ignore[arg-type]
    db.commit()
    done = psql(db, where / "install.sql")
    assert done.returncode == 0, done.stderr
    return where


def test_unfilled_it_does_not_install(db: psycopg.Connection, tmp_path: Path) -> None:
    where = new_shop(tmp_path)
    done = psql(db, where / "install.sql")
    assert done.returncode != 0
    assert 'relation "fill_me.customers" does not exist' in done.stderr
    # and nothing of it stayed (one transaction)
    row = db.execute("SELECT to_regprocedure('qbsync_map.customer(text)'), "
                     "to_regnamespace('tinyshop_qbo')").fetchone()
    assert row == (None, None)


@pytest.mark.parametrize("model", ["vat", "us"])
def test_filled_it_installs_and_passes_check_mapping(db: psycopg.Connection, tmp_path: Path,
                                                    model: str) -> None:
    where = installed(db, tmp_path, model)
    assert "fill_me" not in "".join(p.read_text() for p in where.glob("*.sql"))
    test = psql(db, where / "test.sql")
    assert test.returncode == 0, test.stderr
    for entity, n in (("customer", 4), ("product", 6), ("order", 2), ("payment", 2),
                      ("refund", 1)):
        assert f"NOTICE:  {entity}: {n} bodies look right" in test.stderr
    result = cli("check-mapping", "--json", "--database-url", conn_url(db))
    report = json.loads(result.stdout)
    problems = [(k["entity"], k["key"], f["message"]) for k in report["keys"]
                for f in k["findings"]] + [
        (e["entity"], f["rule"], f["message"]) for e in report["entities"]
        for f in e["findings"] if f["level"] != "info"]
    assert result.exit_code == 0, problems
    assert problems == []
    assert report["summary"]["keys"] >= 13
    statuses = {(k["entity"], k["key"]): k["status"] for k in report["keys"]}
    # soft deletes: a cancelled order voids its invoice, one deleted before it was invoiced
    # pushes nothing; a deleted account stays, inactive
    assert statuses[("order", "3")] == "void"
    assert statuses[("order", "4")] == "null"
    # the guest is known by the e-mail inside the order's JSON, in lower case
    assert statuses[("customer", "guest:guest@example.gr")] == "ok"


def test_a_planted_mistake_in_the_filled_mapping_is_found(db: psycopg.Connection,
                                                          tmp_path: Path) -> None:
    """The same shop with a mistake a DBA makes: the order files a guest under the e-mail as
    typed, the customer under it in lower case. check-mapping names the key and the place;
    QuickBooks would never have said."""
    fills = dict(FILLS)
    fills["order_source"] = FILLS["order_source"].replace(
        "ELSE 'guest:' || lower(o.billing->>'email') END",
        "ELSE 'guest:' || (o.billing->>'email') END")
    assert fills["order_source"] != FILLS["order_source"]
    installed(db, tmp_path, fills=fills)
    result = cli("check-mapping", "--json", "--entity", "order", "--database-url",
                 conn_url(db))
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    found = [(k["key"], f["rule"], f["path"], f["message"]) for k in report["keys"]
             for f in k["findings"] if f["level"] == "error"]
    assert found == [("2", "reference", "CustomerRef",
                      "customer guest:Guest@Example.gr is not a key of the shop (per "
                      "qbsync_map.customer_key_exists(text) or qbsync_map.customer_keys())")]


async def test_the_first_invoice_reaches_quickbooks(db: psycopg.Connection,
                                                     tmp_path: Path) -> None:
    """README "Mapping your shop", last step: the filled mapping, connected to a QuickBooks
    company (the emulator), gets an order invoiced by the daemon, exactly as mapped."""
    installed(db, tmp_path)
    emulator = Emulator(limits=False)
    shop = await connect_quick_retry_shop(conn_url(db), emulator)
    db.execute("SELECT qbsync.resync('order', '1')")
    db.commit()
    async with running(shop):
        await drained(shop.url)
    dead = db.execute("SELECT entity, key, last_error FROM qbsync.outbox WHERE state = 'dead'"
                      ).fetchall()
    assert dead == []
    invoices = shop.invoices()
    assert [i["DocNumber"] for i in invoices] == ["TS-1001"]
    assert float(invoices[0]["TotalAmt"]) == 40.20
    assert [c["DisplayName"] for c in shop.customers()] == ["Maria Papadopoulou"]
