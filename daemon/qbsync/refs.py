"""Symbolic references in mapping output.

`{"$ref": ["customer", "42"]}` names a shop row; it becomes `{"value": "<QuickBooks Id>"}`.
`{"$id": ["order", "42"]}` names one too and becomes the plain Id string (for fields such as
`LinkedTxn.TxnId` that take an Id, not a reference object).
`{"$setting": "tax_code:24"}` names a per-realm configuration value (qbsync.realm_settings);
it becomes that stored value. Other keys beside `$ref` (e.g. "name") are kept.
"""

from __future__ import annotations

from typing import Any

from .errors import QbsyncError

Ref = tuple[str, str]


class UnresolvedSetting(QbsyncError):
    """A mapping used a {"$setting": name} the realm has no value for."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


def collect(body: Any) -> tuple[set[Ref], set[str]]:
    """All shop references and setting names used anywhere in a mapping's output."""
    refs: set[Ref] = set()
    settings: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node or "$id" in node:
                ref = node.get("$ref", node.get("$id"))
                if (
                    not isinstance(ref, list)
                    or len(ref) != 2
                    or not all(isinstance(part, str | int) for part in ref)
                ):
                    raise QbsyncError(f'malformed reference {ref!r}: expected ["entity", "key"]')
                refs.add((str(ref[0]), str(ref[1])))
            elif "$setting" in node:
                settings.add(str(node["$setting"]))
            else:
                for value in node.values():
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(body)
    return refs, settings


def substitute(
    body: Any, ids: dict[Ref, str], settings: dict[str, Any], *, realm_id: str = ""
) -> Any:
    """A copy of body with every reference replaced; ids must cover every $ref."""

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "$id" in node:
                return ids[(str(node["$id"][0]), str(node["$id"][1]))]
            if "$ref" in node:
                ref = (str(node["$ref"][0]), str(node["$ref"][1]))
                extra = {k: v for k, v in node.items() if k != "$ref"}
                return {"value": ids[ref], **extra}
            if "$setting" in node:
                name = str(node["$setting"])
                if name not in settings:
                    raise UnresolvedSetting(
                        f'setting "{name}" has no value for QuickBooks company {realm_id}: '
                        "look it up again (qbsync settings --refresh) or set it with "
                        f"""SELECT qbsync.override_setting ('{name}', '{{"value": "<Id>"}}')""",
                        name)
                return settings[name]
            return {k: walk(v) for k, v in node.items() if not k.startswith("$")}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(body)
