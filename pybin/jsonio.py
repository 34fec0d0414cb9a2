"""The JSON-lines form of BIN packets shared by ``pybin decode --json``, ``encode`` and ``send``.

One object per packet::

    {"module": "dialog", "command": 1, "checksum_ok": true, "hex": "50344...",
     "dialog": {"call_id": "...", ..., "vars": [["acct", "a|b"]], ...}}

Text fields are JSON strings. Bytes that are not UTF-8 travel as lone surrogates
(Python's ``surrogateescape``, PEP 383) so every byte comes back on the way in.
``dialog`` is null for packets of other modules.
"""

from __future__ import annotations

import json
from typing import Any

from ._codec import impl as _codec
from .dialog import _LAYOUTS, DIALOG_FIELDS, _head, INT, MESSAGES, MODULE_NAME, PAIRS, DialogMessage, decode_packet, make
from .errors import LocalProtocolError
from .wire import HEADER_SIZE, MARKER_SIZE, ByteOrder, checksum, parse_header

TOP_KEYS = ("module", "command", "checksum_ok", "hex", "dialog")
_KIND = dict(DIALOG_FIELDS)


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def raw(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be a JSON string, got {type(value).__name__}")
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} holds a character that is not text: {value!r}") from None


def dialog_to_json(msg: DialogMessage) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, kind in msg.FIELDS:
        value = getattr(msg, name)
        if kind == INT:
            out[name] = int(value)
        elif kind == PAIRS:
            out[name] = [[text(n), text(v)] for n, v in value]
        else:
            out[name] = text(value)
    return out


def packet_to_json(data: bytes, byte_order: ByteOrder = ByteOrder.LITTLE) -> dict[str, Any]:
    """Describe one datagram; raises a RemoteProtocolError subclass when it is not one.

    The checksum is reported, not enforced: captures may hold damaged packets on purpose.
    """
    packet = parse_header(data, byte_order, verify_checksum=False)
    checksum_ok = packet.checksum == checksum(memoryview(packet.data)[HEADER_SIZE:])
    dialog = None
    if packet.module == MODULE_NAME:
        dialog = dialog_to_json(decode_packet(packet))
    return {
        "module": text(packet.module),
        "command": packet.command,
        "checksum_ok": checksum_ok,
        "hex": data.hex(),
        "dialog": dialog,
    }


def _json_keys(fields: tuple[tuple[str, str], ...]) -> tuple[bytes, ...]:
    """What json.dumps writes before each field's value: its key, after a separator."""
    return tuple((", " if i else "").encode() + json.dumps(name).encode() + b": " for i, (name, _) in enumerate(fields))


#: per dialog command (the index), the JSON text before each field's value
_KEYS: tuple[tuple[bytes, ...] | None, ...] = (None,) + tuple(_json_keys(MESSAGES[c].FIELDS) for c in (1, 2, 3))
#: per byte order and dialog command, what goes between the checksum and the first field
_HEADS = {order: (None,) + tuple(_head(c, order) for c in (1, 2, 3)) for order in ByteOrder}


def packet_json_line(data: bytes, byte_order: ByteOrder = ByteOrder.LITTLE) -> bytes:
    """``json.dumps(packet_to_json(data))`` as ASCII bytes, without the newline.

    A good packet takes one pass of the codec (the line is written from the datagram's
    bytes); anything else goes the careful way, which raises what is wrong with it.
    """
    line = _codec.json_line(data, MODULE_NAME, _LAYOUTS, _KEYS, byte_order is ByteOrder.LITTLE)
    if line is None:
        line = json.dumps(packet_to_json(data, byte_order)).encode()
    return line  # type: ignore[no-any-return]


def packet_from_json_line(line: bytes, byte_order: ByteOrder = ByteOrder.LITTLE) -> bytes | None:
    """The datagram of a line written exactly as ``packet_json_line`` writes it, built
    in one pass of the codec; None for any other line (read it with json.loads and
    ``packet_from_json``, which also say what is wrong with it)."""
    return _codec.packet_from_json_line(  # type: ignore[no-any-return]
        line, _KEYS, _LAYOUTS, _HEADS[byte_order], byte_order is ByteOrder.LITTLE
    )


def dialog_from_json(command: int, fields: Any) -> DialogMessage:
    if not isinstance(fields, dict):
        raise LocalProtocolError("'dialog' must be an object")
    cls = MESSAGES.get(command)
    if cls is None:
        raise LocalProtocolError(f"unknown dialog command {command!r} (1, 2 or 3)")
    allowed = {name for name, _ in cls.FIELDS}
    for key in fields:
        if key not in allowed:
            raise LocalProtocolError(f"unknown field {key!r} for dialog command {command}")
    values: dict[str, object] = {}
    for name, value in fields.items():
        kind = _KIND[name]
        if kind == INT:
            if type(value) is not int:
                raise LocalProtocolError(f"{name} must be a JSON integer, got {value!r}")
            values[name] = value
        elif kind == PAIRS:
            if not isinstance(value, list) or not all(
                isinstance(p, list) and len(p) == 2 for p in value
            ):
                raise LocalProtocolError(f"{name} must be a list of [name, value] pairs")
            values[name] = tuple((raw(n, name), raw(v, name)) for n, v in value)
        else:
            values[name] = raw(value, name)
    return make(command, **values)


def packet_from_json(obj: Any, byte_order: ByteOrder = ByteOrder.LITTLE) -> bytes:
    """Build the datagram an object describes.

    With a ``dialog`` object the packet is encoded from its fields (``hex``, if given,
    is not consulted — except that ``"checksum_ok": false`` keeps the checksum bytes of
    ``hex``, so damaged packets can be replayed on purpose). Without one, ``hex`` is
    the packet.
    """
    if not isinstance(obj, dict):
        raise LocalProtocolError("each line must be a JSON object")
    for key in obj:
        if key not in TOP_KEYS:
            raise LocalProtocolError(f"unknown field {key!r}")
    dialog = obj.get("dialog")
    if dialog is None:
        if "hex" not in obj:
            raise LocalProtocolError("a packet needs either 'dialog' or 'hex'")
        return _from_hex(obj["hex"])
    module = obj.get("module", "dialog")
    if module != "dialog":
        raise LocalProtocolError(f"'dialog' given for module {module!r}")
    command = obj.get("command")
    if type(command) is not int:
        raise LocalProtocolError(f"command must be a JSON integer, got {command!r}")
    data = dialog_from_json(command, dialog).encode(byte_order)
    if obj.get("checksum_ok") is False and "hex" in obj:
        stored = _from_hex(obj["hex"])[MARKER_SIZE : MARKER_SIZE + 4]
        data = data[:MARKER_SIZE] + stored + data[MARKER_SIZE + 4 :]
    return data


def _from_hex(value: Any) -> bytes:
    if not isinstance(value, str):
        raise LocalProtocolError("hex must be a JSON string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise LocalProtocolError("hex is not an even run of hex digits") from None
