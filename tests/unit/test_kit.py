"""`qbsync shop new`: the files it writes from the templates (no database)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from qbsync import kit
from qbsync.cli import main

ALL = list(kit.ENTITIES)


@pytest.mark.parametrize("model", kit.MODELS)
def test_every_placeholder_is_inside_a_place_to_fill(model: str) -> None:
    """Filling every FILL … END FILL place leaves nothing of the placeholder schema: so the
    files install exactly when they are filled."""
    for name, text in kit.files("acme", ALL, model).items():
        if not name.endswith(".sql"):
            continue
        inside = False
        for number, line in enumerate(text.splitlines(), 1):
            if re.match(r"\s*-- FILL\(", line):
                assert not inside, f"{name}:{number}: FILL inside FILL"
                inside = True
            elif re.match(r"\s*-- END FILL", line):
                assert inside, f"{name}:{number}: END FILL without FILL"
                inside = False
            elif "fill_me" in line:
                assert inside, f"{name}:{number}: fill_me outside a place to fill: {line}"
        assert not inside, f"{name}: a FILL is not closed"


def test_the_files_and_what_to_fill() -> None:
    files = kit.files("acme", ALL, "vat")
    assert sorted(files) == sorted(["helpers.sql", *(f"{e}.sql" for e in ALL), "track.sql",
                                    "test.sql", "install.sql", "README.md"])
    assert "{{shop}}" not in "".join(files.values())
    assert "CREATE SCHEMA IF NOT EXISTS acme_qbo" in files["helpers.sql"]
    assert kit.fill_names(files["order.sql"]) == ["order_source", "order_lines", "order_keys",
                                                  "order_outcome"]
    assert kit.fill_names(files["track.sql"]) == [f"track_{e}" for e in ALL]
    install = files["install.sql"]
    assert install.index("\\ir helpers.sql") < install.index("\\ir customer.sql") \
        < install.index("\\ir order.sql") < install.index("\\ir track.sql")
    for entity, qbo_type in (("customer", "Customer"), ("order", "Invoice"),
                             ("refund", "RefundReceipt")):
        assert f"qbsync.define_entity('{entity}', '{qbo_type}'" in files["track.sql"]
    assert "`track.sql`: `track_order`" in files["README.md"]


def test_tax_models() -> None:
    vat, us = kit.files("acme", ALL, "vat"), kit.files("acme", ALL, "us")
    assert "'tax_code:' || trim_scale(rate)" in vat["helpers.sql"]
    assert "'tax_code:TAX'" not in vat["helpers.sql"]
    assert "'tax_code:TAX'" in us["helpers.sql"]
    assert "GlobalTaxCalculation" in vat["order.sql"]
    assert "GlobalTaxCalculation" not in us["order.sql"]
    assert "--@" not in "".join(vat.values()) + "".join(us.values())


def test_entities_bring_what_they_reference() -> None:
    assert kit.parse_entities("order,customer,product") == ["customer", "product", "order"]
    with pytest.raises(kit.KitUsage, match="order references customer and product"):
        kit.parse_entities("order")
    with pytest.raises(kit.KitUsage, match="invoice"):
        kit.parse_entities("customer,invoice")


def test_the_command(tmp_path: Path) -> None:
    where = tmp_path / "acme"
    done = CliRunner().invoke(main, ["shop", "new", "acme", "--dir", str(where)])
    assert done.exit_code == 0, done.output
    assert sorted(p.name for p in where.iterdir()) == sorted(
        ["helpers.sql", "customer.sql", "product.sql", "order.sql", "track.sql", "test.sql",
         "install.sql", "README.md"])
    assert "grep -n FILL" in done.output
    again = CliRunner().invoke(main, ["shop", "new", "acme", "--dir", str(where)])
    assert again.exit_code == 2
    assert "exist: choose another --dir, or --force" in again.output
    assert CliRunner().invoke(main, ["shop", "new", "acme", "--dir", str(where),
                                     "--force"]).exit_code == 0
    bad = CliRunner().invoke(main, ["shop", "new", "Acme Shop", "--dir", str(tmp_path / "x")])
    assert bad.exit_code == 2
    assert "lower-case letters" in bad.output
