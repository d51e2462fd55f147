"""Sentry: off without a DSN; with one, every event that leaves is scrubbed (captured with a
fake transport, nothing goes over the network); dead rows are reported with the right tags."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sentry_sdk
from pydantic import SecretStr
from sentry_sdk.envelope import Envelope
from sentry_sdk.transport import Transport

from qbsync import config, logs
from qbsync.config import Settings
from qbsync.sentry import capture_dead_row, init_sentry

DSN = "https://pubkey0123456789@o0.ingest.sentry.io/42"


class FakeTransport(Transport):
    """Keeps the events the client would send."""

    def __init__(self) -> None:
        super().__init__()
        self.envelopes: list[Envelope] = []

    def capture_envelope(self, envelope: Envelope) -> None:
        self.envelopes.append(envelope)

    @property
    def events(self) -> list[dict[str, Any]]:
        return [dict(e) for env in self.envelopes if (e := env.get_event()) is not None]

    def flush(self, timeout: float, callback: Any = None) -> None:
        pass


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for name in list(os.environ):
        if name.upper().startswith(("QBSYNC_", "SENTRY_")) or name == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(name)
    monkeypatch.setattr(config, "DEFAULT_CONFIG_FILE", tmp_path / "absent.toml")
    yield
    client = sentry_sdk.get_client()
    if client.is_active():
        client.close()
    sentry_sdk.get_global_scope().set_client(None)
    sentry_sdk.get_isolation_scope().clear()
    sentry_sdk.get_current_scope().clear()
    logging.getLogger("qbsync.test").setLevel(logging.NOTSET)
    logs.forget_secrets()


@pytest.fixture
def transport() -> FakeTransport:
    fake = FakeTransport()
    settings = Settings(sentry_dsn=SecretStr(DSN), sentry_environment="test")
    assert init_sentry(settings, transport=fake)
    return fake


def sent(transport: FakeTransport) -> str:
    return json.dumps(transport.events, default=str)


def test_off_without_dsn() -> None:
    assert init_sentry(Settings()) is False
    assert not sentry_sdk.get_client().is_active()
    assert capture_dead_row("order", "1042", "Duplicate Document Number", "6140") is None


def test_options(transport: FakeTransport) -> None:
    options = sentry_sdk.get_client().options
    if "data_collection" in options:  # sentry-sdk 3, and 2.75+
        collected = options["data_collection"]
        assert collected["user_info"] is False
        assert collected["stack_frame_variables"] is False
        assert collected["http_bodies"] == []
        assert collected["cookies"]["mode"] == "off"
        assert collected["http_headers"]["request"]["mode"] == "off"
        assert collected["url_query_params"]["mode"] == "off"
        assert collected["database_query_data"] is False
    else:
        assert options["include_local_variables"] is False
        assert not options["send_default_pii"]
    assert options["traces_sample_rate"] == 0.0
    assert options["environment"] == "test"
    assert options["before_send"] is not None
    assert options["before_breadcrumb"] is not None


def test_exception_message_is_scrubbed(transport: FakeTransport) -> None:
    # Built at run time: Sentry sends the source lines around each frame, and a literal
    # token in this file would show up there.
    access = "eyJ" + "exceptionToken" + ".part.two"
    try:
        raise RuntimeError(f"refresh failed: Authorization: Bearer {access} "
                           "postgresql://qbsync:db-secret-1@db/shop")
    except RuntimeError as exc:
        sentry_sdk.capture_exception(exc)
    text = sent(transport)
    assert transport.events, "no event captured"
    assert access not in text
    assert "db-secret-1" not in text
    assert "refresh failed" in text
    frames = transport.events[0]["exception"]["values"][0]["stacktrace"]["frames"]
    assert all("vars" not in frame for frame in frames)  # local variables off


def test_logged_errors_and_breadcrumbs_are_scrubbed(transport: FakeTransport) -> None:
    logs.register_secret("runtime-registered-secret")
    log = logging.getLogger("qbsync.test")
    log.setLevel(logging.INFO)  # INFO records become breadcrumbs
    log.info("callback ?code=AB11breadcrumbcode&state=x")  # a breadcrumb
    log.info("token runtime-registered-secret loaded")  # a breadcrumb
    log.error('token endpoint said {"refresh_token": "AB11inerror", "error": "invalid_grant"}')
    text = sent(transport)
    assert "invalid_grant" in text  # the event itself was sent
    for secret in ("AB11breadcrumbcode", "runtime-registered-secret", "AB11inerror"):
        assert secret not in text
    crumbs = transport.events[-1]["breadcrumbs"]["values"]
    assert any("callback ?code=********" in c.get("message", "") for c in crumbs)


def test_extra_context_tags_and_request_are_scrubbed(transport: FakeTransport) -> None:
    with sentry_sdk.new_scope() as scope:
        scope.set_extra("access_token", "eyJextraToken")
        scope.set_extra("response", {"client_secret": "cs-in-extra", "Id": "7"})
        scope.set_context("http", {"headers": {"Authorization": "Basic Y2xpZW50OnNlY3JldHM="}})
        scope.set_tag("url", "https://x/cb?code=AB11intag")
        sentry_sdk.capture_message("something broke", level="error")
    event = transport.events[-1]
    text = sent(transport)
    for secret in ("eyJextraToken", "cs-in-extra", "Y2xpZW50OnNlY3JldHM=", "AB11intag"):
        assert secret not in text
    assert event["extra"]["response"]["Id"] == "7"


def test_dsn_key_is_registered_for_log_scrubbing(transport: FakeTransport) -> None:
    assert "pubkey0123456789" not in logs.scrub(f"using {DSN}")


def test_capture_dead_row(transport: FakeTransport) -> None:
    event_id = capture_dead_row(
        "order", "1042", "Duplicate Document Number Error", "6140", realm_id="9341"
    )
    assert event_id
    event = transport.events[-1]
    assert event["level"] == "error"
    assert event["tags"]["entity"] == "order"
    assert event["tags"]["qbo_code"] == "6140"
    assert event["tags"]["realm_id"] == "9341"
    assert event["fingerprint"] == ["qbsync-dead-row", "order", "6140"]
    assert "order 1042 went dead: Duplicate Document Number Error" in event["message"]
    assert event["contexts"]["row"]["key"] == "1042"


def test_dead_rows_group_by_entity_and_code(transport: FakeTransport) -> None:
    capture_dead_row("order", "1", "bad", "6000")
    capture_dead_row("order", "2", "other words", "6000")
    capture_dead_row("customer", "3", "bad", None)
    prints = [e["fingerprint"] for e in transport.events]
    assert prints[0] == prints[1]
    assert prints[2] == ["qbsync-dead-row", "customer", "none"]
    # the dead-row scope does not leak into later events
    sentry_sdk.capture_message("later")
    assert "entity" not in transport.events[-1].get("tags", {})


def test_dead_row_error_text_is_scrubbed(transport: FakeTransport) -> None:
    capture_dead_row("order", "9", "mapping failed: password=pg-in-dead-row", "mapping")
    assert "pg-in-dead-row" not in sent(transport)
