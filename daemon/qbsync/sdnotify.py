"""systemd's notify protocol (sd_notify(3)), without libsystemd: readiness, status,
watchdog keep-alives and stop/reload announcements for a Type=notify service.

    notify(READY=1, STATUS="listening")      # or notify(ready=True, status="listening")
    notify(WATCHDOG=1)                       # every watchdog_interval() seconds
    notify(STOPPING=1)

Outside systemd ($NOTIFY_SOCKET unset) every call is a no-op returning False.

A send never waits: it runs on the daemon's event loop, and a datagram socket nobody reads
(a stalled or re-executing systemd; only 10 datagrams queue by default) would block it, and
with it the daemon's shutdown. A message that does not fit is dropped and said so; the
next watchdog ping or status is a second away.
"""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger(__name__)


def notify(**fields: str | int | bool) -> bool:
    """Send ``NAME=value`` lines (names upper-cased, True -> 1) in one datagram to
    ``$NOTIFY_SOCKET`` (a path, or an abstract name starting with ``@``). Returns whether
    it was sent; a send failure is logged, never raised."""
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address or not fields:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    lines = []
    for name, value in fields.items():
        text = "1" if value is True else "0" if value is False else str(value)
        lines.append(f"{name.upper()}={' '.join(text.splitlines())}")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            sock.sendto("\n".join(lines).encode("utf-8"), address)
    except BlockingIOError:
        log.warning("sd_notify to %s dropped %s: the socket's queue is full (nobody is "
                    "reading it)", os.environ.get("NOTIFY_SOCKET"), ", ".join(fields))
        return False
    except OSError as exc:
        log.warning("sd_notify to %s failed: %s", os.environ.get("NOTIFY_SOCKET"), exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings — half of ``WatchdogSec=`` as systemd recommends —
    or None when the watchdog is off or meant for another process (``$WATCHDOG_PID``)."""
    try:
        usec = int(os.environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = os.environ.get("WATCHDOG_PID", "")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 2 / 1_000_000
