"""The usrloc module's replication payloads (module name ``ul``), as 1.11 and 2.1 send them.

``replicate_urecord_*`` / ``replicate_ucontact_*`` in ``modules/usrloc/ureplication.c``
push the fields of ``RECORD_FIELDS``, ``CONTACT_FIELDS`` and ``CONTACT_DELETE_FIELDS``
in that order; the tables drive both decode and encode. Those lines are the same in
every tag that has them (1.11.0-1.11.11, 2.1.0-2.1.5): one codec for all.

Three C values travel as their own bytes inside a string field (``st.s = (char
*)&ci->expires; st.len = sizeof ci->expires``): ``expires`` and ``last_modified``
(``time_t``: 8 bytes on x86-64, 4 on 32-bit builds) and ``q`` (``qvalue_t``, an
``int``: 4 bytes). Their width and byte order are the sender's. pybin reads such a
field by its length, 4 or 8 bytes, as a signed integer in the packet's byte order,
and keeps the length (``RawInt(value, size)``) so that the packet re-encodes to the
same bytes; any other length is refused as malformed (a C receiver would memcpy
``sizeof`` bytes whatever the length says: past the field when it is shorter, from
NULL when it is empty).

Strings are ``bytes``; integers are the four bytes read unsigned (``cseq`` is a C
``int``: the registrar replica reads it signed).
"""

from __future__ import annotations

import enum
from typing import NamedTuple, Union

from ._codec import COMPILED
from ._codec import impl as _impl
from ._fields import RawInt
from .dialog import INT, STR
from .errors import LocalProtocolError, MalformedPacket
from .wire import (
    BUF_SIZE,
    CMD_FIELD_SIZE,
    HEADER_SIZE,
    ByteOrder,
    Packet,
    PacketBuilder,
    parse_header,
)

MODULE_NAME = b"ul"
#: a C integer sent as its raw bytes in a string field (layout letter ``r``)
RAW = "raw"


class UlCommand(enum.IntEnum):
    """REPL_URECORD_* / REPL_UCONTACT_* in ureplication.h."""

    RECORD_INSERT = 1
    RECORD_DELETE = 2
    CONTACT_INSERT = 3
    CONTACT_UPDATE = 4
    CONTACT_DELETE = 5

    @property
    def word(self) -> str:
        """How the command line names it: ``contact_insert``."""
        return self.name.lower()


class ContactFlag(enum.IntFlag):
    """flags_t in ucontact.h: the contact's internal flags (``ci->flags``)."""

    MEM = 1 << 0  # FL_MEM: memory only, no DB write (save(..., "m"), skip_replicated_db_ops)


class Method(enum.IntFlag):
    """METHOD_* of parser/msg_parser.h: the bits of ``methods`` (all set: ALL_METHODS)."""

    INVITE = 1
    CANCEL = 2
    ACK = 4
    BYE = 8
    INFO = 16
    OPTIONS = 32
    UPDATE = 64
    REGISTER = 128
    MESSAGE = 256
    SUBSCRIBE = 512
    NOTIFY = 1024
    PRACK = 2048
    REFER = 4096
    PUBLISH = 8192
    OTHER = 16384


#: qvalue.h: ``q`` is the q-value times 1000; -1 (Q_UNSPECIFIED) when the Contact had none
Q_UNSPECIFIED = -1
#: ul_mi.c / ucontact.h: expires 0 is a permanent contact; UL_EXPIRED_TIME marks a deleted one
PERMANENT = 0
UL_EXPIRED_TIME = 10

#: sizeof of each raw field on the x86-64 Linux senders pybin meets, used by ``make``
RAW_SIZES = {"expires": 8, "q": 4, "last_modified": 8}

#: (name, kind) in wire order: replicate_urecord_insert / _delete
RECORD_FIELDS: tuple[tuple[str, str], ...] = (
    ("domain", STR),  # r->domain: the usrloc table, e.g. "location"
    ("aor", STR),
)
#: replicate_ucontact_insert / _update (the same 17 fields)
CONTACT_FIELDS: tuple[tuple[str, str], ...] = RECORD_FIELDS + (
    ("contact", STR),
    ("call_id", STR),  # ci->callid
    ("user_agent", STR),
    ("path", STR),
    ("attr", STR),
    ("received", STR),
    ("instance", STR),  # +sip.instance
    ("expires", RAW),  # time_t, absolute unix seconds; 0 = permanent
    ("q", RAW),  # qvalue_t
    ("sock", STR),  # ci->sock->sock_str, e.g. "udp:10.0.0.100:5060"
    ("cseq", INT),
    ("flags", INT),
    ("cflags", INT),  # branch flags, e.g. the NAT flag
    ("methods", INT),
    ("last_modified", RAW),  # time_t
)
#: replicate_ucontact_delete: the stored contact's Call-ID and CSeq
CONTACT_DELETE_FIELDS: tuple[tuple[str, str], ...] = RECORD_FIELDS + (
    ("contact", STR),
    ("call_id", STR),
    ("cseq", INT),
)

_PYTYPE = {STR: bytes, INT: int, RAW: RawInt}
_LAYOUT_LETTER = {STR: "s", INT: "I", RAW: "r"}


def _layout(fields: tuple[tuple[str, str], ...]) -> bytes:
    return "".join(_LAYOUT_LETTER[kind] for _, kind in fields).encode()


def _fields(name: str, fields: tuple[tuple[str, str], ...]) -> type:
    return NamedTuple(name, [(n, _PYTYPE[kind]) for n, kind in fields])  # type: ignore[misc,no-any-return]


_RecordFields = _fields("_RecordFields", RECORD_FIELDS)
_ContactFields = _fields("_ContactFields", CONTACT_FIELDS)
_ContactDeleteFields = _fields("_ContactDeleteFields", CONTACT_DELETE_FIELDS)


class _UlMessage:
    """Shared behaviour of the five messages; subclasses are frozen NamedTuples."""

    __slots__ = ()
    command: UlCommand
    FIELDS: tuple[tuple[str, str], ...]
    _LAYOUT: bytes

    def encode(self, byte_order: ByteOrder = ByteOrder.LITTLE) -> bytes:
        """The whole datagram, checksum included, byte for byte as bin_send would."""
        packet = _impl.build(_head(self.command, byte_order), self._LAYOUT, self, byte_order is ByteOrder.LITTLE)
        if packet is None or len(packet) > BUF_SIZE:
            return _encode_slow(self, byte_order)  # names the field at fault
        return packet  # type: ignore[no-any-return]

    def to_dict(self) -> dict[str, object]:
        return self._asdict()  # type: ignore[attr-defined,no-any-return]


class RecordInserted(_UlMessage, _RecordFields):  # type: ignore[misc,valid-type]
    """REPL_URECORD_INSERT: insert_urecord created the AOR (before its first contact)."""

    __slots__ = ()
    command = UlCommand.RECORD_INSERT
    FIELDS = RECORD_FIELDS
    _LAYOUT = _layout(RECORD_FIELDS)


class RecordDeleted(_UlMessage, _RecordFields):  # type: ignore[misc,valid-type]
    """REPL_URECORD_DELETE: the AOR went (delete_urecord, or release_urecord once empty)."""

    __slots__ = ()
    command = UlCommand.RECORD_DELETE
    FIELDS = RECORD_FIELDS
    _LAYOUT = _layout(RECORD_FIELDS)


class ContactInserted(_UlMessage, _ContactFields):  # type: ignore[misc,valid-type]
    """REPL_UCONTACT_INSERT: insert_ucontact stored a new binding."""

    __slots__ = ()
    command = UlCommand.CONTACT_INSERT
    FIELDS = CONTACT_FIELDS
    _LAYOUT = _layout(CONTACT_FIELDS)


class ContactUpdated(_UlMessage, _ContactFields):  # type: ignore[misc,valid-type]
    """REPL_UCONTACT_UPDATE: update_ucontact refreshed a binding (same fields as insert)."""

    __slots__ = ()
    command = UlCommand.CONTACT_UPDATE
    FIELDS = CONTACT_FIELDS
    _LAYOUT = _layout(CONTACT_FIELDS)


class ContactDeleted(_UlMessage, _ContactDeleteFields):  # type: ignore[misc,valid-type]
    """REPL_UCONTACT_DELETE: delete_ucontact removed a binding (its stored Call-ID, CSeq)."""

    __slots__ = ()
    command = UlCommand.CONTACT_DELETE
    FIELDS = CONTACT_DELETE_FIELDS
    _LAYOUT = _layout(CONTACT_DELETE_FIELDS)


UlMessage = Union[RecordInserted, RecordDeleted, ContactInserted, ContactUpdated, ContactDeleted]

#: command number → message class
MESSAGES: dict[int, type] = {
    cls.command: cls for cls in (RecordInserted, RecordDeleted, ContactInserted, ContactUpdated, ContactDeleted)
}
#: index = command number, for the compiled decoder
_LAYOUTS: tuple[bytes | None, ...] = (None,) + tuple(MESSAGES[c]._LAYOUT for c in range(1, 6))

_HEADS: dict[tuple[int, ByteOrder], bytes] = {}


def _head(command: int, byte_order: ByteOrder) -> bytes:
    key = (command, byte_order)
    head = _HEADS.get(key)
    if head is None:
        i32 = byte_order.i32
        head = _HEADS[key] = i32.pack(len(MODULE_NAME)) + MODULE_NAME + i32.pack(command)
    return head


def make(command: int | UlCommand, **fields: object) -> UlMessage:
    """Build a message by command number; missing fields default to empty / zero.

    ``expires``, ``q`` and ``last_modified`` take a plain int (sized as an x86-64
    sender sizes it: ``RAW_SIZES``) or a ``RawInt`` with the size you want; ``q``
    defaults to -1 (no q in the Contact).
    """
    try:
        cls = MESSAGES[int(command)]
    except (KeyError, ValueError, TypeError):
        raise LocalProtocolError(f"unknown ul command {command!r} (1 to 5)") from None
    unknown = set(fields) - {name for name, _ in cls.FIELDS}
    if unknown:
        raise LocalProtocolError(f"unknown ul field {sorted(unknown)[0]!r}")
    values: list[object] = []
    for name, kind in cls.FIELDS:
        value = fields.get(name, Q_UNSPECIFIED if name == "q" else b"" if kind == STR else 0)
        if kind == RAW and type(value) is int:
            value = RawInt(value, RAW_SIZES[name])
        values.append(value)
    return cls(*values)  # type: ignore[no-any-return]


def decode(data: bytes, byte_order: ByteOrder = ByteOrder.LITTLE) -> UlMessage:
    """A whole datagram → usrloc message; raises a RemoteProtocolError subclass.

    One compiled pass handles a good packet; on any failure the careful path runs
    again to say precisely what is wrong and where.
    """
    if type(data) is not bytes:
        data = bytes(data)
    fast = _impl.decode_packet(data, MODULE_NAME, _LAYOUTS, byte_order is ByteOrder.LITTLE)
    if fast is not None:
        command, values = fast
        return tuple.__new__(MESSAGES[command], values)  # type: ignore[no-any-return]
    return decode_packet(parse_header(data, byte_order))


def decode_packet(packet: Packet) -> UlMessage:
    """A packet that passed the receiver's checks → usrloc message."""
    if packet.module != MODULE_NAME:
        raise MalformedPacket(f"module is {packet.module!r}, not {MODULE_NAME!r}", HEADER_SIZE)
    cls = MESSAGES.get(packet.command)
    if cls is None:
        raise MalformedPacket(
            f"unknown ul command {packet.command} (1 record_insert, 2 record_delete, "
            "3 contact_insert, 4 contact_update, 5 contact_delete)",
            packet.payload_offset - CMD_FIELD_SIZE,
        )
    popped = _impl.pop_fields(packet.data, packet.payload_offset, cls._LAYOUT, packet.byte_order is ByteOrder.LITTLE)
    if popped is None or popped[1] != len(packet.data):
        return _decode_slow(cls, packet)
    return tuple.__new__(cls, popped[0])  # type: ignore[no-any-return]


def _decode_slow(cls: type, packet: Packet) -> UlMessage:
    reader = packet.reader()
    order = packet.byte_order
    values: list[object] = []
    for name, kind in cls.FIELDS:  # type: ignore[attr-defined]
        if kind == INT:
            values.append(reader.pop_int(name))
            continue
        offset = reader.offset
        raw = reader.pop_str(name)
        if kind == RAW:
            if len(raw) not in (4, 8):
                raise MalformedPacket(
                    f"{name}: a C integer travels in 4 or 8 bytes, this one in {len(raw)}", offset
                )
            values.append(RawInt(int.from_bytes(raw, "little" if order is ByteOrder.LITTLE else "big", signed=True),
                                 len(raw)))
        else:
            values.append(raw)
    if reader.remaining:
        raise MalformedPacket(
            f"{reader.remaining} bytes after the last field ({cls.FIELDS[-1][0]})",  # type: ignore[attr-defined]
            reader.offset,
        )
    return tuple.__new__(cls, values)  # type: ignore[no-any-return]


def _encode_slow(msg: _UlMessage, byte_order: ByteOrder) -> bytes:
    builder = PacketBuilder(MODULE_NAME, msg.command, byte_order)
    for (name, kind), value in zip(msg.FIELDS, msg):  # type: ignore[call-overload]
        if kind == INT:
            if type(value) is bool or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
                raise LocalProtocolError(f"{name} must be an integer in 0..4294967295, got {value!r}")
            builder.push_int(int(value), name)
        elif kind == RAW:
            builder.push_str(raw_bytes(value, byte_order, name), name)
        else:
            if not isinstance(value, bytes):
                raise LocalProtocolError(f"{name} must be bytes, got {type(value).__name__}")
            builder.push_str(value, name)
    return builder.finish()


def raw_bytes(value: object, byte_order: ByteOrder = ByteOrder.LITTLE, what: str = "value") -> bytes:
    """The bytes a sender of that width and byte order pushes for a ``RawInt``."""
    if type(value) is not RawInt:
        raise LocalProtocolError(f"{what} must be a RawInt(value, size), got {value!r} (make() sizes a plain int)")
    number, size = value  # type: ignore[misc]
    if size not in (4, 8) or type(size) is not int:
        raise LocalProtocolError(f"{what}: a C integer is 4 or 8 bytes here, not {size!r}")
    bits = 8 * size - 1
    if type(number) is not int or not -(1 << bits) <= number < 1 << bits:
        raise LocalProtocolError(f"{what} must be an integer in {-(1 << bits)}..{(1 << bits) - 1}, got {number!r}")
    return number.to_bytes(size, "little" if byte_order is ByteOrder.LITTLE else "big", signed=True)  # type: ignore[no-any-return]


def q_text(q: int) -> str:
    """q2str() of qvalue.h, as MI ul_dump prints it: "" when unspecified, "1", "0", "0.5"."""
    if q == Q_UNSPECIFIED:
        return ""
    if q >= 1000:
        return "1"
    if q <= 0:
        return "0"
    return "0." + f"{q:03d}".rstrip("0")


__all__ = [
    "COMPILED",
    "CONTACT_DELETE_FIELDS",
    "CONTACT_FIELDS",
    "ContactDeleted",
    "ContactFlag",
    "ContactInserted",
    "ContactUpdated",
    "MESSAGES",
    "MODULE_NAME",
    "Method",
    "PERMANENT",
    "Q_UNSPECIFIED",
    "RAW",
    "RAW_SIZES",
    "RECORD_FIELDS",
    "RawInt",
    "RecordDeleted",
    "RecordInserted",
    "UL_EXPIRED_TIME",
    "UlCommand",
    "UlMessage",
    "decode",
    "decode_packet",
    "make",
    "q_text",
    "raw_bytes",
]
