"""Exceptions qbsync raises on purpose; each says what is wrong and what to do."""

from __future__ import annotations


class QbsyncError(Exception):
    """Base class: the message is meant for the operator, as is."""


class MigrationError(QbsyncError):
    """The database schema cannot be brought up to date safely."""


class ConfigError(QbsyncError):
    """A setting is missing or has a wrong value."""
