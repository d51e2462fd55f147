"""Cheap request counters keyed by "METHOD route status" (route uses placeholders)."""

from __future__ import annotations


def route_of(path: str) -> tuple[str, str | None, str | None]:
    """(route label, entity segment, realm) of a request path, without regexes."""
    if path.startswith("/v3/company/"):
        parts = path.split("/")
        realm = parts[3] if len(parts) > 3 else None
        seg = parts[4].lower() if len(parts) > 4 and parts[4] else None
        if seg is None:
            return "/v3/company/{realmId}", None, realm
        label = "/v3/company/{realmId}/" + seg
        if len(parts) > 5 and parts[5]:
            label += "/" + parts[5] if seg == "reports" else "/{id}"
            if len(parts) > 6 and parts[6]:
                label += "/" + parts[6]
        return label, seg, realm
    return path, None, None


class Counters:
    def __init__(self) -> None:
        self.total: dict[str, int] = {}
        self.by_realm: dict[str, dict[str, int]] = {}

    def record(self, method: str, route: str, status: int | str, realm: str | None) -> None:
        key = f"{method} {route} {status}"
        self.total[key] = self.total.get(key, 0) + 1
        if realm is not None:
            per = self.by_realm.get(realm)
            if per is None:
                per = self.by_realm[realm] = {}
            per[key] = per.get(key, 0) + 1

    def snapshot(self, realm: str | None = None) -> dict[str, int]:
        return dict(self.by_realm.get(realm, {}) if realm is not None else self.total)

    def count(
        self,
        method: str | None = None,
        route: str | None = None,
        status: int | str | None = None,
        realm: str | None = None,
    ) -> int:
        """Sum of the counters matching every given part (route: substring match)."""
        n = 0
        for key, value in self.snapshot(realm).items():
            m, r, s = key.split(" ")
            if method and m != method.upper():
                continue
            if route and route not in r:
                continue
            if status is not None and s != str(status):
                continue
            n += value
        return n

    def reset(self) -> None:
        self.total.clear()
        self.by_realm.clear()
