"""SIGTERM and SIGINT in a `qbsync run` process: a request to stop, from the first line of
the process's own code to its exit.

Installed before the command line's imports (a second or more on a busy host), so that a
stop during start-up (`systemctl stop` while the unit is activating) is a clean exit 0,
never a death by the signal's default action. Only the interpreter's own start, before any
of qbsync's code runs, is left to the default action. The handler is never removed:
asyncio resets the handlers it installs to the default action when its loop closes, which
would leave the daemon's last moments unprotected. Standard library only: it is imported
before everything else.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from types import FrameType

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Whether a stop signal arrived, and whom to wake when one does."""

    def __init__(self) -> None:
        self.requested = False
        self._wake: Callable[[], None] | None = None

    def install(self) -> None:
        """Catch SIGTERM and SIGINT from now on (idempotent)."""
        for sig in SIGNALS:
            signal.signal(sig, self._handle)

    def installed(self) -> bool:
        return all(signal.getsignal(sig) == self._handle for sig in SIGNALS)

    def bind(self, wake: Callable[[], None]) -> None:
        """Call `wake` on the next stop signal, and now if one already arrived. For an
        event loop: ``lambda: loop.call_soon_threadsafe(stop.set)``."""
        self._wake = wake  # first: a signal from here on wakes it
        if self.requested:
            wake()

    def unbind(self) -> None:
        self._wake = None

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.requested = True
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                wake()


STOP = StopRequest()
