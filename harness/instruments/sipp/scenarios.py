"""The SIPp scenarios kept with the harness, and how a held call is written into one.

Scenarios live in ``scenarios`` as ``<name>_uac.xml`` / ``<name>_uas.xml``
pairs. Our own UAS files echo Record-Route (SIPp's built-in ``uas`` does not), and
callers send in-dialog requests to ``[next_url]`` with ``[routes]``, so they follow
the proxy's Record-Route. ``<!--HOLD-->`` marks where a caller can be held open.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from harness.base.resources import shipped

SCENARIO_DIR = shipped("scenarios")

#: scenario name -> what it exercises (files: <name>_uac.xml and <name>_uas.xml)
SCENARIOS: dict[str, str] = {
    "basic": "INVITE/100/180/200/ACK, pause, BYE/200 from the caller",
    "reinvite": "basic call with a re-INVITE (CSeq 2) mid-call, then BYE; the failover scenario",
    "callee_bye": "the callee hangs up: BYE from the UAS through the route set",
    "cancel": "CANCEL after 180, 487 + ACK; the dialog is never confirmed",
    "long_headers": "1.2 KB Call-ID, 600-char From display name, long Contacts, 4 KB of X- headers",
    "record_route": "the callee adds two Record-Route hops below the proxy's",
}
#: scenarios whose caller can be held open after the ACK (they carry <!--HOLD-->)
HOLDABLE = frozenset({"basic", "reinvite", "long_headers", "record_route"})

HOLD_MARKER = "<!--HOLD-->"
#: where a caller waits between the initial 200 OK and its ACK (``ack_delay_ms``)
ACK_DELAY_MARKER = "<!--ACK_DELAY-->"
HOLD_XML = (
    '<nop><action><log message="[timestamp] HELD [call_id]"/></action></nop>\n'
    '  <recvCmd><action><log message="[timestamp] RELEASED [call_id]"/></action></recvCmd>'
)

#: SIPp exit codes (sipp -h): 0 all calls OK, 1 some failed, 97 internal command,
#: 99 no call processed; -1 / -2 (255 / 254) are fatal errors.

def sipp_version(binary: str = "sipp") -> str | None:
    """Return SIPp's version banner (e.g. ``v3.6.1-SCTP-PCAP-RTPSTREAM``), or None if absent.

    Live tests use it for their skip reason.
    """
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"SIPp\s+(v\S+)", out.stdout + out.stderr)
    return m.group(1).rstrip(".") if m else None


def scenario_path(name: str, role: str) -> Path:
    """Path of a kept scenario file, e.g. ``scenario_path("basic", "uac")``."""
    if role not in ("uac", "uas"):
        raise ValueError(f"role must be 'uac' or 'uas', not {role!r}")
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}")
    return SCENARIO_DIR / f"{name}_{role}.xml"


def render_scenario(text: str, *, hold: bool, ack_delay_ms: int | None = None) -> str:
    """Fill (or leave as comments) the HOLD and ACK_DELAY markers of a scenario's XML.

    ``ack_delay_ms``: the caller waits that long after the initial 200 OK before its
    ACK. 1.10.3+ replicates ``created`` after relaying the 200 OK only while the dialog
    is unacknowledged, so an ACK handled first (a sub-millisecond race) suppresses it;
    a delayed ACK takes the race out of an observation that must not depend on it.
    """
    if hold:
        if HOLD_MARKER not in text:
            raise ValueError("hold=True needs a scenario with a <!--HOLD--> marker")
        text = text.replace(HOLD_MARKER, HOLD_XML)
    if ack_delay_ms is not None:
        if ACK_DELAY_MARKER not in text:
            raise ValueError("ack_delay_ms needs a scenario with a <!--ACK_DELAY--> marker")
        text = text.replace(ACK_DELAY_MARKER, f'<pause milliseconds="{int(ack_delay_ms)}"/>')
    return text


# --------------------------------------------------------------------------- results
