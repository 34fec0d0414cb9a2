"""The BIN packet layout of OpenSIPS 1.10, with no I/O.

Mirrors ``bin_interface.c`` of 1.10.5: ``PacketBuilder`` is ``bin_init`` plus
``bin_push_str`` / ``bin_push_int`` (same 65535-byte boundary), ``PacketReader`` is
``bin_pop_str`` / ``bin_pop_int`` / ``bin_skip_*``, and ``parse_packet`` applies the
receiver loop's acceptance rules in the receiver's order, each refusal with its own
``DropReason``::

    | "P4CK" | checksum u32 | name_len i32 | name | cmd i32 | field | field | ...

Integers travel in the sender's host byte order; ``ByteOrder`` is the one choice.
"""

from __future__ import annotations

import enum
import struct
import zlib
from dataclasses import dataclass

from ._codec import HEADER_BAD_MARKER, HEADER_BAD_NAME, HEADER_RUNT
from ._codec import impl as _codec
from .errors import LocalProtocolError, MalformedPacket, PacketTooLarge, TruncatedPacket

MARKER = b"P4CK"
MARKER_SIZE = 4
CHECKSUM_SIZE = 4
HEADER_SIZE = MARKER_SIZE + CHECKSUM_SIZE
LEN_FIELD_SIZE = 4
CMD_FIELD_SIZE = 4
#: where the module name starts: marker, checksum, name length
NAME_START = HEADER_SIZE + LEN_FIELD_SIZE
#: config.h BUF_SIZE: the largest packet a 1.10 node builds or reads.
BUF_SIZE = 65535
#: MIN_BIN_PACKET_SIZE: header + name length + command + a two-letter name.
MIN_PACKET_SIZE = HEADER_SIZE + LEN_FIELD_SIZE + CMD_FIELD_SIZE + 2

INT_MIN = -(2**31)
UINT_MAX = 2**32 - 1


class ByteOrder(enum.Enum):
    """Integers are written in the sender's host order; x86-64 senders are little-endian."""

    LITTLE = "<"
    BIG = ">"

    @property
    def i32(self) -> struct.Struct:
        return _I32[self]

    @property
    def u32(self) -> struct.Struct:
        return _U32[self]


_I32 = {order: struct.Struct(order.value + "i") for order in ByteOrder}
_U32 = {order: struct.Struct(order.value + "I") for order in ByteOrder}


def checksum(body: bytes | bytearray | memoryview) -> int:
    """crc32_uint() of crc.c: reflected CRC-32 from 0xFFFFFFFF with no final XOR."""
    return ~zlib.crc32(body) & 0xFFFFFFFF


class DropReason(enum.Enum):
    """Why a receiver ignores a datagram, in the order 1.10's receive loop checks."""

    RUNT = "shorter than 18 bytes"
    BAD_MARKER = "marker is not P4CK"
    BAD_CHECKSUM = "checksum mismatch"
    BAD_NAME = "module name runs past the end"
    UNKNOWN_MODULE = "no callback registered for the module name"
    HANDLER_ERROR = "the module's callback could not use the packet"


class PacketRejected(MalformedPacket):
    """``parse_packet`` refused a datagram; ``reason`` says which rule it broke."""

    def __init__(self, reason: DropReason, detail: str = "", offset: int | None = None) -> None:
        message = reason.value if not detail else f"{reason.value}: {detail}"
        super().__init__(message, offset)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Packet:
    """A datagram that passed the receiver's checks: who it is for, and its fields."""

    module: bytes
    command: int
    #: the whole datagram, header included, exactly as received
    data: bytes
    #: where the first field after the command starts in ``data``
    payload_offset: int
    byte_order: ByteOrder = ByteOrder.LITTLE

    @property
    def checksum(self) -> int:
        return self.byte_order.u32.unpack_from(self.data, MARKER_SIZE)[0]

    @property
    def payload(self) -> bytes:
        return self.data[self.payload_offset :]

    def reader(self) -> PacketReader:
        """A reader positioned on the first field, as a module callback sees it."""
        return PacketReader(self.data, self.payload_offset, self.byte_order)


def parse_header(
    data: bytes, byte_order: ByteOrder = ByteOrder.LITTLE, *, verify_checksum: bool = True
) -> Packet:
    """Apply bin_receive_loop's acceptance rules; raise PacketRejected with the reason.

    The checks themselves are the codec's ``header`` (the one copy of the rule, compiled
    when it can be); this names the rule a datagram broke. The C loop never looks at a
    module name that does not fit in the datagram (it compares against registered
    names, which always fit); we say so explicitly.
    """
    if type(data) is not bytes:
        data = bytes(data)
    verdict, name_len, command, stored, computed = _codec.header(data, byte_order is ByteOrder.LITTLE)
    if verdict == HEADER_RUNT:
        raise PacketRejected(DropReason.RUNT, f"{len(data)} bytes", 0)
    if verdict == HEADER_BAD_MARKER:
        raise PacketRejected(DropReason.BAD_MARKER, f"starts with {data[:MARKER_SIZE]!r}", 0)
    if verify_checksum and stored != computed:
        raise PacketRejected(
            DropReason.BAD_CHECKSUM, f"stored {stored:#010x}, computed {computed:#010x}", 4
        )
    if verdict == HEADER_BAD_NAME:
        raise PacketRejected(
            DropReason.BAD_NAME, f"name length {name_len} in a {len(data)}-byte datagram", HEADER_SIZE
        )
    name_end = NAME_START + name_len
    return Packet(data[NAME_START:name_end], command, data, name_end + CMD_FIELD_SIZE, byte_order)


class PacketReader:
    """bin_pop_str / bin_pop_int / bin_skip_* over one received datagram.

    Every pop checks the end of the datagram first, like the C code; unlike the C code
    (whose pops trust a negative length) a negative string length is refused.
    """

    __slots__ = ("data", "offset", "byte_order", "_end")

    def __init__(
        self, data: bytes, offset: int = 0, byte_order: ByteOrder = ByteOrder.LITTLE
    ) -> None:
        self.data = bytes(data)
        self.offset = offset
        self.byte_order = byte_order
        self._end = len(self.data)

    @property
    def remaining(self) -> int:
        return self._end - self.offset

    def _length(self, what: str) -> int:
        if self.offset + LEN_FIELD_SIZE > self._end:
            raise TruncatedPacket(
                f"{what}: length needs 4 bytes at offset {self.offset}, "
                f"{self.remaining} left",
                self.offset,
            )
        return self.byte_order.i32.unpack_from(self.data, self.offset)[0]

    def pop_str(self, what: str = "string") -> bytes:
        length = self._length(what)
        start = self.offset + LEN_FIELD_SIZE
        if length < 0:
            raise MalformedPacket(f"{what}: negative length {length} at offset {self.offset}", self.offset)
        if start + length > self._end:
            raise TruncatedPacket(
                f"{what}: {length} bytes at offset {start} run past the end "
                f"({self._end - start} left)",
                self.offset,
            )
        self.offset = start + length
        return self.data[start : self.offset]

    def pop_int(self, what: str = "integer", *, signed: bool = False) -> int:
        """The four bytes of a C int; ``signed`` picks how to read them (C: memcpy)."""
        self._length(what)
        codec = self.byte_order.i32 if signed else self.byte_order.u32
        value = codec.unpack_from(self.data, self.offset)[0]
        self.offset += LEN_FIELD_SIZE
        return value

    def skip_int(self, count: int = 1) -> None:
        for _ in range(count):
            self.pop_int("skipped integer")

    def skip_str(self, count: int = 1) -> None:
        for _ in range(count):
            self.pop_str("skipped string")


class PacketBuilder:
    """bin_init + bin_push_*: the packet grows field by field and refuses to pass 65535.

    The size rule is the C one to the byte: a push fails when the position plus the
    4-byte length plus the value would pass BUF_SIZE, so a packet of exactly 65535
    bytes can be built and one of 65536 cannot.
    """

    __slots__ = ("_parts", "_size", "byte_order")

    def __init__(
        self, module: bytes | str, command: int, byte_order: ByteOrder = ByteOrder.LITTLE
    ) -> None:
        name = module.encode() if isinstance(module, str) else bytes(module)
        self.byte_order = byte_order
        self._parts: list[bytes] = [MARKER, b"\0\0\0\0", byte_order.i32.pack(len(name)), name]
        self._size = HEADER_SIZE + LEN_FIELD_SIZE + len(name)
        self.push_int(command, what="command")

    @property
    def size(self) -> int:
        return self._size

    def push_str(self, value: bytes | str | None, what: str = "string") -> None:
        """None and b'' both travel as length 0, as in C."""
        raw = b"" if value is None else value.encode() if isinstance(value, str) else bytes(value)
        if self._size + LEN_FIELD_SIZE + len(raw) > BUF_SIZE:
            raise PacketTooLarge(
                f"{what}: {len(raw)} bytes at offset {self._size} would pass the "
                f"{BUF_SIZE}-byte packet limit"
            )
        self._parts.append(self.byte_order.i32.pack(len(raw)))
        if raw:
            self._parts.append(raw)
        self._size += LEN_FIELD_SIZE + len(raw)

    def push_int(self, value: int, what: str = "integer") -> None:
        """Any value a C int or unsigned int holds: both are the same four bytes."""
        if not isinstance(value, int) or isinstance(value, bool) or not INT_MIN <= value <= UINT_MAX:
            raise LocalProtocolError(
                f"{what} must be an integer in {INT_MIN}..{UINT_MAX}, got {value!r}"
            )
        if self._size + LEN_FIELD_SIZE > BUF_SIZE:
            raise PacketTooLarge(
                f"{what}: 4 bytes at offset {self._size} would pass the {BUF_SIZE}-byte packet limit"
            )
        self._parts.append(self.byte_order.u32.pack(value & UINT_MAX))
        self._size += LEN_FIELD_SIZE

    def finish(self) -> bytes:
        """bin_send's last step: the checksum over everything after the header."""
        body = b"".join(self._parts[2:])
        return MARKER + self.byte_order.u32.pack(checksum(body)) + body

