"""``Relay``: an asyncio forwarder from LISTEN to DEST that applies an ``Impairment``.

The decisions and the held queue are ``faults.Impairer`` (pure), the way out is
``sender.Sender`` (a socket connected to DEST, in order); this layer reads, keeps one
timer armed for the next held datagram, and logs. Like ``BinEndpoint`` it reads with a
bounded drain per wake-up (one datagram per event-loop turn costs more than the
datagram). With no fault and no log the read loop is a plain recv/send pair: no
decision, no object per datagram.

**Closing.** ``close()`` stops reading, then sends what is still held (reordered or
delayed datagrams) at once, marked ``at_close`` in the log; ``close(deliver_held=False)``
sends nothing more and logs them as ``held``. Either way every datagram read has its
log line, and the log ends with the counters. ``drain()`` first waits for the held
datagrams to leave on their own schedule (bounded by the delay, the jitter and
``reorder_timeout``).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import Counter
from collections.abc import Callable
from typing import IO, Any, Union

from ..endpoint import DEFAULT_RCVBUF, Address, AddressLike, _show, _sockaddr, parse_address, set_rcvbuf
from ..errors import PybinError
from ..wire import ByteOrder
from .faults import Arrival, Impairer, PacketInfo, RelayCounters, inspect
from .impairment import COMMAND_NAMES, DEFAULT, Impairment
from .log import LogWriter
from .sender import Sender

#: larger than any UDP datagram, so a read never cuts one
RECV_SIZE = 65536
#: datagrams read per wake-up before yielding to the event loop
DRAIN_BATCH = 256


class RelayError(PybinError):
    """The relay cannot do what was asked (bind, resolve, used after close)."""


class Relay:
    """``async with Relay(listen, dest, Impairment.parse("loss=0.1,seed=7"), log=path) as r:``

    ``r.address`` is where to send; every datagram read there goes on to ``dest`` from
    the relay's own socket, with the impairment's faults. ``r.counters`` counts them.
    ``socket_factory(family)`` makes each unbound socket (the harness passes one that
    creates sockets inside a network namespace). ``limit`` stops reading after that
    many datagrams. ``tally`` counts datagrams per kind and action (``pybin relay
    --stats``).
    """

    def __init__(
        self,
        listen: AddressLike,
        dest: AddressLike,
        impairment: Impairment | str | None = None,
        *,
        log: Union[str, "os.PathLike[str]", IO[Any], None] = None,
        byte_order: ByteOrder = ByteOrder.LITTLE,
        rcvbuf: int = DEFAULT_RCVBUF,
        socket_factory: Callable[[int], socket.socket] | None = None,
        limit: int | None = None,
        tally: bool = False,
    ) -> None:
        if isinstance(impairment, str):
            impairment = Impairment.parse(impairment)
        self.impairment = impairment or DEFAULT
        if limit is not None and limit < 1:
            raise RelayError(f"limit must be at least 1, got {limit}")
        self._listen = parse_address(listen)
        self._dest_spec = parse_address(dest)
        self.byte_order = byte_order
        self._rcvbuf_wanted = rcvbuf
        self._new_socket = socket_factory or (lambda family: socket.socket(family, socket.SOCK_DGRAM))
        self._log_target = log
        self._limit = limit
        self.counters = RelayCounters()
        #: (kind, action) → datagrams, with ``tally``; kind is e.g. "dialog created"
        self.tally: Counter[tuple[str, str]] | None = Counter() if tally else None
        #: the receive buffer the kernel granted, once started
        self.rcvbuf = 0
        self._impairer = Impairer(self.impairment, byte_order, self.counters)
        self._log: LogWriter | None = None
        self._rx: socket.socket | None = None
        self._tx: Sender | None = None
        self._dest: Address | None = None
        self._address: Address | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading = False
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        self._seq = 0
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []
        self._started = False
        self._closed = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> Relay:
        """Bind LISTEN, resolve DEST, open the log, start reading."""
        if self._started:
            raise RelayError("relay already started")
        self._started = True
        self._loop = asyncio.get_running_loop()
        try:
            self._open_sockets()
            if self._log_target is not None:
                try:
                    self._log = LogWriter(self._log_target)
                except OSError as err:
                    raise RelayError(f"cannot write the log {self._log_target}: {err.strerror or err}") from None
                self._log.header(self.address, self._dest, self.impairment.describe(),
                                 self.byte_order.name.lower(), time.time())
        except BaseException:
            await self.close()
            raise
        plain = not self.impairment.faults and self._log is None and self.tally is None
        self._loop.add_reader(self._rx.fileno(), self._read_plain if plain else self._read_impaired)  # type: ignore[union-attr]
        self._reading = True
        return self

    def _open_sockets(self) -> None:
        try:
            family, bind_to = _sockaddr(self._listen)
            dest_family, self._dest = _sockaddr(self._dest_spec)
        except (OSError, PybinError) as err:
            raise RelayError(f"cannot resolve {err}") from None
        rx = self._rx = self._new_socket(family)
        self.rcvbuf = set_rcvbuf(rx, self._rcvbuf_wanted)
        rx.setblocking(False)
        try:
            rx.bind(bind_to)
        except OSError as err:
            raise RelayError(f"cannot listen on {_show(self._listen)}: {err.strerror or err}") from None
        self._address = rx.getsockname()
        tx = self._new_socket(dest_family)
        self._tx = Sender(tx, self._loop, self._sent, self._check_waiters)  # type: ignore[arg-type]
        tx.setblocking(False)
        try:
            tx.connect(self._dest)
        except OSError as err:
            raise RelayError(f"cannot send to {_show(self._dest_spec)}: {err.strerror or err}") from None

    async def close(self, *, deliver_held: bool = True) -> None:
        """Stop reading; send (or, with ``deliver_held=False``, log as held) what is still
        held; write the log's last line; close the sockets."""
        if self._closed:
            return
        self._closed = True
        self.stop_receiving()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for arrival in self._impairer.take_held():
            if deliver_held and self._tx is not None:
                arrival.at_close = True
                self._emit(arrival)
            else:
                arrival.held = True
                self.counters.unsent += 1
                self._finish(arrival)
        if self._tx is not None:
            self._tx.flush_blocking()
        if self._log is not None:
            self._log.end(time.time(), self.counters.as_dict())
            self._log.close()
        for sock in (self._rx, self._tx and self._tx.sock):
            if sock is not None:
                sock.close()
        self._check_waiters()

    async def __aenter__(self) -> Relay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def stop_receiving(self) -> None:
        """Read no more datagrams (those already read still leave on their schedule)."""
        if self._reading and self._loop is not None and self._rx is not None:
            self._loop.remove_reader(self._rx.fileno())
        self._reading = False

    def flush_log(self) -> None:
        """Hand every log line written so far to the OS, so a reader of the file sees
        each datagram whose fate is complete (call it on the relay's event loop)."""
        if self._log is not None and not self._closed:
            self._log.flush()

    @property
    def address(self) -> Address:
        """Where the relay listens (port 0 → the kernel's pick), once started."""
        if self._address is None:
            raise RelayError("relay not started")
        return self._address

    @property
    def dest(self) -> Address:
        if self._dest is None:
            raise RelayError("relay not started")
        return self._dest

    @property
    def closed(self) -> bool:
        return self._closed

    # -- waiting -----------------------------------------------------------------------

    async def wait_received(self, count: int, timeout: float | None = None) -> None:
        """Until ``count`` datagrams have been read; TimeoutError says what was seen."""
        await self._wait(lambda: self.counters.received >= count, timeout, f"{count} datagrams received")

    async def drain(self, timeout: float | None = None) -> None:
        """Until nothing is held: every datagram read so far has left (or was dropped)."""
        await self._wait(lambda: self.counters.held == 0, timeout, "nothing held")

    async def _wait(self, done: Callable[[], bool], timeout: float | None, what: str) -> None:
        if done():
            return
        if self._closed:
            raise RelayError(f"relay closed while waiting for {what} ({self.counters.summary()})")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((done, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise TimeoutError(f"no {what} within {timeout:g}s on the relay ({self.counters.summary()})") from None
        finally:
            self._waiters = [w for w in self._waiters if w[1] is not future]
        if not done():
            raise RelayError(f"relay closed while waiting for {what} ({self.counters.summary()})")

    def _check_waiters(self) -> None:
        for done, future in self._waiters:
            if not future.done() and (self._closed or done()):
                future.set_result(None)

    # -- reading -----------------------------------------------------------------------

    def _read_plain(self) -> None:
        """No fault, no log: read, send, count."""
        recv = self._rx.recv  # type: ignore[union-attr]
        sender = self._tx
        send = sender.sock.send  # type: ignore[union-attr]
        counters, limit = self.counters, self._limit
        for _ in range(DRAIN_BATCH):
            try:
                data = recv(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as err:
                self._socket_error(err)
                break
            counters.received += 1
            if sender.queued:  # type: ignore[union-attr]
                sender.send(data, None)  # type: ignore[union-attr]
                continue
            try:
                send(data)
            except OSError:
                sender.send(data, None)  # type: ignore[union-attr]  # the careful way: full buffer, refusal
            else:
                counters.sent += 1
                counters.forwarded += 1
                self._seq += 1
            if counters.received == limit:
                self.stop_receiving()
                break
        if self._waiters:
            self._check_waiters()

    def _read_impaired(self) -> None:
        """Every datagram through the Impairer; the ones due now go out at once."""
        recvfrom = self._rx.recvfrom  # type: ignore[union-attr]
        arrive = self._impairer.arrive
        clock = self._loop.time  # type: ignore[union-attr]
        wall = time.time
        counters, limit, emit = self.counters, self._limit, self._emit
        idle = False
        for _ in range(DRAIN_BATCH):
            try:
                data, src = recvfrom(RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                idle = True
                break
            except OSError as err:
                self._socket_error(err)
                break
            arrival, ready = arrive(data, clock())  # counts it received
            arrival.t = wall()
            arrival.src = src
            if not arrival.copies:
                self._finish(arrival)
            for item in ready:
                emit(item)
            if counters.received == limit:
                self.stop_receiving()
                break
        self._arm()
        if idle and self._log is not None:
            self._log.flush()  # a quiet moment: let readers of the log see what happened
        if self._waiters:
            self._check_waiters()

    def _socket_error(self, err: OSError) -> None:
        self.counters.socket_errors += 1

    # -- sending -----------------------------------------------------------------------

    def _emit(self, arrival: Arrival) -> None:
        send = self._tx.send  # type: ignore[union-attr]
        for _ in range(arrival.pending):
            send(arrival.out, arrival)

    def _sent(self, data: bytes, arrival: Arrival | None, error: str | None) -> None:
        """A datagram has gone (or was refused, ``error``): count it, log it."""
        if error is None:
            self.counters.sent += 1
        else:
            self.counters.socket_errors += 1
        seq = self._seq
        self._seq = seq + 1
        if arrival is None:
            self.counters.forwarded += 1
            return
        if self._log is not None:
            arrival.sent.append((seq, time.time(), data, error))
        arrival.pending -= 1
        if not arrival.pending:
            self.counters.forwarded += 1
            self._finish(arrival)

    def _finish(self, arrival: Arrival) -> None:
        """Its fate is complete: log it, tally it."""
        if self._log is None and self.tally is None:
            return
        if arrival.info is None:
            arrival.info = inspect(arrival.data, self.byte_order)
        if self._log is not None:
            self._log.record(arrival)
        if self.tally is not None:
            kind = _kind(arrival.info)
            if arrival.held:
                self.tally[kind, "unsent"] += 1
            for action in arrival.actions or ("forward",):
                self.tally[kind, action] += 1

    # -- the timer ---------------------------------------------------------------------

    def _arm(self) -> None:
        when = self._impairer.next_wakeup()
        if when is None or self._closed:
            return
        if self._timer is not None:
            if self._timer_when <= when:
                return
            self._timer.cancel()
        self._timer_when = when
        self._timer = self._loop.call_at(when, self._due)  # type: ignore[union-attr]

    def _due(self) -> None:
        self._timer = None
        now = max(self._loop.time(), self._timer_when)  # type: ignore[union-attr]
        for arrival in self._impairer.due(now):
            self._emit(arrival)
        self._arm()
        if self._log is not None:
            self._log.flush()
        if self._waiters:
            self._check_waiters()


def _kind(info: PacketInfo) -> str:
    if info.module is None:
        return f"not BIN ({info.error})"
    if info.is_dialog:
        return f"dialog {COMMAND_NAMES.get(info.command, info.command)}"  # type: ignore[call-overload]
    return f"{info.module.decode('utf-8', 'backslashreplace')} cmd={info.command}"
