"""Fixtures shared by the integration tests that run the daemon against the emulator."""

from __future__ import annotations

import psycopg
import pytest

from qbsync.emulator import Emulator
from tests.daemon_support import Shop, connect_quick_retry_shop
from tests.support import conn_url


@pytest.fixture
def emu() -> Emulator:
    """An emulated QuickBooks with its limits off."""
    return Emulator(limits=False)


@pytest.fixture
async def shop(dixis_db: psycopg.Connection, emu: Emulator) -> Shop:
    """The Dixis sample shop connected to `emu`. Retries come back at once, so that fault
    tests need not wait out real backoffs. (Modules that need another shop define their
    own `shop`, which takes precedence.)"""
    return await connect_quick_retry_shop(conn_url(dixis_db), emu)
