"""Answers are bounded: a 300 MB HTTP 200 answer is not read whole into memory. Reading
stops at max_response_bytes, the attempt fails as retryable naming the endpoint and the cap,
and a daemon pushing through such answers loses nothing."""

from __future__ import annotations

import asyncio
import json

import asyncpg
import httpx
import psycopg
import pytest

from qbsync import daemon
from qbsync.emulator import Emulator
from qbsync.qbo import oauth
from qbsync.qbo.client import QboClient
from qbsync.qbo.endpoints import EndpointPolicy, http_client
from qbsync.qbo.errors import TransientError, UnknownOutcome
from tests.daemon_support import EMULATOR_URL, Shop, connect_quick_retry_shop, drained
from tests.security.recording import Flood, Router
from tests.support import INVOICED, conn_url

MB = 1024 * 1024
CAP = 1 * MB
HUGE = 300 * MB
LOCAL = EndpointPolicy.of(allow_local=True)


class FixedToken:
    def __init__(self, token: str = "access-token") -> None:  # noqa: S107
        self.token = token

    async def access_token(self) -> str:
        return self.token

    async def refresh(self, rejected: str) -> str:
        return self.token


def read_at_most(flood: Flood) -> None:
    """What was produced of the answer stops near the cap (a chunk past it, and what the
    transport may have buffered), not at its 300 MB."""
    assert flood.produced <= CAP + 4 * flood.chunk, flood.produced


@pytest.mark.parametrize("declared", [False, True])
async def test_an_oversized_answer_is_cut_off_as_retryable(declared: bool) -> None:
    emu = Emulator(limits=False)
    realm = emu.create_company("Dixis Α.Ε.")
    router = Router(emu)
    flood = Flood(HUGE)
    router.answers["/query"] = lambda request: flood.answer(declare=declared)
    token = emu.issue_tokens(realm)["access_token"]
    async with http_client(LOCAL, transport=router) as http:
        client = QboClient(http, base_url=EMULATOR_URL, realm_id=realm,
                           tokens=FixedToken(token), max_response_bytes=CAP)
        with pytest.raises(TransientError) as info:
            await client.query("SELECT * FROM Customer")
        # the client goes on working: the connection of the cut answer was closed, not reused
        assert (await client.company_info())["CompanyName"] == "Dixis Α.Ε."
    error = info.value
    assert error.retryable
    assert not isinstance(error, UnknownOutcome)  # a read: nothing may have been applied
    assert f"GET {EMULATOR_URL}/v3/company/{realm}/query" in str(error)
    assert f"max_response_bytes ({CAP}" in str(error)
    if declared:
        assert flood.produced == 0  # the declared length alone refuses it
    read_at_most(flood)


async def test_an_oversized_answer_to_a_write_is_an_unknown_outcome() -> None:
    """QuickBooks may have applied the write whose answer was cut off: the next try looks
    the object up before creating it."""
    emu = Emulator(limits=False)
    realm = emu.create_company("Dixis Α.Ε.")
    router = Router(emu)
    flood = Flood(HUGE)
    router.answers["/customer"] = lambda request: flood.answer()
    async with http_client(LOCAL, transport=router) as http:
        client = QboClient(http, base_url=EMULATOR_URL, realm_id=realm, tokens=FixedToken(),
                           max_response_bytes=CAP)
        with pytest.raises(UnknownOutcome, match="max_response_bytes") as info:
            await client.create("Customer", {"DisplayName": "Νίκος"}, request_id="r1")
    assert info.value.retryable
    assert f"POST {EMULATOR_URL}/v3/company/{realm}/customer" in str(info.value)
    read_at_most(flood)


async def test_an_oversized_token_answer_is_cut_off() -> None:
    """The token endpoint too; a refresh whose answer was lost may have rotated the refresh
    token: an unknown outcome, retried, never a wiped grant."""
    router = Router(Emulator(limits=False))
    flood = Flood(HUGE)
    router.answers["/tokens/bearer"] = lambda request: flood.answer()
    async with http_client(LOCAL, transport=router) as http:
        with pytest.raises(UnknownOutcome, match=r"token endpoint: .*max_response_bytes"):
            await oauth.refresh(http, oauth.ClientCredentials("id", "secret"), "refresh",
                                endpoints=oauth.OAuthEndpoints(
                                    "", f"{EMULATOR_URL}/oauth2/v1/tokens/bearer", ""),
                                max_bytes=CAP)
    read_at_most(flood)


async def test_daemon_pushes_through_oversized_answers(dixis_db: psycopg.Connection) -> None:
    """The first invoice creates get a 300 MB answer (and are not applied): each is a
    retried attempt naming the endpoint and the cap; the daemon keeps running and every
    order ends with exactly one invoice."""
    emu = Emulator(limits=False)
    shop: Shop = await connect_quick_retry_shop(conn_url(dixis_db), emu)
    router = Router(emu)
    floods: list[Flood] = []
    flooded: set[str] = set()

    def oversized(request: httpx.Request) -> httpx.Response | None:
        """The first create of three invoices (one each: their next try goes through)."""
        number = json.loads(request.content or b"{}").get("DocNumber") \
            if request.method == "POST" else None
        if not number or number in flooded or len(floods) >= 3:
            return None  # the emulator answers
        flooded.add(number)
        floods.append(Flood(HUGE))
        return floods[-1].answer()

    router.answers["/invoice"] = oversized
    dixis_db.execute("SELECT dixis.generate(6)")
    dixis_db.commit()
    settings = shop.settings.model_copy(update={"max_response_bytes": CAP,
                                                "batch_threshold": 100_000,
                                                "drift_interval": 0})
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(settings, stop=stop, transport=router))
    try:
        await drained(shop.url)
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert len(floods) == 3
    for flood in floods:
        read_at_most(flood)
    conn = await asyncpg.connect(shop.url)
    try:
        invoiced = await conn.fetchval(f"SELECT count(*) FROM dixis.orders WHERE {INVOICED}")
        retries = await conn.fetch(
            "SELECT error_message FROM qbsync.integration_logs WHERE status = 'retry'")
        dead = await conn.fetchval("SELECT count(*) FROM qbsync.outbox WHERE state = 'dead'")
    finally:
        await conn.close()
    numbers = [i["DocNumber"] for i in shop.invoices()]
    assert len(numbers) == len(set(numbers)) == invoiced
    assert dead == 0
    cut = [r["error_message"] for r in retries if "max_response_bytes" in r["error_message"]]
    assert len(cut) == 3
    assert all(f"/v3/company/{shop.realm_id}/invoice" in m and f"({CAP} bytes)" in m
               for m in cut)
