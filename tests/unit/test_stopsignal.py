"""The stop request of a `qbsync run` process: SIGTERM/SIGINT set it, wake whoever is bound
(the event loop, once it runs), and one that arrived before anyone was bound is not lost."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from qbsync.stopsignal import SIGNALS, StopRequest


@pytest.fixture
def stop() -> Iterator[StopRequest]:
    saved = {sig: signal.getsignal(sig) for sig in SIGNALS}
    request = StopRequest()
    request.install()
    try:
        yield request
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("sig", SIGNALS)
def test_a_signal_wakes_the_bound_loop(stop: StopRequest, sig: signal.Signals) -> None:
    woken: list[bool] = []
    stop.bind(lambda: woken.append(True))
    assert stop.installed()
    assert not stop.requested
    assert woken == []
    os.kill(os.getpid(), sig)  # the handler runs before the next line
    assert stop.requested
    assert woken == [True]


def test_a_signal_before_the_loop_runs_is_kept(stop: StopRequest) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested
    woken: list[bool] = []
    stop.bind(lambda: woken.append(True))
    assert woken == [True]


def test_a_closed_loop_does_not_break_the_handler(stop: StopRequest) -> None:
    def closed() -> None:
        raise RuntimeError("Event loop is closed")

    stop.bind(closed)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested
    stop.unbind()
    os.kill(os.getpid(), signal.SIGTERM)  # still caught: the process is not ended by it
    assert stop.installed()
