"""The emulator's public OAuth client, importable without the emulator's dependencies: the
daemon, `qbsync connect --emulator` and the demo use it, and they must not load Starlette
(the emulator is the `qbsync[emulator]` extra)."""

from __future__ import annotations

DEFAULT_CLIENT_ID = "qbsync-emulator-client"
DEFAULT_CLIENT_SECRET = "qbsync-emulator-secret"  # noqa: S105 - public test value

EXTRA_HINT = "the QuickBooks emulator needs the emulator extra: pip install 'qbsync[emulator]'"
