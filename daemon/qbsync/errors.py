"""Exceptions qbsync raises on purpose; each says what is wrong and what to do."""

from __future__ import annotations

import json


class QbsyncError(Exception):
    """Base class: the message is meant for the operator, as is."""


class MigrationError(QbsyncError):
    """The database schema cannot be brought up to date safely."""


class ConfigError(QbsyncError):
    """A setting is missing or has a wrong value."""


class MalformedOutput(QbsyncError):
    """A mapping's output that qbsync cannot send as it is (a reference of the wrong shape,
    a number QuickBooks cannot take exactly): where in the body, and what is wrong. Raised
    with the innermost key first; each enclosing level adds its own (`inside`)."""

    def __init__(self, problem: str, *parts: str | int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.parts = list(parts)  # innermost first

    def inside(self, part: str | int) -> MalformedOutput:
        self.parts.append(part)
        return self

    @property
    def path(self) -> str:
        """`Line[2].SalesItemLineDetail.ItemRef` (indexes from 0, as in jsonb paths)."""
        out = ""
        for part in reversed(self.parts):
            if isinstance(part, int):
                out += f"[{part}]"
            elif part.isidentifier() or (part[:1] == "$" and part[1:].isidentifier()):
                out += f".{part}" if out else part
            else:
                out += f"[{json.dumps(part, ensure_ascii=False)}]"
        return out

    def __str__(self) -> str:
        return f"at {self.path}: {self.problem}" if self.parts else self.problem
