"""Hot-path field codec, pure Python. ``_speedups.pyx`` implements the same functions.

The functions never raise for bad input: they return None and the caller re-runs the
careful path (``PacketReader`` / ``PacketBuilder``, ``json.loads``) to produce a precise
error. This keeps the fast path free of error formatting and both implementations
trivially equal. ``header`` is the one copy of the receive loop's header rules;
``json_line`` / ``packet_from_json_line`` turn a packet into its ``pybin decode
--json`` line and back in one pass (the command line handles millions of them).

A layout is a bytes string, one letter per field: ``s`` a length-prefixed string,
``p`` a length-prefixed string of ``name#value|`` pairs (split on decode, given joined
on encode), ``I`` a 4-byte unsigned integer, ``r`` a C integer sent as its raw bytes
inside a length-prefixed string (4 or 8 bytes, signed, in the packet's byte order: a
``RawInt`` that keeps its size, so that it re-encodes to the same bytes).

The JSON-lines functions take ``modules``: per module pybin decodes, its name, its
layouts and JSON keys per command (and, to read lines back, the bytes between checksum
and first field per command). A module's fields go under its own name (``"dialog"``,
``"ul"``); packets of other modules carry ``"dialog": null``, as they always have.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from collections.abc import Sequence
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import NamedTuple


class RawInt(NamedTuple):
    """A C integer the sender pushed as its own bytes inside a string field
    (``st.s = (char *)&ci->expires; st.len = sizeof ci->expires``): its value and
    its size, the sender's ``sizeof`` (8 for x86-64's ``time_t``, 4 for ``int``)."""

    value: int
    size: int


_U32 = {True: struct.Struct("<I"), False: struct.Struct(">I")}
_RAW = {(True, 4): struct.Struct("<i"), (False, 4): struct.Struct(">i"),
        (True, 8): struct.Struct("<q"), (False, 8): struct.Struct(">q")}
_new_tuple = tuple.__new__
_UINT_MAX = 0xFFFFFFFF
_MARKER = b"P4CK"


def crc(data: bytes, start: int) -> int:
    return ~zlib.crc32(memoryview(data)[start:]) & _UINT_MAX


def pop_fields(
    data: bytes, offset: int, layout: bytes, little: bool
) -> tuple[list[bytes | int], int] | None:
    unpack = _U32[little].unpack_from
    end = len(data)
    values: list[bytes | int] = []
    for kind in layout:
        if offset + 4 > end:
            return None
        (n,) = unpack(data, offset)
        offset += 4
        if kind == 0x49:  # 'I'
            values.append(n)
            continue
        if n > end - offset:
            return None
        if kind == 0x72:  # 'r'
            if n != 4 and n != 8:
                return None
            values.append(_new_tuple(RawInt, (_RAW[little, n].unpack_from(data, offset)[0], n)))
            offset += n
            continue
        text = data[offset : offset + n]
        offset += n
        if kind == 0x70:  # 'p'
            pairs = split_pairs(text)
            if pairs is None:
                return None
            values.append(pairs)  # type: ignore[arg-type]
        else:
            values.append(text)
    return values, offset


def header(data: bytes, little: bool) -> tuple[int, int, int, int, int]:
    """The receive loop's header checks: (verdict, name_len, command, stored, computed).

    verdict: 0 good, 1 shorter than 18 bytes, 2 not P4CK, 3 the name runs past the
    end; the stored and computed checksums are returned for the caller to compare
    (it may report a bad one rather than refuse it). Fields a verdict leaves unread are 0.
    """
    size = len(data)
    if size < 18:
        return 1, 0, 0, 0, 0
    if data[:4] != _MARKER:
        return 2, 0, 0, 0, 0
    unpack = _U32[little].unpack_from
    stored = unpack(data, 4)[0]
    computed = crc(data, 8)
    name_len = unpack(data, 8)[0]
    if name_len > size - 16:  # as unsigned: a negative length is huge
        return 3, name_len - (1 << 32) if name_len >> 31 else name_len, 0, stored, computed
    command = unpack(data, 12 + name_len)[0]
    return 0, name_len, command - (1 << 32) if command >> 31 else command, stored, computed


def decode_packet(
    data: bytes, module: bytes, layouts: tuple[bytes | None, ...], little: bool
) -> tuple[int, list[object]] | None:
    verdict, name_len, cmd, stored, computed = header(data, little)
    if verdict or stored != computed or data[12 : 12 + name_len] != module:
        return None
    layout = layouts[cmd] if 0 <= cmd < len(layouts) else None
    if layout is None:
        return None
    popped = pop_fields(data, 16 + name_len, layout, little)
    if popped is None or popped[1] != len(data):
        return None
    return cmd, popped[0]  # type: ignore[return-value]


def build(head: bytes, layout: bytes, values: Sequence[object], little: bool) -> bytes | None:
    if len(values) != len(layout):
        return None
    pack = _U32[little].pack
    parts = [head]
    for kind, value in zip(layout, values):
        if kind == 0x72:  # 'r'
            raw = _raw_bytes(value, little)
            if raw is None:
                return None
            parts.append(pack(len(raw)))
            parts.append(raw)
        elif kind != 0x49:
            if type(value) is not bytes:
                return None
            parts.append(pack(len(value)))
            parts.append(value)
        else:
            if type(value) is not int or not 0 <= value <= _UINT_MAX:
                return None
            parts.append(pack(value))
    body = b"".join(parts)
    return _MARKER + pack(~zlib.crc32(body) & _UINT_MAX) + body


def _raw_bytes(value: object, little: bool) -> bytes | None:
    """A RawInt's bytes; None unless it is a RawInt of 4 or 8 bytes that holds its value."""
    if type(value) is not RawInt:
        return None
    number, size = value  # type: ignore[misc]
    if type(number) is not int or type(size) is not int or size not in (4, 8):
        return None
    if not -(1 << (8 * size - 1)) <= number < 1 << (8 * size - 1):
        return None
    return _RAW[little, size].pack(number)  # type: ignore[no-any-return]


_PAIR = re.compile(rb"((?:[^\\|#]|\\[\\|#])*)#((?:[^\\|#]|\\[\\|#])*)\|")
_ESCAPED = re.compile(rb"\\([\\|#])")


def split_pairs(raw: bytes) -> tuple[tuple[bytes, bytes], ...] | None:
    pairs: list[tuple[bytes, bytes]] = []
    pos = 0
    end = len(raw)
    match = _PAIR.match
    while pos < end:
        m = match(raw, pos)
        if m is None:
            return None
        name, value = m.groups()
        if 0x5C in name:
            name = _ESCAPED.sub(rb"\1", name)
        if 0x5C in value:
            value = _ESCAPED.sub(rb"\1", value)
        pairs.append((name, value))
        pos = m.end()
    return tuple(pairs)


def _escape(text: bytes) -> bytes:
    return text.replace(b"\\", b"\\\\").replace(b"|", b"\\|").replace(b"#", b"\\#")


def join_pairs(pairs: Sequence[object]) -> bytes | None:
    out: list[bytes] = []
    for pair in pairs:
        if type(pair) is not tuple or len(pair) != 2:
            return None
        name, value = pair
        if type(name) is not bytes or type(value) is not bytes:
            return None
        out.append(_escape(name))
        out.append(b"#")
        out.append(_escape(value))
        out.append(b"|")
    return b"".join(out)


def _json_text(raw: bytes) -> bytes:
    return encode_basestring_ascii(raw.decode("utf-8", "surrogateescape")).encode()


#: one module pybin decodes: its name, and per command (the index) its layout and the
#: JSON text before each field's value; to read lines back, also per command what
#: goes between the checksum and the first field (name length, name, command)
Module = tuple[bytes, tuple[bytes | None, ...], tuple[tuple[bytes, ...] | None, ...]]
ModuleHeads = tuple[bytes, tuple[bytes | None, ...], tuple[tuple[bytes, ...] | None, ...], tuple[bytes | None, ...]]


def _json_value(value: object) -> bytes:
    if type(value) is bytes:
        return _json_text(value)
    if type(value) is RawInt:
        return b'{"value": %d, "size": %d}' % value  # type: ignore[str-format]
    if type(value) is tuple:
        pairs = [b"[" + _json_text(n) + b", " + _json_text(v) + b"]" for n, v in value]  # type: ignore[attr-defined]
        return b"[" + b", ".join(pairs) + b"]"
    return b"%d" % value  # type: ignore[str-format]


def json_line(data: bytes, modules: tuple[Module, ...], little: bool) -> bytes | None:
    """``json.dumps`` of a packet's JSON-lines object, as ASCII bytes; None when the
    packet is not one (a module of ``modules`` whose fields do not decode)."""
    verdict, name_len, cmd, stored, computed = header(data, little)
    if verdict:
        return None
    name = data[12 : 12 + name_len]
    parts = [b'{"module": ', _json_text(name), b', "command": ', b"%d" % cmd]
    parts.append(b', "checksum_ok": true, "hex": "' if stored == computed else b', "checksum_ok": false, "hex": "')
    parts.append(data.hex().encode())
    for module, layouts, keys in modules:
        if name == module:
            break
    else:
        parts.append(b'", "dialog": null}')
        return b"".join(parts)
    layout = layouts[cmd] if 0 <= cmd < len(layouts) else None
    names = keys[cmd] if 0 <= cmd < len(keys) else None
    popped = pop_fields(data, 16 + name_len, layout, little) if layout is not None else None
    if popped is None or names is None or popped[1] != len(data):
        return None
    parts.append(b'", "' + module + b'": {')
    for key, value in zip(names, popped[0]):
        parts.append(key)
        parts.append(_json_value(value))
    parts.append(b"}}")
    return b"".join(parts)


_TOP_KEYS = ["module", "command", "checksum_ok", "hex"]
_HEX = re.compile("(?:[0-9a-fA-F]{2})*")
_INT32 = range(-(2**31), 2**31)


def _raw(value: object) -> bytes | None:
    if type(value) is not str:
        return None
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None


def packet_from_json_line(line: bytes, modules: tuple[ModuleHeads, ...], little: bool) -> bytes | None:
    """The datagram of a JSON line written exactly as ``json_line`` writes it; None for
    any other line and for a packet over 65535 bytes."""
    text = line[:-1] if line.endswith(b"\n") else line
    try:
        source = text.decode("ascii")
        obj = json.loads(source)
    except ValueError:
        return None
    if type(obj) is not dict or len(obj) != 5 or list(obj)[:4] != _TOP_KEYS or json.dumps(obj) != source:
        return None
    module, command, checksum_ok, hex_text, fields = obj.values()
    label = list(obj)[4]
    if type(command) is not int or command not in _INT32 or type(module) is not str:
        return None
    if type(checksum_ok) is not bool or type(hex_text) is not str:
        return None
    if fields is None:
        return bytes.fromhex(hex_text) if label == "dialog" and _HEX.fullmatch(hex_text) else None
    for name, layouts, keys, heads in modules:
        if label == module == name.decode():
            break
    else:
        return None
    layout = layouts[command] if 0 <= command < len(layouts) else None
    names = keys[command] if 0 <= command < len(keys) else None
    if not checksum_ok or layout is None or names is None or type(fields) is not dict:
        return None
    if list(fields) != [json.loads(key.removeprefix(b", ").removesuffix(b": ")) for key in names]:
        return None
    values: list[object] = []
    for kind, value in zip(layout, fields.values()):
        if kind == 0x49:  # 'I'
            if type(value) is not int or not 0 <= value <= _UINT_MAX:
                return None
            values.append(value)
        elif kind == 0x72:  # 'r'
            if type(value) is not dict or list(value) != ["value", "size"]:
                return None
            values.append(_new_tuple(RawInt, (value["value"], value["size"])))
        elif kind == 0x70:  # 'p'
            if type(value) is not list:
                return None
            pairs = []
            for pair in value:
                if type(pair) is not list or len(pair) != 2:
                    return None
                name, text_value = _raw(pair[0]), _raw(pair[1])
                if name is None or text_value is None:
                    return None
                pairs.append((name, text_value))
            values.append(join_pairs(pairs))
        else:
            raw = _raw(value)
            if raw is None:
                return None
            values.append(raw)
    packet = build(heads[command], layout, values, little)  # type: ignore[arg-type]
    return packet if packet is not None and len(packet) <= 65535 else None
