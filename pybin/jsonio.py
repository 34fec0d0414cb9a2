"""The JSON-lines form of BIN packets shared by ``pybin decode --json``, ``encode`` and ``send``.

One object per packet; the fifth key names the module whose fields it holds::

    {"module": "dialog", "command": 1, "checksum_ok": true, "hex": "50344...",
     "dialog": {"call_id": "...", ..., "vars": [["acct", "a|b"]], ...}}
    {"module": "ul", "command": 3, "checksum_ok": true, "hex": "50344...",
     "ul": {"domain": "location", "aor": "alice", ..., "expires": {"value": 1796574254, "size": 8}, ...}}

Text fields are JSON strings. Bytes that are not UTF-8 travel as lone surrogates
(Python's ``surrogateescape``, PEP 383) so every byte comes back on the way in. A C
integer sent as raw bytes (usrloc's ``expires``, ``q``, ``last_modified``) is
``{"value": V, "size": 4 or 8}``. Packets of modules pybin does not decode carry
``"dialog": null`` (the 1.10 form, kept).
"""

from __future__ import annotations

import json
from typing import Any

from ._codec import impl as _codec
from ._fields import RawInt
from .dialog import INT, PAIRS, STR
from .errors import LocalProtocolError
from .payloads import PAYLOADS, Message, Payload, decode_packet
from .usrloc import RAW
from .wire import HEADER_SIZE, MARKER_SIZE, ByteOrder, checksum, parse_header

#: the keys every object has, before the one that holds the fields
HEAD_KEYS = ("module", "command", "checksum_ok", "hex")
#: every key a line may have: the head, then ``dialog`` or ``ul``
TOP_KEYS = HEAD_KEYS + tuple(name.decode() for name in PAYLOADS)
#: the key of a packet pybin does not decode (its value is null)
OTHER_KEY = "dialog"


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def raw(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise LocalProtocolError(f"{what} must be a JSON string, got {type(value).__name__}")
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        raise LocalProtocolError(f"{what} holds a character that is not text: {value!r}") from None


def message_to_json(msg: Message) -> dict[str, Any]:
    """A dialog or ul message's fields, as ``--json`` writes them."""
    out: dict[str, Any] = {}
    for name, kind in msg.FIELDS:
        value = getattr(msg, name)
        if kind == INT:
            out[name] = int(value)
        elif kind == PAIRS:
            out[name] = [[text(n), text(v)] for n, v in value]
        elif kind == RAW:
            out[name] = {"value": value.value, "size": value.size}
        else:
            out[name] = text(value)
    return out


#: the 1.10 name, kept for its callers
dialog_to_json = message_to_json


def packet_to_json(data: bytes, byte_order: ByteOrder = ByteOrder.LITTLE) -> dict[str, Any]:
    """Describe one datagram; raises a RemoteProtocolError subclass when it is not one.

    The checksum is reported, not enforced: captures may hold damaged packets on purpose.
    """
    packet = parse_header(data, byte_order, verify_checksum=False)
    checksum_ok = packet.checksum == checksum(memoryview(packet.data)[HEADER_SIZE:])
    obj: dict[str, Any] = {
        "module": text(packet.module),
        "command": packet.command,
        "checksum_ok": checksum_ok,
        "hex": data.hex(),
    }
    if packet.module in PAYLOADS:
        obj[packet.module.decode()] = message_to_json(decode_packet(packet))
    else:
        obj[OTHER_KEY] = None
    return obj


def _json_keys(fields: tuple[tuple[str, str], ...]) -> tuple[bytes, ...]:
    """What json.dumps writes before each field's value: its key, after a separator."""
    return tuple((", " if i else "").encode() + json.dumps(name).encode() + b": " for i, (name, _) in enumerate(fields))


def _keys(payload: Payload) -> tuple[tuple[bytes, ...] | None, ...]:
    """Per command (the index), the JSON text before each field's value."""
    return tuple(
        None if layout is None else _json_keys(payload.messages[c].FIELDS) for c, layout in enumerate(payload.layouts)
    )


#: (name, layouts, keys) per payload: what the codec's json_line takes
_MODULES = tuple((p.name, p.layouts, _keys(p)) for p in PAYLOADS.values())
#: per byte order, (name, layouts, keys, heads) per payload: what packet_from_json_line takes
_MODULE_HEADS = {
    order: tuple(
        (p.name, p.layouts, keys, tuple(None if lay is None else p.head(c, order) for c, lay in enumerate(p.layouts)))
        for p, (_, _, keys) in zip(PAYLOADS.values(), _MODULES)
    )
    for order in ByteOrder
}


def packet_json_line(data: bytes, byte_order: ByteOrder = ByteOrder.LITTLE) -> bytes:
    """``json.dumps(packet_to_json(data))`` as ASCII bytes, without the newline.

    A good packet takes one pass of the codec (the line is written from the datagram's
    bytes); anything else goes the careful way, which raises what is wrong with it.
    """
    line = _codec.json_line(data, _MODULES, byte_order is ByteOrder.LITTLE)
    if line is None:
        line = json.dumps(packet_to_json(data, byte_order)).encode()
    return line  # type: ignore[no-any-return]


def packet_from_json_line(line: bytes, byte_order: ByteOrder = ByteOrder.LITTLE) -> bytes | None:
    """The datagram of a line written exactly as ``packet_json_line`` writes it, built
    in one pass of the codec; None for any other line (read it with json.loads and
    ``packet_from_json``, which also say what is wrong with it)."""
    return _codec.packet_from_json_line(  # type: ignore[no-any-return]
        line, _MODULE_HEADS[byte_order], byte_order is ByteOrder.LITTLE
    )


def message_from_json(module: str, command: int, fields: Any) -> Message:
    """The message a ``dialog`` or ``ul`` object describes; LocalProtocolError says what
    is wrong with it."""
    payload = PAYLOADS[module.encode()]
    if not isinstance(fields, dict):
        raise LocalProtocolError(f"'{module}' must be an object")
    cls = payload.messages.get(command)
    if cls is None:
        known = ", ".join(str(c) for c in payload.messages)
        raise LocalProtocolError(f"unknown {module} command {command!r} ({known})")
    kinds = dict(cls.FIELDS)
    for key in fields:
        if key not in kinds:
            raise LocalProtocolError(f"unknown field {key!r} for {module} command {command}")
    values: dict[str, object] = {}
    for name, value in fields.items():
        kind = kinds[name]
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
        elif kind == RAW:
            values[name] = _raw_int(name, value)
        elif kind == STR:
            values[name] = raw(value, name)
    return payload.make(command, **values)


def _raw_int(name: str, value: Any) -> RawInt:
    if not isinstance(value, dict) or sorted(value) != ["size", "value"]:
        raise LocalProtocolError(f"{name} must be an object {{\"value\": V, \"size\": 4 or 8}}, got {value!r}")
    number, size = value["value"], value["size"]
    if type(number) is not int or type(size) is not int:
        raise LocalProtocolError(f"{name}: value and size must be JSON integers, got {value!r}")
    return RawInt(number, size)


def dialog_from_json(command: int, fields: Any) -> Message:
    """The 1.10 name: ``message_from_json("dialog", ...)``."""
    return message_from_json("dialog", command, fields)


def packet_from_json(obj: Any, byte_order: ByteOrder = ByteOrder.LITTLE) -> bytes:
    """Build the datagram an object describes.

    With a ``dialog`` or ``ul`` object the packet is encoded from its fields (``hex``,
    if given, is not consulted — except that ``"checksum_ok": false`` keeps the checksum
    bytes of ``hex``, so damaged packets can be replayed on purpose). Without one,
    ``hex`` is the packet.
    """
    if not isinstance(obj, dict):
        raise LocalProtocolError("each line must be a JSON object")
    for key in obj:
        if key not in TOP_KEYS:
            raise LocalProtocolError(f"unknown field {key!r}")
    given = [name for name in TOP_KEYS[len(HEAD_KEYS):] if obj.get(name) is not None]
    if len(given) > 1:
        raise LocalProtocolError(f"a packet has one module's fields, this one has {' and '.join(given)}")
    if not given:
        if "hex" not in obj:
            raise LocalProtocolError("a packet needs either 'dialog', 'ul' or 'hex'")
        return _from_hex(obj["hex"])
    label = given[0]
    module = obj.get("module", label)
    if module != label:
        raise LocalProtocolError(f"'{label}' given for module {module!r}")
    command = obj.get("command")
    if type(command) is not int:
        raise LocalProtocolError(f"command must be a JSON integer, got {command!r}")
    data = message_from_json(label, command, obj[label]).encode(byte_order)
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
