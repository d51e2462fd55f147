"""How the package's modules may depend on each other, read from their syntax trees (every
import statement, at the top or inside a function; not those under `if TYPE_CHECKING:`):
no import cycles anywhere (the CLI's commands share their helpers through cli_common, not
cli), no emulator module loaded by the CLI or the daemon, arrows that point one way
(worker -> push -> qbo, everyone -> model and errors), a push decision that does no I/O,
and a QuickBooks client that runs no SQL."""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "daemon" / "qbsync"
# Libraries that talk to PostgreSQL: a module importing one (or qbsync's SQL) runs SQL.
SQL_LIBRARIES = ("asyncpg", "psycopg")
SQL_MODULES = ("qbsync.queries", "qbsync.db", "qbsync.store")


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.Module) -> set[int]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                    isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
                for stmt in node.body:
                    skip |= {id(n) for n in ast.walk(stmt)}
    return skip


@cache
def _graph() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """qbsync module -> the qbsync modules it imports; and -> the libraries it imports."""
    paths = {_name(p): p for p in PACKAGE.rglob("*.py")}
    modules: dict[str, set[str]] = {}
    libraries: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        deps: set[str] = set()
        libs: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "qbsync":
                    libs.add(target.split(".")[0])
                    continue
                for alias in node.names:  # `from . import fastjson` imports a module
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in paths else target)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "qbsync":
                        deps.add(alias.name)
                    else:
                        libs.add(alias.name.split(".")[0])
        modules[name] = {d for d in deps if d in paths and d != name}
        libraries[name] = libs
    return modules, libraries


def _reachable(start: str) -> set[str]:
    modules, _ = _graph()
    seen: set[str] = set()
    todo = [start]
    while todo:
        for dep in modules[todo.pop()]:
            if dep not in seen:
                seen.add(dep)
                todo.append(dep)
    return seen


def _cycles() -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    modules, _ = _graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for dep in modules[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in on_stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(modules):
        if node not in index:
            visit(node)
    return found


def test_the_scan_sees_the_imports() -> None:
    modules, libraries = _graph()
    assert {"qbsync.model", "qbsync.decide", "qbsync.sync"} <= modules["qbsync.batch"]
    assert "qbsync.fastjson" in modules["qbsync.decide"]  # `from . import fastjson`
    assert "asyncpg" in libraries["qbsync.store"]
    assert "qbsync.realm" not in modules["qbsync.store"]  # under TYPE_CHECKING only


def test_no_import_cycles() -> None:
    assert _cycles() == []


def test_the_cli_and_the_daemon_load_no_emulator_module() -> None:
    """The emulator (the `qbsync[emulator]` extra) is loaded by `qbsync emulator` and
    `qbsync demo` only, when they run or are listed."""
    code = ("import sys, qbsync.cli, qbsync.daemon; "
            "print(sorted(m for m in sys.modules if m.startswith('qbsync.emulator')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("module", ["qbsync.model", "qbsync.errors"])
def test_model_and_errors_import_nothing_of_qbsync(module: str) -> None:
    assert _graph()[0][module] == set()


def test_the_push_decision_does_no_io() -> None:
    reached = _reachable("qbsync.decide") | {"qbsync.decide"}
    assert reached <= {"qbsync.decide", "qbsync.model", "qbsync.errors", "qbsync.refs",
                       "qbsync.fastjson"}
    libraries = _graph()[1]
    assert not any(lib in (*SQL_LIBRARIES, "httpx") for m in reached for lib in libraries[m])


def test_qbo_imports_nothing_that_runs_sql() -> None:
    modules, libraries = _graph()
    for module in (m for m in modules if m.startswith("qbsync.qbo")):
        reached = _reachable(module) | {module}
        assert not reached & set(SQL_MODULES), module
        assert not {lib for m in reached for lib in libraries[m]} & set(SQL_LIBRARIES), module
        # QuickBooks' client knows nothing of the daemon beyond the shared types and errors
        assert {m for m in reached if not m.startswith("qbsync.qbo")} <= {
            "qbsync.errors", "qbsync.fastjson", "qbsync.model"}, module


@pytest.mark.parametrize(("lower", "higher"), [
    # push (decide, sync, batch) -> qbo; never back to the worker, its store or its policies
    (("qbsync.decide", "qbsync.sync", "qbsync.batch"),
     ("qbsync.worker", "qbsync.store", "qbsync.memstore", "qbsync.outcomes", "qbsync.idle",
      "qbsync.backlog", "qbsync.daemon")),
    # the worker's parts know the queue, not the pusher
    (("qbsync.outcomes", "qbsync.idle", "qbsync.backlog", "qbsync.store", "qbsync.memstore"),
     ("qbsync.sync", "qbsync.batch", "qbsync.decide", "qbsync.worker", "qbsync.qbo")),
])
def test_arrows_point_one_way(lower: tuple[str, ...], higher: tuple[str, ...]) -> None:
    for module in lower:
        wrong = {m for m in _reachable(module) if m.startswith(higher)}
        assert wrong == set(), f"{module} imports {sorted(wrong)}"
