"""The daemon's SQL, read once from sql/queries.sql: `QUERIES.claim` is a query string."""

from __future__ import annotations

import re
from functools import cache

from .resources import sql_path

_BLOCK = re.compile(r"^-- name: (\w+)\n(.*?)(?=^-- name: |\Z)", re.M | re.S)


class Queries:
    def __init__(self, text: str) -> None:
        self._queries: dict[str, str] = {}
        for name, body in _BLOCK.findall(text):
            if name in self._queries:
                raise ValueError(f"query {name!r} is defined twice in queries.sql")
            self._queries[name] = body.strip().rstrip(";")

    def __getattr__(self, name: str) -> str:
        try:
            return self._queries[name]
        except KeyError:
            raise AttributeError(f"no query named {name!r} in queries.sql") from None

    def names(self) -> list[str]:
        return sorted(self._queries)


@cache
def load() -> Queries:
    return Queries(sql_path("queries.sql").read_text(encoding="utf-8"))
