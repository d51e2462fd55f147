"""Logging: JSON lines or readable text on stderr (journald under systemd), secrets scrubbed.

``configure(level, fmt)`` installs one handler on the root logger. Every record passes through
`ScrubFilter` before any output: its message, arguments, extra fields, exception and stack
text lose bearer/basic credentials, Authorization headers, OAuth fields (``access_token``,
``refresh_token``, ``id_token``, ``client_secret``, ``code``, ``password``, ``token``) in JSON,
Python reprs and query strings, passwords in URLs (``postgresql://user:secret@host``) and in
libpq ``password=`` strings, and every value registered with `register_secret`. The filter
sits on the handler (so records of every library, propagated to the root, are scrubbed) and
also on the ``httpx``/``httpcore`` loggers themselves (so their request URLs are scrubbed
before any other handler or integration sees them).

Under systemd (stderr is the journal stream that ``JOURNAL_STREAM`` names) every line starts
with its syslog priority, ``<3>`` for an error ... ``<7>`` for debug (sd-daemon(3)): journald
strips it into the entry's PRIORITY, so ``journalctl -p warning`` works; text lines then
carry no timestamp of their own (the journal stamps each entry). httpx logs each request at
INFO; here those lines are DEBUG, shown only with log_level DEBUG.

Extra fields (``logger.info("pushed", extra={"realm_id": r, "qbo_id": i})``) become JSON keys
or ``key=value`` suffixes. QuickBooks error codes survive: a ``code`` whose value is a short
number (``"6240"``) or a SQLSTATE (``"QB001"``) is an error code, not an OAuth authorization
code, and is kept.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import IO, Any, Literal

MASK = "********"

# Keys whose values are secrets wherever they appear (JSON, dict reprs, query strings, extras).
SECRET_KEYS: frozenset[str] = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "client_secret",
        "code",
        "password",
        "passwd",
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "api_key",
        "secret",
        "token_keys",
        "sentry_dsn",
        "dsn",
    }
)
_KEYS_RE = "access_token|refresh_token|id_token|client_secret|password|passwd|token|code"

# A value of `code` that is a QuickBooks/HTTP error code or a SQLSTATE (QB001, 22P02), not
# an OAuth authorization code (dozens of characters).
_ERROR_CODE = re.compile(r"-?\d{1,6}|[0-9A-Z]{5}")

# Libraries whose own loggers get the filter too (they log request URLs).
SCRUBBED_LOGGERS = ("httpx", "httpcore", "asyncpg", "psycopg")

_Q = r"\\?[\"']"  # a quote, possibly escaped (JSON inside a JSON string)


def _keep_code(match: re.Match[str], value: str) -> bool:
    return match.group("key").lower() == "code" and _ERROR_CODE.fullmatch(value) is not None


def _sub_json(match: re.Match[str]) -> str:
    raw = match.group("val")
    quote = raw[:2] if raw.startswith("\\") else raw[:1] if raw[:1] in "\"'" else ""
    value = raw[len(quote) : len(raw) - len(quote)] if quote else raw
    if _keep_code(match, value) or value == MASK:
        return match.group(0)
    return f"{match.group('pre')}{quote}{MASK}{quote}"


def _sub_kv(match: re.Match[str]) -> str:
    value = match.group("val").strip("'\"")
    if _keep_code(match, value) or value == MASK:
        return match.group(0)
    return f"{match.group('pre')}{MASK}"


_PATTERNS: list[tuple[re.Pattern[str], Any]] = [
    # "Authorization: Bearer x" / 'authorization': 'Basic x' / (b'authorization', b'x')
    (
        re.compile(
            r"(?P<pre>\b(?:proxy-)?authorization\\?[\"']?\s*[:=]\s*(?-i:b)?\\?[\"']?)"
            r"(?P<val>[^\"'\\\r\n,;}\])]+)",
            re.IGNORECASE,
        ),
        lambda m: m.group("pre") + MASK,
    ),
    (
        re.compile(
            r"(?P<pre>[\"']authorization[\"']\s*,\s*(?-i:b)?[\"'])(?P<val>[^\"']+)", re.IGNORECASE
        ),
        lambda m: m.group("pre") + MASK,
    ),
    # Bearer / Basic credentials anywhere
    (
        re.compile(
            r"\b(?:(?P<b>Bearer)\s+[A-Za-z0-9\-._~+/]{8,}|(?P<a>Basic)\s+[A-Za-z0-9+/]{16,})=*",
            re.IGNORECASE,
        ),
        lambda m: f"{m.group('b') or m.group('a')} {MASK}",
    ),
    # JSON / dict repr: "access_token": "x", 'code': 'x', \"password\": \"x\", "token": 123
    (
        re.compile(
            rf"(?P<pre>{_Q}(?P<key>{_KEYS_RE}){_Q}\s*:\s*)"
            r"(?P<val>\\\"(?:(?!\\\").)*\\\""  # \"escaped JSON\"
            r"|\"(?:\\.|[^\"\\])*\""  # "double quoted"
            r"|'(?:\\.|[^'\\])*'"  # 'single quoted'
            r"|[^\s\"',}\]]+)",  # bare: a number, null
            re.IGNORECASE,
        ),
        _sub_json,
    ),
    # query strings, form bodies, libpq key=value: code=x&state=y, password='a b'
    (
        re.compile(
            rf"(?P<pre>(?<![\w\-.])(?P<key>{_KEYS_RE})=)"
            r"(?P<val>'[^']*'|\"[^\"]*\"|[^&\s\"',;)\]}]+)",
            re.IGNORECASE,
        ),
        _sub_kv,
    ),
    # password in a URL's userinfo: scheme://user:secret@host
    (
        re.compile(r"(?P<pre>\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^\s:/@]*:)(?P<val>[^@\s/]*)@"),
        lambda m: m.group(0) if m.group("val") == MASK else f"{m.group('pre')}{MASK}@",
    ),
]

_MIN_SECRET_LEN = 6
_secrets: set[str] = set()
_secrets_re: re.Pattern[str] | None = None
_lock = threading.Lock()


def register_secret(value: str | bytes | None) -> None:
    """Scrub this exact value from every log record and Sentry event from now on (tokens,
    keys and secrets the daemon loads). Values shorter than 6 characters are ignored: they
    would mask ordinary words."""
    global _secrets_re
    if value is None:
        return
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    text = text.strip()
    if len(text) < _MIN_SECRET_LEN:
        return
    with _lock:
        if text in _secrets:
            return
        _secrets.add(text)
        alternatives = sorted(_secrets, key=len, reverse=True)
        _secrets_re = re.compile("|".join(re.escape(s) for s in alternatives))


def forget_secrets() -> None:
    """Drop every registered secret (tests)."""
    global _secrets_re
    with _lock:
        _secrets.clear()
        _secrets_re = None


def scrub(text: str) -> str:
    """`text` with every known secret pattern and registered secret replaced by ********."""
    if not text:
        return text
    registered = _secrets_re
    if registered is not None:
        text = registered.sub(MASK, text)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


def is_secret_key(key: object) -> bool:
    return isinstance(key, str) and key.lower().replace("-", "_") in SECRET_KEYS


def scrub_value(value: Any, key: object = None, _depth: int = 0) -> Any:
    """A copy of `value` (str, bytes, dict, list, tuple, set; anything else as is) scrubbed
    recursively; a value under a secret key (`SECRET_KEYS`) is masked as a whole, except a
    numeric error ``code``."""
    if _depth > 20:
        return value
    if is_secret_key(key) and value is not None and value != "":
        if str(key).lower() == "code" and (
            (isinstance(value, int) and not isinstance(value, bool))
            or (isinstance(value, str) and _ERROR_CODE.fullmatch(value))
        ):
            return value
        return MASK
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, bytes):
        return scrub(value.decode("utf-8", "replace"))
    if isinstance(value, dict):
        return {k: scrub_value(v, k, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub_value(v, None, _depth + 1) for v in value]
    return value


# LogRecord attributes that are not "extra" fields.
_STANDARD_ATTRS = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: v
        for k, v in record.__dict__.items()
        if k not in _STANDARD_ATTRS and not k.startswith("_")
    }


_CONTAINERS = (str, bytes, dict, list, tuple, set, frozenset)


class ScrubFilter(logging.Filter):
    """Rewrites a record in place with secrets removed; never drops a record. Idempotent."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_qbsync_scrubbed", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what we can, scrubbed
            message = f"{record.msg!r} % {record.args!r}"
        record.msg = scrub(message)
        record.args = None
        for key, value in extra_fields(record).items():
            if is_secret_key(key) or isinstance(value, _CONTAINERS):
                setattr(record, key, scrub_value(value, key))
            elif not isinstance(value, int | float | bool | type(None)):
                setattr(record, key, scrub(str(value)))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            # Formatters render exc_info only while exc_text is empty, so the scrubbed text
            # is what every formatter prints. exc_info stays for Sentry's logging hook (which
            # runs after the handlers); its events are scrubbed by qbsync.sentry.
            record.exc_text = scrub(record.exc_text)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info)
        record._qbsync_scrubbed = True
        return True


def _iso(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, the extra fields, exc, stack."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _iso(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in extra_fields(record).items():
            out.setdefault(key, value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """``2025-01-02T03:04:05.678+00:00 INFO qbsync.worker: pushed realm_id=1 qbo_id=42``;
    without the timestamp when `timestamps` is false (the journal stamps its entries)."""

    def __init__(self, *, timestamps: bool = True) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        line = f"{record.levelname} {record.name}: {record.getMessage()}"
        if self.timestamps:
            line = f"{_iso(record)} {line}"
        extras = " ".join(f"{k}={_text_value(v)}" for k, v in extra_fields(record).items())
        if extras:
            line = f"{line} {extras}"
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line = f"{line}\n{record.exc_text}"
        if record.stack_info:
            line = f"{line}\n{record.stack_info}"
        return line


def _text_value(value: Any) -> str:
    if isinstance(value, str):
        return value if value and not any(c.isspace() or c in "\"'=" for c in value) else (
            json.dumps(value, ensure_ascii=False)
        )
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


# syslog priorities (sd-daemon(3)'s <N> prefixes) of the logging levels
PRIORITIES = {logging.CRITICAL: 2, logging.ERROR: 3, logging.WARNING: 4, logging.INFO: 6,
              logging.DEBUG: 7}


def priority(levelno: int) -> int:
    """The syslog priority of a level (a custom level: the next more severe one's)."""
    return next((p for level, p in sorted(PRIORITIES.items()) if levelno <= level), 2)


class JournalFormatter(logging.Formatter):
    """Another formatter's lines, each prefixed with ``<priority>`` (every line of a
    traceback too: journald makes each line an entry of its own)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in self.inner.format(record).split("\n"))


def is_journal(stream: IO[str]) -> bool:
    """Whether `stream` is the journal connection systemd gave this service: JOURNAL_STREAM
    holds "device:inode" of it (systemd.exec(5)); a redirected stderr is not."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError):  # no file descriptor (StringIO, closed)
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


class _RequestsAtDebug(logging.Filter):
    """httpx's per-request lines ("HTTP Request: POST ... 200 OK") are INFO: make them DEBUG.
    (The logger's level, set by `configure`, keeps them from being made at all above DEBUG.)"""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


_HANDLER_MARK = "_qbsync_handler"
_FILTER = ScrubFilter()
_DEMOTE = _RequestsAtDebug()


def scrub_filter() -> ScrubFilter:
    """The shared filter (attach it to any extra handler you add)."""
    return _FILTER


def configure(
    level: str | int = "INFO",
    fmt: Literal["json", "text"] | str = "text",
    stream: IO[str] | None = None,
    scrubbed_loggers: Iterable[str] = SCRUBBED_LOGGERS,
    journal: bool | None = None,
) -> logging.Handler:
    """Log to `stream` (default stderr) at `level` in `fmt` ("json" or "text"), every record
    scrubbed. Replaces a handler installed by an earlier call; leaves others alone.
    `journal` (default: `is_journal(stream)`): lines for journald, see the module's doc."""
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be 'json' or 'text', not {fmt!r}")
    numeric = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
    out = stream if stream is not None else sys.stderr
    if journal is None:
        journal = is_journal(out)
    handler = logging.StreamHandler(out)
    formatter: logging.Formatter = (JsonFormatter() if fmt == "json"
                                    else TextFormatter(timestamps=not journal))
    handler.setFormatter(JournalFormatter(formatter) if journal else formatter)
    handler.addFilter(_FILTER)
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in scrubbed_loggers:
        lib = logging.getLogger(name)
        if _FILTER not in lib.filters:
            lib.addFilter(_FILTER)
    # httpcore logs every connection step at DEBUG; keep it quiet unless asked for.
    logging.getLogger("httpcore").setLevel(max(numeric, logging.INFO))
    # httpx's request lines: DEBUG (see _RequestsAtDebug); above DEBUG its warnings only.
    httpx_logger = logging.getLogger("httpx")
    httpx_logger.setLevel(logging.DEBUG if numeric <= logging.DEBUG
                          else max(numeric, logging.WARNING))
    if _DEMOTE not in httpx_logger.filters:
        httpx_logger.addFilter(_DEMOTE)
    logging.captureWarnings(True)
    return handler
