"""qbsync: keep a shop's PostgreSQL database and its QuickBooks Online company in step."""

__version__ = "0.2.0.dev0"
