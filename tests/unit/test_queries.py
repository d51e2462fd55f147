"""The named queries of sql/queries.sql (daemon) and sql/cli_queries.sql (operators): every
name the Python code uses exists in the file its loader reads, every operator query defined
is used, and no module keeps inline SQL."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from qbsync import cli_resync, demo
from qbsync.queries import CLI_FILE, DAEMON_FILE, Queries, load, load_cli

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "daemon" / "qbsync"
LOADERS = {"load": DAEMON_FILE, "load_cli": CLI_FILE}
FILES = {DAEMON_FILE: load, CLI_FILE: load_cli}
SQL_START = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|SET|CREATE|DROP|COMMENT ON)\s")
QBO_QUERY = re.compile(r"\bFROM [A-Z][A-Za-z]*\b")  # QuickBooks' query language: FROM Account


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "emulator" not in p.parts)


# Every module's SQL lives in the .sql files (the emulator runs none).
MOVED = [str(p.relative_to(PACKAGE).with_suffix("")) for p in _modules()]


def _loader_of(call: ast.expr, aliases: dict[str, str]) -> str | None:
    """The .sql file read by `load()` / `load_cli()` / an alias of them, else None."""
    if isinstance(call, ast.Call) and isinstance(call.func, ast.Name):
        return aliases.get(call.func.id)
    return None


def _used_names(path: Path) -> dict[str, set[str]]:
    """file -> query names this module reads as `Q.name` (Q bound to a loader) or
    `load_cli().name`, found in its syntax tree."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module in ("queries", "qbsync.queries"):
            for alias in node.names:
                if alias.name in LOADERS:
                    aliases[alias.asname or alias.name] = LOADERS[alias.name]
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            file = _loader_of(node.value, aliases)
            if file:
                bound[node.targets[0].id] = file
    used: dict[str, set[str]] = {}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        file = bound.get(value.id) if isinstance(value, ast.Name) else _loader_of(value, aliases)
        if file and node.attr != "names":
            used.setdefault(file, set()).add(node.attr)
    return used


def _all_used() -> dict[str, set[str]]:
    used: dict[str, set[str]] = {file: set() for file in FILES}
    for path in _modules():
        for file, names in _used_names(path).items():
            used[file] |= names
    # names looked up with getattr(Q, ...) from a table
    used[CLI_FILE] |= {query for query, _ in cli_resync._SYNC_KINDS.values()}
    used[CLI_FILE] |= set(demo._GROUPS.values())
    return used


def test_the_scan_finds_the_known_uses() -> None:
    used = _all_used()
    assert {"claim", "claim_admin_requests", "refresh_lock", "record_drift"} <= used[DAEMON_FILE]
    assert {"dashboard", "migrations_record", "save_connection", "rekey_tokens",
            "schema_exists", "sync_catalog"} <= used[CLI_FILE]


@pytest.mark.parametrize("file", sorted(FILES))
def test_every_query_used_is_defined(file: str) -> None:
    missing = sorted(_all_used()[file] - set(FILES[file]().names()))
    assert missing == [], f"used from Python but not defined in sql/{file}: {missing}"


@pytest.mark.parametrize("file", sorted(FILES))
def test_every_query_defined_is_used(file: str) -> None:
    unused = sorted(set(FILES[file]().names()) - _all_used()[file])
    assert unused == [], f"defined in sql/{file} but used nowhere: {unused}"


def test_daemon_queries_use_asyncpg_placeholders() -> None:
    q = load()
    psycopg_style = [n for n in q.names() if re.search(r"%(s|\(\w+\)s)", getattr(q, n))]
    assert psycopg_style == []


def test_no_query_is_empty_or_keeps_a_semicolon() -> None:
    for loader in FILES.values():
        q = loader()
        for name in q.names():
            text = getattr(q, name)
            assert text.strip(), name
            assert not text.endswith(";"), name
            assert not text.splitlines()[-1].lstrip().startswith("--"), name


def test_a_name_defined_twice_is_refused() -> None:
    with pytest.raises(ValueError, match=r"defined twice in cli_queries\.sql"):
        Queries("-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n", CLI_FILE)


def test_an_unknown_name_says_which_file() -> None:
    with pytest.raises(AttributeError, match=r"no query named 'nope' in cli_queries\.sql"):
        _ = load_cli().nope


def test_comments_between_blocks_are_not_part_of_a_query() -> None:
    q = Queries("-- name: a\nSELECT 1;\n\n-- section\n-- more\n\n-- name: b\n-- why\nSELECT 2;\n")
    assert q.a == "SELECT 1"
    assert q.b == "-- why\nSELECT 2"


@pytest.mark.parametrize("module", MOVED)
def test_moved_modules_keep_no_inline_sql(module: str) -> None:
    """String constants that start like SQL, outside psycopg.sql.SQL(...) compositions (the
    few identifiers composed in Python, each with a comment) and QuickBooks' own queries."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text(encoding="utf-8"))
    skip: set[int] = set()
    texts: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "SQL":
            skip |= {id(a) for a in node.args}
        elif isinstance(node, ast.JoinedStr):  # an f-string: judged as a whole
            skip |= {id(v) for v in node.values}
            texts.append("".join(v.value if isinstance(v, ast.Constant) else "Value"
                                 for v in node.values))
    texts += [node.value for node in ast.walk(tree)
              if isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in skip]
    inline = [t for t in texts if SQL_START.match(t) and not QBO_QUERY.search(t)]
    assert inline == []
