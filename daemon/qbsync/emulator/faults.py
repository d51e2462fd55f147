"""QuickBooks error envelopes.

Three shapes exist, each as real answers show it (tests/fixtures/qbo, SOURCES.md):

* the API ``Fault`` envelope: ``{"Fault": {"Error": [{"Message", "Detail", "code", "element"}],
  "type": ...}, "time": ...}`` with ``code`` a string;
* the gateway authentication shape used for 401/403 (lower-case keys, epoch-millisecond time);
* the throttle answer (429, code 3001), which QuickBooks sends as XML even when the client
  asked for JSON.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .. import fastjson
from .clock import QBO_TZ

INACTIVE_DETAIL = (
    "Object Not Found : Something you're trying to use has been made inactive. "
    "Check the fields with accounts, customers, items, vendors or employees."
)


def qbo_time(ts: float | None = None) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(time.time() if ts is None else ts, QBO_TZ).isoformat(
        timespec="milliseconds"
    )


@dataclass
class ErrorItem:
    message: str
    detail: str
    code: str
    element: str = ""

    def as_dict(self) -> dict[str, str]:
        return {
            "Message": self.message,
            "Detail": self.detail,
            "code": self.code,
            "element": self.element,
        }


@dataclass
class QBOFault(Exception):
    """An error answered with the ``Fault`` envelope."""

    errors: list[ErrorItem]
    status: int = 400
    type: str = "ValidationFault"
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return "; ".join(f"{e.code} {e.message}: {e.detail}" for e in self.errors)

    @property
    def code(self) -> str:
        return self.errors[0].code

    def fault(self) -> dict[str, Any]:
        return {"Error": [e.as_dict() for e in self.errors], "type": self.type}

    def body(self, ts: float | None = None) -> dict[str, Any]:
        return {"Fault": self.fault(), "time": qbo_time(ts)}


def fault(
    code: str | int,
    message: str,
    detail: str,
    element: str = "",
    status: int = 400,
    type_: str = "ValidationFault",
) -> QBOFault:
    return QBOFault([ErrorItem(message, detail, str(code), element)], status=status, type=type_)


# --- named faults used across the emulator -------------------------------------------------


def required(name: str) -> QBOFault:
    return fault(
        2020,
        "Required param missing, need to supply the required value for the API",
        f"Required parameter {name} is missing in the request",
        name,
    )


def too_long(name: str, max_len: int, supplied: int) -> QBOFault:
    return fault(
        2050,
        "String length is either shorter or longer than supported by specification",
        f"String length specified does not match the supported length. Min:0 Max:{max_len} "
        f"supported. Supplied length:{supplied}",
        name,
    )


def invalid_reference(element: str, value: Any) -> QBOFault:
    return fault(
        2500,
        "Invalid Reference Id",
        f"Invalid Reference Id : {element} id {value} does not exist",
        element,
    )


def inactive_reference(element: str) -> QBOFault:
    return fault(610, "Object Not Found", INACTIVE_DETAIL, element)


def not_found(entity: str, id_: str) -> QBOFault:
    return fault(
        610,
        "Object Not Found",
        f"Object Not Found : Something you're trying to use has been made inactive. Check the "
        f"fields with accounts, customers, items, vendors or employees. ({entity} Id={id_})",
    )


def stale_object() -> QBOFault:
    return fault(
        5010,
        "Stale Object Error",
        "Stale Object Error : You and Emulator User were working on this at the same time. "
        "Emulator User finished before you did, so your work was not saved.",
    )


def invalid_property(detail: str, element: str = "") -> QBOFault:
    """2010: what QBO answers for unparsable JSON or a value of the wrong type."""
    return fault(2010, "Request has invalid or unsupported property", detail, element)


def business(detail: str, element: str = "", code: int = 6000) -> QBOFault:
    return fault(
        code,
        "A business validation error has occurred while processing your request",
        detail,
        element,
    )


def unsupported(detail: str, status: int = 400) -> QBOFault:
    return fault(500, "Unsupported Operation", detail, status=status)


def system_error(detail: str = "System Failure Error", status: int = 500) -> QBOFault:
    return fault(
        10000,
        "An application error has occurred while processing your request",
        detail,
        status=status,
        type_="SystemFault",
    )


THROTTLE_MESSAGE = "message=ThrottleExceeded; errorCode=003001; statusCode=429"
THROTTLE_DETAIL = "The request limit was reached.  Try again later"
XML = "application/xml;charset=UTF-8"


def throttled_xml(ts: float | None = None) -> bytes:
    """The 429 body, in XML whatever the client asked for (as QuickBooks answers it)."""
    return (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
        f'<IntuitResponse time="{qbo_time(ts)}" xmlns="http://schema.intuit.com/finance/v3">\n'
        '  <Fault type="SERVICE">\n'
        '    <Error code="3001">\n'
        f"      <Message>{THROTTLE_MESSAGE}</Message>\n"
        f"      <Detail>{THROTTLE_DETAIL}</Detail>\n"
        "    </Error>\n"
        "  </Fault>\n"
        "</IntuitResponse>\n"
    ).encode()


def query_parse_error(detail: str) -> QBOFault:
    return fault(4000, "Error parsing query", f"QueryParserError: {detail}")


def query_validation_error(detail: str) -> QBOFault:
    return fault(4001, "Invalid query", f"QueryValidationError: {detail}")


# --- gateway (auth) shape ------------------------------------------------------------------


def auth_body(code: str, detail: str, ts_ms: int | None = None) -> dict[str, Any]:
    """The lower-case gateway body for 401 (3200) and 403 (3100). A real 403 says nothing
    more than its message (``detail`` null, type ``SERVICE``): ``detail`` only goes into 401s."""
    if code == "3100":
        message = "message=ApplicationAuthorizationFailed; errorCode=003100; statusCode=403"
        ftype = "SERVICE"
        text: str | None = None
    else:
        message = "message=AuthenticationFailed; errorCode=003200; statusCode=401"
        ftype = "AUTHENTICATION"
        text = detail
    return {
        "warnings": None,
        "intuitObject": None,
        "fault": {
            "error": [{"message": message, "detail": text, "code": code, "element": None}],
            "type": ftype,
        },
        "report": None,
        "queryResponse": None,
        "batchItemResponse": [],
        "attachableResponse": [],
        "syncErrorResponse": None,
        "requestId": None,
        "time": ts_ms if ts_ms is not None else int(time.time() * 1000),
        "status": None,
        "cdcresponse": [],
    }


class AuthError(Exception):
    """A 401/403 answered in the gateway shape."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail

    @property
    def status(self) -> int:
        return 403 if self.code == "3100" else 401

    def body(self) -> dict[str, Any]:
        return auth_body(self.code, self.detail)


def dumps(obj: Any) -> bytes:
    """Compact JSON, non-ASCII kept (orjson: the standard library's encoder would be most
    of the emulator's CPU per request)."""
    return fastjson.dumps_bytes(obj)
