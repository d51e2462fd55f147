"""Local QuickBooks Online emulator (Accounting API v3 + Intuit OAuth 2.0) for tests.

Typical in-process use::

    emu = Emulator(time_scale=60)
    realm = emu.create_company("Shop", custom_txn_numbers=True)
    tokens = emu.issue_tokens(realm)
    async with emu.client() as http:
        r = await http.get(f"/v3/company/{realm}/companyinfo/{realm}",
                           headers={"Authorization": f"Bearer {tokens['access_token']}"})
"""

from .core import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, Emulator
from .injection import FaultRule
from .limits import LimitConfig

__all__ = ["DEFAULT_CLIENT_ID", "DEFAULT_CLIENT_SECRET", "Emulator", "FaultRule", "LimitConfig"]
