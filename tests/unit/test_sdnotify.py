"""sd_notify over a real AF_UNIX datagram socket, as systemd listens for it."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qbsync.sdnotify import notify, watchdog_interval


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def path_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    # A short directory: AF_UNIX paths are limited to 107 bytes, pytest's tmp_path may not be.
    directory = tempfile.mkdtemp(prefix="qbn", dir="/tmp")
    path = str(Path(directory) / "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    yield sock
    sock.close()
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def abstract_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    name = f"qbsync-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    yield sock
    sock.close()


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode("utf-8").split("\n")


def test_ready_and_status_in_one_datagram(path_socket: socket.socket) -> None:
    assert notify(READY=1, STATUS="listening on realm 9341") is True
    assert received(path_socket) == ["READY=1", "STATUS=listening on realm 9341"]


def test_lowercase_names_and_booleans(path_socket: socket.socket) -> None:
    assert notify(ready=True, status="up")
    assert received(path_socket) == ["READY=1", "STATUS=up"]


@pytest.mark.parametrize("field", ["WATCHDOG", "STOPPING", "RELOADING"])
def test_each_state(path_socket: socket.socket, field: str) -> None:
    assert notify(**{field: 1})
    assert received(path_socket) == [f"{field}=1"]


def test_status_newlines_cannot_inject_fields(path_socket: socket.socket) -> None:
    notify(STATUS="paused\nREADY=1")
    assert received(path_socket) == ["STATUS=paused READY=1"]


def test_abstract_socket(abstract_socket: socket.socket) -> None:
    assert notify(READY=1)
    assert received(abstract_socket) == ["READY=1"]


def test_no_socket_is_a_noop() -> None:
    assert notify(READY=1) is False


def test_nothing_to_send_is_a_noop(path_socket: socket.socket) -> None:
    assert notify() is False


def test_send_failure_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/qbsync/notify")
    assert notify(WATCHDOG=1) is False
    assert "sd_notify" in caplog.text


def test_a_full_socket_drops_the_message_instead_of_blocking(
    path_socket: socket.socket, caplog: pytest.LogCaptureFixture
) -> None:
    # Nobody reads: the queue fills (net.unix.max_dgram_qlen, 10 by default) and a blocking
    # send would wait forever, on the daemon's event loop.
    sent = [notify(WATCHDOG=1) for _ in range(1000)]
    assert sent[0] is True
    assert sent[-1] is False
    assert "dropped WATCHDOG" in caplog.text
    assert received(path_socket) == ["WATCHDOG=1"]  # what fitted was delivered


def test_watchdog_off_without_variables() -> None:
    assert watchdog_interval() is None


def test_watchdog_is_half_the_period(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")  # WatchdogSec=30
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0


@pytest.mark.parametrize("usec", ["", "0", "-5", "soon"])
def test_watchdog_bad_or_zero_period(monkeypatch: pytest.MonkeyPatch, usec: str) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", usec)
    assert watchdog_interval() is None


def test_watchdog_meant_for_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
