"""Fixtures for the QBO emulator conformance suite."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from qbsync.emulator import Emulator

from .helpers import Api


@pytest.fixture
def emu() -> Emulator:
    return Emulator(limits=False)  # throttling has its own tests (test_limits.py)


@pytest.fixture
def realm(emu: Emulator) -> str:
    return emu.create_company("Test Shop", custom_txn_numbers=True)


@pytest.fixture
async def http(emu: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    async with emu.client() as client:
        yield client


@pytest.fixture
def api(http: httpx.AsyncClient, emu: Emulator, realm: str) -> Api:
    return Api(http, emu, realm)
