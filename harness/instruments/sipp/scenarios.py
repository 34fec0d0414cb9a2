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
from dataclasses import dataclass, field
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

@dataclass(frozen=True)
class RegisterScenario:
    """A REGISTER scenario: what it exercises, the ``-key`` defaults it needs, and the
    ``ul`` commands a 1.11/2.1 primary replicates for each of its AORs, in order
    (registrar's save(), usrloc's replicate_*: the same in every 1.11 and 2.1)."""

    description: str
    replicates: tuple[str, ...]
    keys: dict[str, str] = field(default_factory=lambda: {"expires": "3600"})


#: REGISTER scenarios (usrloc replication, 1.11 and 2.1). One file each,
#: ``<name>_uac.xml``: a registering user has no callee. They name the user ``[field0]``
#: (one injection-file line per SIPp call) and send every binding to
#: ``[contact_host]``; harness.experiments.registrations runs them. ``Contact: *``
#: replicates record_delete, each binding's delete, then record_delete again
#: (delete_urecord replicates, release_urecord once more).
REGISTRATIONS: dict[str, RegisterScenario] = {
    "register": RegisterScenario("one REGISTER, one binding", ("record_insert", "contact_insert")),
    "refresh": RegisterScenario("REGISTER, then the same binding again (CSeq 2) with q 0.9",
                                ("record_insert", "contact_insert", "contact_update")),
    "multi_contact": RegisterScenario(
        "three bindings in one REGISTER (q 1, 0.5 with +sip.instance, none with methods), a "
        "fourth in a second one", ("record_insert", *["contact_insert"] * 4)),
    "unregister": RegisterScenario(
        "two bindings, one removed (expires=0), then Contact: * with Expires: 0",
        ("record_insert", "contact_insert", "contact_insert", "contact_delete", "record_delete",
         "contact_delete", "record_delete")),
    "expiry": RegisterScenario("a binding for [expires] s (2 by default) beside one for an hour "
                               "(its expiry is each node's own: nothing is replicated)",
                               ("record_insert", "contact_insert", "contact_insert"), {"expires": "2"}),
}
#: a call to a registered user (INVITE sip:[field0]@VIP, looked up by the proxy); its
#: callee side is the user's own SIPp running basic_uas.xml at the registered contact
CALL_USER = "call_user"

HOLD_MARKER = "<!--HOLD-->"
#: where a caller waits between the initial 200 OK and its ACK (``ack_delay_ms``)
ACK_DELAY_MARKER = "<!--ACK_DELAY-->"
#: how the kept callee scenarios retransmit their final answers (T1, RFC 3261)
ANSWER_RETRANS = 'retrans="500"'
#: where a callee rings between its 180 and its 200 OK (``ring_ms``; basic_uas.xml)
RING_MARKER = "<!--RING-->"
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
    """Path of a kept scenario file, e.g. ``scenario_path("basic", "uac")``; REGISTER
    scenarios and ``call_user`` have a caller side only."""
    if role not in ("uac", "uas"):
        raise ValueError(f"role must be 'uac' or 'uas', not {role!r}")
    caller_only = (*REGISTRATIONS, CALL_USER)
    if name not in SCENARIOS and not (role == "uac" and name in caller_only):
        known = sorted(SCENARIOS) + [f"{n} (uac)" for n in caller_only]
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(known)}")
    return SCENARIO_DIR / f"{name}_{role}.xml"


def render_scenario(text: str, *, hold: bool, ack_delay_ms: int | None = None,
                    answer_retrans_ms: int | None = None, ring_ms: int | None = None) -> str:
    """Fill (or leave as comments) the HOLD and ACK_DELAY markers of a scenario's XML.

    ``ack_delay_ms``: the caller waits that long after the initial 200 OK before its
    ACK. 1.10.3+ replicates ``created`` after relaying the 200 OK only while the dialog
    is unacknowledged, so an ACK handled first (a sub-millisecond race) suppresses it;
    a delayed ACK takes the race out of an observation that must not depend on it.

    ``answer_retrans_ms``: the callee's first retransmission of its final answers (the
    scenarios' ``retrans="500"``, SIP's T1). Beside a delayed ACK it must be far longer,
    or every call's evidence holds 200 OK retransmissions the caller did not cause. (A
    retransmitted 200 OK does not make a primary replicate ``created`` again: tm runs no
    reply callback for a 2xx whose To-tag it already relayed; a created sent twice is
    the 180/200 race ``ring_ms`` takes out, see harness.experiments.calls.)

    ``ring_ms``: the callee rings that long between its 180 and its 200 OK (a phone
    ringing). Longer than tm's one-second tick, it lets a release's final-response timer
    after a provisional reply show itself: 1.11.0 gives up on the call at the next tick.
    A short ring keeps the 180 and the 200 from being relayed at once, which can make a
    primary replicate ``created`` twice (``RING_BEFORE_ANSWER_MS``).
    """
    if hold:
        if HOLD_MARKER not in text:
            raise ValueError("hold=True needs a scenario with a <!--HOLD--> marker")
        text = text.replace(HOLD_MARKER, HOLD_XML)
    if ack_delay_ms is not None:
        if ACK_DELAY_MARKER not in text:
            raise ValueError("ack_delay_ms needs a scenario with a <!--ACK_DELAY--> marker")
        text = text.replace(ACK_DELAY_MARKER, f'<pause milliseconds="{int(ack_delay_ms)}"/>')
    if answer_retrans_ms is not None:
        if ANSWER_RETRANS not in text:
            raise ValueError(f"answer_retrans_ms needs a scenario whose answers say {ANSWER_RETRANS}")
        text = text.replace(ANSWER_RETRANS, f'retrans="{int(answer_retrans_ms)}"')
    if ring_ms is not None:
        if RING_MARKER not in text:
            raise ValueError("ring_ms needs a callee scenario with a <!--RING--> marker")
        text = text.replace(RING_MARKER, f'<pause milliseconds="{int(ring_ms)}"/>')
    return text


# --------------------------------------------------------------------------- results
