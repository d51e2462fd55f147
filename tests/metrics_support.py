"""Scraping a daemon's /metrics in tests: parsed with prometheus-client's own parser."""

from __future__ import annotations

import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse(text: str) -> list[Sample]:
    return [Sample(s.name, dict(s.labels), s.value)
            for family in text_string_to_metric_families(text) for s in family.samples]


def get(base_url: str, path: str) -> httpx.Response:
    """One request to a daemon's endpoint (a process of its own: blocking is fine)."""
    return httpx.get(f"{base_url}{path}", timeout=10)


def scrape(base_url: str) -> list[Sample]:
    resp = get(base_url, "/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    return parse(resp.text)


def total(samples: Iterable[Sample], name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    return sum(s.value for s in samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def by(samples: Iterable[Sample], name: str, *keys: str) -> dict[tuple[str, ...], float]:
    """`name`'s samples summed by the given labels."""
    out: dict[tuple[str, ...], float] = {}
    for s in samples:
        if s.name == name:
            key = tuple(s.labels.get(k, "") for k in keys)
            out[key] = out.get(key, 0.0) + s.value
    return out
