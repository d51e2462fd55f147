"""Chaos: orders keep flowing while everything around the daemon fails, and at the end every
order has exactly one invoice with the right total, every customer and item is in QuickBooks
once, nothing is lost, no try is burnt on a 429 or a 401, no row went dead that did not
fail every try it was given (a kill costs no try) and the realm's budget held. The shop's
own tries (orders, customers, products: 3) are used.

    python bench/chaos.py --seed 1                       # full: 5,000 orders, 50 kills (~10 min)
    python bench/chaos.py --short --seed 7               # under a minute; what the tests run
    python bench/chaos.py --seed 1 --json out.json --markdown

The rig, all of it the run's own: a throwaway PostgreSQL cluster (initdb in a temp folder,
never the machine's shared server) holding the Dixis shop (orders, customers, products;
payments and refunds untracked, as in the other benchmarks), the emulator over a socket in
this process with QuickBooks' real limits (500 requests/min, 10/s, 10 in flight, 40
batches/min per realm) on a clock running --time-scale times faster, and two `qbsync run`
daemons sharing the realm, with the same time scale for their own rate limiter.

The plan, drawn from --seed before anything starts (printed in --json): over the chaos span
the shop commits the orders in waves (one transaction each; some waves add new products or
change products already in QuickBooks), the daemons are killed with SIGKILL at random
moments (a random one of the two each time) and restarted, and the emulator is told to
fail: 500/503 answers, gateway timeouts, hangs past the daemon's HTTP timeout, dropped
connections after a write was applied, 429 storms, an injected 401, all access tokens
expired (the refresh that follows rotates the refresh token; the old one is then refused),
and PostgreSQL is stopped and started once. A daemon that exits by itself is restarted, as
systemd would. Then the run waits for the queue to drain, stops both daemons with SIGTERM
and checks. A hard deadline bounds it all: past it the run stops and reports the failure.

Exit status 0 when every check passes, 1 when one fails.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))  # tests.process_support: the daemon as a subprocess
from tests.daemon_support import connect_shop  # noqa: E402
from tests.process_support import DaemonProcess, daemon_env, kill_all  # noqa: E402
from tests.support import INVOICED  # noqa: E402

from common import command_line, machine_info, markdown_table, report_out, text_table  # noqa: E402
from qbsync import shop as dixis  # noqa: E402
from qbsync.emulator import Emulator  # noqa: E402
from qbsync.emulator.server import EmulatorServer  # noqa: E402
from qbsync.migrate import migrate  # noqa: E402
from qbsync.pgcluster import TempCluster  # noqa: E402
from qbsync.qbo.errors import _AUTH_CODES  # noqa: E402

API = "/v3/company/"  # faults hit the Accounting API only, never the OAuth endpoints
HTTP_TIMEOUT = 5.0    # the daemons' QBSYNC_HTTP_TIMEOUT: a hang longer than this times out


# -- the queue ------------------------------------------------------------------------------

def drained(conn: psycopg.Connection) -> bool:
    """Nothing left to push: no captured change waiting to be collected, no outbox row but
    dead ones (qbsync.backlog())."""
    row = conn.execute("SELECT qbsync.backlog() = 0").fetchone()
    return bool(row and row[0])


# -- the plan -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    orders: int
    waves: int
    kills: int
    span: float           # real seconds over which waves, kills and faults are spread
    time_scale: float
    deadline: float       # real seconds for the whole run, setup included
    new_products: int     # added to the catalogue during the run, in a few waves
    changed_products: int  # products already in QuickBooks changed during the run
    pg_down: float        # seconds PostgreSQL stays stopped
    storm: tuple[float, float]  # real seconds a 429 storm lasts: at least, at most
    # fault kind -> how many rules of it the run injects
    faults: dict[str, int] = field(default_factory=dict)


FULL = Profile(orders=5000, waves=20, kills=50, span=150.0, time_scale=6.0, deadline=900.0,
               new_products=40, changed_products=60, pg_down=3.0, storm=(4.0, 10.0),
               faults={"500": 4, "503": 3, "gateway-timeout": 3, "hang": 2, "hang-drop": 2,
                       "drop": 5, "429-storm": 3, "401": 1, "expire-tokens": 2})
SHORT = Profile(orders=240, waves=6, kills=5, span=18.0, time_scale=10.0, deadline=55.0,
                new_products=8, changed_products=8, pg_down=1.0, storm=(3.0, 6.0),
                faults={"500": 1, "503": 1, "gateway-timeout": 1, "hang": 1, "drop": 2,
                        "429-storm": 1, "401": 1, "expire-tokens": 1})

# Where a fault may land: (method, entity path segment); None = any.
WRITES: list[tuple[str | None, str | None]] = [
    ("POST", None), ("POST", "invoice"), ("POST", "batch"), ("POST", "customer")]
ANY: list[tuple[str | None, str | None]] = [(None, None), *WRITES, ("GET", "query")]


@dataclass(frozen=True)
class Event:
    at: float   # seconds after the chaos starts
    kind: str   # wave | kill | fault | expire-tokens | pg-restart
    params: dict[str, Any]


def make_plan(p: Profile, rng: random.Random) -> list[Event]:
    """Every event of the run, in time order, from the seed alone."""
    events: list[Event] = []
    sizes = [p.orders // p.waves + (1 if i < p.orders % p.waves else 0) for i in range(p.waves)]
    step = 0.8 * p.span / max(p.waves - 1, 1)
    new_waves = set(range(1, p.waves, max(p.waves // 4, 1)))  # about four waves add products
    # changes once the catalogue is in QuickBooks: in the second half of the waves
    change_waves = set(range(p.waves // 2, p.waves))
    per_new = -(-p.new_products // max(len(new_waves), 1))
    per_change = -(-p.changed_products // max(len(change_waves), 1))
    wave_times = []
    for i, n in enumerate(sizes):
        at = 0.0 if i == 0 else max(0.0, i * step + rng.uniform(-0.3, 0.3) * step)
        wave_times.append(at)
        events.append(Event(round(at, 3), "wave", {
            "wave": i, "orders": n, "seed": round(rng.uniform(-1, 1), 6),
            "new_products": per_new if i in new_waves else 0,
            "changed_products": per_change if i in change_waves else 0}))
    victims = [i % 2 for i in range(p.kills)]  # both daemons die, in a random order
    rng.shuffle(victims)
    for victim in victims:
        events.append(Event(round(rng.uniform(0.02, 1.0) * p.span, 3), "kill",
                            {"daemon": victim, "restart_after": round(rng.uniform(0, 0.3), 3)}))
    for kind, count in p.faults.items():
        for _ in range(count):
            at = round(rng.uniform(0.05, 0.8) * p.span, 3)
            if kind == "429-storm":  # while there is work: a storm nobody meets is none
                at = round(rng.choice(wave_times[1:] or wave_times) + rng.uniform(0.1, 0.6), 3)
            if kind == "expire-tokens":
                events.append(Event(at, "expire-tokens", {}))
                continue
            method, entity = rng.choice(WRITES if kind in ("drop", "hang-drop") else ANY)
            rule: dict[str, Any] = {"path": API, "method": method, "entity": entity}
            if kind in ("500", "503"):
                rule.update(kind=kind, count=rng.randint(1, 3))
            elif kind == "gateway-timeout":  # hangs, then the gateway answers 504
                rule.update(kind="timeout", count=rng.randint(1, 3),
                            hang_seconds=round(rng.uniform(0.5, 2.0), 2), then="504")
            elif kind == "hang":  # longer than the daemon waits: its own timeout fires
                rule.update(kind="timeout", count=1, hang_seconds=HTTP_TIMEOUT + 2, then="504")
            elif kind == "hang-drop":  # hangs, then the connection closes without an answer
                rule.update(kind="timeout", count=rng.randint(1, 2),
                            hang_seconds=round(rng.uniform(0.3, 1.5), 2), then="drop")
            elif kind == "drop":  # the write is applied, the answer never comes
                rule.update(kind="drop", count=rng.randint(1, 3))
            elif kind == "429-storm":  # every API request refused for a while
                rule.update(kind="429", count=None, method=None, entity=None,
                            seconds=round(rng.uniform(*p.storm), 2))
            elif kind == "401":  # twice: the resend after the refresh is refused too
                rule.update(kind="401", count=2, method=None, entity=None)
            events.append(Event(at, "fault", {"label": kind, "rule": rule}))
    events.append(Event(round(rng.uniform(0.3, 0.7) * p.span, 3), "pg-restart",
                        {"down_seconds": p.pg_down}))
    return sorted(events, key=lambda e: e.at)


# -- the rig --------------------------------------------------------------------------------

@dataclass
class Rig:
    pg: TempCluster
    url: str
    emu: Emulator
    server: EmulatorServer
    realm: str
    daemons: list[DaemonProcess]
    log_dir: Path
    first_refresh_token: str
    items_before: set[str]
    customers_before: set[str]
    control: httpx.Client


def build_rig(p: Profile, log_dir: Path, max_attempts: int | None, backoff: list[int]
              ) -> Rig:
    emu = Emulator(time_scale=p.time_scale)  # QuickBooks' limits, on the faster clock
    server = EmulatorServer(emu, freeze_heap=1.0).start()  # as backfill.py: no GC bursts
    pg = TempCluster()
    pg.__enter__()
    try:
        with psycopg.connect(pg.url(), autocommit=True) as admin:
            admin.execute("CREATE DATABASE chaos")
        url = pg.url("chaos")
        migrate(url)
        with psycopg.connect(url) as conn:
            dixis.install_shop(conn, "dixis", track=True)
            conn.execute("SELECT qbsync.untrack(tbl::text, entity) FROM qbsync.tracked "
                         "WHERE entity NOT IN ('order', 'customer', 'product')")
            # The shop's retry waits (minutes) would outlast the run: the run checks where
            # rows end, not the schedule. Its tries are kept (a kill -9 costs none: the rows
            # the killed daemon held come back as interruptions), unless --max-attempts.
            conn.execute("UPDATE qbsync.entities SET backoff_seconds = %s,"
                         " max_attempts = coalesce(%s, max_attempts)", (backoff, max_attempts))
            dixis.generate(conn, 0)  # the catalogue, before the daemons start
            conn.commit()
        shop = asyncio.run(connect_shop(url, emu, api_base_url=server.base_url))
        first = next(iter(emu.oauth.refresh))  # of the one pair connect_shop was issued
        env = daemon_env(url, server.base_url, shop.token_keys, rate_limits="true",
                         rate_time_scale=p.time_scale, http_timeout=HTTP_TIMEOUT,
                         lease_seconds=10, poll_interval=0.5, shutdown_grace=5,
                         log_level="WARNING")
        daemons = [DaemonProcess(env, f"chaos-{i}", log_dir) for i in (1, 2)]
        return Rig(pg, url, emu, server, shop.realm_id, daemons, log_dir, first,
                   {i["Id"] for i in emu.entities(shop.realm_id, "Item")},
                   {c["Id"] for c in emu.entities(shop.realm_id, "Customer")},
                   httpx.Client(base_url=server.base_url, timeout=30))
    except BaseException:
        pg.__exit__(None, None, None)
        server.stop()
        raise


def close_rig(rig: Rig, keep: bool) -> None:
    kill_all()
    rig.control.close()
    rig.server.stop()
    rig.pg.keep = keep
    rig.pg.__exit__(None, None, None)


def db(url: str, fn: Callable[[psycopg.Connection], Any], default: Any = None) -> Any:
    """fn on a fresh connection; `default` while PostgreSQL is down or restarting."""
    try:
        with psycopg.connect(url, connect_timeout=3) as conn:
            return fn(conn)
    except psycopg.OperationalError:
        return default


# -- the chaos ------------------------------------------------------------------------------

def shop_wave(url: str, wave: dict[str, Any]) -> dict[str, int]:
    """One shop transaction: new products (picked by the generator like any other), changes
    to products already in QuickBooks, then the wave's orders with their new customers."""
    with psycopg.connect(url) as conn, conn.transaction():
        if wave["new_products"]:
            conn.execute(
                "INSERT INTO dixis.products (producer_id, category_id, name, sku, description, "
                "unit, price, vat_rate, stock_quantity) "
                "SELECT producer_id, category_id, 'Νέο ' || name, "
                "       format('NEW-W%%s-%%s', %(w)s, g), 'Νέο προϊόν στον κατάλογο', unit, "
                "       price + 1, vat_rate, 100 "
                "FROM generate_series(1, %(n)s) g "
                "CROSS JOIN LATERAL (SELECT * FROM dixis.products WHERE price > 0 "
                "                    ORDER BY md5(id::text || %(w)s || g) LIMIT 1) p",
                {"w": wave["wave"], "n": wave["new_products"]})
        changed = change_products(conn, wave["changed_products"], wave["wave"])
        row = conn.execute("SELECT dixis.generate(%s, %s)::text",
                           (wave["orders"], wave["seed"])).fetchone()
    assert row is not None
    return {**{k: int(v) for k, v in json.loads(row[0]).items()}, "changed": changed}


def change_products(conn: psycopg.Connection, n: int, tag: int) -> int:
    """A new price and description for up to n products already in QuickBooks."""
    if n <= 0:
        return 0
    return conn.execute(
        "UPDATE dixis.products SET price = price + 0.50, description = "
        "coalesce(description, '') || ' (τιμή ' || %(w)s || ')', updated_at = now() "
        "WHERE id IN (SELECT id FROM dixis.products WHERE quickbooks_item_id IS NOT NULL "
        "             ORDER BY md5(id::text || %(w)s) LIMIT %(n)s)",
        {"w": tag, "n": n}).rowcount


@dataclass
class Log:
    """What happened, as it happened (seconds since the chaos started)."""

    started: float = field(default_factory=time.monotonic)
    entries: list[tuple[float, str, str]] = field(default_factory=list)
    kills: int = 0
    self_exits: list[str] = field(default_factory=list)
    pg_restarts: int = 0
    waves: int = 0
    orders: int = 0
    new_products: int = 0
    changed_products: int = 0
    changes_owed: int = 0  # planned changes that found no product in QuickBooks yet
    wave_retries: int = 0
    stalls: list[dict[str, Any]] = field(default_factory=list)

    def add(self, kind: str, text: str) -> None:
        t = time.monotonic() - self.started
        self.entries.append((round(t, 2), kind, text))
        print(f"  {t:7.2f} s  {kind:<13} {text}", file=sys.stderr, flush=True)


def restart_exited(rig: Rig, log: Log) -> None:
    """A daemon that exited by itself comes back, as systemd's Restart= would bring it."""
    for d in rig.daemons:
        if d.proc is not None and not d.alive():
            code = d.proc.returncode
            log.self_exits.append(f"{d.name} exit {code}")
            log.add("self-exit", f"{d.name} exited with {code}; restarted")
            d.start()


def run_event(rig: Rig, ev: Event, log: Log, deadline: float) -> None:
    if ev.kind == "wave":
        w = {**ev.params, "changed_products": ev.params["changed_products"] + log.changes_owed}
        while True:  # a wave that meets the PostgreSQL restart commits once it is back
            try:
                counts = shop_wave(rig.url, w)
                break
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise
                log.wave_retries += 1
                log.add("wave-retry", f"wave {w['wave']}: {exc}".splitlines()[0])
                time.sleep(0.5)
        log.waves += 1
        log.orders += counts["orders"]
        log.new_products += w["new_products"]
        log.changed_products += counts["changed"]
        log.changes_owed = w["changed_products"] - counts["changed"]
        log.add("wave", f"{w['wave']}: {counts['orders']} orders, {counts['customers']} new "
                f"customers, +{w['new_products']} products, {counts['changed']} changed")
    elif ev.kind == "kill":
        d = rig.daemons[ev.params["daemon"]]
        d.kill()
        log.kills += 1
        log.add("kill -9", f"{d.name} (kill {log.kills})")
        time.sleep(ev.params["restart_after"])
        d.start()
    elif ev.kind == "fault":
        rule = {k: v for k, v in ev.params["rule"].items() if v is not None}
        rig.control.post("/_emulator/faults", json=rule).raise_for_status()
        log.add("fault", f"{ev.params['label']}: {rule}")
    elif ev.kind == "expire-tokens":
        r = rig.control.post("/_emulator/expire-tokens", json={"realm_id": rig.realm})
        r.raise_for_status()
        log.add("expire-tokens", f"{r.json()['expired']} access token(s) expired")
    elif ev.kind == "pg-restart":
        log.add("pg-stop", "PostgreSQL stopped")
        rig.pg.stop()
        time.sleep(ev.params["down_seconds"])
        rig.pg.start()
        log.pg_restarts += 1
        log.add("pg-start", "PostgreSQL started")


def progress(url: str) -> str:
    def read(conn: psycopg.Connection) -> str:
        pending, running, dead = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'pending'), "
            "count(*) FILTER (WHERE state = 'running'), count(*) FILTER (WHERE state = 'dead') "
            "FROM qbsync.outbox").fetchone() or (0, 0, 0)
        return f"queue {pending} pending, {running} running, {dead} dead"
    return str(db(url, read, "database unavailable"))


def snapshot(url: str) -> dict[str, Any]:
    """What a stalled run looks like from the database: the queue's rows in flight, the
    rate-limit permits and pause, the registered daemons."""
    def read(conn: psycopg.Connection) -> dict[str, Any]:
        def rows(query: str) -> list[list[str]]:
            return [[str(v) for v in r] for r in conn.execute(query).fetchall()]  # type: ignore[arg-type]
        return {
            "now": rows("SELECT now()")[0][0],
            "running": rows("SELECT lease_owner, count(*), min(lease_expires_at) "
                            "FROM qbsync.outbox WHERE state = 'running' GROUP BY 1"),
            "next_pending": rows("SELECT min(next_attempt_at), max(attempts) "
                                 "FROM qbsync.outbox WHERE state = 'pending'"),
            "rate_permits": rows("SELECT holder, kind, count(*), min(starts_at), "
                                 "max(expires_at) FROM qbsync.rate_permits GROUP BY 1, 2"),
            "rate_state": rows("SELECT paused_until::text, next_request::text, "
                               "next_batch::text, throttles FROM qbsync.rate_state"),
            "workers": rows("SELECT worker_id, pid, started_at, heartbeat_at "
                            "FROM qbsync.workers ORDER BY 1"),
        }
    try:
        return dict(db(url, read, {"error": "database unavailable"}))
    except psycopg.Error as exc:  # a diagnosis must not end the run
        return {"error": str(exc)}


def stacks(rig: Rig) -> dict[str, str]:
    """Where each live daemon's threads and tasks are (py-spy dump, when installed)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        return {}
    out = {}
    for d in rig.daemons:
        if d.alive() and d.proc is not None:
            done = subprocess.run([spy, "dump", "--pid", str(d.proc.pid)], capture_output=True,
                                  text=True, timeout=30, check=False)
            out[d.name] = (done.stdout + done.stderr)[-6000:]
    return out


def run_chaos(rig: Rig, plan: list[Event], deadline: float) -> tuple[Log, float, bool]:
    """The plan, then the drain. Returns the log, the drain's seconds and whether the queue
    drained before the deadline."""
    for d in rig.daemons:
        d.start()
    log = Log()
    last_note = 0.0
    for ev in plan:
        while time.monotonic() - log.started < ev.at:
            if time.monotonic() > deadline:
                log.add("deadline", "reached during the chaos")
                return log, 0.0, False
            restart_exited(rig, log)
            time.sleep(min(0.05, max(0.0, ev.at - (time.monotonic() - log.started))))
        run_event(rig, ev, log, deadline)
        if time.monotonic() - last_note > 5:
            last_note = time.monotonic()
            log.add("progress", progress(rig.url))
    drain_started = time.monotonic()
    log.add("drain", "every event done; waiting for the queue to drain")
    while log.changes_owed and time.monotonic() < deadline:
        # changes planned while nothing was in QuickBooks yet: made once something is
        done = db(rig.url, lambda c: change_products(c, log.changes_owed, 999), 0)
        log.changed_products += done
        log.changes_owed -= done
        if done:
            log.add("products", f"{done} changed")
        else:
            time.sleep(0.5)
    seen, since = "", time.monotonic()
    while time.monotonic() < deadline:
        restart_exited(rig, log)
        if db(rig.url, drained, False):
            log.add("drained", f"after {time.monotonic() - drain_started:.1f} s")
            return log, time.monotonic() - drain_started, True
        now = progress(rig.url)
        if now != seen:
            seen, since = now, time.monotonic()
        elif time.monotonic() - since > 15 and not log.stalls:
            log.stalls.append({**snapshot(rig.url), "stacks": stacks(rig)})  # once: why
            log.add("stalled", f"no change for 15 s: {log.stalls[-1]}")
        if time.monotonic() - last_note > 5:
            last_note = time.monotonic()
            log.add("progress", now)
        time.sleep(0.2)
    log.add("deadline", "reached before the queue drained: " + progress(rig.url))
    log.stalls.append(snapshot(rig.url))
    return log, time.monotonic() - drain_started, False


def stop_daemons(rig: Rig) -> dict[str, int | None]:
    """SIGTERM both; their exit codes (None: still running after the grace)."""
    codes: dict[str, int | None] = {}
    for d in rig.daemons:
        if not d.alive():
            codes[d.name] = d.proc.returncode if d.proc else None
            continue
        try:
            codes[d.name] = d.terminate(30)
        except subprocess.TimeoutExpired:  # ignored SIGTERM: killed, and reported
            d.kill()
            codes[d.name] = None
    return codes


# -- the checks -----------------------------------------------------------------------------

@dataclass
class Check:
    name: str
    value: Any
    target: str
    ok: bool


def verify(rig: Rig, plan: list[Event], log: Log, converged: bool,
           exit_codes: dict[str, int | None]) -> tuple[list[Check], dict[str, Any]]:
    emu, realm = rig.emu, rig.realm
    checks: list[Check] = []

    def check(name: str, value: Any, target: str, ok: bool) -> None:
        checks.append(Check(name, value, target, bool(ok)))

    with psycopg.connect(rig.url) as conn:
        expected = {num: Decimal(total) for num, total in conn.execute(
            "SELECT dixis.order_number(id, created_at), total::text FROM dixis.orders "
            "WHERE " + INVOICED).fetchall()}
        orders_total = conn.execute("SELECT count(*) FROM dixis.orders").fetchone()[0]  # type: ignore[index]
        queue = dict(conn.execute(
            "SELECT state, count(*) FROM qbsync.outbox GROUP BY 1").fetchall())
        is_drained = drained(conn)
        dead_rows = conn.execute(
            "SELECT entity, key, attempts, last_error FROM qbsync.outbox "
            "WHERE state = 'dead' ORDER BY id LIMIT 20").fetchall()
        mapped = {(e, k): q for e, k, q in conn.execute(
            "SELECT entity, key, qbo_id FROM qbsync.entity_map WHERE realm_id = %s",
            (realm,)).fetchall()}
        # what the mapping says each pushed product's Item should be now
        item_bodies = {k: b for k, b in conn.execute(
            "SELECT key, qbsync_map.product(key) FROM qbsync.entity_map "
            "WHERE realm_id = %s AND entity = 'product'", (realm,)).fetchall()}
        # one key, two QuickBooks objects created (the same object logged twice, e.g. a
        # dependency both daemons pushed and QuickBooks answered once, is not a double push)
        double_creates = conn.execute(
            "SELECT model_type, model_id, count(DISTINCT qbo_id) FROM qbsync.integration_logs "
            "WHERE status = 'success' AND operation LIKE 'create%%' "
            "GROUP BY 1, 2 HAVING count(DISTINCT qbo_id) > 1 ORDER BY 3 DESC LIMIT 20").fetchall()
        # the story of a few of them, for the diagnosis
        double_logs = conn.execute(
            "SELECT model_type, model_id, created_at::text, operation, status, qbo_id, actor, "
            "       attempt, left(error_message, 300), details::text "
            "FROM qbsync.integration_logs WHERE (model_type, model_id) IN "
            "  (SELECT model_type, model_id FROM qbsync.integration_logs "
            "   WHERE status = 'success' AND operation LIKE 'create%%' "
            "   GROUP BY 1, 2 HAVING count(DISTINCT qbo_id) > 1 LIMIT 3) "
            "ORDER BY created_at, id").fetchall()
        kinds = dict(conn.execute(
            "SELECT coalesce(details->>'kind', status), count(*) FROM qbsync.integration_logs "
            "WHERE status IN ('retry', 'dead', 'info') AND model_type <> 'connection' "
            "GROUP BY 1").fetchall())
        # A 429 or a 401 that counted as a try: any failure caused by one that was not
        # recorded as throttled/auth (those hand their try back).
        burnt = conn.execute(
            "SELECT model_type, model_id, operation, details->>'kind', error_code, "
            "       left(error_message, 200) FROM qbsync.integration_logs "
            "WHERE status IN ('retry', 'dead') "
            "  AND coalesce(details->>'kind', '') NOT IN ('throttled', 'auth', 'paused') "
            "  AND (error_code = ANY (%s) OR error_message ~ "
            "       '(HTTP (429|401)|ThrottleExceeded|statusCode=429|Token (expired|invalid))')",
            (["3001", "429", "401", *_AUTH_CODES],)).fetchall()
        max_attempt = conn.execute(
            "SELECT max(attempt) FROM qbsync.integration_logs WHERE status = 'success' "
            "AND model_type IN ('order', 'customer', 'product')").fetchone()[0]  # type: ignore[index]
        tries_given = dict(conn.execute("SELECT entity, max_attempts FROM qbsync.entities "
                                        "WHERE entity IN ('order', 'customer', 'product')"
                                        ).fetchall())
        # Tries spent per row pushed: the try its success came on (a row pushed as another's
        # dependency has no try of its own), and the interruptions it took on the way.
        tries_per_row = {int(a): int(n) for a, n in conn.execute(
            "SELECT attempt, count(*) FROM qbsync.integration_logs WHERE status = 'success' "
            "AND attempt IS NOT NULL AND model_type IN ('order', 'customer', 'product') "
            "GROUP BY 1 ORDER BY 1").fetchall()}
        interrupted = conn.execute(
            "SELECT count(*), coalesce(max((details->>'interruptions')::int), 0) "
            "FROM qbsync.integration_logs WHERE status = 'success' "
            "AND details ? 'interruptions'").fetchone()
        # Dead rows that did not fail every try they were given: no permanent failure, and
        # fewer failed tries (logged failures of kind retry under the row's request id; a
        # final lookup's are not tries) than the entity allows. A kill -9 that cost tries,
        # or a row let go dead without cause, shows here.
        short_dead = conn.execute(
            "SELECT o.entity, o.key, f.tries, e.max_attempts, left(o.last_error, 300) "
            "FROM qbsync.outbox o JOIN qbsync.entities e USING (entity) "
            "CROSS JOIN LATERAL ("
            "  SELECT count(*) FILTER (WHERE l.details->>'kind' = 'retry') AS tries,"
            "         coalesce(bool_or(l.details->>'kind' = 'permanent'), false) AS permanent"
            "  FROM qbsync.integration_logs l"
            "  WHERE l.model_type = o.entity AND l.model_id = o.key"
            "    AND l.request_id = o.request_id AND l.status IN ('retry', 'dead')"
            "    AND l.operation <> 'lookup') f "
            "WHERE o.state = 'dead' AND NOT f.permanent AND f.tries < e.max_attempts "
            "ORDER BY o.id").fetchall()
        # rows each daemon worked on (any outcome) and pushed
        actors = {a: [int(w), int(p)] for a, w, p in conn.execute(
            "SELECT actor, count(*), count(*) FILTER (WHERE status = 'success') "
            "FROM qbsync.integration_logs WHERE actor LIKE 'chaos-%%' "
            "AND model_type IN ('order', 'customer', 'product') GROUP BY 1 ORDER BY 1"
        ).fetchall()}
        refresh_logs = dict(conn.execute(
            "SELECT status, count(*) FROM qbsync.integration_logs "
            "WHERE operation = 'token.refresh' GROUP BY 1").fetchall())
        connection = conn.execute(
            "SELECT status, token_generation FROM qbsync.connections WHERE realm_id = %s",
            (realm,)).fetchone()
        product_updates = conn.execute(
            "SELECT count(*) FROM qbsync.integration_logs WHERE model_type = 'product' "
            "AND status = 'success' AND operation LIKE 'update%%'").fetchone()[0]  # type: ignore[index]
        new_pushed = conn.execute(
            "SELECT count(*) FROM dixis.products WHERE sku LIKE 'NEW-%%' "
            "AND quickbooks_item_id IS NOT NULL").fetchone()[0]  # type: ignore[index]
        synced_orders = conn.execute(
            "SELECT count(*) FROM dixis.orders WHERE " + INVOICED
            + " AND quickbooks_sync_status = 'synced'").fetchone()[0]  # type: ignore[index]

    # Invoices: one per invoiced order, none else, each with the order's total.
    invoices = emu.entities(realm, "Invoice")
    per_doc = collections.Counter(inv.get("DocNumber") for inv in invoices)
    duplicated = sorted(n for n, c in per_doc.items() if c > 1)
    missing = sorted(set(expected) - set(per_doc))
    extra = sorted(set(per_doc) - set(expected), key=str)
    wrong_total = sorted(
        inv["DocNumber"] for inv in invoices if inv.get("DocNumber") in expected
        and Decimal(str(inv["TotalAmt"])).quantize(Decimal("0.01"))
        != expected[inv["DocNumber"]])
    check("orders committed by the shop", orders_total, f"= {log.orders}",
          orders_total == log.orders)
    check("invoices in QuickBooks", len(invoices), f"= {len(expected)} invoiced orders",
          len(invoices) == len(expected))
    check("orders without an invoice", len(missing), "0", not missing)
    check("orders with 2+ invoices", len(duplicated), "0", not duplicated)
    check("invoices of no invoiced order", len(extra), "0", not extra)
    check("invoices with a wrong total", len(wrong_total), "0 (TotalAmt = orders.total)",
          not wrong_total)
    check("orders marked synced in the shop", synced_orders, f"= {len(expected)}",
          synced_orders == len(expected))

    # Customers and items: each once; every one created during the run is one we map to.
    customers = [c for c in emu.entities(realm, "Customer") if c["Id"] not in rig.customers_before]
    items = [i for i in emu.entities(realm, "Item") if i["Id"] not in rig.items_before]
    cust_names = collections.Counter(c["DisplayName"] for c in customers)
    item_names = collections.Counter(i["Name"] for i in items)
    mapped_ids = {(e, q) for (e, _), q in mapped.items()}
    cust_orphans = [c["Id"] for c in customers if ("customer", c["Id"]) not in mapped_ids]
    item_orphans = [i["Id"] for i in items if ("product", i["Id"]) not in mapped_ids]
    by_id = {i["Id"]: i for i in emu.entities(realm, "Item")}
    stale_items = []
    for key, body in item_bodies.items():
        item = by_id.get(mapped[("product", key)])
        want = body if isinstance(body, dict) else json.loads(body) if body else None
        # QuickBooks gives an item sent without a UnitPrice the price 0
        if want is None or item is None or any(
                str(item.get(f)) != str(want.get(f)) for f in ("Name", "Description")) or \
                _amount(item.get("UnitPrice")) != _amount(want.get("UnitPrice") or 0):
            stale_items.append(key)
    check("customers created in QuickBooks", len(customers), "> 0", customers)
    check("customer names in QuickBooks twice", sum(c > 1 for c in cust_names.values()), "0",
          all(c == 1 for c in cust_names.values()))
    check("customers created but not mapped (pushed twice)", len(cust_orphans), "0",
          not cust_orphans)
    check("items created in QuickBooks", len(items), "> 0", items)
    check("item names in QuickBooks twice", sum(c > 1 for c in item_names.values()), "0",
          all(c == 1 for c in item_names.values()))
    check("items created but not mapped (pushed twice)", len(item_orphans), "0",
          not item_orphans)
    check("new products pushed during the run", new_pushed, "> 0", new_pushed > 0)
    check("products changed in the shop / Item updates pushed",
          f"{log.changed_products} / {product_updates}", "> 0 / > 0",
          log.changed_products > 0 and product_updates > 0)
    check("items not matching their product now", len(stale_items), "0", not stale_items)
    check("keys created as 2+ QuickBooks objects (logs)", len(double_creates), "0",
          not double_creates)

    # The queue: drained, nothing dead (no fault of this run is designed to be permanent).
    check("queue drained before the deadline", converged and is_drained, "yes",
          converged and is_drained)
    check("rows left pending/running", queue.get("pending", 0) + queue.get("running", 0), "0",
          not queue.get("pending", 0) + queue.get("running", 0))
    check("dead rows", queue.get("dead", 0), "0", not queue.get("dead", 0))
    check("dead rows that did not fail every try they were given", len(short_dead), "0",
          not short_dead)
    check("tries burnt on a 429 or a 401", len(burnt), "0", not burnt)

    # The realm's budget, as the emulator saw it: what was asked for, refused or not.
    summary = emu.limits.summary()["realms"].get(realm, {})  # type: ignore[union-attr]
    per_min, in_flight = summary.get("peak_per_minute", 0), summary.get("peak_in_flight", 0)
    per_sec = summary.get("peak_per_second", 0)
    cfg = emu.limits.config
    check("most requests in any minute (emulated)", per_min, f"<= {cfg.per_minute}",
          per_min <= cfg.per_minute)
    check("most requests in flight at once", in_flight, f"<= {cfg.in_flight}",
          in_flight <= cfg.in_flight)
    by_limit = summary.get("throttled_by", {})
    budget_429 = sum(n for k, n in by_limit.items() if k != "per_second")
    check("429s sent by the minute/in-flight/batch limits", budget_429, "0", not budget_429)
    # Reported, not checked: at time x S a QuickBooks second lasts 1/S real second, and the
    # daemon's limiter keeps 25 ms of real slack per window, within the scheduling jitter of
    # a loaded 2-core machine; those 429s are handled like any throttle (no try burnt).
    check("most requests in any second (emulated; not a check)", per_sec,
          f"<= {cfg.per_second}; 429s: {by_limit.get('per_second', 0)}", True)

    # Tokens: refreshed through the chaos, the rotated-out refresh token refused after.
    token_200 = emu.request_count("POST", "/oauth2/v1/tokens/bearer", 200)
    old = rig.control.post("/oauth2/v1/tokens/bearer", auth=(
        emu.default_client_id, emu.oauth.clients[emu.default_client_id]),
        data={"grant_type": "refresh_token", "refresh_token": rig.first_refresh_token})
    old_refused = old.status_code == 400 and old.json().get("error") == "invalid_grant"
    check("token refreshes (refresh token rotated each time)", token_200, ">= 1",
          token_200 >= 1)
    check("first refresh token refused after rotation", "yes" if old_refused else
          f"no ({old.status_code})", "yes", old_refused)
    check("connection still connected", connection[0] if connection else None, "connected",
          bool(connection and connection[0] == "connected"))

    # The chaos itself happened as planned.
    planned_kills = sum(e.kind == "kill" for e in plan)
    check("kill -9 (each followed by a restart)", log.kills, f"= {planned_kills}",
          log.kills == planned_kills)
    check("PostgreSQL restarts", log.pg_restarts, "1", log.pg_restarts == 1)
    check("daemons that worked rows (outcomes / pushes)",
          ", ".join(f"{a} {w}/{p}" for a, (w, p) in actors.items()), "both",
          len(actors) == 2)
    check("daemons stopped cleanly (SIGTERM, exit 0)",
          ", ".join(f"{k} {v}" for k, v in exit_codes.items()), "0 each",
          all(v == 0 for v in exit_codes.values()))

    counters = emu.counter_snapshot(realm)
    statuses: collections.Counter[str] = collections.Counter()
    for key, n in counters.items():
        statuses[key.rsplit(" ", 1)[1]] += n
    limit_429 = summary.get("throttled", 0)
    faults_left = rig.control.get("/_emulator/faults").json()["rules"]
    details = {
        "invoices": len(invoices), "expected_invoices": len(expected),
        "missing": missing[:20], "duplicated": duplicated[:20], "extra": extra[:20],
        "wrong_total": wrong_total[:20], "customers": len(customers), "items": len(items),
        "customer_orphans": cust_orphans[:20], "item_orphans": item_orphans[:20],
        "stale_items": stale_items[:20], "double_creates": [list(r) for r in double_creates],
        "double_create_logs": [list(r) for r in double_logs],
        "item_orphan_samples": [{k: i.get(k) for k in ("Id", "Name", "Sku", "UnitPrice")}
                                for i in items if i["Id"] in item_orphans[:5]],
        "stale_item_samples": [
            {"key": k, "qbo": {f: by_id.get(mapped[("product", k)], {}).get(f)
                               for f in ("Id", "Name", "UnitPrice", "Description")},
             "want": {f: (item_bodies[k] or {}).get(f)
                      for f in ("Name", "UnitPrice", "Description")}}
            for k in stale_items[:5]],
        "queue": queue, "dead_rows": [list(r) for r in dead_rows],
        "burnt": [list(r) for r in burnt[:20]], "failure_kinds": kinds,
        "max_attempt_of_a_success": max_attempt, "actors": actors,
        "tries_given": tries_given, "tries_per_row": tries_per_row,
        "rows_interrupted": interrupted[0] if interrupted else 0,
        "most_interruptions_of_a_row": interrupted[1] if interrupted else 0,
        "short_dead_rows": [list(r) for r in short_dead[:20]],
        "token_refresh_logs": refresh_logs, "token_endpoint_200": token_200,
        "token_generation": connection[1] if connection else None,
        "new_products_pushed": new_pushed, "product_updates": product_updates,
        "requests": sum(counters.values()), "requests_by_status": dict(statuses),
        "requests_by_route": dict(sorted(counters.items(), key=lambda kv: -kv[1])),
        "limit_429": limit_429, "injected_429": statuses.get("429", 0) - limit_429,
        "limits": summary, "fault_rules_unfired": faults_left,
        "self_exits": log.self_exits,
    }
    return checks, details


def _amount(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value)).quantize(Decimal("0.01"))


# -- report ---------------------------------------------------------------------------------

def run_rows(report: dict[str, Any]) -> list[list[Any]]:
    t, d, lg = report["timings"], report["details"], report["log"]
    by = d["requests_by_status"]
    return [
        ["orders (waves)", f"{lg['orders']} ({lg['waves']} shop transactions)"],
        ["invoices / customers / items created", f"{d['invoices']} / {d['customers']} / "
                                                 f"{d['items']}"],
        ["new products pushed / product updates", f"{d['new_products_pushed']} / "
                                                  f"{d['product_updates']}"],
        ["kill -9 (and restarts)", f"{lg['kills']}; self-exits restarted: "
                                   f"{len(lg['self_exits'])}"],
        ["PostgreSQL restarts", lg["pg_restarts"]],
        ["faults injected (rules)", ", ".join(f"{k} {v}" for k, v in report["params"]
                                               ["faults"].items())],
        ["rules not fired by the end", len(d["fault_rules_unfired"])],
        ["requests to QuickBooks", f"{d['requests']} ("
         + ", ".join(f"{s}: {n}" for s, n in sorted(by.items())) + ")"],
        ["429s: injected / by the limits", f"{d['injected_429']} / {d['limit_429']}"],
        ["throttled / auth outcomes (try handed back)",
         f"{d['failure_kinds'].get('throttled', 0)} / {d['failure_kinds'].get('auth', 0)}"],
        ["retries (transient) / waits", f"{d['failure_kinds'].get('retry', 0)} / "
                                        f"{d['failure_kinds'].get('waiting', 0)}"],
        ["token refreshes (generation)", f"{d['token_endpoint_200']} "
                                         f"({d['token_generation']})"],
        ["tries given (order / customer / product)",
         " / ".join(str(d["tries_given"].get(e, "?")) for e in ("order", "customer", "product"))],
        ["rows pushed on their 1st / 2nd / 3rd / later try",
         " / ".join(str(n) for n in _tries_row(d["tries_per_row"]))],
        ["rows pushed after interruptions (most of one row)",
         f"{d['rows_interrupted']} ({d['most_interruptions_of_a_row']})"],
        ["most tries a row needed (a final lookup is one more)",
         d["max_attempt_of_a_success"]],
        ["time: setup / chaos / drain / total (s)",
         f"{t['setup_s']} / {t['chaos_s']} / {t['drain_s']} / {t['total_s']}"],
        ["emulated time (min) at time scale",
         f"{t['emulated_min']} at ×{report['params']['time_scale']:g}"],
    ]


def _tries_row(per_row: dict[Any, int]) -> list[int]:
    """Rows pushed on their 1st, 2nd, 3rd and a later try (JSON keys are strings)."""
    counts = {int(k): v for k, v in per_row.items()}
    return [counts.get(1, 0), counts.get(2, 0), counts.get(3, 0),
            sum(v for k, v in counts.items() if k > 3)]


def check_rows(report: dict[str, Any]) -> list[list[Any]]:
    return [[c["name"], c["value"], c["target"], "ok" if c["ok"] else "FAIL"]
            for c in report["checks"]]


def markdown(report: dict[str, Any]) -> str:
    m, p = report["machine"], report["params"]
    return "\n".join([
        f"Measured {m['date']} on {m['nproc']} cores, {m['memory_gib']} GiB RAM, "
        f"PostgreSQL {m['server_version']} (a throwaway cluster of the run's own, "
        f"fsync={m['fsync']}), load average {m['load_avg_1m']} at start; two `qbsync run` "
        f"daemons, emulator over a socket with QuickBooks' limits at time ×{p['time_scale']:g} "
        f"(the daemons' rate_time_scale too); seed {p['seed']}; "
        f"{'all checks passed' if report['ok'] else 'SOME CHECKS FAILED'}.",
        "",
        f"    {report['command']}",
        "",
        markdown_table(("run", "value"), run_rows(report)),
        "",
        markdown_table(("check", "value", "target", "result"), check_rows(report)),
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Chaos run: orders flowing while two daemons are killed with kill -9, "
                    "QuickBooks fails in every way and PostgreSQL restarts; checks "
                    "exactly-once, nothing lost, no try burnt on 429/401, the budget kept.")
    parser.add_argument("--seed", type=int, default=1, help="the plan's seed (default 1)")
    parser.add_argument("--short", action="store_true",
                        help=f"{SHORT.orders} orders, {SHORT.kills} kills, under a minute; "
                             "what the tests run")
    parser.add_argument("--orders", type=int, help=f"orders (default {FULL.orders})")
    parser.add_argument("--kills", type=int, help=f"kill -9 count (default {FULL.kills})")
    parser.add_argument("--span", type=float,
                        help=f"seconds the chaos lasts (default {FULL.span:g})")
    parser.add_argument("--time-scale", type=float,
                        help=f"emulated QuickBooks time per real second (default "
                             f"{FULL.time_scale:g}; short {SHORT.time_scale:g})")
    parser.add_argument("--deadline", type=float,
                        help=f"hard limit in seconds for the whole run (default "
                             f"{FULL.deadline:g}; short {SHORT.deadline:g})")
    parser.add_argument("--max-attempts", type=int, default=None,
                        help="tries per row instead of the shop's own (3; a kill -9 costs "
                             "none)")
    parser.add_argument("--backoff", default="1,2,4",
                        help="seconds before the 1st, 2nd, 3rd+ retry (the shop's minutes "
                             "would outlast the run; default %(default)s)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the full report here")
    parser.add_argument("--markdown", action="store_true",
                        help="also print the BENCHMARKS.md section (machine, command, tables)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the cluster's files and the daemons' logs")
    args = parser.parse_args(argv)
    base = SHORT if args.short else FULL
    changes = {k: getattr(args, k) for k in ("orders", "kills", "span", "time_scale",
                                             "deadline") if getattr(args, k) is not None}
    args.profile = Profile(**{**asdict(base), **changes})
    if min(args.profile.orders, args.profile.span, args.profile.time_scale,
           args.profile.deadline) <= 0 or args.profile.kills < 0 or (
            args.max_attempts is not None and args.max_attempts < 1):
        parser.error("--orders, --span, --time-scale, --deadline and --max-attempts must be "
                     "positive, --kills not negative")
    try:
        args.backoff = [int(b) for b in args.backoff.split(",")]
    except ValueError:
        parser.error("--backoff: whole seconds separated by commas, e.g. 1,2,4")
    if not args.backoff or min(args.backoff) < 0:
        parser.error("--backoff: whole seconds >= 0")
    if args.profile.orders < args.profile.waves:
        args.profile = Profile(**{**asdict(args.profile), "waves": args.profile.orders})
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    p: Profile = args.profile
    command = command_line(__file__, argv)
    started = time.monotonic()
    deadline = started + p.deadline
    plan = make_plan(p, random.Random(args.seed))
    log_dir = Path(tempfile.mkdtemp(prefix="qbsync-chaos-"))
    print(f"chaos: seed {args.seed}, {p.orders} orders in {p.waves} waves, {p.kills} kills, "
          f"{len(plan)} events over {p.span:g} s; logs in {log_dir}", file=sys.stderr)
    rig = build_rig(p, log_dir, args.max_attempts, args.backoff)
    ok = False
    try:
        with psycopg.connect(rig.url) as conn:
            machine = machine_info(conn)
        emu_start = rig.emu.clock.now()
        setup_s = time.monotonic() - started
        log, drain_s, converged = run_chaos(rig, plan, deadline)
        chaos_s = time.monotonic() - log.started - drain_s
        exit_codes = stop_daemons(rig)
        emulated_min = (rig.emu.clock.now() - emu_start) / 60
        checks, details = verify(rig, plan, log, converged, exit_codes)
        ok = all(c.ok for c in checks)
        report: dict[str, Any] = {
            "command": command.rstrip(),
            "ok": ok,
            "params": {**asdict(p), "seed": args.seed, "short": args.short,
                       "max_attempts": args.max_attempts, "backoff": args.backoff,
                       "http_timeout": HTTP_TIMEOUT},
            "machine": machine,
            "timings": {"setup_s": round(setup_s, 1), "chaos_s": round(chaos_s, 1),
                        "drain_s": round(drain_s, 1),
                        "total_s": round(time.monotonic() - started, 1),
                        "emulated_min": round(emulated_min, 1)},
            "checks": [asdict(c) for c in checks],
            "details": details,
            "log": {k: v for k, v in vars(log).items() if k not in ("started",)},
            "plan": [asdict(e) for e in plan],
            "log_dir": str(log_dir),
        }
        if not ok:  # the daemons' last words, for the diagnosis
            report["daemon_logs"] = {d.name: d.log()[-4000:] for d in rig.daemons}
    finally:
        close_rig(rig, args.keep)
        if ok and not args.keep:
            shutil.rmtree(log_dir, ignore_errors=True)
    tables = (text_table(("run", "value"), run_rows(report)) + "\n\n"
              + text_table(("check", "value", "target", "result"), check_rows(report)))
    report_out(args, tables, markdown(report), report)
    if not ok:
        print(f"\nchaos: SOME CHECKS FAILED (seed {args.seed}); daemon logs in {log_dir}",
              file=sys.stderr)
    return report


if __name__ == "__main__":
    os.environ.setdefault("PGAPPNAME", "qbsync-bench-chaos")
    sys.exit(0 if main()["ok"] else 1)
