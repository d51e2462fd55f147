"""Emulated clock: wall-clock time that can run faster than real time and be advanced."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone

#: QuickBooks renders times in the company's time zone; the emulator uses a fixed
#: Pacific-daylight offset (-07:00) like the examples in Intuit's documentation.
QBO_TZ = timezone(timedelta(hours=-7))


class Clock:
    """Emulated time in epoch seconds.

    ``now()`` = wall time at creation + real elapsed time x ``time_scale`` + manual offset.
    With ``time_scale=60`` one real second is one emulated minute: the per-minute throttle
    windows, the 3600 s access-token lifetime and every MetaData timestamp follow this clock.
    """

    def __init__(self, time_scale: float = 1.0) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        self._scale = float(time_scale)
        self._base_wall = time.time()
        self._base_mono = time.monotonic()
        self._offset = 0.0

    @property
    def time_scale(self) -> float:
        return self._scale

    def set_time_scale(self, time_scale: float) -> None:
        if time_scale <= 0:
            raise ValueError("time_scale must be > 0")
        now = self.now()
        self._base_wall = now - self._offset
        self._base_mono = time.monotonic()
        self._scale = float(time_scale)

    def advance(self, seconds: float) -> None:
        """Jump the emulated clock forward (e.g. to expire tokens without sleeping)."""
        self._offset += seconds

    def now(self) -> float:
        return self._base_wall + (time.monotonic() - self._base_mono) * self._scale + self._offset

    def real_seconds(self, emulated_seconds: float) -> float:
        return emulated_seconds / self._scale

    def datetime(self) -> datetime:
        return datetime.fromtimestamp(self.now(), QBO_TZ)

    def iso(self, ts: float | None = None, millis: bool = False) -> str:
        dt = datetime.fromtimestamp(self.now() if ts is None else ts, QBO_TZ)
        return dt.isoformat(timespec="milliseconds" if millis else "seconds")

    def today(self) -> str:
        return self.datetime().date().isoformat()


def parse_iso(value: str) -> float:
    """Parse an ISO-8601 date or datetime (``Z``/offset/naive=UTC) into epoch seconds."""
    v = value.strip().replace(" ", "+")
    if v.endswith("Z"):
        v = v[:-1] + "+00:00"
    dt = datetime.fromisoformat(v)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()
