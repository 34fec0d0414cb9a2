"""The relay's way out: one non-blocking UDP socket connected to DEST, in order.

Connected, because a send then carries no address to convert and reuses the cached
route: about a third less per datagram than ``sendto``. What a full send buffer
refuses (``BlockingIOError``) waits in a queue, and everything after it waits behind
it, until the socket is writable; so datagrams leave in the order they were given.
"""

from __future__ import annotations

import asyncio
import collections
import socket
from collections.abc import Callable
from typing import Any

#: called once per datagram that left (or that the kernel refused: the error's text)
OnSent = Callable[[bytes, Any, "str | None"], None]


def why(err: OSError) -> str:
    return f"{type(err).__name__}: {err.strerror or err}"


class Sender:
    """``send(data, tag)`` now or after what is queued; ``on_sent(data, tag, error)``
    when it has gone."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, on_sent: OnSent,
                 on_drained: Callable[[], None]) -> None:
        self.sock = sock
        self._loop = loop
        self._on_sent = on_sent
        self._on_drained = on_drained
        self._queue: collections.deque[tuple[bytes, Any]] = collections.deque()

    @property
    def queued(self) -> int:
        """Datagrams waiting for room in the send buffer."""
        return len(self._queue)

    def send(self, data: bytes, tag: Any) -> None:
        if self._queue:
            self._queue.append((data, tag))
            return
        try:
            error = self.transmit(data)
        except BlockingIOError:
            self._queue.append((data, tag))
            self._loop.add_writer(self.sock.fileno(), self._writable)
            return
        self._on_sent(data, tag, error)

    def transmit(self, data: bytes) -> str | None:
        """One send: None, or why the kernel refused it; BlockingIOError when the buffer
        is full. A ConnectionRefusedError on a connected UDP socket reports the ICMP
        error an EARLIER datagram met (DEST's port was closed then) and this datagram
        did not leave: it is sent again, once."""
        send = self.sock.send
        try:
            send(data)
            return None
        except BlockingIOError:
            raise
        except ConnectionRefusedError:
            pass
        except OSError as err:
            return why(err)
        try:
            send(data)
            return None
        except BlockingIOError:
            raise
        except OSError as err:
            return why(err)

    def _writable(self) -> None:
        queue = self._queue
        while queue:
            data, tag = queue[0]
            try:
                error = self.transmit(data)
            except BlockingIOError:
                return
            queue.popleft()
            self._on_sent(data, tag, error)
        self._loop.remove_writer(self.sock.fileno())
        self._on_drained()

    def flush_blocking(self, timeout: float = 5.0) -> None:
        """At close: what is queued goes out, waiting up to ``timeout`` for room each."""
        if not self._queue:
            return
        self._loop.remove_writer(self.sock.fileno())
        self.sock.settimeout(timeout)
        while self._queue:
            data, tag = self._queue.popleft()
            try:
                error = self.transmit(data)
            except OSError as err:  # a timeout: the kernel never took it
                error = why(err)
            self._on_sent(data, tag, error)
