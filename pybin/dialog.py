"""The dialog module's replication payloads (module name ``dialog``), as 1.10.5 sends them.

``DIALOG_FIELDS`` is the field order of ``replicate_dialog_created`` /
``replicate_dialog_updated`` in ``dlg_replication.c``, written once and driving both
decode and encode. Deleted carries the first three fields only.

Strings are ``bytes`` (the wire does not know about text, and a NULL string and an
empty one are the same length-0 field). Integers are the unsigned values the C code
keeps in memory. ``vars`` and ``profiles`` are tuples of ``(name, value)`` pairs,
serialised as ``name#value|`` with ``\\`` escaping ``|``, ``#`` and ``\\``
(``write_pair`` in ``dlg_db_handler.c``).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from typing import NamedTuple, Union

from ._codec import COMPILED
from ._codec import impl as _impl
from .errors import LocalProtocolError, MalformedPacket, PybinError, RemoteProtocolError
from .wire import (
    BUF_SIZE,
    CMD_FIELD_SIZE,
    HEADER_SIZE,
    ByteOrder,
    Packet,
    PacketBuilder,
    parse_header,
)

MODULE_NAME = b"dialog"


class Command(enum.IntEnum):
    """REPLICATION_DLG_* in dlg_replication.h."""

    CREATED = 1
    UPDATED = 2
    DELETED = 3


class DlgState(enum.IntEnum):
    """DLG_STATE_* in dlg_hash.h."""

    UNCONFIRMED = 1
    EARLY = 2
    CONFIRMED_NA = 3  # 200 OK seen, ACK not yet
    CONFIRMED = 4
    DELETED = 5


class DlgFlag(enum.IntFlag):
    """DLG_FLAG_* in dlg_hash.h. NEW, CHANGED and VP_CHANGED never travel."""

    NEW = 1 << 0
    CHANGED = 1 << 1
    HASBYE = 1 << 2
    BYEONTIMEOUT = 1 << 3
    ISINIT = 1 << 4
    PING_CALLER = 1 << 5
    PING_CALLEE = 1 << 6
    TOPHIDING = 1 << 7
    VP_CHANGED = 1 << 8
    DB_DELETED = 1 << 9
    TOPH_KEEP_USER = 1 << 10


#: Flags the sender clears before pushing (``dlg->flags & ~(NEW|CHANGED|VP_CHANGED)``).
UNSENT_FLAGS = DlgFlag.NEW | DlgFlag.CHANGED | DlgFlag.VP_CHANGED

Pairs = tuple[tuple[bytes, bytes], ...]

STR, INT, PAIRS = "str", "int", "pairs"

#: (name, kind) in wire order.
DIALOG_FIELDS: tuple[tuple[str, str], ...] = (
    ("call_id", STR),
    ("from_tag", STR),
    ("to_tag", STR),
    ("from_uri", STR),
    ("to_uri", STR),
    ("h_id", INT),
    ("start_ts", INT),
    ("state", INT),
    ("caller_sock", STR),
    ("callee_sock", STR),
    ("caller_cseq", STR),
    ("callee_cseq", STR),
    ("caller_route_set", STR),
    ("callee_route_set", STR),
    ("caller_contact", STR),
    ("callee_contact", STR),
    ("callee_from_uri", STR),
    ("callee_to_uri", STR),
    ("vars", PAIRS),
    ("profiles", PAIRS),
    ("user_flags", INT),
    ("flags", INT),
    ("timeout", INT),
    ("caller_last_gen_cseq", INT),
    ("callee_last_gen_cseq", INT),
)
DELETED_FIELDS = DIALOG_FIELDS[:3]

_PYTYPE = {STR: bytes, INT: int, PAIRS: Pairs}
_LAYOUT_LETTER = {STR: "s", INT: "I", PAIRS: "p"}


def _layout(fields: tuple[tuple[str, str], ...]) -> bytes:
    return "".join(_LAYOUT_LETTER[kind] for _, kind in fields).encode()


_DialogFields = NamedTuple(  # type: ignore[misc]
    "_DialogFields", [(name, _PYTYPE[kind]) for name, kind in DIALOG_FIELDS]
)
_DeletedFields = NamedTuple(  # type: ignore[misc]
    "_DeletedFields", [(name, _PYTYPE[kind]) for name, kind in DELETED_FIELDS]
)

_STATES = {int(s): s for s in DlgState}
_VARS_AT = tuple(i for i, (_, k) in enumerate(DIALOG_FIELDS) if k == PAIRS)
_STATE_AT = [name for name, _ in DIALOG_FIELDS].index("state")


class _DialogMessage:
    """Shared behaviour of the three messages; subclasses are frozen NamedTuples."""

    __slots__ = ()
    command: Command
    FIELDS: tuple[tuple[str, str], ...]
    _LAYOUT: bytes
    _PAIRS_AT: tuple[int, ...] = ()

    def encode(self, byte_order: ByteOrder = ByteOrder.LITTLE) -> bytes:
        """The whole datagram, checksum included, exactly as 1.10's bin_send would."""
        values = list(self)  # type: ignore[call-overload]
        if self._PAIRS_AT:
            for i in self._PAIRS_AT:
                joined = _impl.join_pairs(values[i])
                if joined is None:
                    raise _pairs_error(self.FIELDS[i][0], values[i])
                values[i] = joined
            values[_STATE_AT] = int(values[_STATE_AT])  # DlgState is not exactly int
        head = _head(self.command, byte_order)
        packet = _impl.build(head, self._LAYOUT, values, byte_order is ByteOrder.LITTLE)
        if packet is None or len(packet) > BUF_SIZE:
            # The careful builder names the field at fault.
            return _encode_slow(self, values, byte_order)
        return packet

    def to_dict(self) -> dict[str, object]:
        return self._asdict()  # type: ignore[attr-defined,no-any-return]


class _FullDialog(_DialogMessage, _DialogFields):  # type: ignore[misc]
    """Created and updated carry the same 25 fields."""

    __slots__ = ()
    FIELDS = DIALOG_FIELDS
    _LAYOUT = _layout(DIALOG_FIELDS)
    _PAIRS_AT = _VARS_AT


class DialogCreated(_FullDialog):
    """REPLICATION_DLG_CREATED: sent when the 200 OK to the initial INVITE passes."""

    __slots__ = ()
    command = Command.CREATED


class DialogUpdated(_FullDialog):
    """REPLICATION_DLG_UPDATED: on ACK and on in-dialog requests that move a cseq."""

    __slots__ = ()
    command = Command.UPDATED


class DialogDeleted(_DialogMessage, _DeletedFields):  # type: ignore[misc]
    """REPLICATION_DLG_DELETED: Call-ID and the two tags, when the dialog ends."""

    __slots__ = ()
    command = Command.DELETED
    FIELDS = DELETED_FIELDS
    _LAYOUT = _layout(DELETED_FIELDS)


DialogMessage = Union[DialogCreated, DialogUpdated, DialogDeleted]

#: command number → message class (hyperframe-style registry)
MESSAGES: dict[int, type] = {cls.command: cls for cls in (DialogCreated, DialogUpdated, DialogDeleted)}

_HEADS: dict[tuple[int, ByteOrder], bytes] = {}
#: index = command number, for the compiled decoder
_LAYOUTS: tuple[bytes | None, ...] = (None,) + tuple(MESSAGES[c]._LAYOUT for c in (1, 2, 3))


def _head(command: int, byte_order: ByteOrder) -> bytes:
    key = (command, byte_order)
    head = _HEADS.get(key)
    if head is None:
        i32 = byte_order.i32
        head = _HEADS[key] = i32.pack(len(MODULE_NAME)) + MODULE_NAME + i32.pack(command)
    return head


def make(command: int | Command, **fields: object) -> DialogMessage:
    """Build a message by command number; missing fields default to empty / zero."""
    try:
        cls = MESSAGES[int(command)]
    except (KeyError, ValueError, TypeError):
        raise LocalProtocolError(f"unknown dialog command {command!r} (1, 2 or 3)") from None
    unknown = set(fields) - {name for name, _ in cls.FIELDS}
    if unknown:
        raise LocalProtocolError(f"unknown dialog field {sorted(unknown)[0]!r}")
    defaults = {STR: b"", INT: 0, PAIRS: ()}
    return cls(*(fields.get(name, defaults[kind]) for name, kind in cls.FIELDS))  # type: ignore[no-any-return]


def decode(data: bytes, byte_order: ByteOrder = ByteOrder.LITTLE) -> DialogMessage:
    """A whole datagram → dialog message; raises a RemoteProtocolError subclass.

    One compiled pass handles a good packet; on any failure the careful path runs
    again to say precisely what is wrong and where.
    """
    if type(data) is not bytes:
        data = bytes(data)
    fast = _impl.decode_packet(data, MODULE_NAME, _LAYOUTS, byte_order is ByteOrder.LITTLE)
    if fast is not None:
        cmd, values = fast
        if cmd != Command.DELETED:
            values[_STATE_AT] = _STATES.get(values[_STATE_AT], values[_STATE_AT])
        return tuple.__new__(MESSAGES[cmd], values)  # type: ignore[no-any-return]
    return decode_packet(parse_header(data, byte_order))


def decode_packet(packet: Packet) -> DialogMessage:
    """A packet that passed the receiver's checks → dialog message."""
    if packet.module != MODULE_NAME:
        raise MalformedPacket(f"module is {packet.module!r}, not {MODULE_NAME!r}", HEADER_SIZE)
    cls = MESSAGES.get(packet.command)
    if cls is None:
        raise MalformedPacket(
            f"unknown dialog command {packet.command} (1 created, 2 updated, 3 deleted)",
            packet.payload_offset - CMD_FIELD_SIZE,
        )
    data = packet.data
    popped = _impl.pop_fields(
        data, packet.payload_offset, cls._LAYOUT, packet.byte_order is ByteOrder.LITTLE
    )
    if popped is None or popped[1] != len(data):
        return _decode_slow(cls, packet)
    values = popped[0]
    if cls._PAIRS_AT:
        values[_STATE_AT] = _STATES.get(values[_STATE_AT], values[_STATE_AT])
    return tuple.__new__(cls, values)  # type: ignore[no-any-return]


def _decode_slow(cls: type, packet: Packet) -> DialogMessage:
    reader = packet.reader()
    values: list[object] = []
    for name, kind in cls.FIELDS:  # type: ignore[attr-defined]
        if kind == INT:
            values.append(reader.pop_int(name))
        else:
            offset = reader.offset
            raw = reader.pop_str(name)
            if kind == PAIRS:
                pairs = _impl.split_pairs(raw)
                if pairs is None:
                    raise MalformedPacket(f"{name}: {_pairs_problem(raw)}", offset)
                values.append(pairs)
            else:
                values.append(raw)
    if reader.remaining:
        raise MalformedPacket(
            f"{reader.remaining} bytes after the last field ({cls.FIELDS[-1][0]})",  # type: ignore[attr-defined]
            reader.offset,
        )
    if cls is not DialogDeleted:
        values[_STATE_AT] = _STATES.get(values[_STATE_AT], values[_STATE_AT])  # type: ignore[call-overload]
    return tuple.__new__(cls, values)  # type: ignore[no-any-return]


def _pairs_problem(raw: bytes) -> str:
    """Say where a vars/profiles string stops being ``name#value|`` pairs."""
    part = 0
    i = 0
    while i < len(raw):
        c = raw[i : i + 1]
        if c == b"\\":
            if raw[i + 1 : i + 2] not in (b"\\", b"|", b"#"):
                return f"backslash at {i} escapes nothing that needs escaping"
            i += 2
            continue
        if c == b"#":
            if part == 1:
                return f"second unescaped '#' at {i} in one pair"
            part = 1
        elif c == b"|":
            if part == 0:
                return f"'|' at {i} ends a pair that has no '#'"
            part = 0
        i += 1
    return "the last pair is not closed by '|'"


def _pairs_error(name: str, value: object) -> LocalProtocolError:
    return LocalProtocolError(f"{name} must be a sequence of (bytes, bytes) pairs, got {value!r}")


def _encode_slow(msg: _DialogMessage, values: list[object], byte_order: ByteOrder) -> bytes:
    builder = PacketBuilder(MODULE_NAME, msg.command, byte_order)
    for (name, kind), value in zip(msg.FIELDS, values):
        if kind == INT:
            if type(value) is bool or not isinstance(value, int) or not 0 <= value <= 0xFFFFFFFF:
                raise LocalProtocolError(f"{name} must be an integer in 0..4294967295, got {value!r}")
            builder.push_int(int(value), name)
        else:
            if not isinstance(value, bytes):
                raise LocalProtocolError(f"{name} must be bytes, got {type(value).__name__}")
            builder.push_str(value, name)
    return builder.finish()


def encode_pairs(pairs: Iterable[tuple[bytes, bytes]]) -> bytes:
    """write_dialog_vars / write_dialog_profiles: ``name#value|`` with escapes."""
    items = tuple(pairs)
    joined = _impl.join_pairs(items)
    if joined is None:
        raise _pairs_error("pairs", items)
    return joined  # type: ignore[no-any-return]


def decode_pairs(raw: bytes) -> Pairs:
    """The inverse of encode_pairs; a string that is not exact pairs is refused."""
    pairs = _impl.split_pairs(bytes(raw))
    if pairs is None:
        raise MalformedPacket(_pairs_problem(bytes(raw)))
    return pairs  # type: ignore[no-any-return]


__all__ = [
    "COMPILED",
    "Command",
    "DIALOG_FIELDS",
    "DELETED_FIELDS",
    "DialogCreated",
    "DialogDeleted",
    "DialogMessage",
    "DialogUpdated",
    "DlgFlag",
    "DlgState",
    "MESSAGES",
    "MODULE_NAME",
    "Pairs",
    "PybinError",
    "RemoteProtocolError",
    "UNSENT_FLAGS",
    "decode",
    "decode_packet",
    "decode_pairs",
    "encode_pairs",
    "make",
]
