"""`qbsync run`'s wait for a connected company, without a database: a status read that
fails (the database restarting) is a step of the wait, not the end of the daemon."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from qbsync import daemon
from qbsync.startup import Startup


class FlakyPool:
    """Answers the status read with the given results in turn (an exception is raised)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.reads = 0

    async def fetchrow(self, query: str, *args: Any) -> Any:
        self.reads += 1
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer


async def test_a_status_read_that_fails_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(daemon, "STATUS_RECHECK", 0.01)
    connected = {"realm_id": "1", "status": "connected", "api_base_url": "", "company_name": ""}
    pool = FlakyPool(asyncpg.exceptions.AdminShutdownError("terminating connection"),
                     ConnectionRefusedError(111, "Connection refused"),
                     {**connected, "status": "needs_reconnect"},
                     connected)
    startup = Startup()
    row = await asyncio.wait_for(
        daemon._wait_for_connection(pool, "1", asyncio.Event(), startup), 5)  # type: ignore[arg-type]
    assert row == connected
    assert pool.reads == 4
    assert startup.phase == "connection"
