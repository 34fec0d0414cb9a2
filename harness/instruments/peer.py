"""A pybin endpoint that joins a cluster as one more replication destination.

Tests are plain synchronous pytest functions, while ``pybin.endpoint.BinEndpoint`` is
asyncio; ``BinPeer`` runs the endpoint on its own event-loop thread and offers blocking
calls with deadlines. Every received packet is also kept with its arrival time, so
timing figures (replication lag) can be read afterwards. It takes what a 1.11/2.1
node replicates too: the dialog module's packets and the usrloc module's (``ul``),
each kept in arrival order in ``received``.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from pybin import payloads, usrloc
from pybin.dialog import DialogMessage, decode_packet
from pybin.endpoint import BinEndpoint, Counters
from pybin.errors import PybinError
from pybin.wire import Packet

#: the modules a peer registers, as a backup's bin_register_cb calls do
MODULES = (b"dialog", usrloc.MODULE_NAME)


@dataclass(frozen=True)
class PeerPacket:
    time: float  # time.time() at arrival, comparable with capture timestamps
    source: tuple[str, int]
    packet: Packet

    def dialog(self) -> DialogMessage:
        return decode_packet(self.packet)

    def usrloc(self) -> usrloc.UlMessage:
        return usrloc.decode_packet(self.packet)

    @property
    def module(self) -> bytes:
        return self.packet.module

    def message(self) -> payloads.Message:
        """Its module's message, dialog or ``ul``."""
        return payloads.decode_packet(self.packet)


class BinPeer:
    """``with BinPeer(("10.1.2.1", 0), socket_factory=...) as peer: peer.next_dialog(5)``."""

    def __init__(self, local: tuple[str, int], *,
                 socket_factory: Callable[[int], socket.socket] | None = None) -> None:
        self._local = local
        self._socket_factory = socket_factory
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="bin-peer", daemon=True)
        self._endpoint: BinEndpoint | None = None
        self.received: list[PeerPacket] = []
        self._cond = threading.Condition()
        self._read = 0

    def __enter__(self) -> BinPeer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> BinPeer:
        self._thread.start()
        self._endpoint = self._call(self._start())
        return self

    async def _start(self) -> BinEndpoint:
        endpoint = BinEndpoint(self._local, socket_factory=self._socket_factory, tap=0)
        for module in MODULES:
            endpoint.register(module, self._on_packet)
        return await endpoint.start()

    def _on_packet(self, packet: Packet, source: tuple[str, int]) -> None:
        with self._cond:
            self.received.append(PeerPacket(time.time(), tuple(source[:2]), packet))  # type: ignore[arg-type]
            self._cond.notify_all()

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    @property
    def address(self) -> tuple[str, int]:
        assert self._endpoint is not None and self._endpoint.address is not None
        return self._endpoint.address[:2]  # type: ignore[return-value]

    @property
    def counters(self) -> Counters:
        assert self._endpoint is not None
        return self._endpoint.counters

    def send(self, data: bytes | payloads.Message, dest: tuple[str, int]) -> None:
        """Send from the peer's own socket, like bin_send to one destination."""
        assert self._endpoint is not None
        endpoint = self._endpoint

        async def send() -> int:
            return endpoint.send(data, [dest])

        self._call(send())

    def next_packet(self, timeout: float) -> PeerPacket:
        """The next packet not yet returned, waiting up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._read >= len(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no BIN packet reached the pybin peer at {self.address[0]}:{self.address[1]} "
                        f"within {timeout:g}s (received {len(self.received)} so far)")
                self._cond.wait(left)
            item = self.received[self._read]
            self._read += 1
            return item

    def next_dialog(self, timeout: float) -> tuple[DialogMessage, PeerPacket]:
        item = self.next_packet(timeout)
        try:
            return item.dialog(), item
        except PybinError as err:
            raise AssertionError(f"peer received an undecodable dialog packet: {err}") from None

    def of_module(self, module: bytes) -> list[PeerPacket]:
        """What arrived so far for one module (``b"dialog"``, ``b"ul"``), in arrival order."""
        with self._cond:
            return [p for p in self.received if p.packet.module == module]

    def wait_for(self, predicate: Callable[[list[PeerPacket]], bool], timeout: float,
                 what: str) -> list[PeerPacket]:
        """Wait until ``predicate(received)`` holds; the error says what was awaited."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.received):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"pybin peer: {what} not seen within {timeout:g}s "
                                       f"({len(self.received)} packets received)")
                self._cond.wait(left)
            return list(self.received)

    def close(self) -> None:
        if self._endpoint is not None:
            try:
                self._call(self._endpoint.close(), timeout=10)
            except (FutureTimeout, RuntimeError):
                pass
            self._endpoint = None
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()
