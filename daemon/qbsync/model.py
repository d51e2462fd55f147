"""The values the daemon's parts hand each other: an outbox row as claimed, an entity's
registration, what entity_map knows of a key, and how a push went. Plain data: this module
imports nothing of qbsync, so that every other module may import it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

# A shop row as mapping output names it: (entity, key).
Ref = tuple[str, str]


def currency_code(value: Any) -> str | None:
    """The currency of a `home_currency` setting or a CurrencyRef: {"value": "USD"} (what the
    look-up stores, what QuickBooks sends), or a bare "USD" (a DBA's override), upper case;
    None when there is none."""
    if isinstance(value, dict):
        value = value.get("value")
    if isinstance(value, str) and value.strip():
        return value.strip().upper()
    return None


@dataclass(frozen=True)
class Row:
    id: int
    entity: str
    key: str
    attempts: int
    request_id: uuid.UUID
    force: bool = False
    origin: str = "capture"
    interruptions: int = 0  # attempts cut off by a stopping daemon (no try spent)
    outcome_unknown: bool = False  # an attempt may have reached QuickBooks unseen
    lookup_due: bool = False  # this attempt only looks QuickBooks up (final_lookup)
    last_error_code: str | None = None
    # when the shop captured the change (its oldest one not yet pushed): commit-to-push time
    enqueued_at: datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.entity} {self.key}"

    @property
    def may_exist(self) -> bool:
        """An earlier attempt may have reached QuickBooks: a try failed (attempt > 1), or
        an answer was lost or a daemon stopped mid-push (outcome_unknown, which survives
        retry_dead). The object is looked up before it is created, and nothing is skipped
        as unchanged."""
        return self.attempts > 1 or self.outcome_unknown


@dataclass(frozen=True)
class EntityInfo:
    entity: str
    qbo_type: str
    max_attempts: int
    deadline_seconds: int


@dataclass(frozen=True)
class Mapped:
    """A key's entity_map row: the QuickBooks object it was pushed as."""

    qbo_id: str
    sync_token: str | None
    doc_number: str | None
    qbo_status: str
    body_hash: str | None = None


@dataclass
class Pushed:
    result: dict[str, Any]


@dataclass
class Skipped:
    reason: str
    operation: str = "skip"  # integration_logs.operation; status is always 'skipped'


# How a row skipped as unchanged is logged: status 'skipped', this operation.
UNCHANGED = "skip.unchanged"


@dataclass
class PushFailed(Exception):
    """How a push failed, in the terms of qbsync.fail(): kind decides the row's fate."""

    kind: str  # retry | permanent | throttled | auth | paused | waiting | setting
    message: str
    code: str | None = None
    operation: str = "push"
    retry_after: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    # this attempt may have changed QuickBooks without learning how (a write's answer lost,
    # a deadline passed mid-request): later attempts look the object up first
    unknown: bool = False
    # QuickBooks' side is known for this row: this attempt looked the object up and then
    # failed knowingly, or the object is linked already (an update, a void): no lookup is
    # due before the row goes dead
    settled: bool = False
    # QuickBooks refused the company's connection itself (403): the connection is marked
    # needs_reconnect, which pauses the company until `qbsync connect` (kind 'paused')
    needs_reconnect: bool = False

    def __str__(self) -> str:
        return self.message

    def as_error(self, row: Row | None = None) -> dict[str, Any]:
        """What qbsync.fail takes. With the row: `unsettled` when QuickBooks may hold its
        object without qbsync knowing (this attempt's outcome is unknown, or an earlier
        one's and this one did not look): then the row is not let go dead before one more
        attempt has looked it up."""
        error: dict[str, Any] = {"kind": self.kind, "message": self.message,
                                 "operation": self.operation, **self.details}
        if self.code:
            error["code"] = self.code
        if self.retry_after is not None:
            error["retry_after"] = self.retry_after
        if self.unknown:
            error["unknown"] = True
        if (row is not None and self.kind in ("retry", "permanent") and not self.settled
                and (self.unknown or row.outcome_unknown)):
            error["unsettled"] = True
        return error

    def copy_for(self, row: Row, message: str | None = None) -> PushFailed:
        """The same failure, said of one row of a group (a batch)."""
        return PushFailed(self.kind, message or f"{row.label}: {self.message}", self.code,
                          self.operation, self.retry_after, dict(self.details),
                          self.unknown, self.settled, self.needs_reconnect)


# What became of a claimed row.
Outcome = Pushed | Skipped | PushFailed

# What a success did, by the operation logged (integration_logs.operation; a batch's carries
# " (batch)"): the outcome label of the push counters.
SUCCESS_OUTCOMES = {"create": "created", "update": "updated", "adopt": "adopted",
                    "void": "voided", "delete": "deleted"}


def plain_operation(operation: str) -> str:
    """The operation without the push path: "create (batch)" -> "create"."""
    return operation.removesuffix(" (batch)")


def success_outcome(operation: str) -> str:
    return SUCCESS_OUTCOMES.get(plain_operation(operation), "pushed")


class OutcomeObserver(Protocol):
    """Told of every outcome as it is recorded (qbsync.integration_logs gets the same row):
    the worker's rows, and the dependencies a push created on the way."""

    def outcome(self, entity: str, operation: str, outcome: str,
                enqueued_at: datetime | None = None) -> None:
        """outcome: created, updated, adopted, voided, deleted (a success), skipped, failed
        (a try failed, the row comes back), waiting (for another row or a setting), dead."""
