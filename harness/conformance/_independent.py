"""A second, independent BIN dialog encoder for tests (no pybin code).

decode → pybin encode → same bytes only proves pybin agrees with itself: a codec that
swaps two fields both ways, or mis-escapes vars both ways, re-encodes byte-exactly. The
layout here is written again from docs/PROTOCOL.md with struct and zlib, so a packet
that pybin decodes and this module rebuilds to the captured bytes was decoded into the
right fields.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

#: docs/PROTOCOL.md, "Created and updated carry the same 25 fields, in this order"
STRINGS_THEN_INTS = (
    ("call_id", "s"), ("from_tag", "s"), ("to_tag", "s"), ("from_uri", "s"), ("to_uri", "s"),
    ("h_id", "i"), ("start_ts", "i"), ("state", "i"),
    ("caller_sock", "s"), ("callee_sock", "s"), ("caller_cseq", "s"), ("callee_cseq", "s"),
    ("caller_route_set", "s"), ("callee_route_set", "s"), ("caller_contact", "s"),
    ("callee_contact", "s"), ("callee_from_uri", "s"), ("callee_to_uri", "s"),
    ("vars", "p"), ("profiles", "p"),
    ("user_flags", "i"), ("flags", "i"), ("timeout", "i"),
    ("caller_last_gen_cseq", "i"), ("callee_last_gen_cseq", "i"),
)


def _escape(raw: bytes) -> bytes:
    return raw.replace(b"\\", b"\\\\").replace(b"|", b"\\|").replace(b"#", b"\\#")


def serialize_pairs(pairs: Any) -> bytes:
    """``name#value|`` per pair, ``\\`` escaping ``|``, ``#`` and ``\\``."""
    return b"".join(_escape(bytes(n)) + b"#" + _escape(bytes(v)) + b"|" for n, v in pairs)


def dialog_bytes(command: int, fields: Any) -> bytes:
    """The datagram a little-endian 1.10 node sends for ``fields`` (attributes by name)."""
    def string(value: bytes) -> bytes:
        return struct.pack("<i", len(value)) + value

    body = string(b"dialog") + struct.pack("<i", command)
    layout = STRINGS_THEN_INTS[:3] if command == 3 else STRINGS_THEN_INTS
    for name, kind in layout:
        value = getattr(fields, name)
        if kind == "s":
            body += string(bytes(value))
        elif kind == "p":
            body += string(serialize_pairs(value))
        else:
            body += struct.pack("<I", int(value) & 0xFFFFFFFF)
    return b"P4CK" + struct.pack("<I", ~zlib.crc32(body) & 0xFFFFFFFF) + body
