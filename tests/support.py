"""Helpers shared by tests (importable as `tests.support`)."""

from __future__ import annotations

import os

import psycopg

PG_HOST = os.environ.get("QBSYNC_TEST_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("QBSYNC_TEST_PGPORT", "5432"))
PG_USER = os.environ.get("QBSYNC_TEST_PGUSER", "postgres")


def url_for(dbname: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{dbname}"


def conn_url(conn: psycopg.Connection) -> str:
    """URL of the database a test connection points at (for subprocesses, asyncpg)."""
    return url_for(conn.info.dbname)


# Dixis orders that end with an invoice in QuickBooks: delivered ones, except those
# cancelled or refunded before any payment (their invoice, if any, is voided).
INVOICED = ("completed_at IS NOT NULL AND NOT (status IN ('cancelled', 'refunded') "
            "AND paid_at IS NULL)")
