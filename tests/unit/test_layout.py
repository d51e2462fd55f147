"""README's table of the package's modules names every module in daemon/qbsync, and only
those (the emulator is one row: a package of its own)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "daemon" / "qbsync"
HEADING = "### The package, module by module"


def _readme_rows() -> list[str]:
    """The first cell of each row of the table under HEADING, without backticks."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split(HEADING, 1)[1]
    rows: list[str] = []
    in_table = False
    for line in section.splitlines():
        if line.startswith("|"):
            in_table = True
            cell = line.split("|")[1].strip()
            if cell.startswith("`"):
                rows.append(cell.strip("`"))
        elif in_table:
            break
    return rows


def _tree() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "emulator":
            names.add("emulator/")
        else:
            names.add(relative.with_suffix("").as_posix())
    return names


def test_the_scan_reads_the_table() -> None:
    rows = _readme_rows()
    assert {"cli", "cli_common", "qbo/client", "emulator/"} <= set(rows)


def test_readme_names_each_module_once() -> None:
    rows = _readme_rows()
    assert sorted(r for r in set(rows) if rows.count(r) > 1) == []


def test_readme_names_exactly_the_modules_in_the_tree() -> None:
    rows = set(_readme_rows())
    assert sorted(_tree() - rows) == [], "modules missing from README's table"
    assert sorted(rows - _tree()) == [], "README's table names modules that do not exist"
