"""What the QuickBooks side reports as it works: each request's endpoint, status and time, a
429, a rate-limit permit taken, a token refresh. The client, the rate limiter and the token
store call an ``Observer``; the daemon passes its metrics (`qbsync.metrics.Metrics`), and
everyone else gets ``NULL_OBSERVER``, which does nothing. Kept here so that ``qbo/`` knows
nothing of the daemon or of Prometheus.

Label values must stay few: an endpoint is the first segment of the request's path (the
entity type, ``query``, ``batch``, ``companyinfo``, ``reports``, ``cdc``), never an id."""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def request(self, endpoint: str, status: int | None, seconds: float) -> None:
        """One HTTP exchange with QuickBooks finished; status None: no answer came."""

    def throttled(self, realm_id: str) -> None:
        """QuickBooks answered 429."""

    def permit(self, realm_id: str, kind: str) -> None:
        """A rate-limit permit was granted (kind: request or batch)."""

    def token_refresh(self, outcome: str) -> None:
        """A token refresh ended: refreshed, shared (another process had refreshed),
        rejected (invalid_grant: the company must be reconnected) or failed."""


class NullObserver:
    """Observes nothing."""

    def request(self, endpoint: str, status: int | None, seconds: float) -> None:
        pass

    def throttled(self, realm_id: str) -> None:
        pass

    def permit(self, realm_id: str, kind: str) -> None:
        pass

    def token_refresh(self, outcome: str) -> None:
        pass


NULL_OBSERVER: Observer = NullObserver()


def endpoint_of(path: str) -> str:
    """The label of a request path relative to the company: ``invoice/12`` -> ``invoice``,
    ``reports/ProfitAndLoss`` -> ``reports``."""
    return path.split("/", 1)[0].split("?", 1)[0].lower() or "company"
