"""What a QuickBooks or transport error does to the row that met it (sync.qbo_failure)."""

from __future__ import annotations

import pytest

from qbsync.errors import ReconnectRequired
from qbsync.qbo import errors as e
from qbsync.sync import qbo_failure


@pytest.mark.parametrize(
    ("error", "kind", "unknown", "needs_reconnect"),
    [
        (e.Throttled("ThrottleExceeded", status=429, code="3001"), "throttled", False, False),
        (e.AuthError("AuthenticationFailed", status=401, code="3200"), "auth", False, False),
        (e.Forbidden("ApplicationAuthorizationFailed", status=403, code="3100"), "paused",
         False, True),
        (e.Forbidden("wrong cluster", status=401, code="130"), "paused", False, True),
        (ReconnectRequired("1", "refresh token rejected"), "paused", False, False),
        (e.TransientError("Service Unavailable", status=503), "retry", False, False),
        (e.UnknownOutcome("Gateway Timeout", status=504), "retry", True, False),
        (TimeoutError(), "retry", True, False),
        (e.ValidationFault("Invalid Reference Id", status=400, code="2500"), "permanent",
         False, False),
    ],
)
def test_each_error_decides_the_rows_fate(error: Exception, kind: str, unknown: bool,
                                          needs_reconnect: bool) -> None:
    failure = qbo_failure("order 1", error, "create")
    assert (failure.kind, failure.unknown, failure.needs_reconnect) == (
        kind, unknown, needs_reconnect)


def test_a_refused_connection_waits_like_a_reconnect_and_says_what_to_do() -> None:
    failure = qbo_failure("order 1", e.Forbidden("ApplicationAuthorizationFailed",
                                                 status=403, code="3100"), "create",
                          time_scale=60)
    assert failure.retry_after == ReconnectRequired.retry_after / 60
    assert failure.code == "3100"
    assert "qbsync connect" in failure.message
    # said of one row of a batch, it still marks the connection
    assert failure.copy_for(type("R", (), {"label": "order 2"})()).needs_reconnect
