"""The one-line human form of a BIN packet (``pybin decode`` without ``--json``, ladders).

``summary_line`` reads the JSON-lines object of ``pybin.jsonio``; ``packet_summary``
writes the same line straight from a datagram's bytes (the command line's path, where
captures run to millions of packets). Both fill the same templates, so they cannot
drift apart.
"""

from __future__ import annotations

from typing import Any

from ._codec import impl as _codec
from .dialog import _LAYOUTS, DIALOG_FIELDS, MODULE_NAME, Command
from .jsonio import packet_to_json
from .payloads import DIALOG, USRLOC
from .usrloc import CONTACT_DELETE_FIELDS, CONTACT_FIELDS, UlCommand
from .wire import ByteOrder

#: dialog command number → the word people search a decode for
DIALOG_COMMANDS = DIALOG.words
#: ul command number → its word (``contact_insert``)
UL_COMMANDS = USRLOC.words

_FULL = "%sdialog %s%s call_id=%s tags=%s/%s state=%d cseq=%s/%s timeout=%d"
_DELETED = "%sdialog %s%s call_id=%s tags=%s/%s"
_RECORD = "%sul %s%s domain=%s aor=%s"
_CONTACT = "%sul %s%s domain=%s aor=%s contact=%s call_id=%s cseq=%d expires=%d q=%d"
_CONTACT_DELETE = "%sul %s%s domain=%s aor=%s contact=%s call_id=%s cseq=%d"
_OTHER = "%s%s cmd=%d%s %d bytes"
_BAD = " BAD-CHECKSUM"


def summary_line(obj: dict[str, Any], prefix: str = "") -> str:
    """One human line per packet: who, what, and the fields people look for first."""
    bad = "" if obj["checksum_ok"] else _BAD
    ul = obj.get("ul")
    if ul is not None:
        word = UL_COMMANDS[obj["command"]]
        if "expires" in ul:
            return _CONTACT % (prefix, word, bad, ul["domain"], ul["aor"], ul["contact"], ul["call_id"],
                               ul["cseq"], ul["expires"]["value"], ul["q"]["value"])
        if "contact" in ul:
            return _CONTACT_DELETE % (prefix, word, bad, ul["domain"], ul["aor"], ul["contact"], ul["call_id"],
                                      ul["cseq"])
        return _RECORD % (prefix, word, bad, ul["domain"], ul["aor"])
    dialog = obj.get("dialog")
    if dialog is None:
        return _OTHER % (prefix, obj["module"], obj["command"], bad, len(obj["hex"]) // 2)
    word = DIALOG_COMMANDS.get(obj["command"], obj["command"])
    if "state" not in dialog:
        return _DELETED % (prefix, word, bad, dialog["call_id"], dialog["from_tag"], dialog["to_tag"])
    return _FULL % (
        prefix, word, bad, dialog["call_id"], dialog["from_tag"], dialog["to_tag"],
        dialog["state"], dialog["caller_cseq"], dialog["callee_cseq"], dialog["timeout"],
    )  # fmt: skip


_FULL_BYTES = _FULL.encode()
_DELETED_BYTES = _DELETED.encode()
_RECORD_BYTES = _RECORD.encode()
_CONTACT_BYTES = _CONTACT.encode()
_CONTACT_DELETE_BYTES = _CONTACT_DELETE.encode()
_WORDS = {command: word.encode() for command, word in DIALOG_COMMANDS.items()}
_UL_WORDS = {command: word.encode() for command, word in UL_COMMANDS.items()}
_AT = {name: i for i, (name, _) in enumerate(DIALOG_FIELDS)}
_STATE, _CALLER_CSEQ, _CALLEE_CSEQ, _TIMEOUT = (
    _AT["state"], _AT["caller_cseq"], _AT["callee_cseq"], _AT["timeout"],
)  # fmt: skip
_UL_AT = {name: i for i, (name, _) in enumerate(CONTACT_FIELDS)}
_UL_CSEQ, _UL_EXPIRES, _UL_Q = _UL_AT["cseq"], _UL_AT["expires"], _UL_AT["q"]
_UL_DELETE_CSEQ = [name for name, _ in CONTACT_DELETE_FIELDS].index("cseq")


def packet_summary(data: bytes, prefix: bytes = b"", byte_order: ByteOrder = ByteOrder.LITTLE) -> bytes:
    """``summary_line`` of a datagram as UTF-8 bytes (bytes that are not UTF-8 come out
    as they were); raises a RemoteProtocolError subclass when it is not a packet.

    A good dialog or ul packet is formatted from the codec's one pass; anything else
    (other modules, bad checksums, errors) goes through ``packet_to_json``.
    """
    little = byte_order is ByteOrder.LITTLE
    name_len = int.from_bytes(data[8:12], "little" if little else "big")
    is_ul = data[12 : 12 + name_len] == USRLOC.name  # one compiled pass per packet, not two
    fast = None if is_ul else _codec.decode_packet(data, MODULE_NAME, _LAYOUTS, little)
    if fast is not None:
        command, v = fast
        if command == Command.DELETED:
            return _DELETED_BYTES % (prefix, b"deleted", b"", v[0], v[1], v[2])
        return _FULL_BYTES % (
            prefix, _WORDS[command], b"", v[0], v[1], v[2], v[_STATE], v[_CALLER_CSEQ], v[_CALLEE_CSEQ], v[_TIMEOUT],
        )  # fmt: skip
    fast = _codec.decode_packet(data, USRLOC.name, USRLOC.layouts, little) if is_ul else None
    if fast is not None:
        command, v = fast
        word = _UL_WORDS[command]
        if command == UlCommand.CONTACT_DELETE:
            return _CONTACT_DELETE_BYTES % (prefix, word, b"", v[0], v[1], v[2], v[3], v[_UL_DELETE_CSEQ])
        if command >= UlCommand.CONTACT_INSERT:
            return _CONTACT_BYTES % (
                prefix, word, b"", v[0], v[1], v[2], v[3], v[_UL_CSEQ], v[_UL_EXPIRES][0], v[_UL_Q][0],
            )  # fmt: skip
        return _RECORD_BYTES % (prefix, word, b"", v[0], v[1])
    text = summary_line(packet_to_json(data, byte_order), prefix.decode("utf-8", "surrogateescape"))
    return text.encode("utf-8", "surrogateescape")
