"""Where qbsync's data files are: inside the installed wheel, or in the checkout.

* ``sql/`` — migrations and named queries (the wheel ships it as ``qbsync/sql``);
* ``systemd/`` — the unit and the example configuration (``qbsync/systemd``), printed by
  `qbsync systemd-unit` and `qbsync config example`;
* the documentation (README, CHANGELOG), installed as ``<prefix>/share/doc/qbsync`` by the
  wheel: what the unit's ``Documentation=`` names.
"""

from __future__ import annotations

import sys
from functools import cache
from pathlib import Path

_PACKAGE = Path(__file__).parent
_CHECKOUT = Path(__file__).resolve().parents[2]  # editable install / source tree


@cache
def _root(name: str) -> Path:
    packaged = _PACKAGE / name
    if packaged.is_dir():
        return packaged
    checkout = _CHECKOUT / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"qbsync's {name}/ files are missing: looked in {packaged} and "
                            f"{checkout}")


def sql_root() -> Path:
    return _root("sql")


def sql_path(*parts: str) -> Path:
    return sql_root().joinpath(*parts)


def systemd_path(name: str) -> Path:
    """``qbsync.service`` or ``qbsync.toml.example``."""
    return _root("systemd") / name


def doc_path(name: str = "README.md") -> Path:
    """The installed copy (``<prefix>/share/doc/qbsync/<name>``), else the checkout's."""
    installed = Path(sys.prefix) / "share" / "doc" / "qbsync" / name
    if installed.is_file():
        return installed
    checkout = _CHECKOUT / name
    if checkout.is_file():
        return checkout
    raise FileNotFoundError(f"qbsync's {name} is missing: looked in {installed} and {checkout}")
