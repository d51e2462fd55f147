"""Fault parsing and classification for every body shape QuickBooks sends."""

from __future__ import annotations

import json

import pytest

from qbsync.qbo import errors as e


def fault_body(code: str, message: str, detail: str, *, ftype: str = "ValidationFault",
               element: str = "") -> bytes:
    return json.dumps({"Fault": {"Error": [{"Message": message, "Detail": detail,
                                            "code": code, "element": element}],
                                 "type": ftype},
                       "time": "2025-01-01T10:00:00.000-07:00"}).encode()


def test_json_fault_duplicate_name() -> None:
    body = fault_body("6240", "Duplicate Name Exists Error",
                      "The name supplied already exists. : Another customer is using this name",
                      element="DisplayName")
    err = e.error_from_response(400, body, {"intuit_tid": "1-abc"})
    assert isinstance(err, e.DuplicateName)
    assert isinstance(err, e.ValidationFault)
    assert (err.status, err.code, err.element, err.fault_type, err.intuit_tid) == (
        400, "6240", "DisplayName", "ValidationFault", "1-abc")
    assert not err.retryable
    assert err.describe() == ("QuickBooks 6240 Duplicate Name Exists Error: The name supplied "
                              "already exists. : Another customer is using this name")
    assert str(err) == err.describe()


def test_duplicate_doc_number_parses_existing_txn_id() -> None:
    body = fault_body("6140", "Duplicate Document Number Error",
                      "Duplicate Document Number Error : You must specify a different number. "
                      "This number has already been used. DocNumber=1001 is assigned to "
                      "TxnType=Invoice with TxnId=147")
    err = e.error_from_response(400, body)
    assert isinstance(err, e.DuplicateDocNumber)
    assert err.existing_id == "147"
    no_id = e.error_from_response(400, fault_body("6140", "Duplicate Document Number Error",
                                                  "This number has already been used."))
    assert isinstance(no_id, e.DuplicateDocNumber)
    assert no_id.existing_id is None


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "5010", e.StaleObject),
        (400, "610", e.NotFound),
        (404, None, e.NotFound),
        (400, "2020", e.ValidationFault),
        (400, "6000", e.ValidationFault),
        (400, "4001", e.ValidationFault),
        (429, "3001", e.Throttled),
        (401, "3200", e.AuthError),
        (401, "100", e.AuthError),
        (403, "3100", e.Forbidden),
        (400, "130", e.Forbidden),
        (500, "10000", e.TransientError),
        (503, "10000", e.TransientError),
    ],
)
def test_classification(status: int, code: str | None, cls: type[e.QboError]) -> None:
    body = fault_body(code, "m", "d") if code else b""
    err = e.error_from_response(status, body)
    assert type(err) is cls


def test_exact_classes_are_distinct_where_reactions_differ() -> None:
    assert not issubclass(e.TransientError, e.ValidationFault)
    assert issubclass(e.UnknownOutcome, e.TransientError)
    assert e.UnknownOutcome.retryable
    assert e.TransientError.retryable
    assert e.Throttled.retryable
    assert not e.Forbidden.retryable
    assert not e.ValidationFault.retryable


def test_fault_inside_http_200_is_an_error() -> None:
    err = e.error_from_response(200, fault_body("2500", "Invalid Reference Id",
                                                "Invalid Reference Id : Item id 9 does not exist"))
    assert isinstance(err, e.ValidationFault)
    assert err.code == "2500"
    assert err.status == 200


def test_success_body_is_no_error() -> None:
    assert e.error_from_response(200, b'{"Customer": {"Id": "1"}}') is None
    assert e.error_from_response(200, b"") is None


def test_lower_case_gateway_auth_fault() -> None:
    body = json.dumps({
        "warnings": None, "intuitObject": None,
        "fault": {"error": [{"message": "message=AuthenticationFailed; errorCode=003200; "
                                        "statusCode=401",
                             "detail": "Token expired: eyJ...", "code": "3200",
                             "element": None}],
                  "type": "AUTHENTICATION"},
        "time": 1735750000000}).encode()
    err = e.error_from_response(401, body)
    assert isinstance(err, e.AuthError)
    assert (err.code, err.fault_type) == ("3200", "AUTHENTICATION")
    assert err.detail == "Token expired: eyJ..."


def test_code_recovered_from_gateway_message_when_missing() -> None:
    body = json.dumps({"fault": {"error": [{"message": "message=ApplicationAuthorizationFailed; "
                                                       "errorCode=003100; statusCode=403",
                                            "detail": "realm"}], "type": "AUTHORIZATION"}})
    err = e.error_from_response(403, body)
    assert isinstance(err, e.Forbidden)
    assert err.code == "3100"


def test_xml_throttle_fault_with_retry_after() -> None:
    body = (b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            b'<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" '
            b'time="2025-01-01T10:00:00.000-07:00">'
            b'<Fault type="SERVICE"><Error code="3001" element="">'
            b'<Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>'
            b'<Detail>The request limit was reached &amp; more.</Detail></Error></Fault>'
            b'</IntuitResponse>')
    err = e.error_from_response(429, body, {"Retry-After": "7"})
    assert isinstance(err, e.Throttled)
    assert (err.code, err.fault_type, err.retry_after) == ("3001", "SERVICE", 7.0)
    assert err.detail == "The request limit was reached & more."


def test_throttle_without_retry_after_waits_60s() -> None:
    err = e.error_from_response(429, b"")
    assert isinstance(err, e.Throttled)
    assert err.retry_after == 60.0
    # 3001 inside a 200/400 envelope is a throttle too
    err2 = e.error_from_response(400, fault_body("3001", "ThrottleExceeded", "", ftype="SERVICE"))
    assert isinstance(err2, e.Throttled)


def test_retry_after_as_http_date() -> None:
    assert e.retry_after_seconds("Wed, 01 Jan 2025 10:00:30 GMT", now=1735725600.0) == 30.0
    assert e.retry_after_seconds("garbage") == 60.0


def test_xml_gateway_error_without_code() -> None:
    body = b"<Fault><Error><Message>Gateway Timeout</Message></Error></Fault>"
    err = e.error_from_response(504, body, write=True)
    assert isinstance(err, e.UnknownOutcome)
    assert err.message == "Gateway Timeout"
    read = e.error_from_response(504, body, write=False)
    assert type(read) is e.TransientError


def test_plain_text_and_html_bodies() -> None:
    err = e.error_from_response(502, b"<html><body>Bad Gateway</body></html>", write=False)
    assert type(err) is e.TransientError
    err = e.error_from_response(503, "Service Unavailable\nplease retry")
    assert type(err) is e.TransientError
    assert err.describe() == "QuickBooks HTTP 503 Service Unavailable please retry"
    long = e.error_from_response(500, "x" * 5000)
    assert long is not None
    assert len(long.message) <= 500


def test_empty_body_uses_reason() -> None:
    err = e.error_from_response(500, b"", reason="Internal Server Error")
    assert type(err) is e.TransientError
    assert err.describe() == "QuickBooks HTTP 500 Internal Server Error"


def test_unparsable_json_does_not_raise() -> None:
    err = e.error_from_response(400, b'{"Fault": ')
    assert isinstance(err, e.ValidationFault)


def test_system_fault_on_write_is_unknown_outcome_for_gateway_statuses_only() -> None:
    body = fault_body("10000", "An application error has occurred", "x", ftype="SystemFault")
    assert type(e.error_from_response(500, body, write=True)) is e.TransientError
    assert type(e.error_from_response(502, body, write=True)) is e.UnknownOutcome


def test_multiple_errors_describe_in_one_line() -> None:
    body = json.dumps({"Fault": {"Error": [
        {"Message": "Required param missing", "Detail": "Line 1\nLine 2", "code": "2020"},
        {"Message": "Other", "Detail": "d", "code": "2050"}], "type": "ValidationFault"}})
    err = e.error_from_response(400, body)
    assert err is not None
    assert err.describe() == "QuickBooks 2020 Required param missing: Line 1 Line 2 (+1 more)"
    assert len(err.errors) == 2


def test_batch_item_fault() -> None:
    ok = {"bId": "1", "Customer": {"Id": "5"}}
    bad = {"bId": "2", "Fault": {"Error": [{"Message": "Duplicate Name Exists Error",
                                            "Detail": "d", "code": "6240"}],
                                 "type": "ValidationFault"}}
    assert e.error_from_batch_item(ok) is None
    assert isinstance(e.error_from_batch_item(bad), e.DuplicateName)


def test_repr_is_compact() -> None:
    err = e.error_from_response(400, fault_body("6240", "Duplicate Name Exists Error", "d"))
    assert repr(err).startswith("DuplicateName(status=400, code='6240'")
