"""An impaired replication link: a pybin relay between two nodes, on its own thread.

``harness.live.start(link={"primary>backup": Impairment(...)})`` points the primary's
``replicate_dialogs_to`` for the backup at a ``LinkRelay``; the relay forwards to the
backup's BIN address with the impairment's seeded faults and logs every datagram (a
1.x backup accepts a BIN packet from any sender whose checksum is right, so the relay
is transparent). Like ``BinPeer`` it runs pybin's asyncio ``Relay`` on an event-loop
thread of its own and offers blocking calls with deadlines to synchronous callers; it
binds at the harness's address on the cluster network through the backend's
``socket()``, so it works on every backend.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

from harness.base.errors import HarnessError
from pybin.relay import Impairment, Relay, RelayCounters, RelayLog, read_relay_log

Address = tuple[str, int]


class LinkError(HarnessError, ValueError):
    """A link that cannot be: ``"a>b"`` naming an unknown node, a node linked to itself."""


def parse_link_name(name: str, nodes: Any) -> tuple[str, str]:
    """``"primary>backup"`` → ("primary", "backup"), both among ``nodes``."""
    src, sep, dst = name.partition(">")
    src, dst = src.strip(), dst.strip()
    if not sep or not src or not dst:
        raise LinkError(f"link {name!r}: write it SOURCE>DEST, e.g. primary>backup")
    for node in (src, dst):
        if node not in nodes:
            raise LinkError(f"link {name!r}: no node {node!r} (nodes: {', '.join(nodes)})")
    if src == dst:
        raise LinkError(f"link {name!r}: a node does not replicate to itself")
    return src, dst


class LinkRelay:
    """``LinkRelay("primary>backup", (harness_ip, 0), backup_bin, imp, log=path, socket_factory=f)``.

    ``address`` is where the source node must send; ``log_path`` the relay's JSON-lines
    log (see ``pybin.relay.log``), read back with ``log()``.
    """

    def __init__(self, name: str, listen: Address, dest: Address, impairment: Impairment | str, *,
                 log: Path, socket_factory: Callable[[int], socket.socket] | None = None) -> None:
        self.name = name
        self.impairment = Impairment.parse(impairment) if isinstance(impairment, str) else impairment
        self.dest = dest
        self.log_path = Path(log)
        self._relay = Relay(listen, dest, self.impairment, log=self.log_path, socket_factory=socket_factory)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"link {name}", daemon=True)
        self._started = False

    def __enter__(self) -> LinkRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> LinkRelay:
        self._thread.start()
        self._call(self._relay.start())
        self._started = True
        return self

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def _run(self, function: Callable[[], Any]) -> Any:
        async def call() -> Any:
            return function()
        return self._call(call())

    @property
    def address(self) -> Address:
        return self._relay.address[:2]  # type: ignore[return-value]

    @property
    def counters(self) -> RelayCounters:
        """The relay's live counters (read from another thread: a snapshot, not a lock)."""
        return self._relay.counters

    def wait_received(self, count: int, timeout: float) -> None:
        """Until the relay has read ``count`` datagrams; TimeoutError after ``timeout``."""
        try:
            self._call(self._relay.wait_received(count, timeout), timeout + 5.0)
        except FutureTimeout:
            raise TimeoutError(f"link {self.name}: fewer than {count} datagrams within {timeout:g}s") from None

    def drain(self, timeout: float) -> None:
        """Until nothing is held (reordered or delayed datagrams have left); TimeoutError after ``timeout``."""
        try:
            self._call(self._relay.drain(timeout), timeout + 5.0)
        except FutureTimeout:
            raise TimeoutError(f"link {self.name}: still holding datagrams after {timeout:g}s") from None

    def log(self) -> RelayLog:
        """The log so far: every datagram whose fate is complete (the relay flushes first)."""
        if self._started and not self._relay.closed:
            self._run(self._relay.flush_log)
        return read_relay_log(self.log_path)

    def describe(self) -> str:
        host, port = self.address
        return (f"link {self.name}: relay {host}:{port} → {self.dest[0]}:{self.dest[1]} "
                f"({self.impairment.describe()}), log {self.log_path}")

    def close(self) -> None:
        """Stop; what is still held leaves at once (logged ``at_close``); the log ends with its counters."""
        if self._started:
            try:
                self._call(self._relay.close(), timeout=10)
            except (FutureTimeout, RuntimeError):
                pass
            self._started = False
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        if not self._loop.is_closed() and not self._loop.is_running():
            self._loop.close()
