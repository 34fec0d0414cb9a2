"""An asyncio endpoint that can stand in for an OpenSIPS 1.x node on the BIN interface.

The byte rules live in ``pybin.wire`` / ``pybin.dialog`` / ``pybin.usrloc``; this module only moves
datagrams (aioquic's split: the protocol object receives and forwards, pure code acts).

It mirrors ``bin_interface.c``: one ``bin_listen`` address; ``children`` receiving
sockets on it (1.10's ``bin_children`` processes, here sockets bound with
SO_REUSEPORT, so the kernel spreads senders across them by flow); callbacks per
module name (``bin_register_cb``); the first socket also sends (``bin_send`` to every
``replicate_dialogs_to`` destination). Datagrams are checked in the C receive loop's
order and every refusal is counted by ``DropReason``.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import ipaddress
import logging
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Union

from . import usrloc
from .dialog import MODULE_NAME, DialogMessage, decode_packet
from .errors import PybinError, RemoteProtocolError
from .wire import (
    BUF_SIZE,
    ByteOrder,
    DropReason,
    Packet,
    PacketRejected,
    parse_header,
)

log = logging.getLogger("pybin.endpoint")

Address = tuple[Any, ...]  # (host, port) or IPv6's (host, port, flowinfo, scope_id)
AddressLike = Union[str, tuple[str, int], Address]
Callback = Callable[[Packet, Address], Union[None, Awaitable[None]]]

#: What we ask the kernel for; root gets it through SO_RCVBUFFORCE, others are capped
#: at net.core.rmem_max. Bursts of a primary's replication must not overflow it.
DEFAULT_RCVBUF = 32 * 1024 * 1024
#: Packets kept for next_packet(); the oldest goes first when full.
DEFAULT_TAP = 65536
#: Datagrams read per wake-up beyond the one asyncio delivers, before yielding.
DRAIN_BATCH = 256


class EndpointError(PybinError):
    """The endpoint was used in a way it cannot serve (closed, not started, no destination)."""


class Received(NamedTuple):
    """A packet that passed the receiver's checks, and who sent it."""

    packet: Packet
    source: Address


@dataclass(slots=True)
class Counters:
    """What happened to every datagram: ``received == dispatched + dropped + callback_errors``."""

    #: datagrams read from the sockets, good or bad
    received: int = 0
    #: handed to a callback that returned normally
    dispatched: int = 0
    #: datagrams handed to the kernel by ``send``
    sent: int = 0
    dropped: dict[DropReason, int] = field(default_factory=lambda: dict.fromkeys(DropReason, 0))
    #: callbacks that raised something other than RemoteProtocolError (a bug: logged)
    callback_errors: int = 0
    #: errors the kernel reported on the socket (e.g. ICMP port unreachable after a send)
    socket_errors: int = 0
    #: packets next_packet() never saw because its buffer was full
    tap_overflow: int = 0
    #: datagrams read per receiving socket
    per_child: list[int] = field(default_factory=list)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "received": self.received,
            "dispatched": self.dispatched,
            "sent": self.sent,
            "dropped": {r.name: n for r, n in self.dropped.items() if n},
            "callback_errors": self.callback_errors,
            "socket_errors": self.socket_errors,
            "tap_overflow": self.tap_overflow,
            "per_child": list(self.per_child),
        }

    def summary(self) -> str:
        drops = ", ".join(f"{r.name} {n}" for r, n in self.dropped.items() if n) or "none"
        return (
            f"received {self.received}, dispatched {self.dispatched}, sent {self.sent}, "
            f"dropped: {drops}, callback errors {self.callback_errors}"
        )


def parse_address(addr: AddressLike) -> tuple[str, int]:
    """``"host:port"``, ``"[v6]:port"`` or a tuple → ``(host, port)``."""
    if isinstance(addr, tuple):
        return str(addr[0]), int(addr[1])
    text = addr.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = text.rpartition(":")
    if not host or not port_text.isdigit() or int(port_text) > 0xFFFF:
        raise EndpointError(f"not an address (HOST:PORT or [V6]:PORT): {addr!r}")
    return host, int(port_text)


def _sockaddr(addr: AddressLike, family: int | None = None) -> tuple[int, Address]:
    """Resolve once, numerically when possible, so sendto never blocks on DNS."""
    host, port = parse_address(addr)
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        infos = socket.getaddrinfo(host, port, family or 0, socket.SOCK_DGRAM)
        if not infos:
            raise EndpointError(f"cannot resolve {host!r}") from None
        return infos[0][0], infos[0][4]
    if ip.version == 6:
        return socket.AF_INET6, (host, port, 0, 0)
    if family == socket.AF_INET6:  # IPv4 destination from an IPv6 socket
        return socket.AF_INET6, (f"::ffff:{host}", port, 0, 0)
    return socket.AF_INET, (host, port)


#: <asm-generic/socket.h>; Python's socket module does not export it.
_SO_RCVBUFFORCE_LINUX = 33


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """SO_RCVBUFFORCE (root may pass rmem_max), else SO_RCVBUF; return what we got."""
    force = getattr(socket, "SO_RCVBUFFORCE", _SO_RCVBUFFORCE_LINUX if sys.platform == "linux" else None)
    try:
        if force is None:
            raise PermissionError
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
        except OSError:
            pass
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)


class _Receiver(asyncio.DatagramProtocol):
    """One receiving socket: forwards every datagram to the endpoint, does nothing else.

    asyncio reads one datagram per event-loop turn; under a burst that turn costs more
    than the packet. So after the datagram asyncio hands us, we drain what is already
    queued on the socket (non-blocking, bounded) before yielding to the loop.
    """

    def __init__(self, endpoint: BinEndpoint, child: int, sock: socket.socket) -> None:
        self.endpoint = endpoint
        self.child = child
        self.sock = sock
        self.buffer = bytearray(BUF_SIZE + 1)
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Address) -> None:
        handle = self.endpoint._datagram
        child = self.child
        handle(child, data, addr)
        recvfrom_into = self.sock.recvfrom_into
        buffer = self.buffer
        for _ in range(DRAIN_BATCH):
            if self.endpoint._closed:
                return
            try:
                size, addr = recvfrom_into(buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                self.endpoint._socket_error(err)
                return
            handle(child, bytes(buffer[:size]), addr)

    def error_received(self, exc: Exception) -> None:
        self.endpoint._socket_error(exc)


class BinEndpoint:
    """A BIN node on asyncio: ``async with BinEndpoint(("127.0.0.1", 0)) as ep: ...``.

    ``register(module, callback)`` like bin_register_cb; ``send(packet)`` like
    bin_send to each default destination; ``next_packet`` / ``next_dialog`` /
    ``next_usrloc`` for tests.
    Every packet that passes the receiver's checks is also kept (up to ``tap``) for
    ``next_packet``, whether or not a callback takes it.
    """

    def __init__(
        self,
        local: AddressLike = ("127.0.0.1", 0),
        *,
        destinations: Iterable[AddressLike] = (),
        children: int = 1,
        byte_order: ByteOrder = ByteOrder.LITTLE,
        rcvbuf: int = DEFAULT_RCVBUF,
        tap: int = DEFAULT_TAP,
        socket_factory: Callable[[int], socket.socket] | None = None,
    ) -> None:
        """``socket_factory(family)`` makes each unbound socket; the harness passes one
        that creates sockets inside a network namespace."""
        if children < 1:
            raise EndpointError(f"children must be at least 1, got {children}")
        self._local = parse_address(local)
        self._default_dests = [parse_address(d) for d in destinations]
        self.children = children
        self.byte_order = byte_order
        self._rcvbuf_wanted = rcvbuf
        self._new_socket = socket_factory or (lambda family: socket.socket(family, socket.SOCK_DGRAM))
        #: the receive buffer the kernel granted (per socket), once started
        self.rcvbuf = 0
        self.counters = Counters(per_child=[0] * children)
        self._callbacks: dict[bytes, Callback] = {}
        self._tap: collections.deque[Received] | None = (
            collections.deque(maxlen=tap) if tap > 0 else None
        )
        self._waiters: list[asyncio.Future[None]] = []
        self._transports: list[asyncio.DatagramTransport] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._family = socket.AF_INET
        self._dests: list[Address] = []
        self._address: Address | None = None
        self._started = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> BinEndpoint:
        """Bind the sockets (all on one port) and start receiving."""
        if self._started:
            raise EndpointError("endpoint already started")
        self._started = True
        loop = asyncio.get_running_loop()
        try:
            family, bind_to = _sockaddr(self._local)
            self._family = family
            socks = self._bind(family, bind_to)
            for child, sock in enumerate(socks):
                transport, _ = await loop.create_datagram_endpoint(
                    lambda child=child, sock=sock: _Receiver(self, child, sock), sock=sock
                )
                self._transports.append(transport)
            self._address = socks[0].getsockname()
            self._dests = [_sockaddr(d, family)[1] for d in self._default_dests]
        except BaseException:
            await self.close()
            raise
        return self

    def _bind(self, family: int, bind_to: Address) -> list[socket.socket]:
        socks: list[socket.socket] = []
        try:
            if self.children > 1 and bind_to[1] == 0:
                # bind(0) with SO_REUSEPORT may pick a port another reuseport group of
                # this user holds; let a plain socket choose a free one first.
                probe = self._new_socket(family)
                try:
                    probe.bind(bind_to)
                    bind_to = (bind_to[0], probe.getsockname()[1], *bind_to[2:])
                finally:
                    probe.close()
            for _ in range(self.children):
                sock = self._new_socket(family)
                socks.append(sock)
                if self.children > 1:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                self.rcvbuf = set_rcvbuf(sock, self._rcvbuf_wanted)
                sock.setblocking(False)
                sock.bind(bind_to)
                if bind_to[1] == 0:
                    bind_to = sock.getsockname()
        except OSError as err:
            for sock in socks:
                sock.close()
            host, port = self._local
            raise EndpointError(f"cannot listen on {_show((host, port))}: {err.strerror or err}") from None
        return socks

    async def close(self) -> None:
        """Stop receiving, close every socket, wake anyone waiting in next_packet."""
        if self._closed:
            return
        self._closed = True
        for transport in self._transports:
            transport.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._wake()
        # let the transports' connection_lost run before the loop may go away
        await asyncio.sleep(0)

    async def __aenter__(self) -> BinEndpoint:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def address(self) -> Address:
        """The bound (host, port), known once started (port 0 → the kernel's pick)."""
        if self._address is None:
            raise EndpointError("endpoint not started")
        return self._address

    @property
    def closed(self) -> bool:
        return self._closed

    # -- receiving ---------------------------------------------------------------------

    def register(self, module: bytes | str, callback: Callback) -> None:
        """bin_register_cb: packets for ``module`` go to ``callback(packet, source)``.

        1.10 prepends each registration and dispatches to the first match, so the
        LAST callback registered for a name wins; so it is here. A callback may raise
        RemoteProtocolError to refuse the packet (counted as HANDLER_ERROR); a
        coroutine it returns is scheduled.
        """
        name = module.encode() if isinstance(module, str) else bytes(module)
        if not name:
            raise EndpointError("module name must not be empty")
        self._callbacks[name] = callback

    def _datagram(self, child: int, data: bytes, addr: Address) -> None:
        """The receive path: the receiver loop's checks, then dispatch. Kept lean."""
        counters = self.counters
        counters.received += 1
        counters.per_child[child] += 1
        try:
            packet = parse_header(data, self.byte_order)
        except PacketRejected as err:
            counters.dropped[err.reason] += 1
            return
        tap = self._tap
        if tap is not None:
            if len(tap) == tap.maxlen:
                counters.tap_overflow += 1
            tap.append(Received(packet, addr))
            if self._waiters:
                self._wake()
        callback = self._callbacks.get(packet.module)
        if callback is None:
            counters.dropped[DropReason.UNKNOWN_MODULE] += 1
            return
        try:
            result = callback(packet, addr)
        except RemoteProtocolError:
            counters.dropped[DropReason.HANDLER_ERROR] += 1
            return
        except Exception:  # a bug in the callback must not stop the endpoint
            counters.callback_errors += 1
            log.exception("BIN callback for module %r failed", packet.module.decode("latin-1"))
            return
        if result is not None and inspect.isawaitable(result):
            task = asyncio.ensure_future(result)
            self._tasks.add(task)
            task.add_done_callback(self._task_done)
            return
        counters.dispatched += 1

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        err = task.exception()
        if err is None:
            self.counters.dispatched += 1
        elif isinstance(err, RemoteProtocolError):
            self.counters.dropped[DropReason.HANDLER_ERROR] += 1
        else:
            self.counters.callback_errors += 1
            log.error("BIN callback coroutine failed", exc_info=err)

    def _socket_error(self, exc: Exception) -> None:
        self.counters.socket_errors += 1
        log.debug("BIN socket error: %s", exc)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def next_packet(self, timeout: float) -> Received:
        """The oldest packet not yet taken that passed the receiver's checks.

        Waits at most ``timeout`` seconds; TimeoutError says what was awaited and
        what the endpoint saw meanwhile.
        """
        return await self._next(timeout, "BIN packet", None)

    async def next_dialog(self, timeout: float) -> tuple[DialogMessage, Address]:
        """The next ``dialog`` packet, decoded; packets of other modules are passed over.

        A dialog packet that does not decode raises its RemoteProtocolError.
        """
        received = await self._next(timeout, "dialog packet", MODULE_NAME)
        return decode_packet(received.packet), received.source

    async def next_usrloc(self, timeout: float) -> tuple[usrloc.UlMessage, Address]:
        """The next ``ul`` packet (1.11/2.1 usrloc replication), decoded; others are passed over."""
        received = await self._next(timeout, "ul packet", usrloc.MODULE_NAME)
        return usrloc.decode_packet(received.packet), received.source

    async def _next(self, timeout: float, what: str, module: bytes | None) -> Received:
        tap = self._tap
        if tap is None:
            raise EndpointError("next_packet needs the tap: create the endpoint with tap > 0")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            while tap:
                item = tap.popleft()
                if module is None or item.packet.module == module:
                    return item
            if self._closed:
                raise EndpointError(f"endpoint closed while waiting for a {what}")
            if not self._started:
                raise EndpointError("endpoint not started")
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no {what} within {timeout:g}s on {_show(self.address)} "
                    f"({self.counters.summary()})"
                )
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                pass  # loop once more: report, or take what arrived at the last moment

    # -- sending -----------------------------------------------------------------------

    def send(
        self,
        packet: bytes | bytearray | memoryview | DialogMessage | usrloc.UlMessage,
        dests: AddressLike | Iterable[AddressLike] | None = None,
    ) -> int:
        """bin_send to each destination (default: the endpoint's); returns datagrams sent."""
        if not self._transports or self._closed:
            raise EndpointError("endpoint not started" if not self._closed else "endpoint closed")
        if isinstance(packet, (bytes, bytearray, memoryview)):
            data = bytes(packet)
        else:
            data = packet.encode(self.byte_order)
        if dests is None:
            targets = self._dests
        elif isinstance(dests, (str, tuple)):
            targets = [_sockaddr(dests, self._family)[1]]
        else:
            targets = [_sockaddr(d, self._family)[1] for d in dests]
        if not targets:
            raise EndpointError("no destination: pass dests or create the endpoint with destinations")
        transport = self._transports[0]
        for target in targets:
            transport.sendto(data, target)
        self.counters.sent += len(targets)
        return len(targets)


def send_datagrams(
    addr: AddressLike,
    datagrams: Iterable[bytes],
    source: AddressLike | None = None,
    *,
    rate: float | None = None,
) -> int:
    """Send datagrams from a plain blocking socket (scripts, benchmarks); returns the count.

    ``source`` binds the sending socket (e.g. to look like a given node); ``rate``
    paces to that many datagrams per second, in small bursts.
    """
    family, target = _sockaddr(addr)
    sent = 0
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        if source is not None:
            sock.bind(_sockaddr(source, family)[1])
        if rate is None:
            for data in datagrams:
                sock.sendto(data, target)
                sent += 1
            return sent
        interval = 1.0 / rate
        start = time.perf_counter()
        for data in datagrams:
            ahead = start + sent * interval - time.perf_counter()
            if ahead > 0.001:  # sleep only when a millisecond ahead: bursts of ~rate/1000
                time.sleep(ahead)
            sock.sendto(data, target)
            sent += 1
    return sent


def _show(addr: tuple[Any, ...]) -> str:
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


__all__ = [
    "Address",
    "BinEndpoint",
    "Counters",
    "EndpointError",
    "Received",
    "parse_address",
    "send_datagrams",
]
