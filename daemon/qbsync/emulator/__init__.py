"""Local QuickBooks Online emulator (Accounting API v3 + Intuit OAuth 2.0) for tests.

Typical in-process use::

    emu = Emulator(time_scale=60)
    realm = emu.create_company("Shop", custom_txn_numbers=True)
    tokens = emu.issue_tokens(realm)
    async with emu.client() as http:
        r = await http.get(f"/v3/company/{realm}/companyinfo/{realm}",
                           headers={"Authorization": f"Bearer {tokens['access_token']}"})

It needs the ``qbsync[emulator]`` extra (Starlette, uvicorn). Importing this package loads
neither: `Emulator`, `FaultRule` and `LimitConfig` are imported on first use. The daemon and
the operator commands never import it: the emulator's client id and secret, all they need of
it, are in `qbsync.local_qbo`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from ..local_qbo import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

if TYPE_CHECKING:
    from .core import Emulator
    from .injection import FaultRule
    from .limits import LimitConfig

__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "Emulator", "FaultRule", "LimitConfig"]

_LAZY = {"Emulator": ".core", "FaultRule": ".injection", "LimitConfig": ".limits"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(module, __name__), name)
