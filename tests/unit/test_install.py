"""Installs reproduce: runtime dependencies are bounded below their next major version, the
committed locks pin every package (with hashes) inside those bounds, and the README's
commands and CI install from the locks."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LOCKS = {"demo": ROOT / "requirements" / "demo.txt", "test": ROOT / "requirements" / "test.txt"}
# "name==version \" or "name==version ; marker \" at the start of a line
PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^\s;]+)(?: ;[^\\]*)? \\$", re.MULTILINE)


def runtime_requirements() -> list[Requirement]:
    """The daemon's and the CLI's dependencies, and the emulator extra's (the demo's)."""
    return [Requirement(spec) for spec in PYPROJECT["project"]["dependencies"]
            + PYPROJECT["project"]["optional-dependencies"]["emulator"]]


def extra(name: str) -> list[Requirement]:
    """An extra's requirements, without qbsync's own extras it names (qbsync[emulator])."""
    reqs = [Requirement(s) for s in PYPROJECT["project"]["optional-dependencies"][name]]
    return [r for r in reqs if canonicalize_name(r.name) != "qbsync"]


def pins(lock: Path) -> dict[str, Version]:
    return {canonicalize_name(name): Version(v) for name, v in PIN.findall(lock.read_text())}


@pytest.mark.parametrize("req", runtime_requirements(), ids=lambda r: r.name)
def test_runtime_dependency_is_bounded_below_its_next_major(req: Requirement) -> None:
    """The upper bound is the major version after the locked one (1.0 after a 0.x)."""
    upper = [s for s in req.specifier if s.operator == "<"]
    assert upper, f"{req}: no upper bound"
    assert any(s.operator == ">=" for s in req.specifier), f"{req}: no lower bound"
    locked = pins(LOCKS["demo"])[canonicalize_name(req.name)]
    assert Version(upper[0].version) == Version(str(locked.major + 1)), (
        f"{req}: the lock has {locked}; bound it below {locked.major + 1}"
    )


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_lock_pins_every_package_with_hashes(name: str) -> None:
    text = LOCKS[name].read_text()
    entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 2)[2].strip())
    assert entries
    for entry in entries:
        first = entry.splitlines()[0]
        assert PIN.match(first), f"{name}: not pinned: {first}"
        assert "--hash=sha256:" in entry, f"{name}: no hash for {first}"


@pytest.mark.parametrize("name", sorted(LOCKS))
def test_lock_satisfies_pyproject(name: str) -> None:
    locked = pins(LOCKS[name])
    wanted = runtime_requirements()
    if name == "test":
        wanted += extra("test")
    for req in wanted:
        version = locked.get(canonicalize_name(req.name))
        assert version is not None, f"{name}.txt lacks {req.name}: run requirements/lock"
        assert req.specifier.contains(version, prereleases=True), (
            f"{name}.txt pins {req.name}=={version}, outside {req.specifier}: "
            "run requirements/lock"
        )


def readme_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```sh", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.startswith("python3 -m venv")]


def test_readme_installs_from_the_locks() -> None:
    demo, suite = readme_commands()
    assert "-r requirements/demo.txt" in demo
    assert "-e '.[emulator]'" in demo  # the demo runs the emulator: the extra
    assert demo.endswith("qbsync demo")
    assert "-r requirements/test.txt" in suite
    assert suite.endswith("pytest")


def test_the_emulator_is_an_extra_the_test_extra_includes() -> None:
    """`qbsync run` and the operator commands install without Starlette and uvicorn."""
    runtime = {canonicalize_name(Requirement(s).name)
               for s in PYPROJECT["project"]["dependencies"]}
    assert not runtime & {"starlette", "uvicorn"}
    assert {canonicalize_name(r.name) for r in extra("emulator")} == {"starlette", "uvicorn"}
    assert "qbsync[emulator]" in PYPROJECT["project"]["optional-dependencies"]["test"]


def test_ci_runs_the_readmes_test_command() -> None:
    _, suite = readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert suite in ci.replace(" -q ", " "), ".ci/run and the README's test command differ"
