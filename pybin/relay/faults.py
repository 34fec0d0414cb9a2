"""The relay's decisions and its queue of held datagrams, with no I/O and no clock.

**The determinism rule.** Datagram number ``index`` (0 for the first the relay reads,
counting every datagram, selected or not) meets fault ``f`` (``loss``, ``duplicate``,
``reorder``, ``delay``, ``corrupt``, ``truncate``) through four numbers in [0, 1)::

    digest = BLAKE2b(f"{seed}:{index}:{f}".encode(), digest_size=32)
    u0, u1, u2, u3 = (int.from_bytes(digest[8*k : 8*k+8], "big") / 2**64 for k in range(4))

The fault applies when ``u0 < probability``. So a decision depends only on the seed,
the datagram's place in the input and its bytes (lengths, for where to cut), never on
the wall clock, on the other faults' settings or on how many datagrams were selected
before; the same seed and the same input give the same decisions in any run, and
turning one fault up or down leaves every other fault's decisions as they were.

**What each fault does**, applied in this order to a selected datagram:

1. ``loss``: dropped; nothing else happens to it.
2. ``truncate``: cut to ``1 + floor(u1 * (len - 1))`` bytes (every shorter length
   equally likely). A BIN packet cut to 8 bytes or more is **re-sealed** (its checksum
   recomputed over what is left), so the cut reaches the receiver's parser, the way a
   sender's failed push does; no strict prefix of a dialog packet decodes.
3. ``corrupt``: byte ``8 + floor(u1 * (len - 8))`` (after the marker and the
   checksum) is XORed with ``1 + floor(u2 * 255)``; the checksum is left as it was, so
   the receiver's checksum check refuses the datagram (a single-byte change always
   changes a CRC-32). A datagram of 8 bytes or fewer has no byte to flip and passes.
4. ``duplicate``: sent twice, back to back (the same bytes).
5. ``reorder``: held back until ``reorder_by`` later datagrams have **arrived** (each
   later datagram is handled first, then the held one leaves), or for
   ``reorder_timeout`` ms when the stream stops, whichever comes first.
6. ``delay``: every selected datagram (that is not lost) leaves ``delay + jitter *
   (2 * u0 - 1)`` ms after it arrived (after its reorder release, if held): jitter is
   uniform in ``[-jitter, +jitter]``. Jitter reorders by itself: a datagram drawn a
   longer delay than the next one's by more than the gap between their arrivals
   leaves after it. Equal due times leave in the order they were scheduled.

Datagrams that are not selected leave at once, untouched (they may overtake delayed
or held ones). Without ``only``/``calls`` every datagram is selected, BIN or not.
"""

from __future__ import annotations

import collections
import hashlib
import heapq
from dataclasses import dataclass
from typing import Any, NamedTuple

from .._codec import HEADER_OK
from .._codec import impl as _codec
from ..dialog import MODULE_NAME
from ..wire import (
    CMD_FIELD_SIZE,
    HEADER_SIZE,
    MARKER,
    NAME_START,
    ByteOrder,
    DropReason,
    checksum,
)
from .impairment import Impairment

_SCALE = 2.0**-64
_blake2b = hashlib.blake2b
_VERDICTS = {1: DropReason.RUNT.name, 2: DropReason.BAD_MARKER.name, 3: DropReason.BAD_NAME.name}


def draws(seed: int, index: int, fault: str) -> tuple[float, float, float, float]:
    """The four numbers in [0, 1) that decide ``fault`` for datagram ``index``."""
    digest = _digest(b"%d:%d:" % (seed, index), fault.encode())
    return _u(digest, 0), _u(digest, 1), _u(digest, 2), _u(digest, 3)


def _digest(prefix: bytes, fault: bytes) -> bytes:
    return _blake2b(prefix + fault, digest_size=32).digest()


def _u(digest: bytes, k: int) -> float:
    """The k-th number of a digest (the decision path converts only those it uses)."""
    return int.from_bytes(digest[8 * k : 8 * k + 8], "big") * _SCALE


class PacketInfo(NamedTuple):
    """What came in, as far as a 1.10 receiver would read it.

    ``error`` is the DropReason name a receiver would give the header (RUNT,
    BAD_MARKER, BAD_NAME) or None; ``call_id`` and the tags are set for dialog
    packets (created, updated, deleted) whose first three fields can be read.
    """

    module: bytes | None = None
    command: int | None = None
    checksum_ok: bool | None = None
    error: str | None = None
    call_id: bytes | None = None
    from_tag: bytes | None = None
    to_tag: bytes | None = None

    @property
    def is_dialog(self) -> bool:
        return self.call_id is not None


def inspect(data: bytes, byte_order: ByteOrder = ByteOrder.LITTLE) -> PacketInfo:
    """Read the header and, for a dialog packet, its Call-ID and tags (no full decode).

    The checksum is reported, not required: a dialog packet is recognised by its
    content, so a selector keeps matching a packet that arrived damaged.
    """
    little = byte_order is ByteOrder.LITTLE
    verdict, name_len, command, stored, computed = _codec.header(data, little)
    if verdict != HEADER_OK:
        return PacketInfo(error=_VERDICTS[verdict])
    module = data[NAME_START : NAME_START + name_len]
    ok = stored == computed
    if module != MODULE_NAME or command not in (1, 2, 3):
        return PacketInfo(module, command, ok)
    popped = _codec.pop_fields(data, NAME_START + name_len + CMD_FIELD_SIZE, b"sss", little)
    if popped is None:
        return PacketInfo(module, command, ok)
    call_id, from_tag, to_tag = popped[0]
    return PacketInfo(module, command, ok, None, call_id, from_tag, to_tag)


class Arrival:
    """One datagram the relay read, what was decided for it, and (filled by the
    forwarder) when and what it sent."""

    __slots__ = ("index", "data", "t", "src", "info", "selected", "actions", "out", "copies",
                 "delay", "pending", "sent", "at_close", "held")

    def __init__(self, index: int, data: bytes) -> None:
        self.index = index
        self.data = data
        #: wall-clock arrival (time.time()) and the sender, set by the forwarder
        self.t = 0.0
        self.src: Any = None
        self.info: PacketInfo | None = None
        self.selected = False
        #: the faults that hit it, in the order applied; empty: forwarded untouched
        self.actions: list[str] = []
        #: the bytes to send (after truncate/corrupt) and how many times (0: dropped)
        self.out = data
        self.copies = 1
        #: seconds between its release and its departure
        self.delay = 0.0
        #: copies not sent yet, and (seq, t, bytes, error) of each one sent
        self.pending = 1
        self.sent: list[tuple[int, float, bytes, str | None]] = []
        #: sent by close() rather than by its own rule / never sent (closed while held)
        self.at_close = False
        self.held = False


@dataclass(slots=True)
class RelayCounters:
    """``received == forwarded + dropped + held + unsent`` at every moment."""

    #: datagrams read from the listening socket
    received: int = 0
    #: received datagrams whose every copy has been handed to the kernel
    forwarded: int = 0
    dropped: int = 0
    duplicated: int = 0
    reordered: int = 0
    delayed: int = 0
    corrupted: int = 0
    truncated: int = 0
    #: datagrams handed to the kernel (a duplicated one counts twice)
    sent: int = 0
    #: datagrams still held when the relay closed without delivering them
    unsent: int = 0
    #: sends the kernel refused, and receive errors
    socket_errors: int = 0

    @property
    def held(self) -> int:
        """Received, to be sent, and not (entirely) sent yet: reordered, delayed, queued."""
        return self.received - self.forwarded - self.dropped - self.unsent

    def as_dict(self) -> dict[str, int]:
        out = {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]
        out["held"] = self.held
        return out

    def summary(self) -> str:
        return (
            f"received {self.received}, forwarded {self.forwarded}, dropped {self.dropped}, "
            f"duplicated {self.duplicated}, reordered {self.reordered}, delayed {self.delayed}, "
            f"corrupted {self.corrupted}, truncated {self.truncated}, sent {self.sent}"
            + (f", held {self.held}" if self.held else "")
            + (f", unsent {self.unsent}" if self.unsent else "")
            + (f", socket errors {self.socket_errors}" if self.socket_errors else "")
        )


class Impairer:
    """Decides each datagram's fate and keeps the held ones until they are due.

    Time is an argument (``now``, in seconds of any monotonic clock): ``arrive`` for
    each datagram read, ``due`` when ``next_wakeup`` has come; both return the
    arrivals to send now, in order (each ``copies`` times).
    """

    def __init__(
        self,
        impairment: Impairment,
        byte_order: ByteOrder = ByteOrder.LITTLE,
        counters: RelayCounters | None = None,
    ) -> None:
        self.impairment = impairment
        self.byte_order = byte_order
        self.counters = counters if counters is not None else RelayCounters()
        self._index = 0
        #: reordered: (leaves after this index arrived, deadline, arrival), in index order
        self._held: collections.deque[tuple[int, float, Arrival]] = collections.deque()
        #: delayed: heap of (due, scheduling order, arrival)
        self._timed: list[tuple[float, int, Arrival]] = []
        self._order = 0
        self._reorder_by = impairment.reorder_by
        self._faults = impairment.faults
        self._selective = impairment.selective
        self._timeout = impairment.reorder_timeout / 1000.0

    # -- decisions -------------------------------------------------------------------------

    def decide(self, index: int, data: bytes) -> Arrival:
        """The fate of datagram ``index`` by the rule in the module docstring (no I/O, no
        clock; it counts what it decided)."""
        imp = self.impairment
        arrival = Arrival(index, data)
        if self._selective:
            info = arrival.info = inspect(data, self.byte_order)
            if not info.is_dialog:
                return arrival
            if imp.only is not None and info.command not in imp.only:
                return arrival
            if imp.calls is not None and info.call_id not in imp.calls:
                return arrival
        arrival.selected = True
        if not self._faults:
            return arrival
        key = b"%d:%d:" % (imp.seed, index)
        counters = self.counters
        actions = arrival.actions
        if imp.loss and _u(_digest(key, b"loss"), 0) < imp.loss:
            actions.append("drop")
            arrival.copies = arrival.pending = 0
            counters.dropped += 1
            return arrival
        out = data
        if imp.truncate and len(out) >= 2:
            digest = _digest(key, b"truncate")
            if _u(digest, 0) < imp.truncate:
                out = out[: 1 + int(_u(digest, 1) * (len(out) - 1))]
                if len(out) >= HEADER_SIZE and out[:4] == MARKER:
                    out = MARKER + self.byte_order.u32.pack(checksum(out[HEADER_SIZE:])) + out[HEADER_SIZE:]
                actions.append("truncate")
                counters.truncated += 1
        if imp.corrupt and len(out) > HEADER_SIZE:
            digest = _digest(key, b"corrupt")
            if _u(digest, 0) < imp.corrupt:
                at = HEADER_SIZE + int(_u(digest, 1) * (len(out) - HEADER_SIZE))
                flipped = bytearray(out)
                flipped[at] ^= 1 + int(_u(digest, 2) * 255)
                out = bytes(flipped)
                actions.append("corrupt")
                counters.corrupted += 1
        arrival.out = out
        if imp.duplicate and _u(_digest(key, b"duplicate"), 0) < imp.duplicate:
            arrival.copies = arrival.pending = 2
            actions.append("duplicate")
            counters.duplicated += 1
        if imp.reorder and _u(_digest(key, b"reorder"), 0) < imp.reorder:
            actions.append("reorder")
            counters.reordered += 1
        if imp.delay:
            ms = imp.delay
            if imp.jitter:
                ms += imp.jitter * (2.0 * _u(_digest(key, b"delay"), 0) - 1.0)
            arrival.delay = ms / 1000.0
            actions.append("delay")
            counters.delayed += 1
        return arrival

    # -- the queue -------------------------------------------------------------------------

    def arrive(self, data: bytes, now: float) -> tuple[Arrival, list[Arrival]]:
        """Datagram read at ``now``: its arrival, and everything to send now, in order
        (what was already due, then it, then the held ones it released)."""
        ready = self.due(now) if self._timed or self._held else []
        index = self._index
        self._index = index + 1
        self.counters.received += 1
        arrival = self.decide(index, data)
        if arrival.copies:
            if "reorder" in arrival.actions:
                self._held.append((index + self._reorder_by, now + self._timeout, arrival))
            else:
                self._schedule(arrival, now, ready)
        held = self._held
        while held and held[0][0] <= index:
            self._schedule(held.popleft()[2], now, ready)
        return arrival, ready

    def _schedule(self, arrival: Arrival, released: float, ready: list[Arrival]) -> None:
        if arrival.delay > 0:
            heapq.heappush(self._timed, (released + arrival.delay, self._order, arrival))
            self._order += 1
        else:
            ready.append(arrival)

    def due(self, now: float) -> list[Arrival]:
        """The held and delayed datagrams whose time has come by ``now``, in due order."""
        held, timed = self._held, self._timed
        while held and held[0][1] <= now:
            _, deadline, arrival = held.popleft()
            heapq.heappush(timed, (deadline + arrival.delay, self._order, arrival))
            self._order += 1
        ready = []
        while timed and timed[0][0] <= now:
            ready.append(heapq.heappop(timed)[2])
        return ready

    def next_wakeup(self) -> float | None:
        """When ``due`` next has something to return (None: nothing is held)."""
        times = []
        if self._timed:
            times.append(self._timed[0][0])
        if self._held:
            times.append(self._held[0][1])
        return min(times) if times else None

    def take_held(self) -> list[Arrival]:
        """Everything still held, emptied out: the delayed ones in due order, then the
        reordered ones in arrival order (``close`` sends or reports them)."""
        timed = [heapq.heappop(self._timed)[2] for _ in range(len(self._timed))]
        reordered = [entry[2] for entry in self._held]
        self._held.clear()
        return timed + reordered

    @property
    def holding(self) -> int:
        return len(self._held) + len(self._timed)
