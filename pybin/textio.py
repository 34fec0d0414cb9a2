"""The one-line human form of a BIN packet (``pybin decode`` without ``--json``, ladders).

It reads the JSON-lines object of ``pybin.jsonio`` so that the text and the JSON
forms can never disagree about what a packet holds.
"""

from __future__ import annotations

from typing import Any

#: dialog command number → the word people search a decode for
DIALOG_COMMANDS = {1: "created", 2: "updated", 3: "deleted"}


def summary_line(obj: dict[str, Any], prefix: str = "") -> str:
    """One human line per packet: who, what, and the fields people look for first."""
    bad = "" if obj["checksum_ok"] else " BAD-CHECKSUM"
    dialog = obj.get("dialog")
    if dialog is None:
        return f"{prefix}{obj['module']} cmd={obj['command']}{bad} {len(obj['hex']) // 2} bytes"
    head = f"{prefix}dialog {DIALOG_COMMANDS.get(obj['command'], obj['command'])}{bad}"
    parts = [f"call_id={dialog['call_id']}", f"tags={dialog['from_tag']}/{dialog['to_tag']}"]
    if "state" in dialog:
        parts.append(f"state={dialog['state']}")
        parts.append(f"cseq={dialog['caller_cseq']}/{dialog['callee_cseq']}")
        parts.append(f"timeout={dialog['timeout']}")
    return head + " " + " ".join(parts)
