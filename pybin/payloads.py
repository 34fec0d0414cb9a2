"""The BIN users pybin decodes, by module name: ``dialog`` (1.10+) and ``ul`` (1.11, 2.1).

One table (``PAYLOADS``) that ``decode``, the JSON lines, the text lines and the
endpoint look modules up in, so that a third payload is one more row here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Union

from . import dialog, usrloc
from .errors import MalformedPacket
from .wire import HEADER_SIZE, ByteOrder, Packet, parse_header

Message = Union[dialog.DialogMessage, usrloc.UlMessage]


@dataclass(frozen=True)
class Payload:
    """What pybin knows about one module's packets."""

    #: the module name on the wire, and the JSON key its fields go under
    name: bytes
    #: command number → message class
    messages: dict[int, type]
    #: per command (the index), the codec's field layout
    layouts: tuple[bytes | None, ...]
    #: command number → the word text lines and ``--stats`` use
    words: dict[int, str]
    decode: Callable[[bytes, ByteOrder], Message]
    decode_packet: Callable[[Packet], Message]
    make: Callable[..., Message]

    def head(self, command: int, byte_order: ByteOrder) -> bytes:
        """What goes between the checksum and the first field: name length, name, command."""
        i32 = byte_order.i32
        return i32.pack(len(self.name)) + self.name + i32.pack(command)


DIALOG = Payload(
    dialog.MODULE_NAME, dialog.MESSAGES, dialog._LAYOUTS, {1: "created", 2: "updated", 3: "deleted"},
    dialog.decode, dialog.decode_packet, dialog.make,
)
USRLOC = Payload(
    usrloc.MODULE_NAME, usrloc.MESSAGES, usrloc._LAYOUTS, {int(c): c.word for c in usrloc.UlCommand},
    usrloc.decode, usrloc.decode_packet, usrloc.make,
)
#: module name → payload, in the order the JSON-lines codec tries them
PAYLOADS: dict[bytes, Payload] = {p.name: p for p in (DIALOG, USRLOC)}


def command_name(module: bytes, command: int) -> str | None:
    """``"dialog created"``, ``"ul contact_insert"``; None for what pybin does not decode."""
    payload = PAYLOADS.get(module)
    word = payload.words.get(command) if payload is not None else None
    return None if word is None else f"{module.decode()} {word}"


def decode(data: bytes, byte_order: ByteOrder = ByteOrder.LITTLE) -> Message:
    """A whole datagram → the message of its module (dialog or ul); raises a
    RemoteProtocolError subclass when it is not one pybin decodes."""
    if type(data) is not bytes:
        data = bytes(data)
    name_len = int.from_bytes(data[8:12], "little" if byte_order is ByteOrder.LITTLE else "big")
    payload = PAYLOADS.get(data[12 : 12 + name_len])
    if payload is not None:  # its decode checks the header, in one compiled pass when good
        return payload.decode(data, byte_order)
    return decode_packet(parse_header(data, byte_order))


def decode_packet(packet: Packet) -> Message:
    """A packet that passed the receiver's checks → its module's message."""
    payload = PAYLOADS.get(packet.module)
    if payload is None:
        known = ", ".join(name.decode() for name in PAYLOADS)
        raise MalformedPacket(f"module {packet.module!r} is not one pybin decodes ({known})", HEADER_SIZE)
    return payload.decode_packet(packet)


__all__ = ["DIALOG", "Message", "PAYLOADS", "Payload", "USRLOC", "command_name", "decode", "decode_packet"]
