"""SECURITY.md backs what it says with tests: every test it names exists, and every claim
(a bullet) names one, unless it is marked Open (true today, not a protection yet) or is
advice to the reader."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "SECURITY.md"
# `dir/file.py::test_name`, or `::test_name` for another test of the file named before
REF = re.compile(r"`(?:([a-z_]+/[a-z_]+\.py))?::(test_[a-z0-9_]+)`")


def _references() -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    current = ""
    for file, name in REF.findall(DOC.read_text(encoding="utf-8")):
        current = file or current
        assert current, f"::{name} comes before any file is named"
        found.append((current, name))
    return found


def test_every_named_test_exists() -> None:
    refs = _references()
    assert len(refs) > 40
    missing = [f"{file}::{name}" for file, name in refs
               if not re.search(rf"^(async )?def {name}\(",
                                (ROOT / "tests" / file).read_text(encoding="utf-8"), re.M)]
    assert missing == []


def _bullets() -> list[str]:
    """The claims: bullets, joined with their continuation lines, except the advice."""
    bullets: list[str] = []
    advice = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("What follows for you"):
            advice = True
        elif line.startswith("#") or (line and not line.startswith((" ", "*"))):
            advice = False
        if line.startswith("* "):
            bullets.append("" if advice else line)
        elif line.startswith("  ") and bullets and bullets[-1]:
            bullets[-1] += " " + line.strip()
    return [b for b in bullets if b]


def test_every_claim_names_a_test_or_is_marked_open() -> None:
    bullets = _bullets()
    assert len(bullets) > 20
    bare = [b for b in bullets if not REF.search(b) and "**Open**" not in b]
    assert bare == []
