"""The committed Medusa schema and fixture match the pinned npm packages that produced them
(sql/shops/medusa/build-schema.sh), and load through a driver into the installer's session
without changing it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHOP = ROOT / "sql" / "shops" / "medusa"
FIXTURES = ROOT / "tests" / "fixtures" / "medusa"
GENERATED = (SHOP / "schema.sql", FIXTURES / "checkout.sql")


def test_pinned_packages_are_the_version_the_schema_names() -> None:
    package = json.loads((SHOP / "npm" / "package.json").read_text(encoding="utf-8"))
    lock = json.loads((SHOP / "npm" / "package-lock.json").read_text(encoding="utf-8"))
    pinned = set(package["dependencies"].values())
    assert len(pinned) == 1  # medusa, framework and cli move together
    (version,) = pinned
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)  # exact, never a range
    for name in package["dependencies"]:
        assert lock["packages"][f"node_modules/{name}"]["version"] == version
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
    for path in GENERATED:
        assert f"Medusa {version}" in path.read_text(encoding="utf-8").split("\n", 3)[0]


@pytest.mark.parametrize("path", GENERATED, ids=lambda p: p.name)
def test_generated_sql_keeps_the_session_alone(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"^\\", text, re.M)  # no psql meta-command (\restrict ...)
    assert not re.search(r"^SET |set_config\('search_path'", text, re.M)
    assert "public." not in text  # everything in schema medusa
