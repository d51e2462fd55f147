"""Reads tests/fixtures/qbo/: QuickBooks responses captured from real companies or copied
from Intuit's own samples, one JSON file per response. Each file's "_source" member says
where it comes from (repository, path, commit or URL) and what was changed; `load` leaves
it out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent / "fixtures" / "qbo"


def load(name: str) -> dict[str, Any]:
    """The response stored in `name` (e.g. "taxcode_query_us_2013.json"), "_source" left out."""
    data = json.loads((HERE / name).read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def rows(name: str, entity: str) -> list[dict[str, Any]]:
    """The objects of a stored query response, or the one object of a stored read."""
    data = load(name)
    if "QueryResponse" in data:
        return list(data["QueryResponse"].get(entity, []))
    return [data[entity]]


def source(name: str) -> dict[str, Any]:
    return dict(json.loads((HERE / name).read_text(encoding="utf-8"))["_source"])
