"""Exceptions qbsync raises on purpose; each says what is wrong and what to do."""

from __future__ import annotations

import json
from typing import Any


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


class SchemaError(QbsyncError):
    """The database's qbsync schema is missing, or not the version this qbsync needs.

    ``kind``: missing, unreadable, older, newer or changed (`qbsync.schema`).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class DatabaseUnreachable(QbsyncError):
    """The database refused or did not answer the connection."""


class ReconnectRequired(QbsyncError):
    """The company must be connected again (``qbsync connect``); its rows wait meanwhile."""

    retry_after: float = 300.0  # QuickBooks seconds until a row paused by it is tried again

    def __init__(self, realm_id: str, message: str) -> None:
        super().__init__(message)
        self.realm_id = realm_id


class TokensUnreadable(ReconnectRequired):
    """This daemon's key ring cannot decrypt the stored tokens: the realm is paused here
    (no try burnt) until they decrypt again; another daemon holding the key may push the
    rows meanwhile, hence the short retry."""

    retry_after = 10.0

    def __init__(self, realm_id: str, message: str, key_id: str) -> None:
        super().__init__(realm_id, message)
        self.key_id = key_id


class UnresolvedSetting(QbsyncError):
    """A mapping used a {"$setting": name} the realm has no value for."""

    def __init__(self, message: str, name: str) -> None:
        super().__init__(message)
        self.name = name


# Exit codes of every command, `qbsync run` included (`qbsync --help` lists them).
EXIT_OK = 0
EXIT_FAILURE = 1  # the operation ran and failed
EXIT_USAGE = 2  # a wrong option, argument or setting
EXIT_UNAVAILABLE = 3  # the database could not be reached
EXIT_TIMEOUT = 4  # --wait ran out before the daemon answered
EXIT_SCHEMA = 5  # no qbsync schema, or not the version this qbsync needs
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


def exit_code(exc: BaseException) -> int:
    """The exit code for an error qbsync raised on purpose."""
    if isinstance(exc, SchemaError):
        return EXIT_SCHEMA
    if isinstance(exc, ConfigError):
        return EXIT_USAGE
    if isinstance(exc, DatabaseUnreachable):
        return EXIT_UNAVAILABLE
    return EXIT_FAILURE


def one_line(text: Any) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def describe_db_error(exc: BaseException) -> str:
    """A database error as one line: its message, DETAIL and HINT; never the PL/pgSQL
    CONTEXT lines, nor the LINE/caret excerpt psycopg adds (psycopg's and asyncpg's)."""
    diag = getattr(exc, "diag", None)  # psycopg
    if diag is not None:
        primary = diag.message_primary
        detail, hint = diag.message_detail, diag.message_hint
    else:  # asyncpg errors carry the same as attributes
        primary = getattr(exc, "message", None)
        detail, hint = getattr(exc, "detail", None), getattr(exc, "hint", None)
    parts = [one_line(primary or exc) or type(exc).__name__]
    parts += [f"DETAIL: {one_line(detail)}"] if detail else []
    parts += [f"HINT: {one_line(hint)}"] if hint else []
    return " — ".join(parts)
