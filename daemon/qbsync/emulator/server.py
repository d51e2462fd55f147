"""Serve an :class:`Emulator` over a real socket with uvicorn in a background thread."""

from __future__ import annotations

import gc
import socket
import threading
import time
from types import TracebackType

import uvicorn

from .core import Emulator


class EmulatorServer:
    """``with EmulatorServer(emu) as srv: requests.get(srv.base_url + ...)``.

    ``port=0`` picks a free port. The server runs in a daemon thread with its own event loop.

    ``freeze_heap`` (seconds, for benchmarks that enforce the limits on a shrunk clock):
    every that often, move what is alive to the garbage collector's permanent generation
    (``gc.freeze()``). The limits time-stamp a request when the event loop gets to it, and a
    full collection walks every object of the emulated companies: with ~15,000 entities it
    holds the loop (and the GIL) for 100-300 ms, after which everything that arrived
    meanwhile is stamped at once, as if the client had sent it in a burst. QuickBooks'
    gateway has no such pause. The cost: cyclic garbage that was alive at a freeze is never
    collected (``stop`` unfreezes).
    """

    def __init__(
        self,
        emulator: Emulator,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        *,
        freeze_heap: float | None = None,
    ) -> None:
        self.emulator = emulator
        self.freeze_heap = freeze_heap
        self._stop_freezing = threading.Event()
        self._freezer: threading.Thread | None = None
        self.host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            emulator.app, log_level=log_level, lifespan="on", timeout_graceful_shutdown=2
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [self._sock]},
            name="qbo-emulator",
            daemon=True,
        )
        self._thread.start()
        if self.freeze_heap:
            self._freezer = threading.Thread(target=self._freeze, name="qbo-emulator-gc",
                                             daemon=True)
            self._freezer.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("emulator server did not start")
            time.sleep(0.01)
        return self

    def _freeze(self) -> None:
        assert self.freeze_heap
        while not self._stop_freezing.wait(self.freeze_heap):
            gc.collect(1)  # young garbage first, so that little of it is frozen
            gc.freeze()

    def stop(self, timeout: float = 10.0) -> None:
        if self._freezer is not None:
            self._stop_freezing.set()
            self._freezer.join()
            gc.unfreeze()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._sock.close()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
