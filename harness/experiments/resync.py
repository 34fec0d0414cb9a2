"""A resync for 1.x: the primary's live dialogs, read over MI, sent to a backup as ``created``.

1.x has none: a restarted backup holds nothing of the calls already up, and its next
failover loses every one of them. `resync` reads the primary's ``dlg_list_ctx`` (paged:
a whole list of thousands does not fit one MI datagram) and sends each confirmed
dialog to the backup's BIN address as the ``created`` a primary would have sent
(`pybin.resync.created_for`; what MI cannot show is `pybin.resync.MI_CANNOT_GIVE`).
A 1.x backup builds each one unless it already has the dialog, so a resync is safe to
repeat. `compare` checks the result field by field against what the primary holds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from harness.instruments.mi import MIClient
from harness.instruments.mi_replies import DialogEntry, DialogLeg
from pybin.dialog import DialogCreated
from pybin.resync import RESYNC_STATES, LiveDialog, LiveLeg, created_for

Addr = tuple[str, int]
Send = Callable[[bytes, Addr], None]
#: dialogs per dlg_list_ctx page: vars and profiles make each ~1.2 KB (1.10's reply is
#: at most 65,457 bytes)
PAGE = 40
#: the fields `compare` checks, and how much MI's timeout may differ. MI computes it as
#: time(0) + the timer's expiry tick - the current tick, each in whole seconds: the
#: primary's value the resync sent, the primary's value read again to compare, and the
#: backup's are three such readings, so 1 s apart each way is rounding, not a fault
#: (seen on Docker: 2 s on 150 of 200 dialogs of one resync; PROTOCOL.md fact 7)
COMPARED = ("state", "caller_cseq", "callee_cseq", "timeout", "timestart", "user_flags", "from_uri",
            "to_uri", "caller_contact", "callee_contact", "caller_route_set", "callee_route_set",
            "caller_bind_addr", "callee_bind_addr", "vars", "profiles")
TIMEOUT_SLACK_S = 2


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _leg(leg: DialogLeg | None) -> LiveLeg:
    if leg is None:
        return LiveLeg(b"")
    return LiveLeg(_raw(leg.tag), _raw(leg.contact), _raw(leg.cseq), _raw(leg.route_set), _raw(leg.bind_addr))


def live_dialog(entry: DialogEntry) -> LiveDialog:
    """A ``dlg_list_ctx`` entry as pybin's `LiveDialog` (each cseq with its own leg:
    `DialogLeg` already undoes MI's swapped labels)."""
    return LiveDialog(
        call_id=_raw(entry.callid), from_uri=_raw(entry.from_uri), to_uri=_raw(entry.to_uri),
        h_id=entry.h_id, state=entry.state, user_flags=entry.user_flags, start_ts=entry.timestart,
        timeout=entry.timeout, caller=_leg(entry.caller), callee=_leg(entry.callee),
        vars=tuple((_raw(k), _raw(v)) for k, v in (entry.vars or {}).items()),
        profiles=tuple((_raw(k), _raw(v)) for k, v in (entry.profiles or ())))


@dataclass
class ResyncReport:
    """What a resync read and sent."""

    listed: int = 0
    sent: int = 0
    #: Call-ID → why it was not sent (not confirmed, no timer, no callee leg)
    skipped: dict[str, str] = field(default_factory=dict)
    took_s: float = 0.0
    #: the created packets sent, in order
    packets: list[DialogCreated] = field(default_factory=list)
    #: when the last one left (time.time())
    done_at: float = 0.0

    def to_json(self) -> dict[str, object]:
        return {"listed": self.listed, "sent": self.sent, "skipped": len(self.skipped),
                "skipped_calls": dict(list(self.skipped.items())[:20]), "took_s": round(self.took_s, 3)}

    def summary(self) -> str:
        return (f"resync: {self.listed} dialogs listed, {self.sent} sent as created, "
                f"{len(self.skipped)} skipped, in {self.took_s:.2f}s")


def why_not(entry: DialogEntry) -> str | None:
    """Why a listed dialog is not re-sent (None: it is)."""
    if entry.state not in RESYNC_STATES:
        return f"state {entry.state}: not confirmed (1.x replicates confirmed dialogs only)"
    if not entry.timeout:
        return "no timer armed (timeout 0): a backup would end it at once"
    if entry.caller is None or entry.callee is None:
        return "MI lists no caller or no callee leg"
    return None


def resync(mi: MIClient, send: Send, dest: Addr, *, flags: int, page: int = PAGE,
           clock: Callable[[], float] = time.monotonic) -> ResyncReport:
    """Read every dialog the node behind ``mi`` holds and send each confirmed one to
    ``dest`` as a ``created`` carrying ``flags``; report what was read, sent and skipped."""
    report = ResyncReport()
    t0 = clock()
    for entry in mi.dlg_list(context=True, page_size=page):
        report.listed += 1
        reason = why_not(entry)
        if reason is not None:
            report.skipped[entry.callid] = reason
            continue
        packet = created_for(live_dialog(entry), flags=flags)
        send(packet.encode(), dest)
        report.packets.append(packet)
        report.sent += 1
    report.done_at = time.time()
    report.took_s = clock() - t0
    return report


def _fields(entry: DialogEntry) -> dict[str, object]:
    caller, callee = entry.caller, entry.callee
    return {
        "state": entry.state, "timeout": entry.timeout, "timestart": entry.timestart,
        "user_flags": entry.user_flags, "from_uri": entry.from_uri, "to_uri": entry.to_uri,
        "caller_cseq": caller and caller.cseq, "callee_cseq": callee and callee.cseq,
        "caller_contact": caller and caller.contact, "callee_contact": callee and callee.contact,
        "caller_route_set": caller and caller.route_set, "callee_route_set": callee and callee.route_set,
        "caller_bind_addr": caller and caller.bind_addr, "callee_bind_addr": callee and callee.bind_addr,
        "vars": entry.vars, "profiles": None if entry.profiles is None else sorted(entry.profiles),
    }


def compare(primary: Iterable[DialogEntry], backup: Iterable[DialogEntry],
            slack: int = TIMEOUT_SLACK_S) -> tuple[int, list[str]]:
    """(dialogs compared, differences): each of the primary's confirmed dialogs against
    the backup's copy, field by field (`COMPARED`; the timeout within ``slack`` s)."""
    copies = {d.key: d for d in backup}
    compared, out = 0, []
    for entry in primary:
        if why_not(entry) is not None:
            continue
        compared += 1
        copy = copies.get(entry.key)
        if copy is None:
            out.append(f"{entry.callid}: not on the backup")
            continue
        mine, theirs = _fields(entry), _fields(copy)
        for name in COMPARED:
            a, b = mine[name], theirs[name]
            same = abs(int(a) - int(b)) <= slack if name == "timeout" else a == b  # type: ignore[call-overload]
            if not same:
                out.append(f"{entry.callid}: {name} {a!r} on the primary, {b!r} on the backup")
    return compared, out


def timeout_drift(primary: Iterable[DialogEntry], backup: Iterable[DialogEntry]) -> int | None:
    """The largest |backup − primary| of MI's timeout over the dialogs both list (seconds;
    None when none): how far the two nodes' tick-based timers disagree (PROTOCOL.md fact 7)."""
    copies = {d.key: d.timeout for d in backup}
    drifts = [abs(copies[d.key] - d.timeout) for d in primary if d.key in copies and d.timeout]
    return max(drifts) if drifts else None
