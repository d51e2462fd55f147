"""Sentry error reporting, off unless ``sentry_dsn`` is set; nothing secret leaves the host.

`init_sentry` passes every event, transaction and breadcrumb through `qbsync.logs`
scrubbing (exception messages, log messages, breadcrumbs, extra, contexts, request data,
tags), turns local variables off and collects no user data, cookies, headers or bodies.
sentry-sdk 3 (and 2.75+) says this with ``data_collection``; older 2.x releases with
``send_default_pii=False`` and ``include_local_variables=False``. Source context lines of
stack frames are still sent: code holds no secrets. `capture_dead_row` reports a row that
went dead.
"""

from __future__ import annotations

import inspect
import logging
from typing import TYPE_CHECKING, Any

import sentry_sdk
from sentry_sdk.consts import ClientConstructor
from sentry_sdk.integrations.logging import LoggingIntegration

from . import __version__
from .logs import register_secret, scrub_value

if TYPE_CHECKING:
    from .config import Settings

log = logging.getLogger(__name__)

# The options this sentry-sdk accepts: 3.0 refuses unknown ones (before_send_transaction,
# send_default_pii and include_local_variables are gone), 2.x accepts them.
_SDK_OPTIONS = frozenset(inspect.signature(ClientConstructor).parameters)

# Everything the SDK could collect on its own, off: qbsync sends only what it reports.
_NO_DATA_COLLECTION: dict[str, Any] = {
    "user_info": False,
    "cookies": {"mode": "off"},
    "http_headers": {"request": {"mode": "off"}},
    "http_bodies": [],
    "url_query_params": {"mode": "off"},
    "database_query_data": False,
    "queues": False,
    "stack_frame_variables": False,
}


def scrub_event(event: Any, hint: Any = None) -> Any:
    """`before_send`: the event with every string scrubbed and secret-named keys masked."""
    return scrub_value(event)


def scrub_breadcrumb(crumb: Any, hint: Any = None) -> Any:
    """`before_breadcrumb`: likewise for breadcrumbs (log lines, HTTP requests)."""
    return scrub_value(crumb)


def init_sentry(settings: Settings, **options: Any) -> bool:
    """Start Sentry when ``settings.sentry_dsn`` is set; returns whether it did. `options`
    go to ``sentry_sdk.init`` (tests pass ``transport=``)."""
    if settings.sentry_dsn is None:
        return False
    dsn = settings.sentry_dsn.get_secret_value()
    register_secret(dsn)  # the DSN's key must not appear in a log line either
    config: dict[str, Any] = {
        "dsn": dsn,
        "environment": settings.sentry_environment,
        "release": f"qbsync@{__version__}",
        "server_name": settings.worker_name,
        "before_send": scrub_event,
        "before_breadcrumb": scrub_breadcrumb,
        "max_request_body_size": "never",
        "traces_sample_rate": 0.0,
        # Logged errors become events and INFO lines breadcrumbs, as sentry-sdk 2 did by
        # default (3.0 turned logged events off).
        "integrations": [LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        # A dead row is a message, not a crash: no stack of the daemon's own frames
        # (3.0 attaches one to every message by default).
        "attach_stacktrace": False,
    }
    if "before_send_transaction" in _SDK_OPTIONS:  # 2.x; 3.0 sends no transactions at rate 0
        config["before_send_transaction"] = scrub_event
    if "data_collection" in _SDK_OPTIONS:
        config["data_collection"] = _NO_DATA_COLLECTION
    else:  # sentry-sdk < 2.75
        config["send_default_pii"] = False
        config["include_local_variables"] = False
    config.update(options)
    sentry_sdk.init(**config)
    log.info("Sentry reporting on", extra={"sentry_environment": settings.sentry_environment})
    return True


def capture_dead_row(
    entity: str,
    key: str,
    error: str,
    code: str | int | None = None,
    *,
    realm_id: str | None = None,
) -> str | None:
    """Report a row gone dead as one Sentry event (level error), tagged ``entity`` and
    ``qbo_code`` and grouped by entity + code (not by key or message). Returns the event
    id, or None when Sentry is off."""
    if not sentry_sdk.get_client().is_active():
        return None
    code_tag = str(code) if code is not None and str(code) else "none"
    with sentry_sdk.new_scope() as scope:
        scope.set_level("error")
        scope.set_tag("entity", entity)
        scope.set_tag("qbo_code", code_tag)
        if realm_id is not None:
            scope.set_tag("realm_id", realm_id)
        scope.set_context("row", {"entity": entity, "key": key, "error": error})
        scope.fingerprint = ["qbsync-dead-row", entity, code_tag]
        return sentry_sdk.capture_message(f"{entity} {key} went dead: {error}", level="error")
