"""Exceptions qbsync raises on purpose; each says what is wrong and what to do."""

from __future__ import annotations


class QbsyncError(Exception):
    """Base class: the message is meant for the operator, as is."""


class MigrationError(QbsyncError):
    """The database schema cannot be brought up to date safely."""


class ConfigError(QbsyncError):
    """A setting is missing or has a wrong value."""


class SchemaError(QbsyncError):
    """The database's qbsync schema is missing, or not the version this qbsync needs.

    ``kind``: missing, unreadable, older, newer or changed (`qbsync.schema`).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class DatabaseUnreachable(QbsyncError):
    """The database refused or did not answer the connection."""


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
