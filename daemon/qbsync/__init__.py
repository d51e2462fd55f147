"""qbsync: keep a shop's PostgreSQL database and its QuickBooks Online company in step."""

__version__ = "0.1.0"
