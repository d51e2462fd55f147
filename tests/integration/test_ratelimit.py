"""The shared rate limiter: two limiters on separate pools (two daemons) sharing one realm.

No timing asserts: the pacing is checked on the slot times the database handed out, the
in-flight limit with a counter, and the emulator (which counts sliding windows on its own,
scaled clock) must answer no 429 at all.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from qbsync.emulator import Emulator
from qbsync.emulator.server import EmulatorServer
from qbsync.qbo import errors as e
from qbsync.qbo.client import QboClient
from qbsync.qbo.ratelimit import DatabaseClock, Permit, RateLimits, RequestLimiter
from qbsync.store import PgPermits
from tests.waiting import eventually

BASE = "http://qbo.emulator"


class StaticTokens:
    def __init__(self, token: str) -> None:
        self.token = token

    async def access_token(self) -> str:
        return self.token

    async def refresh(self, rejected: str) -> str:
        raise AssertionError("no refresh expected")


@pytest.fixture
async def pools(db_url: str) -> AsyncIterator[tuple[asyncpg.Pool, asyncpg.Pool]]:
    a = await asyncpg.create_pool(db_url, min_size=1, max_size=12)
    b = await asyncpg.create_pool(db_url, min_size=1, max_size=12)
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


def max_in_window(times: list[datetime], window: timedelta) -> int:
    """Largest number of instants inside any half-open window (t - window, t]."""
    ts = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(ts):
        while ts[lo] <= t - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


class Concurrency:
    def __init__(self) -> None:
        self.now = 0
        self.peak = 0

    def __enter__(self) -> None:
        self.now += 1
        self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        self.now -= 1


async def test_pacing_across_two_limiters_keeps_every_window(
        pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    limits = RateLimits(per_minute=60, per_second=5, in_flight=3, time_scale=60)
    a = RequestLimiter(PgPermits(pools[0]), "r1", holder="a")
    b = RequestLimiter(PgPermits(pools[1]), "r1", holder="b")
    await a.configure(limits)
    await b.configure(limits)
    slots: list[datetime] = []
    busy = Concurrency()

    async def worker(limiter: RequestLimiter, n: int) -> None:
        for _ in range(n):
            async with limiter.permit() as permit:
                with busy:
                    slots.append(permit.starts_at)
                    await asyncio.sleep(0.005)  # the request, held in flight

    await asyncio.gather(*(worker(lim, 15) for lim in (a, b) for _ in range(4)))
    assert len(slots) == 120
    assert a.granted + b.granted == 120
    assert a.granted > 0
    assert b.granted > 0
    # 60/minute with minute = 1 s; 5/second with second = 1/60 s
    assert max_in_window(slots, timedelta(seconds=1)) <= 60
    assert max_in_window(slots, timedelta(seconds=1 / 60)) <= 5
    assert busy.peak <= 3
    # and the budget is used: back-to-back slots are exactly one spacing apart
    spacing = timedelta(seconds=(1 + max(limits.safety, limits.jitter)) / 60)  # minute binds
    gaps = sorted(y - x for x, y in zip(sorted(slots), sorted(slots)[1:], strict=False))
    assert abs(gaps[len(gaps) // 2] - spacing) < timedelta(milliseconds=0.5)
    status = await a.status()
    assert status is not None
    # the database also counts the grants a stalled process gave back to take a new slot
    retaken = a.late_retakes + b.late_retakes
    assert (status["granted"], status["in_flight"]) == (120 + retaken, 0)


async def test_emulator_sees_no_429_at_full_pace(
        pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    # Emulated minute = 3 real seconds; 100/minute so 140 requests cross the minute limit
    # (sent unpaced, they get 429s: see the control case at the end).
    emu = Emulator(time_scale=20)
    emu.set_limits(per_minute=100, per_second=4, in_flight=10, batch_per_minute=40)
    realm = emu.create_company("Paced")
    limits = RateLimits(per_minute=100, per_second=4, in_flight=10, time_scale=20,
                        safety=0.05)
    token = StaticTokens(emu.issue_tokens(realm)["access_token"])
    async with emu.client(BASE) as http:
        clients = []
        for n, pool in enumerate(pools):
            limiter = RequestLimiter(PgPermits(pool), realm, holder=f"p{n}")
            await limiter.configure(limits)
            clients.append(QboClient(http, base_url=BASE, realm_id=realm, tokens=token,
                                     limiter=limiter))

        async def worker(client: QboClient, n: int) -> None:
            for _ in range(n):
                await client.company_info()

        await asyncio.gather(*(worker(c, 14) for c in clients for _ in range(5)))
        assert emu.request_count(status=429) == 0
        assert emu.request_count(route="/companyinfo", status=200) == 140

        # Control: the same load without the limiter is throttled by the emulator.
        emu.limits.reset()
        bare = QboClient(http, base_url=BASE, realm_id=realm, tokens=token)
        results = await asyncio.gather(*(bare.company_info() for _ in range(110)),
                                       return_exceptions=True)
        assert any(isinstance(r, e.Throttled) for r in results)


async def test_in_flight_limit_shared_by_two_processes(
        pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    emu = Emulator()
    emu.set_limits(per_minute=100000, per_second=100000, in_flight=3)
    emu.set_latency(0.03)
    realm = emu.create_company("Concurrent")
    limits = RateLimits(per_minute=None, per_second=None, in_flight=3, batch_per_minute=None)
    token = StaticTokens(emu.issue_tokens(realm)["access_token"])
    busy = Concurrency()
    async with emu.client(BASE) as http:
        limiters = [RequestLimiter(PgPermits(pool), realm) for pool in pools]
        for limiter in limiters:
            await limiter.configure(limits)

        async def worker(limiter: RequestLimiter) -> None:
            for _ in range(4):
                async with limiter.permit():
                    with busy:
                        await http.get(f"/v3/company/{realm}/companyinfo/{realm}",
                                       headers={"Authorization": f"Bearer {token.token}"})

        await asyncio.gather(*(worker(lim) for lim in limiters for _ in range(6)))
    assert busy.peak <= 3
    assert emu.request_count(status=429) == 0
    assert emu.request_count(status=200) == 48


async def test_throttled_pauses_every_process(pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    emu = Emulator()
    realm = emu.create_company("Throttled")
    a = RequestLimiter(PgPermits(pools[0]), realm)
    b = RequestLimiter(PgPermits(pools[1]), realm)
    token = StaticTokens(emu.issue_tokens(realm)["access_token"])
    async with emu.client(BASE) as http:
        client = QboClient(http, base_url=BASE, realm_id=realm, tokens=token, limiter=a)
        emu.inject_fault("429")
        with pytest.raises(e.Throttled) as exc:
            await client.company_info()
    assert exc.value.retry_after == 60.0
    # The other process is refused for about a minute.
    row = await pools[1].fetchrow("SELECT * FROM qbsync.take_permit($1)", realm)
    assert row is not None
    assert row["permit_id"] is None
    assert row["wait"] > timedelta(seconds=50)
    status = await b.status()
    assert status is not None
    assert status["paused"]
    assert status["throttles"] == 1


async def test_waiters_resume_after_the_pause(pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    # time_scale 600: a 60 s QuickBooks pause lasts 0.1 s here.
    a = RequestLimiter(PgPermits(pools[0]), "r2", time_scale=600)
    b = RequestLimiter(PgPermits(pools[1]), "r2", time_scale=600)
    await a.throttled(60)
    async with b.permit() as permit:
        assert permit.permit_id is not None
    assert b.refused >= 1
    assert b.granted == 1


async def test_client_takes_batch_permits(pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    emu = Emulator()
    realm = emu.create_company("Batch")
    limiter = RequestLimiter(PgPermits(pools[0]), realm)
    token = StaticTokens(emu.issue_tokens(realm)["access_token"])
    async with emu.client(BASE) as http:
        client = QboClient(http, base_url=BASE, realm_id=realm, tokens=token, limiter=limiter)
        await client.batch([{"Query": "SELECT * FROM Item"}], request_id="b-1")
        await client.company_info()
    kinds = await pools[0].fetchrow(
        "SELECT granted, next_batch > '-infinity' AS batch_taken FROM qbsync.rate_state "
        "WHERE realm_id = $1", realm)
    assert kinds is not None
    assert (kinds["granted"], kinds["batch_taken"]) == (2, True)
    assert limiter.granted == 2


async def test_batch_budget_does_not_hold_up_requests(
        pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    pool = pools[0]
    await pool.execute("SELECT qbsync.set_rate_limits('r3', NULL, NULL, NULL, 2)")

    async def take(kind: str) -> Any:
        return await pool.fetchrow("SELECT * FROM qbsync.take_permit('r3', $1)", kind)

    first = await take("batch")
    assert first["permit_id"] is not None
    second = await take("batch")
    assert second["permit_id"] is None
    # two batches per minute (plus the 1 % slack): the next one in 30.3 s
    assert timedelta(seconds=25) < second["wait"] <= timedelta(seconds=30.3)
    plain = await take("request")
    assert plain["permit_id"] is not None
    assert plain["wait"] == timedelta(0)
    with pytest.raises(asyncpg.InvalidParameterValueError):
        await take("bogus")


async def test_permits_of_a_dead_process_expire(pools: tuple[asyncpg.Pool, asyncpg.Pool]
                                                ) -> None:
    pool = pools[0]
    await pool.execute("SELECT qbsync.set_rate_limits('r4', NULL, NULL, 1, NULL)")
    held = await pool.fetchrow(
        "SELECT * FROM qbsync.take_permit('r4', 'request', 'dead', '50 ms')")
    assert held["permit_id"] is not None  # never returned: its holder "died"
    refused = await pool.fetchrow("SELECT * FROM qbsync.take_permit('r4')")
    assert refused["permit_id"] is None

    async def expired() -> bool:  # by the database's clock, which take_permit reads
        return bool(await pool.fetchval(
            "SELECT bool_and(expires_at <= clock_timestamp()) FROM qbsync.rate_permits"
            " WHERE realm_id = 'r4'"))

    await eventually(expired, 30, "the dead holder's permit expired", every=0.01)
    granted = await pool.fetchrow("SELECT * FROM qbsync.take_permit('r4')")
    assert granted["permit_id"] is not None
    assert await pool.fetchval("SELECT qbsync.return_permit($1)", granted["permit_id"])
    assert not await pool.fetchval("SELECT qbsync.return_permit($1)", granted["permit_id"])


async def test_cancelled_waiter_returns_its_permit(pools: tuple[asyncpg.Pool, asyncpg.Pool]
                                                   ) -> None:
    limiter = RequestLimiter(PgPermits(pools[0]), "r5")
    await limiter.configure(RateLimits(per_minute=1, per_second=None, in_flight=5))
    async with limiter.permit():
        pass
    # the next slot is a minute away: the waiter holds a reserved permit while it sleeps
    task = asyncio.create_task(limiter.permit().__aenter__())

    async def reserved() -> bool:
        return bool(await pools[0].fetchval("SELECT count(*) FROM qbsync.rate_permits "
                                            "WHERE realm_id = 'r5'"))

    await eventually(reserved, 30, "the waiter's reserved permit", every=0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await limiter.drain()  # a take cancelled in flight is given back in the background
    assert await pools[0].fetchval(
        "SELECT count(*) FROM qbsync.rate_permits WHERE realm_id = 'r5'") == 0


async def test_batches_have_a_lane_of_their_own(pools: tuple[asyncpg.Pool, asyncpg.Pool]
                                                ) -> None:
    pool = pools[0]
    # 60 requests and 6 batches a minute: plain requests 60.6 s / 60 apart, batches
    # 60.6 s / 6 = 10.1 s apart (1 % slack)
    await pool.execute("SELECT qbsync.set_rate_limits('r6', 60, NULL, NULL, 6)")

    async def take(kind: str) -> Any:
        return await pool.fetchrow("SELECT * FROM qbsync.take_permit('r6', $1)", kind)

    plain = [await take("request") for _ in range(5)]
    assert plain[-1]["wait"] > timedelta(seconds=3.9)  # queued about 4 spacings ahead
    # A batch does not queue behind them: its slot is now.
    batch = await take("batch")
    assert batch["permit_id"] is not None
    assert batch["wait"] < timedelta(seconds=0.5)
    # From now on plain requests leave the batches their share: 54 a minute.
    after = [await take("request") for _ in range(2)]
    gap = after[1]["starts_at"] - after[0]["starts_at"]
    assert timedelta(seconds=60.6 / 54 - 0.01) < gap < timedelta(seconds=60.6 / 54 + 0.01)
    # The next batch is 10.1 s away: refused, to come back a second before its slot.
    refused = await take("batch")
    assert refused["permit_id"] is None
    assert timedelta(seconds=8.5) < refused["wait"] <= timedelta(seconds=9.2)


class ReturnFailsOnce:
    """A pool whose first permit return meets a database restart."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.failed = 0

    async def fetchrow(self, *args: Any) -> Any:
        return await self.pool.fetchrow(*args)

    def is_closing(self) -> bool:
        return self.pool.is_closing()

    async def execute(self, query: str, *args: Any) -> Any:
        if "return_permit" in query and not self.failed:
            self.failed += 1
            raise asyncpg.exceptions.CannotConnectNowError("the database system is starting up")
        return await self.pool.execute(query, *args)


async def test_permit_not_returned_in_a_restart_is_returned_after(
        pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    flaky = ReturnFailsOnce(pools[0])
    limiter = RequestLimiter(PgPermits(flaky), "r6")  # type: ignore[arg-type]
    async with limiter.permit():
        pass
    assert flaky.failed == 1

    async def returned() -> bool:  # in the background, not left for its 3-minute hold
        return await pools[0].fetchval(
            "SELECT count(*) FROM qbsync.rate_permits WHERE realm_id = 'r6'") == 0

    await eventually(returned, 30, "the permit returned after the restart")


async def test_restarted_process_frees_the_permits_its_killed_self_held(
        pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    pool = pools[0]
    for holder in ("daemon-1", "daemon-1", "daemon-2"):  # never returned: killed
        await pool.fetchrow("SELECT * FROM qbsync.take_permit('r7', 'request', $1)", holder)
    assert await RequestLimiter(PgPermits(pool), "r7", holder="daemon-1").free_abandoned() == 2
    left = await pool.fetch("SELECT holder FROM qbsync.rate_permits WHERE realm_id = 'r7'")
    assert [r["holder"] for r in left] == ["daemon-2"]  # another process's are its own


def test_database_clock_keeps_the_tightest_recent_bracket() -> None:
    clock = DatabaseClock()
    assert clock.offset() is None
    # database time 1000.0 seen at monotonic 10.0 .. 10.2 (slow answer), then 100.0 seen
    # at monotonic 9.999 .. 10.001 (fast): the fast one says the offset is 990
    clock.sample(1000.1, 10.0, 10.2)
    clock.sample(1000.0, 9.999, 10.001)
    clock.sample(1000.5, 10.3, 10.6)  # an answer read late by a busy loop
    assert clock.offset() == pytest.approx(990.0)
    assert clock.local(1001.0) == pytest.approx(11.0)
    # samples older than a minute (by the newest) no longer count: the fast one is gone
    clock.sample(1100.0, 109.98, 110.04)
    assert clock.offset() == pytest.approx(989.99)


async def test_late_permit_is_exchanged_before_sending(
        pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    pool = pools[0]
    limiter = RequestLimiter(PgPermits(pool), "r8", holder="late")
    await limiter.configure(RateLimits(per_minute=6000, per_second=None, in_flight=5,
                                       batch_per_minute=None))
    async with limiter.permit() as permit:
        first = permit.permit_id
        limiter.late = 3600.0  # on time, whatever this machine's load: nothing happens
        await limiter.sending(permit)
        assert (permit.permit_id, permit.retakes, limiter.late_retakes) == (first, 0, 0)
        limiter.late = 0.025
        permit.slot -= 1.0  # as if the process had stalled a second past its slot
        await limiter.sending(permit)
        assert permit.permit_id != first
        assert permit.retakes >= 1
        assert limiter.late_retakes >= 1
        held = {r["permit_id"] for r in await pool.fetch(
            "SELECT permit_id FROM qbsync.rate_permits WHERE realm_id = 'r8'")}
        assert held == {permit.permit_id}  # the late one was given back
    assert await pool.fetchval(
        "SELECT count(*) FROM qbsync.rate_permits WHERE realm_id = 'r8'") == 0


class CountingLimiter(RequestLimiter):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.checks = 0

    async def sending(self, permit: Permit) -> None:
        self.checks += 1
        await super().sending(permit)


async def test_client_checks_the_slot_right_before_the_socket_write(
        pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    emu = Emulator()
    realm = emu.create_company("Traced")
    token = StaticTokens(emu.issue_tokens(realm)["access_token"])
    limiter = CountingLimiter(PgPermits(pools[0]), realm)
    with EmulatorServer(emu) as srv:
        async with httpx.AsyncClient() as http:  # a real socket: httpcore traces the write
            client = QboClient(http, base_url=srv.base_url, realm_id=realm, tokens=token,
                               limiter=limiter)
            await client.company_info()
    assert limiter.checks == 2  # before handing it to httpx, and from the trace hook
    assert limiter.granted == 1


async def test_a_429_widens_the_second_window_for_a_while(
        pools: tuple[asyncpg.Pool, asyncpg.Pool]) -> None:
    pool = pools[0]
    # 10 a second, nothing else: permits 1.025 s / 10 apart (25 ms slack)
    await pool.execute("SELECT qbsync.set_rate_limits('r9', NULL, 10, NULL, NULL)")

    async def gap() -> timedelta:
        a = await pool.fetchrow("SELECT * FROM qbsync.take_permit('r9')")
        b = await pool.fetchrow("SELECT * FROM qbsync.take_permit('r9')")
        for p in (a, b):
            await pool.execute("SELECT qbsync.return_permit($1)", p["permit_id"])
        result: timedelta = b["starts_at"] - a["starts_at"]
        return result

    def near(value: timedelta, seconds: float) -> bool:
        return abs(value.total_seconds() - seconds) < 0.002

    assert near(await gap(), 0.1025)
    await pool.execute("SELECT qbsync.throttled('r9', '0 s')")
    await pool.execute("SELECT qbsync.throttled('r9', '0 s')")  # the same burst: once
    extra = await pool.fetchval(
        "SELECT extra_second_slack FROM qbsync.rate_limit_status WHERE realm_id = 'r9'")
    assert extra == pytest.approx(0.1, abs=0.001)
    assert near(await gap(), 0.1125)  # a tenth of the window more, over 10 permits
    # it fades out over ten minute windows: five minutes later half is left
    await pool.execute("UPDATE qbsync.rate_state SET last_throttled_at = "
                       "last_throttled_at - interval '5 minutes' WHERE realm_id = 'r9'")
    assert near(await gap(), 0.1075)
    # and each 429 after a second window adds a tenth more, up to half the window
    for _ in range(8):
        await pool.execute("UPDATE qbsync.rate_state SET last_throttled_at = "
                           "last_throttled_at - interval '2 s' WHERE realm_id = 'r9'")
        await pool.execute("SELECT qbsync.throttled('r9', '0 s')")
    extra = await pool.fetchval(
        "SELECT extra_second_slack FROM qbsync.rate_limit_status WHERE realm_id = 'r9'")
    assert 0.49 < extra <= 0.5
    status = await pool.fetchrow(
        "SELECT throttles, paused FROM qbsync.rate_limit_status WHERE realm_id = 'r9'")
    assert (status["throttles"], status["paused"]) == (10, False)
