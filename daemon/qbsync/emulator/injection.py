"""Fault injection rules and added latency.

Durations here (latency, hang) are *real* seconds, not emulated ones.

Kinds:

* ``"500"``, ``"503"``: a SystemFault envelope with that HTTP status;
* ``"429"``: the throttle fault (code 3001, type SERVICE), in XML as QuickBooks sends it;
* ``"401"``: the gateway 3200 AuthenticationFailed body;
* ``"403"``: the gateway 3100 ApplicationAuthorizationFailed body (the app's access to the
  company withdrawn: every request of the company gets it until it is connected again);
* ``"timeout"``: hang ``hang_seconds`` then answer 504 (``then="504"``), or close the
  connection without any answer (``then="drop"``, alias ``"never"``);
* ``"drop"``: run the request for real (the write is applied) and then drop the connection
  without answering. Over a socket the TCP connection is closed; in-process (httpx
  ``ASGITransport``) ``httpx.RemoteProtocolError`` is raised to the client.

The request is not executed for any kind but ``drop``. ``seconds`` bounds a rule in real
time too: it lapses that long after it was added, fired or not (a 429 storm is a time
during which every matching request is refused, however few a polite client sends).
``rate`` makes a rule hit each matching request with that probability only (a QuickBooks
answering 5 % of its requests with a 500: ``rate=0.05, count=None``); a request it lets
pass is matched against the next rules. ``Injector(seed=...)`` makes the draws repeatable;
``Injector(clock=...)`` (or setting ``injector.clock``) replaces ``time.monotonic`` as the time
rules lapse by, so that a test moves time on instead of sleeping.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("500", "503", "429", "401", "403", "timeout", "drop")


@dataclass
class FaultRule:
    id: int
    kind: str
    remaining: int | None = 1  # None: until cleared
    method: str | None = None
    path: str | None = None  # substring of the URL path
    entity: str | None = None  # path segment after the realm, e.g. "invoice", "query", "batch"
    realm: str | None = None
    hang_seconds: float = 30.0
    then: str = "504"
    hits: int = 0
    lapses_at: float | None = None  # Injector.clock() after which the rule is gone
    rate: float | None = None  # None: every matching request; else this share of them

    def matches(self, method: str, path: str, entity: str | None, realm: str | None) -> bool:
        if self.method and self.method.upper() != method:
            return False
        if self.path and self.path not in path:
            return False
        if self.entity and (entity or "") != self.entity.lower():
            return False
        return not (self.realm and self.realm != realm)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Injector:
    def __init__(self, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock  # real seconds, for rules that lapse
        self.rules: list[FaultRule] = []
        self.latency: tuple[float, float] | None = None
        self._ids = itertools.count(1)
        self._draws = random.Random(seed)  # which requests a rule with a rate hits

    def add(
        self,
        kind: str | int,
        count: int | None = 1,
        *,
        method: str | None = None,
        path: str | None = None,
        entity: str | None = None,
        realm: str | None = None,
        hang_seconds: float = 30.0,
        then: str = "504",
        seconds: float | None = None,
        rate: float | None = None,
    ) -> FaultRule:
        k = str(kind).lower()
        if k not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {KINDS}")
        then = "drop" if then == "never" else str(then)
        if then not in ("504", "drop"):
            raise ValueError("then must be '504' or 'drop'/'never'")
        if count is not None and count < 1:
            raise ValueError("count must be >= 1 or None")
        if seconds is not None and seconds <= 0:
            raise ValueError("seconds must be > 0 or None")
        if rate is not None and not 0 < rate <= 1:
            raise ValueError("rate must be in (0, 1] or None")
        rule = FaultRule(
            next(self._ids),
            k,
            count,
            method,
            path,
            entity.lower() if entity else None,
            realm,
            float(hang_seconds),
            then,
            lapses_at=self.clock() + float(seconds) if seconds is not None else None,
            rate=float(rate) if rate is not None else None,
        )
        self.rules.append(rule)
        return rule

    def take(
        self, method: str, path: str, entity: str | None, realm: str | None
    ) -> FaultRule | None:
        self.prune()
        for rule in self.rules:
            if rule.matches(method, path, entity, realm):
                if rule.rate is not None and self._draws.random() >= rule.rate:
                    continue  # this one passes; a later rule may still match
                rule.hits += 1
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self.rules.remove(rule)
                return rule
        return None

    def seed(self, value: int | None) -> None:
        """Make the draws of rules with a rate repeatable from here on."""
        self._draws.seed(value)

    def prune(self) -> None:
        """Forget the rules whose time is up."""
        if any(r.lapses_at is not None for r in self.rules):
            now = self.clock()
            self.rules = [r for r in self.rules if r.lapses_at is None or r.lapses_at > now]

    def set_latency(self, low: float | None, high: float | None = None) -> None:
        if low is None or (low <= 0 and not high):
            self.latency = None
        else:
            self.latency = (float(low), float(high if high is not None else low))

    def delay(self) -> float:
        if self.latency is None:
            return 0.0
        low, high = self.latency
        return low if high <= low else random.uniform(low, high)

    def clear(self) -> None:
        self.rules.clear()
        self.latency = None
