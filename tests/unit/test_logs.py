"""Logging: JSON lines and text output, extra fields, and secrets scrubbed from every part of
a record in both formats (message, arguments, extras, exceptions, httpx's own lines); lines
for journald under systemd; httpx's request lines at DEBUG."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from qbsync import logs
from qbsync.logs import MASK, configure, register_secret, scrub

FORMATS = ["json", "text"]


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    saved = {n: logging.getLogger(n).filters[:] for n in logs.SCRUBBED_LOGGERS}
    httpcore_level = logging.getLogger("httpcore").level
    httpx_level = logging.getLogger("httpx").level
    yield
    logging.getLogger("httpx").setLevel(httpx_level)
    root.handlers[:] = handlers
    root.setLevel(level)
    for name, filters in saved.items():
        logging.getLogger(name).filters[:] = filters
    logging.getLogger("httpcore").setLevel(httpcore_level)
    logging.captureWarnings(False)
    logs.forget_secrets()


def capture(fmt: str, level: str = "DEBUG") -> io.StringIO:
    out = io.StringIO()
    configure(level, fmt, stream=out)
    return out


# (what is logged, the secret that must not appear, text that must survive)
CASES = [
    ("Authorization: Bearer eyJhbGciOiJkaXIi.abc-def_ghi", "eyJhbGciOiJkaXIi", "Authorization"),
    ("token refreshed with Bearer AB11cdEFgh.ijk", "AB11cdEFgh", "token refreshed"),
    ("headers={'Authorization': 'Basic Y2xpZW50OnNlY3JldHNlY3JldA=='}", "Y2xpZW50", "headers"),
    ("[(b'authorization', b'Bearer tok-in-tuple-123')]", "tok-in-tuple-123", "b'authorization'"),
    ('{"access_token": "eyJaccess.x.y", "expires_in": 3600}', "eyJaccess", '"expires_in": 3600'),
    ('{"refresh_token":"AB11refreshSecret","x_refresh_token_expires_in":8726400}',
     "AB11refreshSecret", "8726400"),
    ("{'client_secret': 'cs-python-repr', 'client_id': 'ABid'}", "cs-python-repr", "ABid"),
    ('{"code": "AB11authcode99"}', "AB11authcode99", '"code"'),
    ('{"password": "hunter2!"}', "hunter2!", '"password"'),
    ('body "{\\"refresh_token\\": \\"AB11escaped\\"}"', "AB11escaped", "body"),
    ("GET /callback?code=AB11oauthcode&state=xyz&realmId=9341", "AB11oauthcode", "realmId=9341"),
    ("grant_type=refresh_token&refresh_token=AB11formbody", "AB11formbody", "grant_type"),
    ("client_id=abc&client_secret=cs-in-query", "cs-in-query", "client_id=abc"),
    ("host=db password=pg-kv-secret dbname=shop", "pg-kv-secret", "dbname=shop"),
    ("host=db password='pg quoted secret' dbname=shop", "pg quoted", "dbname=shop"),
    ("connect postgresql://qbsync:pg-url-secret@db.example:5432/shop", "pg-url-secret",
     "@db.example:5432/shop"),
    ("dsn postgres://u:p%40ss-encoded@h/db", "p%40ss-encoded", "@h/db"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("text", "secret", "kept"), CASES)
def test_patterns_are_scrubbed_from_messages(fmt: str, text: str, secret: str, kept: str) -> None:
    out = capture(fmt)
    logging.getLogger("qbsync.test").info("seen: %s", text)
    line = out.getvalue()
    assert secret not in line
    assert MASK in line
    if fmt == "text":  # JSON escapes quotes; the surviving text is checked on the raw form
        assert kept in line
    else:
        assert kept in json.loads(line)["msg"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_registered_secrets_are_scrubbed(fmt: str) -> None:
    register_secret("opaque-runtime-value-42")
    register_secret(b"bytes-secret-value")
    register_secret("abc")  # too short to mask safely: ignored
    out = capture(fmt)
    log = logging.getLogger("qbsync.test")
    log.warning("token opaque-runtime-value-42 and bytes-secret-value; abc stays")
    line = out.getvalue()
    assert "opaque-runtime-value-42" not in line
    assert "bytes-secret-value" not in line
    assert "abc stays" in line


@pytest.mark.parametrize("fmt", FORMATS)
def test_extras_are_scrubbed(fmt: str) -> None:
    register_secret("registered-in-extra")
    out = capture(fmt)
    logging.getLogger("qbsync.test").info(
        "pushed",
        extra={
            "realm_id": "9341",
            "access_token": "eyJ-extra-token",  # a secret-named key: masked whole
            "response": {"refresh_token": "AB11nested", "Id": "42", "code": "6240"},
            "url": "https://x/cb?code=AB11extraurl&state=s",
            "note": "has registered-in-extra inside",
            "attempt": 2,
        },
    )
    line = out.getvalue()
    for secret in ("eyJ-extra-token", "AB11nested", "AB11extraurl", "registered-in-extra"):
        assert secret not in line
    assert "9341" in line
    assert "6240" in line
    assert "42" in line


@pytest.mark.parametrize("fmt", FORMATS)
def test_exceptions_are_scrubbed(fmt: str) -> None:
    out = capture(fmt)
    try:
        raise RuntimeError("refresh failed for Bearer eyJexception.token.zz")
    except RuntimeError:
        logging.getLogger("qbsync.test").exception("push failed")
    line = out.getvalue()
    assert "eyJexception" not in line
    assert "RuntimeError: refresh failed for Bearer ********" in (
        json.loads(line)["exc"] if fmt == "json" else line
    )


def test_json_lines_carry_the_fields() -> None:
    out = capture("json")
    logging.getLogger("qbsync.worker").info(
        "invoice %s pushed",
        "1042",
        extra={
            "realm_id": "9341",
            "entity": "order",
            "key": "1042",
            "qbo_id": "145",
            "request_id": "5f0c",
            "attempt": 1,
            "response_time_ms": 231.5,
        },
    )
    record = json.loads(out.getvalue())
    assert record["level"] == "INFO"
    assert record["logger"] == "qbsync.worker"
    assert record["msg"] == "invoice 1042 pushed"
    assert record["ts"].endswith("+00:00")
    assert "T" in record["ts"]
    assert record["realm_id"] == "9341"
    assert record["qbo_id"] == "145"
    assert record["attempt"] == 1
    assert record["response_time_ms"] == 231.5
    assert "_qbsync_scrubbed" not in record


def test_text_lines_are_readable() -> None:
    out = capture("text")
    logging.getLogger("qbsync.worker").warning(
        "row went dead", extra={"entity": "order", "key": "7", "error": "Duplicate Number"}
    )
    line = out.getvalue().strip()
    assert " WARNING qbsync.worker: row went dead " in line
    assert 'entity=order key=7 error="Duplicate Number"' in line


def test_qbo_error_codes_and_plain_words_survive() -> None:
    kept = [
        '{"Fault":{"Error":[{"Message":"Duplicate Document Number","code":"6140"}]}}',
        "Malformed bearer token",
        "status_code=400 code=3200",
        "order 7: mapping refused the row code=QB001",  # SQLSTATEs are error codes too
        '{"code": "22P02", "message": "invalid input syntax"}',
        "Basic info about the realm",
        "https://quickbooks.api.intuit.com:443/v3/company/9341/invoice?minorversion=75",
    ]
    for text in kept:
        assert scrub(text) == text


def test_scrub_is_idempotent() -> None:
    once = scrub("Bearer eyJabcdefghij postgresql://u:pw-x@h/db code=AB11z")
    assert scrub(once) == once


def test_level_filters_and_reconfigure_replaces_the_handler() -> None:
    first = capture("text", "WARNING")
    logging.getLogger("qbsync.test").info("hidden")
    second = capture("json", "INFO")
    logging.getLogger("qbsync.test").info("shown")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["msg"] == "shown"
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_qbsync_handler", False)]
    assert len(ours) == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="log format"):
        configure("INFO", "xml")
    with pytest.raises(ValueError, match="log level"):
        configure("LOUD", "text")


@pytest.mark.parametrize("fmt", FORMATS)
def test_httpx_request_lines_are_scrubbed(fmt: str) -> None:
    """httpx logs every request URL ("HTTP Request: ...", shown at DEBUG): the OAuth
    callback's code and a token in the query string must not reach the output."""
    out = capture(fmt, "DEBUG")
    # A handler on httpx's own logger, as another library or a test harness might add:
    # it sees the record before the root handler, so the logger-level filter must act.
    direct = io.StringIO()
    side = logging.StreamHandler(direct)
    logging.getLogger("httpx").addHandler(side)
    try:
        transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
        with httpx.Client(transport=transport) as client:
            client.get(
                "https://example.test/callback",
                params={"code": "AB11httpxcode", "state": "s", "access_token": "eyJhttpx"},
            )
    finally:
        logging.getLogger("httpx").removeHandler(side)
    for text in (out.getvalue(), direct.getvalue()):
        assert "HTTP Request: GET" in text
        assert "AB11httpxcode" not in text
        assert "eyJhttpx" not in text
        assert "state=s" in text


def _get(url: str) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json={}))
    with httpx.Client(transport=transport) as client:
        client.get(url)


@pytest.mark.parametrize("fmt", FORMATS)
def test_httpx_request_lines_are_debug(fmt: str) -> None:
    """One line per QuickBooks request is noise at INFO: httpx's lines are DEBUG."""
    quiet = capture(fmt, "INFO")
    _get("https://example.test/quiet")
    logging.getLogger("qbsync.test").info("kept")
    assert "example.test" not in quiet.getvalue()
    assert "kept" in quiet.getvalue()
    loud = capture(fmt, "DEBUG")
    _get("https://example.test/loud")
    line = next(x for x in loud.getvalue().splitlines() if "example.test/loud" in x)
    if fmt == "json":
        assert json.loads(line)["level"] == "DEBUG"
    else:
        assert " DEBUG httpx: HTTP Request: GET" in line


def _journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> io.TextIOWrapper:
    """A stream systemd would have connected to the journal: JOURNAL_STREAM names it."""
    stream = (tmp_path / "journal").open("w+", encoding="utf-8")
    info = os.fstat(stream.fileno())
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
    return stream


def test_journald_lines_carry_their_priority_and_no_timestamp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stream = _journal(tmp_path, monkeypatch)
    configure("DEBUG", "text", stream=stream)
    log = logging.getLogger("qbsync.worker")
    log.debug("d")
    log.info("i")
    log.warning("w")
    log.error("e")
    log.critical("c")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        log.exception("failed")
    stream.seek(0)
    lines = stream.read().splitlines()
    assert lines[:5] == ["<7>DEBUG qbsync.worker: d", "<6>INFO qbsync.worker: i",
                         "<4>WARNING qbsync.worker: w", "<3>ERROR qbsync.worker: e",
                         "<2>CRITICAL qbsync.worker: c"]
    # every line of a traceback is its own journal entry: each keeps the priority
    assert lines[5] == "<3>ERROR qbsync.worker: failed"
    assert len(lines) > 6
    assert all(line.startswith("<3>") for line in lines[5:])
    assert lines[-1] == "<3>RuntimeError: boom"


def test_journald_json_lines_are_json_after_the_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """journald strips the <N> prefix (SyslogLevelPrefix=yes): each entry is pure JSON."""
    stream = _journal(tmp_path, monkeypatch)
    configure("INFO", "json", stream=stream)
    logging.getLogger("qbsync.daemon").warning("w", extra={"entity": "order"})
    stream.seek(0)
    line = stream.read().strip()
    assert line.startswith("<4>{")
    assert json.loads(line[3:])["entity"] == "order"


def test_a_stream_that_is_not_the_journal_keeps_timestamps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JOURNAL_STREAM is inherited by children whose stderr is redirected: only the very
    stream it names is the journal."""
    _journal(tmp_path, monkeypatch)
    other = capture("text", "INFO")
    logging.getLogger("qbsync.test").info("plain")
    line = other.getvalue().strip()
    assert not line.startswith("<")
    assert line.endswith(" INFO qbsync.test: plain")
    assert line[:4].isdigit()  # the timestamp
