"""Per-realm throttling as QuickBooks enforces it (fact sheet section 5).

Sliding windows over the *emulated* clock, so ``time_scale=60`` turns "a minute" into one real
second. Only accepted requests are recorded in the windows (a throttled request does not
extend the penalty) [U]. In-flight requests are counted from the throttle check to the end
of the response, including any injected latency. A batch request counts once towards the
general limits and once towards the batch limit.

For benchmarks each realm also keeps what its clients asked for, whether admitted or not:
the most requests in flight at once and in one window (the arriving one included), and the
429s the limits sent, by limit. ``peak_*`` cover only the time limits were enabled.
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass, field

from .clock import Clock


@dataclass
class LimitConfig:
    enabled: bool = True
    per_minute: int = 500
    per_second: int = 10
    in_flight: int = 10
    batch_per_minute: int = 40


@dataclass
class RealmWindow:
    minute: deque[float] = field(default_factory=deque)
    second: deque[float] = field(default_factory=deque)
    batch: deque[float] = field(default_factory=deque)
    in_flight: int = 0
    throttled: int = 0
    throttled_by: dict[str, int] = field(default_factory=dict)
    peak_in_flight: int = 0
    peak_per_second: int = 0
    peak_per_minute: int = 0


class Limits:
    def __init__(self, clock: Clock, config: LimitConfig | None = None) -> None:
        self.clock = clock
        self.config = config or LimitConfig()
        self.realms: dict[str, RealmWindow] = {}

    def configure(self, **changes: int | bool) -> LimitConfig:
        for key, value in changes.items():
            if not hasattr(self.config, key):
                raise ValueError(f"unknown limit {key}")
            setattr(self.config, key, value)
        return self.config

    def acquire(self, realm: str, is_batch: bool) -> str | None:
        """Admit a request: None if admitted (caller must ``release``), else the limit hit."""
        w = self.realms.get(realm)
        if w is None:
            w = self.realms[realm] = RealmWindow()
        cfg = self.config
        if not cfg.enabled:
            w.in_flight += 1
            return None
        now = self.clock.now()
        _trim(w.second, now - 1.0)
        _trim(w.minute, now - 60.0)
        w.peak_in_flight = max(w.peak_in_flight, w.in_flight + 1)
        w.peak_per_second = max(w.peak_per_second, len(w.second) + 1)
        w.peak_per_minute = max(w.peak_per_minute, len(w.minute) + 1)
        hit = None
        if w.in_flight >= cfg.in_flight:
            hit = "in_flight"
        elif len(w.second) >= cfg.per_second:
            hit = "per_second"
        elif len(w.minute) >= cfg.per_minute:
            hit = "per_minute"
        elif is_batch:
            _trim(w.batch, now - 60.0)
            if len(w.batch) >= cfg.batch_per_minute:
                hit = "batch_per_minute"
        if hit is not None:
            w.throttled += 1
            w.throttled_by[hit] = w.throttled_by.get(hit, 0) + 1
            return hit
        w.second.append(now)
        w.minute.append(now)
        if is_batch:
            w.batch.append(now)
        w.in_flight += 1
        return None

    def release(self, realm: str) -> None:
        w = self.realms.get(realm)
        if w is not None and w.in_flight > 0:
            w.in_flight -= 1

    def reset(self) -> None:
        self.realms.clear()

    def summary(self) -> dict[str, object]:
        return {
            "config": asdict(self.config),
            "realms": {
                r: {"in_flight": w.in_flight, "throttled": w.throttled,
                    "throttled_by": dict(w.throttled_by), "peak_in_flight": w.peak_in_flight,
                    "peak_per_second": w.peak_per_second, "peak_per_minute": w.peak_per_minute}
                for r, w in self.realms.items()
            },
        }


def _trim(window: deque[float], cutoff: float) -> None:
    while window and window[0] <= cutoff:
        window.popleft()
