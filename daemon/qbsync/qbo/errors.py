"""QuickBooks errors: one class per way the daemon must react, parsed from any fault shape.

How the daemon reacts, by class (``kind`` is the same as a short string for logs and SQL):

=====================  ===============  ==================================================
class                  retryable        reaction
=====================  ===============  ==================================================
``Throttled``          yes (no try)     back off ``retry_after`` s, every process of the realm
``AuthError``          yes (no try)     refresh the access token (the client does it once)
``Forbidden``          no               wrong realm / scope / cluster (130, even with a
                                        401): operator must act
``TransientError``     yes              server or network trouble before anything happened
``UnknownOutcome``     yes, carefully   the write may have happened: look it up first
``ValidationFault``    no               QuickBooks refuses the body: row goes dead
``StaleObject``        yes, after read  re-read the object, re-apply the sparse update once
``DuplicateName``      no (caller may)  6240: a Customer/Vendor/Employee has the name
``DuplicateDocNumber`` no (caller may)  6140: ``existing_id`` is the TxnId when QBO names it
``NotFound``           no               610 / 404: the object is gone or inactive
=====================  ===============  ==================================================

Fault bodies come in several shapes (fact sheet sections 3 and 10): the ``{"Fault": ...}``
envelope (sometimes with HTTP 200, e.g. inside a batch), the gateway's lower-case
``{"fault": {"error": [...]}}`` for 401/403, XML for throttling and gateway errors, plain
text and empty bodies. :func:`error_from_response` reads all of them and never raises.
"""

from __future__ import annotations

import email.utils
import html
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..errors import QbsyncError

#: Intuit asks for a 60 s pause after a 429 when it gives no Retry-After.
DEFAULT_RETRY_AFTER = 60.0
_MAX_TEXT = 500  # plain-text bodies are cut: an HTML error page must not flood the log


@dataclass(frozen=True)
class FaultItem:
    """One ``Error`` entry of a fault."""

    code: str | None = None
    message: str = ""
    detail: str = ""
    element: str | None = None


class QboError(QbsyncError):
    """A QuickBooks answer (or its absence) that is not the expected result.

    Attributes: ``status`` (HTTP status, None when no answer came), ``code`` (QuickBooks
    fault code as a string, e.g. "6240"), ``message``, ``detail``, ``element``,
    ``fault_type`` (e.g. "ValidationFault"), ``intuit_tid`` (quote it to Intuit support),
    ``errors`` (every fault item, the first is the one above), ``request_id`` and
    ``response_ms`` (filled in by the client).
    """

    kind: ClassVar[str] = "error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str = "",
        *,
        status: int | None = None,
        code: str | None = None,
        detail: str = "",
        element: str | None = None,
        fault_type: str | None = None,
        intuit_tid: str | None = None,
        errors: tuple[FaultItem, ...] = (),
        request_id: str | None = None,
        response_ms: int | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail
        self.element = element or None
        self.fault_type = fault_type
        self.intuit_tid = intuit_tid
        self.errors = errors or (FaultItem(code, message, detail, element),)
        self.request_id = request_id
        self.response_ms = response_ms
        super().__init__(self.describe())

    def describe(self) -> str:
        """One line for logs and the database: ``QuickBooks 6240 Duplicate Name Exists Error:
        <detail>`` (HTTP status instead of the code when there is none)."""
        head = f"QuickBooks {self.code}" if self.code else f"QuickBooks HTTP {self.status or '-'}"
        text = head
        if self.message:
            text += f" {self.message}"
        if self.detail and self.detail != self.message:
            text += f": {self.detail}"
        if len(self.errors) > 1:
            text += f" (+{len(self.errors) - 1} more)"
        return " ".join(text.split())  # one line, whatever QuickBooks put in the text

    def __str__(self) -> str:
        return self.describe()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
                f"message={self.message!r}, intuit_tid={self.intuit_tid!r})")


class Throttled(QboError):
    """429 / 3001: too many requests for the realm. Wait ``retry_after`` seconds."""

    kind = "throttled"
    retryable = True

    def __init__(self, message: str = "", *, retry_after: float = DEFAULT_RETRY_AFTER,
                 **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class AuthError(QboError):
    """401 (codes 100, 3200, ...): the access token is expired, revoked or malformed."""

    kind = "auth"
    retryable = True


class Forbidden(QboError):
    """403 / 3100 (or 130 wrong cluster): the token is not valid for this realm or scope."""

    kind = "forbidden"


class TransientError(QboError):
    """Server or network trouble; QuickBooks did nothing (500/502/503, connect errors)."""

    kind = "transient"
    retryable = True


class UnknownOutcome(TransientError):
    """The request may have reached QuickBooks but no answer came (read timeout, connection
    dropped after sending, a gateway timeout on a write). Look the object up (requestid,
    DocNumber) before creating it again."""

    kind = "unknown_outcome"


class ValidationFault(QboError):
    """400 ValidationFault (2000/4000/6000 ranges ...): retrying the same body cannot help."""

    kind = "validation"


class StaleObject(ValidationFault):
    """5010: the SyncToken is old. Re-read the object and re-apply the update once."""

    kind = "stale_object"


class DuplicateName(ValidationFault):
    """6240: the name is taken (by a Customer, Vendor or Employee)."""

    kind = "duplicate_name"


class DuplicateDocNumber(ValidationFault):
    """6140: the DocNumber is taken; ``existing_id`` is the TxnId when QuickBooks names it."""

    kind = "duplicate_doc_number"

    def __init__(self, message: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        found = _TXN_ID.search(self.detail or "")
        self.existing_id: str | None = found[1] if found else None


class NotFound(ValidationFault):
    """610 / 404: the object does not exist or was made inactive."""

    kind = "not_found"


_TXN_ID = re.compile(r"TxnId\s*=\s*(\d+)")
_ERROR_CODE_IN_TEXT = re.compile(r"errorCode=0*(\d+)")
_AUTH_CODES = frozenset({"100", "3200", "3201", "3202", "3300"})
_FORBIDDEN_CODES = frozenset({"3100", "130"})
_GATEWAY_STATUSES = frozenset({500, 502, 503, 504})
# Gateway errors on a write that say "the upstream did not answer in time / properly": the
# write may have been applied behind the gateway. 500/503 mean QuickBooks refused or failed
# the request itself.
_AMBIGUOUS_WRITE_STATUSES = frozenset({502, 504})


# --- parsing -----------------------------------------------------------------------------


def parse_fault(body: bytes | str | Mapping[str, Any] | None
                ) -> tuple[tuple[FaultItem, ...], str | None]:
    """The fault items and fault type found in a body of any shape; ``((), None)`` if none.

    Never raises: an unreadable body simply has no fault.
    """
    if body is None:
        return (), None
    if isinstance(body, Mapping):
        return _from_json(body)
    text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
    stripped = text.strip()
    if not stripped:
        return (), None
    if stripped[0] in "{[":
        try:
            data = json.loads(stripped)
        except ValueError:
            return (), None
        return _from_json(data) if isinstance(data, Mapping) else ((), None)
    if stripped[0] == "<":
        return _from_xml(stripped)
    return (), None


def _from_json(data: Mapping[str, Any]) -> tuple[tuple[FaultItem, ...], str | None]:
    fault = data.get("Fault")
    if fault is None:
        fault = data.get("fault")
    if not isinstance(fault, Mapping):
        return (), None
    raw = fault.get("Error")
    if raw is None:
        raw = fault.get("error")
    if isinstance(raw, Mapping):
        raw = [raw]
    items: list[FaultItem] = []
    for err in raw if isinstance(raw, list) else []:
        if not isinstance(err, Mapping):
            continue
        message = _text(_get(err, "Message", "message"))
        code = _text(_get(err, "code", "Code")) or _code_in(message)
        items.append(FaultItem(code=code or None, message=message,
                               detail=_text(_get(err, "Detail", "detail")),
                               element=_text(_get(err, "element", "Element")) or None))
    ftype = _text(fault.get("type") or fault.get("Type")) or None
    if not items:
        items.append(FaultItem(message=ftype or "Fault"))
    return tuple(items), ftype


# An <Error> runs to its closing tag, or (QuickBooks sometimes leaves it unclosed, e.g. a
# 6070 answer quoted in QuickBooks-V3-PHP-SDK issue 445) to the next <Error> or </Fault>.
_XML_ERROR = re.compile(r"<(?:\w+:)?Error\b([^>]*?)(/?)>", re.S)
_XML_ERROR_END = re.compile(r"<(?:\w+:)?Error\b|</(?:\w+:)?(?:Error|Fault)\s*>", re.S)
_XML_FAULT_TYPE = re.compile(r"<(?:\w+:)?Fault\b[^>]*?\btype\s*=\s*[\"']([^\"']*)[\"']", re.S)


def _xml_attr(attrs: str, name: str) -> str:
    m = re.search(rf"\b{name}\s*=\s*[\"']([^\"']*)[\"']", attrs)
    return html.unescape(m[1]) if m else ""


def _xml_child(inner: str, name: str) -> str:
    m = re.search(rf"<(?:\w+:)?{name}\b[^>]*>(.*?)</(?:\w+:)?{name}\s*>", inner, re.S)
    return html.unescape(m[1]).strip() if m else ""


def _from_xml(text: str) -> tuple[tuple[FaultItem, ...], str | None]:
    # Regexes, not an XML parser: these bodies are small, sometimes not well-formed, and an
    # expat parser would take entity-expansion risks for no gain.
    items: list[FaultItem] = []
    for m in _XML_ERROR.finditer(text):
        attrs, inner = m[1], ""
        if not m[2]:  # not self-closing
            end = _XML_ERROR_END.search(text, m.end())
            inner = text[m.end():end.start() if end else len(text)]
        message = _xml_child(inner, "Message")
        code = _xml_attr(attrs, "code") or _code_in(message)
        items.append(FaultItem(code=code or None, message=message,
                               detail=_xml_child(inner, "Detail"),
                               element=_xml_attr(attrs, "element") or None))
    ftype_match = _XML_FAULT_TYPE.search(text)
    ftype = ftype_match[1] if ftype_match else None
    if not items and ftype_match is None:
        return (), None
    return tuple(items) or (FaultItem(message=ftype or "Fault"),), ftype


def _get(d: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if d.get(k) is not None:
            return d[k]
    return None


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _code_in(message: str) -> str | None:
    """The code hidden in gateway messages such as ``errorCode=003001``."""
    m = _ERROR_CODE_IN_TEXT.search(message or "")
    return m[1] if m else None


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float:
    """Seconds to wait from a Retry-After header (delta seconds or HTTP date); 60 if absent."""
    if not value:
        return DEFAULT_RETRY_AFTER
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return DEFAULT_RETRY_AFTER
    if when is None:
        return DEFAULT_RETRY_AFTER
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# --- classification ----------------------------------------------------------------------


def classify(status: int | None, code: str | None, fault_type: str | None = None,
             *, write: bool = False) -> type[QboError]:
    """The error class for an HTTP status and QuickBooks fault code."""
    if status == 429 or code == "3001":
        return Throttled  # also when it comes with 403 (quickbooks-ruby issue 338)
    if code in _FORBIDDEN_CODES and (status is None or status < 500):
        # before 401: a wrong cluster (130) comes with 401, and no new token cures it
        return Forbidden
    if status == 401 or code in _AUTH_CODES:
        return AuthError
    if status == 403:
        return Forbidden
    if code == "5010":
        return StaleObject
    if code == "6240":
        return DuplicateName
    if code == "6140":
        return DuplicateDocNumber
    if code == "610" or status == 404:
        return NotFound
    if status in _GATEWAY_STATUSES:
        return UnknownOutcome if write and status in _AMBIGUOUS_WRITE_STATUSES else TransientError
    if (fault_type or "").lower() == "systemfault":
        # An application error inside QuickBooks, even if the status says otherwise.
        return UnknownOutcome if write else TransientError
    if status is None or status < 300 or status == 400:
        return ValidationFault  # a Fault inside a 200 or a 400: QuickBooks refused the body
    return QboError


def error_from_fault(
    items: tuple[FaultItem, ...],
    fault_type: str | None,
    *,
    status: int | None,
    intuit_tid: str | None = None,
    retry_after: str | None = None,
    write: bool = False,
    fallback_message: str = "",
) -> QboError:
    first = items[0] if items else FaultItem(message=fallback_message)
    cls = classify(status, first.code, fault_type, write=write)
    kwargs: dict[str, Any] = {
        "status": status, "code": first.code, "detail": first.detail, "element": first.element,
        "fault_type": fault_type, "intuit_tid": intuit_tid, "errors": items,
    }
    if cls is Throttled:
        kwargs["retry_after"] = retry_after_seconds(retry_after)
    return cls(first.message or fallback_message, **kwargs)


def error_from_batch_item(item: Mapping[str, Any], *, intuit_tid: str | None = None
                          ) -> QboError | None:
    """The error of one ``BatchItemResponse`` entry, None when it succeeded."""
    if "Fault" not in item:
        return None
    items, ftype = _from_json(item)
    return error_from_fault(items, ftype, status=None, intuit_tid=intuit_tid)


def error_from_response(
    status: int,
    body: bytes | str | None,
    headers: Mapping[str, str] | None = None,
    *,
    write: bool = False,
    reason: str = "",
) -> QboError | None:
    """The error an HTTP answer stands for, or None when it is a success without a fault."""
    headers = headers or {}
    items, ftype = parse_fault(body)
    if not items and 200 <= status < 300:
        return None
    fallback = reason
    if not items and body:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes | bytearray) else body
        fallback = " ".join(text.split())[:_MAX_TEXT] or reason
    return error_from_fault(
        items, ftype, status=status, intuit_tid=_header(headers, "intuit_tid"),
        retry_after=_header(headers, "retry-after"), write=write,
        fallback_message=fallback or f"HTTP {status}",
    )


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        # httpx.Headers is case-insensitive already; plain dicts from tests may not be.
        for k, v in headers.items():
            if k.lower() == name:
                return v
    return value
