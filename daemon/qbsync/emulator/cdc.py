"""Change data capture (``GET /cdc?entities=...&changedSince=...``).

* ``changedSince`` older than 30 days (emulated clock) -> fault 6000 [U on the code];
* objects changed at or after ``changedSince`` are returned in their current state; deleted
  transactions come back as ``{"domain", "status": "Deleted", "Id",
  "MetaData": {"LastUpdatedTime"}}`` stubs (the shape SDK issue reports show);
  voided invoices and payments come back in full (amounts 0, ``PrivateNote`` "Voided";
  nothing else marks them, as in real answers);
* a customer merged into another (:meth:`Emulator.merge_customers`) comes back as a Deleted
  stub, the customer it was merged into and every moved transaction as updated; an invoice
  or credit memo whose payments changed is updated too (new Balance / LinkedTxn);
* at most 1000 objects in total, oldest changes first, so a client can move its window;
* one ``QueryResponse`` entry per requested entity, in the requested order; ``{}`` for an
  entity with no change [U].
"""

from __future__ import annotations

from typing import Any

from . import faults
from .clock import Clock, parse_iso
from .store import BY_PATH, Company

MAX_OBJECTS = 1000
WINDOW = 30 * 86400


def run(
    company: Company, entities: str | None, changed_since: str | None, clock: Clock
) -> list[dict[str, Any]]:
    if not entities:
        raise faults.required("entities")
    if not changed_since:
        raise faults.required("changedSince")
    try:
        since = parse_iso(changed_since)
    except ValueError:
        raise faults.invalid_property(
            f"Property Name:changedSince specified is unsupported or invalid. Supplied value:"
            f"{changed_since}",
            "changedSince",
        ) from None
    if since < clock.now() - WINDOW:
        raise faults.business(
            "changedSince cannot be more than 30 days in the past", "changedSince"
        )
    names = []
    for raw in entities.split(","):
        name = BY_PATH.get(raw.strip().lower())
        if name is None:
            raise faults.business(f"Invalid entity in entities list: {raw.strip()}", "entities")
        names.append(name)
    changed: list[tuple[float, str, dict[str, Any]]] = []
    for name in names:
        for source in (company.entities[name], company.deleted[name]):
            for obj in source.values():
                ts = parse_iso(obj["MetaData"]["LastUpdatedTime"])
                if ts >= since:
                    changed.append((ts, name, obj))
    changed.sort(key=lambda t: t[0])
    per: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for _, name, obj in changed[:MAX_OBJECTS]:
        per[name].append(obj)
    out = []
    for name in names:
        objs = per[name]
        if objs:
            out.append({name: objs, "startPosition": 1, "maxResults": len(objs)})
        else:
            out.append({})
    return [{"QueryResponse": out}]
