"""Real QuickBooks answers kept as fixtures (tests/fixtures/qbo, sources in SOURCES.md) and
a shape comparator: which keys exist at each level and what kind of value each holds.

Values are not compared (a real company's data is not the emulator's), kinds are: ``Id`` and
``SyncToken`` must be strings, money numbers, dates ``YYYY-MM-DD``, timestamps with an offset
(with or without milliseconds), a missing key is not a null. Lists are compared element kind
by element kind: lines by ``DetailType``, report rows by ``group`` (or ``type``), batch items
by what they hold (``Fault``, ``QueryResponse`` or an entity), CDC rows as live objects or
``Deleted`` stubs. The row list of a ``QueryResponse`` is compared whatever entity it holds.
"""

from __future__ import annotations

import fnmatch
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent / "fixtures" / "qbo"
ROWS = "(rows)"  # the entity-named row list of a QueryResponse

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}([+-]\d{2}:\d{2}|Z)$")
_FRACTION = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d+([+-]\d{2}:\d{2}|Z)$")


def load(name: str) -> Any:
    """A JSON fixture, parsed."""
    return json.loads((FIXTURES / name).read_text())


def text(name: str) -> str:
    """A fixture's raw text (the XML ones)."""
    return (FIXTURES / name).read_text()


def kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        if _DATE.match(value):
            return "date"
        if _SECONDS.match(value):
            return "timestamp"
        if _FRACTION.match(value):
            return "timestamp.fraction"
        return "string"
    return type(value).__name__


def _group(element: Any) -> str:
    """Which kind of list element this is (elements are compared kind with kind)."""
    if not isinstance(element, Mapping):
        return kind(element)
    if "DetailType" in element:
        return str(element["DetailType"])
    if "bId" in element:
        return "+".join(sorted(k for k in element if k != "bId")) or "*"
    if element.get("status") == "Deleted":
        return "Deleted"
    if "group" in element:
        return str(element["group"])
    if element.get("type") in ("Section", "Data"):
        return str(element["type"])
    return "*"


def _rows_renamed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """A QueryResponse with its entity-named row list under ROWS."""
    return {ROWS if isinstance(v, list) else k: v for k, v in obj.items()}


def _merged(elements: Iterable[Any]) -> Any:
    """One element standing for several of the same kind: the union of their keys."""
    elements = list(elements)
    if not all(isinstance(e, Mapping) for e in elements):
        return elements[0]
    merged: dict[str, Any] = {}
    for element in elements:
        for key, value in element.items():
            if isinstance(value, list) and isinstance(merged.get(key), list):
                merged[key] = merged[key] + value
            else:
                merged.setdefault(key, value)
    return merged


class Shapes:
    """Compares a real answer with the emulator's. Paths read ``$.Invoice.Line<DetailType>
    .Amount`` (``<kind>`` after a list, ``<*>`` for lists of one kind); patterns are fnmatch
    patterns over them. ``ignore``: left out, each for a stated reason; ``optional``: keys
    real answers sometimes hold and sometimes not; ``values``: paths whose values must be
    equal (fault types and codes)."""

    def __init__(self, ignore: Iterable[str] = (), optional: Iterable[str] = (),
                 values: Iterable[str] = ()) -> None:
        self.ignore = tuple(ignore)
        self.optional = tuple(optional)
        self.values = tuple(values)

    def _matches(self, path: str, patterns: tuple[str, ...]) -> bool:
        return any(fnmatch.fnmatchcase(path, p) for p in patterns)

    def diff(self, real: Any, emulated: Any, path: str = "$") -> list[str]:
        if self._matches(path, self.ignore):
            return []
        real_kind, emu_kind = kind(real), kind(emulated)
        if real_kind != emu_kind:
            return [f"{path}: {real_kind} in the real answer, {emu_kind} in the emulator's"]
        if self._matches(path, self.values) and real != emulated:
            return [f"{path}: {real!r} in the real answer, {emulated!r} in the emulator's"]
        if real_kind == "object":
            if path.endswith(".QueryResponse") or path.endswith(".queryResponse"):
                real, emulated = _rows_renamed(real), _rows_renamed(emulated)
            out: list[str] = []
            for key in sorted(real.keys() | emulated.keys()):
                sub = f"{path}.{key}"
                if self._matches(sub, self.ignore):
                    continue
                if key not in emulated:
                    if not self._matches(sub, self.optional):
                        out.append(f"{sub}: missing from the emulator's answer")
                elif key not in real:
                    if not self._matches(sub, self.optional):
                        out.append(f"{sub}: not in the real answer")
                else:
                    out += self.diff(real[key], emulated[key], sub)
            return out
        if real_kind == "array":
            if not real or not emulated:
                return []  # an empty list says nothing of its elements
            if path.endswith(".QueryResponse"):  # CDC: one object per entity
                real = [_rows_renamed(e) if isinstance(e, Mapping) else e for e in real]
                emulated = [_rows_renamed(e) if isinstance(e, Mapping) else e for e in emulated]
            real_groups: dict[str, list[Any]] = {}
            emu_groups: dict[str, list[Any]] = {}
            for element in real:
                real_groups.setdefault(_group(element), []).append(element)
            for element in emulated:
                emu_groups.setdefault(_group(element), []).append(element)
            out = []
            for group in sorted(real_groups.keys() | emu_groups.keys()):
                sub = f"{path}<{group}>"
                if self._matches(sub, self.ignore):
                    continue
                if group not in emu_groups:
                    out.append(f"{sub}: no such element in the emulator's answer")
                elif group not in real_groups:
                    out.append(f"{sub}: no such element in the real answer")
                else:
                    out += self.diff(_merged(real_groups[group]), _merged(emu_groups[group]),
                                     sub)
            return out
        return []


def xml_tree(body: str | bytes) -> dict[str, Any]:
    """An XML answer as nested dicts: ``@attr`` for attributes, child tags as keys (a list
    when repeated), ``#text`` for leaf text; namespaces dropped."""

    def local(tag: str) -> str:
        return tag.rsplit("}", 1)[-1]

    def walk(node: ET.Element) -> Any:
        out: dict[str, Any] = {f"@{local(k)}": v for k, v in node.attrib.items()}
        children = list(node)
        if not children:
            out["#text"] = (node.text or "").strip()
            return out
        for child in children:
            key = local(child.tag)
            value = walk(child)
            if key in out:
                out[key] = out[key] if isinstance(out[key], list) else [out[key]]
                out[key].append(value)
            else:
                out[key] = value
        return out

    root = ET.fromstring(body)  # noqa: S314 - fixtures and the emulator, not the network
    return {local(root.tag): walk(root)}
