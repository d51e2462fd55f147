"""`qbsync run`: wires settings, the database, QuickBooks and the worker together, and
runs until SIGTERM/SIGINT (draining in-flight pushes; a stop during start-up is exit 0, see
`stopsignal`) or an unrecoverable error."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from . import admin_requests as admin  # the daemon's side of admin requests
from . import drift, logs, schema, sdnotify, sentry
from .config import Settings, environment_warnings, listen_address
from .db import CONNECTION_ERRORS as DB_ERRORS
from .db import Listener, wait_for_pool
from .errors import (
    EXIT_FAILURE,
    EXIT_SCHEMA,
    ConfigError,
    DatabaseUnreachable,
    QbsyncError,
    ReconnectRequired,
    TokensUnreadable,
    exit_code,
)
from .metrics import Metrics
from .metrics_server import MetricsServer
from .migrate import Migration, discover
from .model import PushFailed, Row
from .qbo import oauth
from .qbo.client import QboClient
from .qbo.endpoints import api_base_for, http_client
from .qbo.errors import Forbidden, QboError
from .qbo.observer import NULL_OBSERVER, Observer
from .qbo.ratelimit import RateLimits, RequestLimiter
from .queries import load as load_queries
from .realm import Prepared, Realm, prepare
from .startup import Startup, stall_limit
from .stopsignal import STOP
from .store import PgPermits
from .sync import Pusher, load_entities
from .tokens import TokenStore
from .vault import Vault
from .worker import Worker, WorkerConfig

log = logging.getLogger("qbsync.daemon")
STATS_FOLD_INTERVAL = 5.0  # seconds between two folds of the dashboard counters
Q = load_queries()


@dataclass
class Daemon:
    """Everything a running daemon holds; built by `start`, closed by `close`."""

    settings: Settings
    pool: asyncpg.Pool
    listener: Listener
    http: httpx.AsyncClient
    tokens: TokenStore
    client: QboClient
    realm: Realm
    worker: Worker
    # the migrations this daemon's code was built for, read once at start (a package
    # upgraded on disk meanwhile does not change what the loaded code expects)
    shipped: tuple[Migration, ...] = ()
    # why it stopped by itself (the schema changed under it): run() returns its exit code
    failure: QbsyncError | None = None
    metrics: Metrics | None = None  # None: metrics_listen is empty

    async def close(self) -> None:
        with contextlib.suppress(*DB_ERRORS):
            await self.pool.execute(Q.unregister_worker, self.settings.worker_name)
        await self.listener.close()
        await self.http.aclose()
        await self.pool.close()


def connection_problem(realm_id: str | None, row: asyncpg.Record | None) -> str | None:
    """Why the company cannot be synced to (one line), None when it is connected: what
    start-up waits out and /readyz says."""
    if row is None:
        if realm_id:
            return (f"QuickBooks company {realm_id} is not in qbsync.connections: run "
                    "`qbsync connect`")
        return "no QuickBooks company is active: run `qbsync connect`"
    status = row["status"]
    if status == "connected":
        return None
    state = "needs reconnecting" if status == "needs_reconnect" else f"is {status}"
    return f"QuickBooks company {row['realm_id']} {state}: run `qbsync connect`"


# seconds between two reads of the company's status while start-up waits for it
STATUS_RECHECK = 10.0


async def _wait_for_connection(pool: asyncpg.Pool, realm_id: str | None, stop: asyncio.Event,
                               startup: Startup) -> asyncpg.Record | None:
    """The company to sync to (`realm_id`, else the active one); waits (saying so) until it
    is connected. None when stopped meanwhile."""
    said = None
    while not stop.is_set():
        try:
            row = await pool.fetchrow(Q.active_connection, realm_id)
        except DB_ERRORS as exc:  # the database restarting: asked again, as any wait does
            startup.step(f"reading the company's status failed ({exc}); retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), STATUS_RECHECK)
            continue
        problem = connection_problem(realm_id, row)
        if problem is None:
            return row
        if problem != said:
            if said is None:
                startup.enter("connection", problem)
            message = f"waiting: {problem}"
            log.warning(message)
            sdnotify.notify(STATUS=message)
            said = problem
        startup.step(problem)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), STATUS_RECHECK)
    return None


async def _endpoints(http: httpx.AsyncClient, settings: Settings) -> oauth.OAuthEndpoints:
    try:
        return await oauth.resolve_endpoints(http, settings.oauth_sources(),
                                             settings.endpoint_policy(),
                                             max_bytes=settings.max_response_bytes)
    except (QboError, oauth.OAuthError) as exc:
        raise ConfigError(f"oauth_discovery_url: {exc}") from None


def _vault(settings: Settings) -> Vault:
    """The key ring; ConfigError when a secret `qbsync run` cannot do without is unset."""
    if settings.client_secret is None:
        raise ConfigError("client_secret is not set (QBSYNC_CLIENT_SECRET or the systemd "
                          "credential qbsync-client-secret): token refresh needs it")
    if settings.token_keys is None:
        raise ConfigError("token_keys is not set (QBSYNC_TOKEN_KEYS or the systemd credential "
                          "qbsync-token-keys): stored tokens cannot be decrypted without it")
    return Vault.parse(settings.token_keys.get_secret_value(), source="token_keys")


async def start(
    settings: Settings,
    stop: asyncio.Event,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    metrics: Metrics | None = None,
    startup: Startup | None = None,
) -> Daemon | None:
    """Build the daemon; None when stopped before a company was connected. `startup` hears
    where it stands (the metrics endpoint answers from it meanwhile)."""
    startup = startup or Startup()
    vault = _vault(settings)
    shipped = tuple(discover())
    if stop.is_set():  # stopped while starting: nothing to connect for
        return None
    try:
        pool = await wait_for_pool(
            settings.database_url, stop, size=settings.concurrency + 4,
            failed=lambda error: startup.step(f"waiting for the database ({error})"))
    except (asyncpg.PostgresError, OSError) as exc:  # what waiting cannot cure
        raise DatabaseUnreachable(f"cannot reach the database: {exc}") from exc
    if pool is None:
        return None
    # QuickBooks' answers are start-up steps too (reading the settings may take a while)
    observer: Observer = startup.observing(metrics) if metrics else NULL_OBSERVER
    try:
        startup.step("checking the database's schema")
        # before anything else: a missing schema or one of another version is one clear
        # line (and exit 5), not the first query's error
        (await schema.read_status_async(pool, shipped)).check()
        startup.pool = pool  # the database's gauges can be read from here on
        partitions = await pool.fetch(Q.maintain_log_partitions)
        for p in partitions:
            log.info("log partition %s %s", p["partition_name"], p["action"])
        startup.step("reading the company's connection")
        row = await _wait_for_connection(pool, settings.realm_id, stop, startup)
        if row is None:
            startup.pool = None
            await pool.close()
            return None
        startup.enter("quickbooks", f"reading QuickBooks company {row['realm_id']}'s settings")
        policy = settings.endpoint_policy()
        # The row may only choose among the endpoints the settings allow (a member of
        # qbsync_daemon can update it): refused here, before any request.
        api_base = api_base_for(row["api_base_url"], settings.api_base_url, policy,
                                realm_id=row["realm_id"])
        http = http_client(policy, transport=transport, timeout=settings.http_timeout)
        try:
            endpoints = await _endpoints(http, settings)
        except BaseException:
            await http.aclose()
            raise
        realm = Realm(row["realm_id"], api_base, row["company_name"])
        tokens = TokenStore(
            pool, vault, realm.realm_id, http=http, endpoints=endpoints,
            client=oauth.ClientCredentials(settings.client_id,
                                           settings.client_secret.get_secret_value()),
            time_scale=settings.rate_time_scale, holder=settings.worker_name,
            max_response_bytes=settings.max_response_bytes, observer=observer,
        )
        limiter = None
        if settings.rate_limits:
            limiter = RequestLimiter(PgPermits(pool), realm.realm_id,
                                     holder=settings.worker_name,
                                     local_in_flight=settings.max_in_flight,
                                     observer=observer)
            await limiter.configure(RateLimits(
                per_minute=settings.requests_per_minute,
                per_second=settings.requests_per_second,
                in_flight=settings.max_in_flight,
                batch_per_minute=settings.batch_per_minute,
                time_scale=settings.rate_time_scale))
            freed = await limiter.free_abandoned()
            if freed:
                log.warning("freed %s rate-limit permit(s) a killed process named %s left",
                            freed, settings.worker_name)
        client = QboClient(http, base_url=realm.api_base_url, realm_id=realm.realm_id,
                           tokens=tokens, minor_version=settings.minor_version,
                           limiter=limiter, timeout=settings.http_timeout,
                           max_response_bytes=settings.max_response_bytes,
                           observer=observer)
        # Registered before the first token read: `qbsync rotate-key` sees this daemon and
        # the key ids it holds from here on.
        await pool.execute(Q.register_worker, settings.worker_name, os.uname().nodename,
                           os.getpid())
        await pool.execute(Q.register_worker_keys, settings.worker_name, list(vault.key_ids))
        prepared = await _prepare(pool, realm, client, stop, startup,
                                  worker=settings.worker_name)
        if prepared is None:
            with contextlib.suppress(*DB_ERRORS):
                await pool.execute(Q.unregister_worker, settings.worker_name)
            await http.aclose()
            startup.pool = None
            await pool.close()
            return None
        _report_lookup(realm, prepared)
        pusher = Pusher(pool, client, realm, await load_entities(pool),
                        skip_invoiced=settings.skip_invoiced_orders,
                        time_scale=settings.rate_time_scale,
                        worker_id=settings.worker_name, observer=metrics)
        worker = Worker(
            pool, Listener(settings.database_url), pusher,
            WorkerConfig(worker_id=settings.worker_name, concurrency=settings.concurrency,
                         lease_seconds=settings.lease_seconds,
                         poll_interval=settings.poll_interval,
                         shutdown_grace=settings.shutdown_grace,
                         batch_size=settings.batch_size,
                         batch_threshold=settings.batch_threshold,
                         wakeup_notify=settings.wakeup_notify),
            on_dead=_report_dead(realm.realm_id),
            observer=metrics,
        )
        return Daemon(settings, pool, worker.listener, http, tokens, client, realm, worker,
                      shipped, metrics=metrics)
    except BaseException:
        startup.pool = None
        await pool.close()
        raise


def _report_lookup(realm: Realm, prepared: Prepared) -> None:
    for warning in prepared.warnings:
        log.warning(warning)
    missing = prepared.stored.get("missing") or []
    if missing:
        log.warning("rows wait for settings QuickBooks company %s has no value for: %s "
                    "(see qbsync.missing_settings)", realm.realm_id,
                    ", ".join(f"{m['setting']} ({m['rows_waiting']} row(s))" for m in missing))


async def _prepare(pool: asyncpg.Pool, realm: Realm, client: QboClient,
                   stop: asyncio.Event, startup: Startup, *,
                   worker: str | None = None) -> Prepared | None:
    """The company's references, read at start; a QuickBooks error a retry can cure (429,
    401, 5xx, no answer) or the database restarting is waited out rather than ending the
    process, which would only be restarted into the same throttle. So are stored tokens
    this daemon's key ring cannot decrypt (a notice says so; the tokens may be re-encrypted
    under a key it holds). A look-up QuickBooks refuses only leaves its own settings
    unresolved (realm.prepare); QuickBooks refusing the connection itself (403) marks it
    needs_reconnect, and the look-up waits for `qbsync connect`. None when stopped
    meanwhile; `startup` hears of each try."""
    reading = f"reading QuickBooks company {realm.realm_id}'s settings"
    delay = 1.0
    while True:
        try:
            return await prepare(pool, realm, client)
        except Forbidden as exc:
            message = (f"QuickBooks company {realm.realm_id} refused the connection while "
                       f"its settings were read ({exc.describe()})")
            with contextlib.suppress(*DB_ERRORS):
                if await pool.fetchval(Q.mark_forbidden, realm.realm_id, message, exc.code):
                    log.error("%s; it is marked needs_reconnect: run `qbsync connect`",
                              message)
            # as at start: until `qbsync connect` (then read again after the pause below)
            if await _wait_for_connection(pool, realm.realm_id, stop, startup) is None:
                return None
            startup.enter("quickbooks", reading)
        except QboError as exc:
            if not exc.retryable:
                raise
            log.warning("reading QuickBooks company %s failed (%s); retrying in %.0f s",
                        realm.realm_id, exc, delay)
            answer = f"HTTP {exc.status}, {exc}" if exc.status else str(exc)
            startup.step(f"{reading} (failed: {answer}; retrying)")
        except TokensUnreadable as exc:
            sdnotify.notify(STATUS=f"paused: {exc}")
            startup.step(f"{reading} (paused: {exc})")
        except DB_ERRORS as exc:
            log.warning("saving QuickBooks company %s's references failed (%s); retrying in "
                        "%.0f s", realm.realm_id, exc, delay)
            startup.step(f"{reading} (saving them failed: {exc}; retrying)")
        if worker is not None:  # still alive, for `qbsync rotate-key`
            with contextlib.suppress(*DB_ERRORS):
                await pool.execute(Q.heartbeat, worker)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return None
        delay = min(delay * 2, 30.0)


def _report_dead(realm_id: str) -> Callable[[Row, PushFailed], None]:
    def report(row: Row, failure: PushFailed) -> None:
        sentry.capture_dead_row(row.entity, row.key, failure.message, failure.code,
                                realm_id=realm_id)
    return report


def loop_stalled(daemon: Daemon) -> str | None:
    """Why the worker loop counts as hung (no turn within the watchdog's interval), else
    None: what WATCHDOG=1 and /healthz go by."""
    stale_after = daemon.settings.poll_interval * 3 + 30
    idle = time.monotonic() - daemon.worker.loop_alive
    if idle < stale_after:
        return None
    return f"the worker loop has not turned for {idle:.0f} s (limit {stale_after:.0f} s)"


async def not_ready(daemon: Daemon) -> str | None:
    """Why the daemon cannot push now (/readyz), else None: the database must answer,
    and the company be connected and not paused."""
    realm_id = daemon.realm.realm_id
    try:
        row = await daemon.pool.fetchrow(Q.active_connection, realm_id, timeout=5)
    except DB_ERRORS as exc:
        return f"database: {str(exc) or type(exc).__name__}"
    problem = connection_problem(realm_id, row)
    if problem is not None:
        return problem
    if daemon.worker.paused_reason:
        return f"paused: {daemon.worker.paused_reason}"
    return None


class Answers:
    """What the metrics endpoint answers over the process's life: from start-up's state
    until the daemon runs (`daemon` set), then from the daemon's."""

    def __init__(self, metrics: Metrics, startup: Startup) -> None:
        self.metrics = metrics
        self.startup = startup
        self.daemon: Daemon | None = None

    async def exposition(self) -> bytes:
        pool = self.daemon.pool if self.daemon else self.startup.pool
        return await self.metrics.exposition(pool)

    def health(self) -> str | None:
        return loop_stalled(self.daemon) if self.daemon else self.startup.stalled()

    async def ready(self) -> str | None:
        return await not_ready(self.daemon) if self.daemon else self.startup.not_ready()


async def _serve_metrics(settings: Settings, answers: Answers) -> MetricsServer | None:
    """The /metrics, /healthz, /readyz endpoint; None when off, or when its address cannot
    be bound (said in the log: metrics are no reason to stop syncing)."""
    address = listen_address(settings.metrics_listen)
    if address is None:
        return None
    server = MetricsServer(*address, exposition=answers.exposition, health=answers.health,
                           ready=answers.ready)
    try:
        await server.start()
    except OSError as exc:
        log.warning("metrics_listen %s: cannot listen (%s); serving no metrics",
                    settings.metrics_listen, exc.strerror or exc)
        return None
    log.info("metrics on http://%s/metrics", settings.metrics_listen)
    return server


async def _supervise(daemon: Daemon, stop: asyncio.Event) -> None:
    """STATUS and WATCHDOG for systemd, heartbeat in qbsync.workers, daily log partitions."""
    settings = daemon.settings
    interval = min(sdnotify.watchdog_interval() or 5.0, 5.0)
    last_maintenance = time.monotonic()
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
        worker = daemon.worker
        if loop_stalled(daemon) is None:
            sdnotify.notify(WATCHDOG=1)  # only while the loop really turns
        try:
            if await _schema_moved(daemon, stop):
                return
            depth = await daemon.pool.fetchrow(Q.queue_depth)
            await daemon.pool.execute(Q.heartbeat, settings.worker_name)
            await daemon.realm.reload_settings(daemon.pool)  # DBA overrides take effect
            if depth["waiting"]:  # rows waiting for a setting whose recheck time came
                await daemon.pool.fetchval(Q.release_setting_waits, daemon.realm.realm_id)
            if time.monotonic() - last_maintenance > 86400:
                await daemon.pool.fetch(Q.maintain_log_partitions)
                last_maintenance = time.monotonic()
        except DB_ERRORS as exc:
            sdnotify.notify(STATUS=f"database unavailable: {exc}")
            continue
        last = worker.stats.last_push
        status = (
            f"{'paused: ' + worker.paused_reason if worker.paused_reason else 'syncing'}; "
            f"queue {depth['pending']} pending, {depth['running']} running, "
            f"{depth['dead']} dead"
            + (f", {depth['waiting']} waiting for settings" if depth["waiting"] else "")
            + f"; pushed {worker.stats.pushed}"
            + (f", last push {time.strftime('%H:%M:%S', time.localtime(last))}" if last else "")
        )
        sdnotify.notify(STATUS=status)


async def _schema_moved(daemon: Daemon, stop: asyncio.Event) -> bool:
    """Stop-migrate-start, the daemon's side: `qbsync migrate --force` (or a migration run
    while this daemon's heartbeat was late) changed the schema under it. Its functions may
    now mean something else, so it stops claiming at once, lets in-flight pushes record
    their outcome, and exits 5 for systemd to restart it into the start-up check."""
    status = await schema.read_status_async(daemon.pool, daemon.shipped)
    error = status.problem()
    if error is None:
        return False
    log.critical("the database schema changed under this daemon: %s; stopped claiming",
                 error, extra={"exit_code": EXIT_SCHEMA})
    sdnotify.notify(STATUS=f"stopped: {error}")
    daemon.failure = error
    stop.set()
    return True


async def _duties(daemon: Daemon, stop: asyncio.Event) -> None:
    """What the daemon does besides pushing rows: answer admin requests (reports,
    connection tests), fold the dashboard counters, and look for drift in QuickBooks."""
    settings = daemon.settings
    realm_id = daemon.realm.realm_id
    last_fold = last_drift = time.monotonic()

    async def refresh() -> dict[str, Any]:
        prepared = await prepare(daemon.pool, daemon.realm, daemon.client)
        _report_lookup(daemon.realm, prepared)
        return prepared.summary()

    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), settings.poll_interval)
        if stop.is_set() or daemon.worker.paused_reason:
            continue
        now = time.monotonic()
        try:
            await admin.handle_pending_requests(daemon.pool, daemon.client, realm_id,
                                                worker=settings.worker_name,
                                                refresh_settings=refresh)
            if now - last_fold >= STATS_FOLD_INTERVAL:
                last_fold = now
                await daemon.pool.fetchval(Q.fold_stats)
            if settings.drift_interval and now - last_drift >= settings.drift_interval:
                last_drift = now
                await drift.poll(daemon.pool, daemon.client, realm_id)
        except DB_ERRORS as exc:
            log.warning("background duty failed (database): %s", exc)
        except (QboError, ReconnectRequired) as exc:
            log.warning("drift detection failed: %s", exc)


async def run(
    settings: Settings,
    *,
    stop: asyncio.Event | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    on_ready: Callable[[Daemon], Any] | None = None,
) -> int:
    """Run until `stop` is set; returns the process exit code. The metrics endpoint
    listens from the start, start-up included (it may wait for the database, a connected
    company or QuickBooks for as long as it takes)."""
    stop = stop or asyncio.Event()
    _vault(settings)  # settings that cannot work are refused before anything listens
    metrics = Metrics() if settings.metrics_listen else None
    startup = Startup(stall_after=stall_limit(settings.http_timeout),
                      on_phase=metrics.enter_phase if metrics else None)
    answers = Answers(metrics, startup) if metrics else None
    server = await _serve_metrics(settings, answers) if answers else None
    starting = asyncio.create_task(_notify_starting(startup, stop), name="qbsync-starting")
    try:
        daemon = await start(settings, stop, transport=transport, metrics=metrics,
                             startup=startup)
        starting.cancel()
        if daemon is None:
            log.info("qbsync %s stopped before it started", settings.worker_name)
            return 0
        if answers is not None:
            answers.daemon = daemon
        startup.enter("running", f"syncing to QuickBooks company {daemon.realm.realm_id}")
        return await _run_started(daemon, stop, server, on_ready)
    finally:
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        if server is not None:
            await server.close()


async def _notify_starting(startup: Startup, stop: asyncio.Event) -> None:
    """systemd during start-up, which may wait for as long as it takes (the database, a
    connected company, QuickBooks): the service counts as started (READY=1, STATUS naming
    what it waits for) once its settings are read, so that neither `systemctl start` nor the
    boot hangs until someone runs `qbsync connect`; /readyz says it is not ready yet.
    WATCHDOG=1 goes out while start-up takes steps (what /healthz goes by), so a start-up
    that hangs is restarted, as a worker loop that hangs is."""
    sdnotify.notify(READY=1, STATUS=startup.not_ready())
    interval = sdnotify.watchdog_interval()
    if interval is None:
        return
    while not stop.is_set():
        if startup.stalled() is None:
            sdnotify.notify(WATCHDOG=1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)


async def _run_started(daemon: Daemon, stop: asyncio.Event, server: MetricsServer | None,
                       on_ready: Callable[[Daemon], Any] | None) -> int:
    """The started daemon: READY=1, the worker until `stop`, then the drain and the close."""
    settings = daemon.settings
    supervisor = asyncio.create_task(_supervise(daemon, stop), name="qbsync-supervise")
    duties = asyncio.create_task(_duties(daemon, stop), name="qbsync-duties")
    try:
        sdnotify.notify(READY=1, STATUS=f"syncing to QuickBooks company {daemon.realm.realm_id}")
        log.info("qbsync %s syncing to company %s (%s)", settings.worker_name,
                 daemon.realm.realm_id, daemon.realm.company_name or "unnamed")
        if on_ready:
            on_ready(daemon)
        await daemon.worker.run(stop)
        return exit_code(daemon.failure) if daemon.failure else 0
    finally:
        sdnotify.notify(STOPPING=1)
        stop.set()
        for task in (supervisor, duties):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if server is not None:
            await server.close()
        await daemon.close()
        log.info("qbsync %s stopped", settings.worker_name)


async def _run_until_signalled(settings: Settings) -> int:
    """`run`, stopped by SIGTERM/SIGINT, including one that arrived before the loop ran."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # A signal the kernel delivers to another thread (the resolver's, Sentry's) still wakes
    # the loop: its number is written to this socket, and the handler then runs here.
    wake_r, wake_w = socket.socketpair()
    wake_r.setblocking(False)
    wake_w.setblocking(False)
    loop.add_reader(wake_r.fileno(), _drain, wake_r)
    previous = signal.set_wakeup_fd(wake_w.fileno(), warn_on_full_buffer=False)
    STOP.bind(lambda: loop.call_soon_threadsafe(stop.set))
    try:
        return await run(settings, stop=stop)
    finally:
        STOP.unbind()
        signal.set_wakeup_fd(previous)
        loop.remove_reader(wake_r.fileno())
        wake_r.close()
        wake_w.close()


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError, InterruptedError):
        while sock.recv(4096):
            pass


def main(settings: Settings) -> int:
    """`qbsync run`: every line it writes is a log record in the configured format, the
    fatal one included (JSON mode: every line is JSON); returns the exit code."""
    STOP.install()  # the console script did already, before the imports; `python -c` may not
    logs.configure(settings.log_level, settings.log_format)
    for warning in environment_warnings():
        log.warning(warning)
    try:
        sentry.init_sentry(settings)
        return asyncio.run(_run_until_signalled(settings))
    except ReconnectRequired as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    except QbsyncError as exc:
        return fatal(exc)
    except Exception:
        log.critical("qbsync stopped on an unexpected error", exc_info=True,
                     extra={"exit_code": EXIT_FAILURE})
        return EXIT_FAILURE


def fatal(exc: QbsyncError) -> int:
    """The one line saying why the daemon cannot run; returns its exit code."""
    code = exit_code(exc)
    log.critical("qbsync cannot run: %s", exc, extra={"exit_code": code})
    return code


def refuse_settings(exc: ConfigError) -> int:
    """Settings that do not load: the fatal line in the log format the environment or the
    config file asks for (they could not be validated), else text."""
    fmt = os.environ.get("QBSYNC_LOG_FORMAT", "").strip().lower()
    if fmt not in ("json", "text"):
        with contextlib.suppress(QbsyncError, OSError):
            from .config import config_file, read_toml

            path = config_file()
            fmt = str(read_toml(path).get("log_format", "")).lower() if path else ""
    logs.configure("INFO", fmt if fmt in ("json", "text") else "text")
    return fatal(exc)
