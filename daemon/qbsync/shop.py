"""Sample shops shipped with qbsync, for the demo, tests and benchmarks: Dixis (a Greek
marketplace qbsync defines) and Medusa (the open-source commerce platform, its schema as its
own migrations create it).

A shop is a directory `sql/shops/<name>/` holding, in load order:

* `schema.sql`   the shop's own tables (schema `<name>`), loaded once;
* `generate.sql` `<name>.generate(orders, seed)`, a fast deterministic data generator;
* `mapping.sql`  the `qbsync_map` functions (the mapping contract of DESIGN.md);
* `admin.sql`    the optional admin parts of the contract (`_key_exists`, `_unsynced_count`,
                 `_revenue`; see sql/migrations/0004_admin.sql);
* `track.sql`    `qbsync.define_entity` + `qbsync.track` calls (needs `qbsync migrate` first).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from .errors import QbsyncError
from .queries import load_cli
from .resources import sql_path

SHOPS: tuple[str, ...] = ("dixis", "medusa")
Q = load_cli()


def shop_sql_dir(name: str) -> Path:
    """The directory of a sample shop's SQL files."""
    if name not in SHOPS:
        raise QbsyncError(f"unknown sample shop {name!r}; known: {', '.join(SHOPS)}")
    return sql_path("shops", name)


def _read(name: str, file: str) -> str:
    return (shop_sql_dir(name) / file).read_text(encoding="utf-8")


def _exists(conn: psycopg.Connection, query: LiteralString, arg: str) -> bool:
    row = conn.execute(query, (arg,)).fetchone()
    return bool(row and row[0])


def install_shop(conn: psycopg.Connection, name: str = "dixis", *, track: bool = True) -> None:
    """Install a sample shop in one transaction: schema (unless it exists already), generator,
    mapping functions and, with `track`, its entities and capture rules.

    Running it again refreshes the functions and the capture rules and keeps the data.
    """
    directory = shop_sql_dir(name)
    with conn.transaction():
        if track and not _exists(conn, Q.function_exists, "qbsync.track"):
            raise QbsyncError(
                f"cannot install the {name} shop with tracking: the qbsync schema is missing; "
                "run `qbsync migrate` first (or install with track=False)"
            )
        if not _exists(conn, Q.schema_exists, name):
            conn.execute(_read(name, "schema.sql"))  # type: ignore[arg-type]  # our own file
        for file in ("generate.sql", "mapping.sql", "admin.sql",
                     *(("track.sql",) if track else ())):
            if not (directory / file).is_file():
                raise QbsyncError(f"sample shop {name}: {directory / file} is missing")
            conn.execute(_read(name, file))  # type: ignore[arg-type]  # our own file
        # the capture functions and views track() generated belong to qbsync's owner role
        if track and _exists(conn, Q.function_exists, "qbsync.reassert_ownership"):
            conn.execute(Q.ownership_reassert)


def generate(conn: psycopg.Connection, orders: int, *, seed: float = 0.42,
             name: str = "dixis") -> dict[str, int]:
    """Append `orders` generated orders (and about orders/3 customers; the catalogue, or the
    Medusa store, on the first call) to an installed sample shop; returns the counts created.

    Deterministic for a seed in [-1, 1]. Runs in its own transaction (a savepoint when the
    caller already has one open).
    """
    if orders < 0:
        raise QbsyncError(f"orders must be >= 0 (got {orders})")
    if not -1.0 <= seed <= 1.0:
        raise QbsyncError(f"seed must be between -1 and 1 (got {seed})")
    shop_sql_dir(name)  # an unknown shop fails here, with the list of known ones
    with conn.transaction():
        # composed here: the shop's schema name is an identifier, not a parameter
        query = sql.SQL("SELECT {}.generate(%s, %s)::text").format(sql.Identifier(name))
        row = conn.execute(query, (orders, seed)).fetchone()
    assert row is not None
    counts: dict[str, Any] = json.loads(row[0])
    return {k: int(v) for k, v in counts.items()}
