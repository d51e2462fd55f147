"""qbsync's SQL, read once from two files of named blocks ("-- name: <name>"), split by who
runs it (and so by the database role whose grants it needs):

* ``sql/queries.sql``: what the daemon runs (asyncpg, ``$1`` placeholders); :func:`load`.
  Every function it calls is granted to ``qbsync_daemon`` (tests/integration/test_admin_roles);
* ``sql/cli_queries.sql``: what operators run: the CLI commands, the demo, the sample shops.
  Each block is written for the driver of its caller, psycopg (``%s`` / ``%(name)s``) or
  asyncpg (``$1``: connect, disconnect, rotate-key, the demo's progress); :func:`load_cli`.

``load().claim`` is a query string. Names are unique per file.
"""

from __future__ import annotations

import re
from functools import cache
from typing import LiteralString, cast

from .resources import sql_path

_BLOCK = re.compile(r"^-- name: (\w+)\n(.*?)(?=^-- name: |\Z)", re.M | re.S)

DAEMON_FILE = "queries.sql"
CLI_FILE = "cli_queries.sql"


def _query(body: str) -> str:
    """A block's statement: without the comment lines that introduce the next block(s), and
    without its final semicolon."""
    lines = body.strip().splitlines()
    while lines and (not lines[-1].strip() or lines[-1].lstrip().startswith("--")):
        lines.pop()
    return "\n".join(lines).rstrip().rstrip(";")


class Queries:
    def __init__(self, text: str, source: str = DAEMON_FILE) -> None:
        self._source = source
        self._queries: dict[str, str] = {}
        for name, body in _BLOCK.findall(text):
            if name in self._queries:
                raise ValueError(f"query {name!r} is defined twice in {source}")
            self._queries[name] = _query(body)

    def __getattr__(self, name: str) -> LiteralString:
        if name.startswith("_"):  # copy/pickle probes, and before __init__ has run
            raise AttributeError(name)
        try:
            # our own files, never input: what psycopg's typing asks of a query string
            return cast(LiteralString, self._queries[name])
        except KeyError:
            raise AttributeError(f"no query named {name!r} in {self._source}") from None

    def names(self) -> list[str]:
        return sorted(self._queries)


def _read(file: str) -> Queries:
    return Queries(sql_path(file).read_text(encoding="utf-8"), file)


@cache
def load() -> Queries:
    """The daemon's queries, sql/queries.sql."""
    return _read(DAEMON_FILE)


@cache
def load_cli() -> Queries:
    """The operators' queries, sql/cli_queries.sql."""
    return _read(CLI_FILE)
