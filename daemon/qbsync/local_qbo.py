"""What the rest of qbsync knows of the local QuickBooks emulator without loading it: its
public OAuth client, which the daemon, `connect`/`run`/`disconnect --emulator` and the demo
use when no client is configured, and the hint for an install without the emulator (the
`qbsync[emulator]` extra, Starlette and uvicorn). The emulator itself takes its client from
here too."""

from __future__ import annotations

DEFAULT_CLIENT_ID = "qbsync-emulator-client"
DEFAULT_CLIENT_SECRET = "qbsync-emulator-secret"  # noqa: S105 - public test value

EXTRA_HINT = "the QuickBooks emulator needs the emulator extra: pip install 'qbsync[emulator]'"
