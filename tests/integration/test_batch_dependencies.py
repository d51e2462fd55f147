"""How a batch push creates the customers and items its rows need: all the requests at once
(the limiter paces them, the batches take turns), the most used first, and each reference
free for others as soon as it is settled."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import psycopg
import pytest

from qbsync import daemon
from qbsync.batch import BatchPusher
from tests.daemon_support import Shop, eventually
from tests.integration import dixis_helpers as dx


async def test_dependencies_go_out_together_and_each_is_freed_once_settled(
    shop: Shop, dixis_db: psycopg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    who = dx.customer(dixis_db)
    products = [dx.product(dixis_db, f"Ρίγανη Ταϋγέτου {n}", "3.40") for n in range(7)]
    dixis_db.commit()
    customer = ("customer", str(who))
    items = sorted(("product", str(p)) for p in products)
    # the two items the push's rows use most first, then the others in reference order;
    # chunks of 3: both batches, and two items too few for a batch slot (single requests)
    uses = Counter({items[6]: 3, items[5]: 2, customer: 1})
    batched, singles = [items[6], items[5], customer, *items[:3]], items[3:5]
    started = await daemon.start(shop.settings, asyncio.Event(), transport=shop.transport())
    assert started is not None
    try:
        pusher = started.worker.pusher
        batches = BatchPusher(pusher, 3, min_fill=3)
        gate = asyncio.Event()
        entered: list[list[str]] = []  # the QuickBooks types in each batch, in turn
        send_batch = pusher.client.batch

        async def held_batch(items: list[dict[str, Any]], **kw: Any) -> list[dict[str, Any]]:
            entered.append([next(k for k in item if k not in ("bId", "operation"))
                            for item in items])
            await gate.wait()
            return await send_batch(items, **kw)

        monkeypatch.setattr(pusher.client, "batch", held_batch)
        creating = asyncio.create_task(batches._dependencies({customer, *items}, {}, uses))

        async def singles_settled_and_both_batches_sent() -> bool:
            return len(entered) == 2 and not any(
                pusher.dependency_lock(ref).locked() for ref in singles)

        # the single requests are answered and their locks given back while both batches
        # are still on their way (not one batch after the other, with every lock held until
        # the last is answered)
        await eventually(singles_settled_and_both_batches_sent, 10,
                         "the single creates settled while both batches are out")
        assert entered == [["Item", "Item", "Customer"], ["Item", "Item", "Item"]]
        assert all(pusher.dependency_lock(ref).locked() for ref in batched)
        gate.set()
        created = await asyncio.wait_for(creating, 10)
        assert set(created) == {customer, *items}
        assert {m.qbo_status for m in created.values()} == {"active"}
        assert not any(pusher.dependency_lock(ref).locked() for ref in batched)
        assert shop.emu.request_count(method="POST", route="/item") == 2
        assert shop.emu.request_count(method="POST", route="/batch") == 2
        assert len(shop.items()) == 7
        assert dx.mapped(dixis_db, "customer", who) is not None
    finally:
        await started.close()
