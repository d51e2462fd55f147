"""Throttling per realm: 10/s, 10 in flight, 500/min, 40 batch/min -> 429 code 3001.

A tiny ``time_scale`` freezes emulated time so nothing depends on the machine's speed; the
windows are then moved with ``advance_time``.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from qbsync.emulator import Emulator
from tests.waiting import eventually

from .helpers import Api, throttle_fault

FROZEN = 1e-6  # one emulated second lasts ~11 real days


@pytest.fixture
def frozen() -> Emulator:
    return Emulator(time_scale=FROZEN)


def assert_throttled(r: httpx.Response) -> None:
    ftype, code, message = throttle_fault(r)
    assert (ftype, code) == ("SERVICE", "3001")
    assert "ThrottleExceeded" in message


async def test_ten_per_second(frozen: Emulator) -> None:
    realm = frozen.create_company()
    async with frozen.client() as http:
        api = Api(http, frozen, realm)
        responses = [await api.get("preferences") for _ in range(11)]
        assert [r.status_code for r in responses] == [200] * 10 + [429]
        assert_throttled(responses[-1])
        # another realm has its own budget
        other = Api(http, frozen, frozen.create_company())
        assert (await other.get("preferences")).status_code == 200
        frozen.advance_time(1.01)
        assert (await api.get("preferences")).status_code == 200
    assert frozen.request_count(status=429, realm=realm) == 1
    assert frozen.request_count("GET", "/preferences", 200, realm) == 11
    # what was asked for, the refused request included (benchmarks check the budget by it)
    summary = frozen.limits.summary()["realms"][realm]  # type: ignore[index]
    assert summary["peak_per_second"] == 11
    assert summary["throttled_by"] == {"per_second": 1}


async def test_five_hundred_per_minute(frozen: Emulator) -> None:
    realm = frozen.create_company()
    async with frozen.client() as http:
        api = Api(http, frozen, realm)
        for _ in range(50):
            for _ in range(10):
                r = await api.get("preferences")
                assert r.status_code == 200
            frozen.advance_time(1.01)
        assert_throttled(await api.get("preferences"))
        frozen.advance_time(5)  # 55.5 s after the first request: still inside the minute
        assert_throttled(await api.get("preferences"))
        frozen.advance_time(60)
        assert (await api.get("preferences")).status_code == 200
    assert frozen.request_count(status=200, realm=realm) == 501
    assert frozen.limits.realms[realm].peak_per_minute == 501


async def test_ten_in_flight(frozen: Emulator) -> None:
    realm = frozen.create_company()
    frozen.set_limits(per_second=1000)
    frozen.set_latency(0.5)
    async with frozen.client() as http:
        api = Api(http, frozen, realm)
        responses = await asyncio.gather(*(api.get("preferences") for _ in range(11)))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * 10 + [429]
    assert_throttled(next(r for r in responses if r.status_code == 429))
    assert frozen.limits.realms[realm].in_flight == 0
    assert frozen.limits.realms[realm].peak_in_flight == 11
    assert frozen.limits.realms[realm].throttled_by == {"in_flight": 1}


async def test_forty_batches_per_minute(frozen: Emulator) -> None:
    realm = frozen.create_company()
    batch = {"BatchItemRequest": [{"bId": "1", "Query": "SELECT COUNT(*) FROM Customer"}]}
    async with frozen.client() as http:
        api = Api(http, frozen, realm)
        for i in range(40):
            r = await api.post("batch", batch)
            assert r.status_code == 200, (i, r.text)
            if i % 10 == 9:
                frozen.advance_time(1.01)
        assert_throttled(await api.post("batch", batch))
        assert (await api.get("preferences")).status_code == 200  # non-batch calls still pass
        frozen.advance_time(61)
        assert (await api.post("batch", batch)).status_code == 200


async def test_limits_can_be_switched_off(frozen: Emulator) -> None:
    realm = frozen.create_company()
    frozen.set_limits(enabled=False)
    async with frozen.client() as http:
        api = Api(http, frozen, realm)
        codes = {(await api.get("preferences")).status_code for _ in range(30)}
    assert codes == {200}


async def test_time_scale_speeds_up_token_expiry() -> None:
    """time_scale=3600: the one-hour access token dies after about one real second."""
    emu = Emulator(time_scale=3600, limits=False)
    realm = emu.create_company()
    async with emu.client() as http:
        api = Api(http, emu, realm)
        assert (await api.get("preferences")).status_code in (200, 401)
        async def refused() -> int | None:  # real time passing at 3600x is what is tested
            status = (await api.get("preferences")).status_code
            return status if status != 200 else None

        assert await eventually(refused, 20, "the token's expiry") == 401
