"""Where the SQL files are: inside the installed wheel, or in the checkout's `sql/`."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def sql_root() -> Path:
    packaged = Path(__file__).with_name("sql")  # the wheel ships sql/ as qbsync/sql
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / "sql"  # editable install / source tree
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"qbsync's SQL files are missing: looked in {packaged} and {checkout}")


def sql_path(*parts: str) -> Path:
    return sql_root().joinpath(*parts)
