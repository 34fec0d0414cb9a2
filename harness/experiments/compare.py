"""Field-by-field comparison of one dialog as four parties see it.

The conformance suite holds the same dialog in four shapes: the SIP messages SIPp
exchanged (`harness.instruments.sipp.CallResult`), a replicated BIN message
(`pybin.dialog.DialogCreated` / `DialogUpdated`), a node's MI `dlg_list` entry
(`harness.instruments.mi.DialogEntry`) and pybin's reference backup (`pybin.replica.ReplicaDialog`).
Each ``diff_*`` function returns a list of human-readable mismatches (empty when they
agree), so a test writes ``assert not diffs, diffs`` and a failure names every field
that differs at once, not just the first.

Pure: no I/O, no clock; the 1.10 quirks they encode are written next to the rule.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from harness.base.errors import HarnessError
from harness.instruments.mi_replies import DialogEntry, DialogLeg
from harness.instruments.sip import SipMessage
from harness.instruments.sipp import CallResult
from pybin.dialog import DialogCreated, DialogMessage, DialogUpdated
from pybin.replica import DEFAULT_HASH_SIZE, ReplicaDialog, dlg_hash

#: MI prints ``timeout`` as ``time(0) + tl.timeout - get_ticks()`` (dlg_hash.c), two
#: clocks read at different instants, so it may be one second off the absolute
#: timeout a packet carries.
MI_TIMEOUT_SLACK = 1
#: two nodes' ``timeout`` of one dialog: each is `MI_TIMEOUT_SLACK` off the packet's, in
#: either direction (the backup converts the packet's absolute time to its own ticks on
#: receipt, dlg_replicated_create), so they may be two seconds apart (a 1.11.1 primary
#: and 1.10.5 backup were, once in three repeats of the matrix)
NODES_TIMEOUT_SLACK = 2 * MI_TIMEOUT_SLACK

ProfilesOrder = Literal["same", "reversed", "any"]


@dataclass(frozen=True)
class SipDialog:
    """The dialog as RFC 3261 §12.1 builds it from the caller's view of the call.

    Route sets are those a record-routing proxy at ``proxy_host`` keeps per leg:
    the Record-Route entries of the 200 OK *above* its own (added towards the
    callee), reversed into the order a request to the callee visits them, and those
    *below* it (towards the caller), as 1.10 joins them: ``<a>,<b>``.
    """

    call_id: str
    from_tag: str
    to_tag: str
    from_uri: str
    to_uri: str
    caller_contact: str
    callee_contact: str
    caller_route_set: str
    callee_route_set: str
    #: CSeq numbers of the caller's in-dialog requests that move the dialog's cseq
    #: (everything but ACK and CANCEL), in the order sent; the first is the INVITE's
    caller_cseqs: tuple[int, ...]
    #: the same for requests the callee sent (e.g. its BYE)
    callee_cseqs: tuple[int, ...]


class SipDialogError(HarnessError, ValueError):
    """The call's messages do not define a confirmed dialog (no INVITE or no 200 OK)."""


def uri_of(value: str) -> str:
    """The URI of a name-addr (``"x" <sip:a@b>;tag=1`` → ``sip:a@b``) or addr-spec."""
    if "<" in value:
        return value.split("<", 1)[1].split(">", 1)[0]
    return value.split(";", 1)[0].strip()


def split_header_list(values: Iterable[str]) -> list[str]:
    """Comma-separated header values split into entries; commas inside <> or quotes kept."""
    out: list[str] = []
    for value in values:
        depth, quoted, start = 0, False, 0
        for i, ch in enumerate(value):
            if ch == '"':
                quoted = not quoted
            elif not quoted and ch == "<":
                depth += 1
            elif not quoted and ch == ">":
                depth -= 1
            elif not quoted and depth == 0 and ch == ",":
                out.append(value[start:i].strip())
                start = i + 1
        tail = value[start:].strip()
        if tail:
            out.append(tail)
    return out


def _host_of(entry: str) -> str:
    uri = uri_of(entry)
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    rest = rest.split("@", 1)[1] if "@" in rest else rest
    return re.split(r"[:;>]", rest, maxsplit=1)[0]


def sip_dialog(call: CallResult, proxy_host: str) -> SipDialog:
    """Build the expected dialog from a caller-side `CallResult`."""
    sent = [m for m in call.messages if m.direction == "sent"]
    invite = next((m for m in sent if not m.is_response and m.method == "INVITE"), None)
    if invite is None:
        raise SipDialogError(f"call {call.call_id}: the caller sent no INVITE")
    icseq = invite.cseq[0]
    ok = next((m for m in call.messages if m.direction == "received" and m.code == 200
               and m.cseq == (icseq, "INVITE")), None)
    if ok is None:
        raise SipDialogError(f"call {call.call_id}: no 200 OK to the initial INVITE")
    record_route = split_header_list(ok.headers("Record-Route"))
    own = [i for i, e in enumerate(record_route) if _host_of(e) == proxy_host]
    if not own:
        raise SipDialogError(f"call {call.call_id}: no Record-Route of {proxy_host} in the 200 OK")
    above, below = record_route[:own[0]], record_route[own[-1] + 1:]
    return SipDialog(
        call_id=invite.call_id,
        from_tag=invite.from_tag or "",
        to_tag=ok.to_tag or "",
        from_uri=uri_of(invite.header("From") or ""),
        to_uri=uri_of(invite.header("To") or ""),
        caller_contact=uri_of(invite.header("Contact") or ""),
        callee_contact=uri_of(ok.header("Contact") or ""),
        caller_route_set=",".join(below),
        callee_route_set=",".join(reversed(above)),
        caller_cseqs=_cseqs(sent),
        callee_cseqs=_cseqs(m for m in call.messages if m.direction == "received"),
    )


def _cseqs(messages: Iterable[SipMessage]) -> tuple[int, ...]:
    out: list[int] = []
    for m in messages:
        if m.is_response or m.method in ("ACK", "CANCEL"):
            continue
        n = m.cseq[0]
        if not out or out[-1] != n:  # a retransmission repeats the number
            out.append(n)
    return tuple(out)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "backslashreplace")


def _check(diffs: list[str], what: str, got: object, want: object) -> None:
    if got != want:
        diffs.append(f"{what}: {got!r} != {want!r}")


def diff_message_sip(msg: DialogMessage, sip: SipDialog, *, socket: str,
                     callee_cseq: int | None = None, caller_cseq: int = 0) -> list[str]:
    """A replicated message against the SIP dialog.

    ``socket`` is the proxy's SIP socket string (``udp:VIP:5060``), both legs' local
    socket. ``callee_cseq`` is the callee leg's cseq the packet should carry: the
    CSeq of the caller's latest request (1.10 stores it on the leg the request goes
    to); default the initial INVITE's. ``caller_cseq`` likewise for requests from the
    callee; 1.10 starts it at 0.
    """
    diffs: list[str] = []
    _check(diffs, "call_id", _text(msg.call_id), sip.call_id)
    _check(diffs, "from_tag", _text(msg.from_tag), sip.from_tag)
    _check(diffs, "to_tag", _text(msg.to_tag), sip.to_tag)
    if not isinstance(msg, (DialogCreated, DialogUpdated)):
        return diffs
    want_callee = sip.caller_cseqs[0] if callee_cseq is None else callee_cseq
    _check(diffs, "from_uri", _text(msg.from_uri), sip.from_uri)
    _check(diffs, "to_uri", _text(msg.to_uri), sip.to_uri)
    _check(diffs, "caller_sock", _text(msg.caller_sock), socket)
    _check(diffs, "callee_sock", _text(msg.callee_sock), socket)
    _check(diffs, "caller_cseq", _text(msg.caller_cseq), str(caller_cseq))
    _check(diffs, "callee_cseq", _text(msg.callee_cseq), str(want_callee))
    _check(diffs, "caller_contact", _text(msg.caller_contact), sip.caller_contact)
    _check(diffs, "callee_contact", _text(msg.callee_contact), sip.callee_contact)
    _check(diffs, "caller_route_set", _text(msg.caller_route_set), sip.caller_route_set)
    _check(diffs, "callee_route_set", _text(msg.callee_route_set), sip.callee_route_set)
    return diffs


def _profiles(pairs: Sequence[tuple[bytes, bytes]], order: ProfilesOrder) -> tuple[tuple[str, str], ...]:
    text = [(_text(n), _text(v)) for n, v in pairs]
    if order == "reversed":
        text.reverse()
    elif order == "any":
        text.sort()
    return tuple(text)


def _leg_diffs(diffs: list[str], which: str, leg: DialogLeg | None, tag: bytes, contact: bytes,
               cseq: bytes, route_set: bytes, sock: bytes) -> None:
    if leg is None:
        diffs.append(f"{which} leg missing in dlg_list")
        return
    _check(diffs, f"{which}.tag", leg.tag, _text(tag))
    _check(diffs, f"{which}.contact", leg.contact, _text(contact))
    _check(diffs, f"{which}.cseq", leg.cseq, _text(cseq))
    _check(diffs, f"{which}.route_set", leg.route_set, _text(route_set))
    _check(diffs, f"{which}.bind_addr", leg.bind_addr, _text(sock))


def diff_message_entry(msg: DialogCreated | DialogUpdated, entry: DialogEntry, *,
                       check_h_id: bool = True, profiles: ProfilesOrder = "same",
                       hash_size: int = DEFAULT_HASH_SIZE,
                       timeout_slack: int = MI_TIMEOUT_SLACK) -> list[str]:
    """A created/updated message against a node's dlg_list entry for that dialog.

    On the sender, ``h_id`` and the profile order are the packet's (``check_h_id``,
    ``profiles="same"``); a 1.10 backup renumbers ``h_id`` and prepends each profile
    link, so against a backup pass ``check_h_id=False, profiles="reversed"``.
    ``h_entry`` is always exact: it is the Call-ID's hash.
    """
    diffs: list[str] = []
    _check(diffs, "callid", entry.callid, _text(msg.call_id))
    _check(diffs, "from_uri", entry.from_uri, _text(msg.from_uri))
    _check(diffs, "to_uri", entry.to_uri, _text(msg.to_uri))
    _check(diffs, "h_entry", entry.h_entry, dlg_hash(msg.call_id, hash_size))
    if check_h_id:
        _check(diffs, "h_id", entry.h_id, msg.h_id)
    _check(diffs, "state", entry.state, int(msg.state))
    _check(diffs, "timestart", entry.timestart, msg.start_ts)
    _check(diffs, "user_flags", entry.user_flags, msg.user_flags)
    if abs(entry.timeout - msg.timeout) > timeout_slack:
        diffs.append(f"timeout: {entry.timeout} is more than {timeout_slack}s from {msg.timeout}")
    _leg_diffs(diffs, "caller", entry.caller, msg.from_tag, msg.caller_contact, msg.caller_cseq,
               msg.caller_route_set, msg.caller_sock)
    _leg_diffs(diffs, "callee", entry.callee, msg.to_tag, msg.callee_contact, msg.callee_cseq,
               msg.callee_route_set, msg.callee_sock)
    if len(entry.callees) != 1:
        diffs.append(f"callee legs: {len(entry.callees)} != 1")
    if entry.vars is not None:
        _check(diffs, "vars", entry.vars, {_text(n): _text(v) for n, v in msg.vars})
    if entry.profiles is not None:
        got = tuple(sorted(entry.profiles)) if profiles == "any" else entry.profiles
        _check(diffs, "profiles", got, _profiles(msg.profiles, profiles))
    return diffs


def diff_entries(got: DialogEntry, want: DialogEntry, *, ignore: Iterable[str] = ("h_id",),
                 profiles: ProfilesOrder = "same",
                 timeout_slack: int = NODES_TIMEOUT_SLACK) -> list[str]:
    """Two nodes' dlg_list entries of one dialog (e.g. backup against primary).

    ``ignore`` names DialogEntry fields not compared (a backup's h_id is its own).
    ``profiles="reversed"`` expects ``got`` to list the profiles in the opposite
    order: a 1.10 backup prepends each replicated profile link.
    """
    skip = set(ignore)
    diffs: list[str] = []
    for name in ("h_entry", "h_id", "state", "user_flags", "timestart", "callid",
                 "from_uri", "to_uri", "caller", "callees", "vars"):
        if name not in skip:
            _check(diffs, name, getattr(got, name), getattr(want, name))
    if "timeout" not in skip and abs(got.timeout - want.timeout) > timeout_slack:
        diffs.append(f"timeout: {got.timeout} is more than {timeout_slack}s from {want.timeout}")
    if "profiles" not in skip and want.profiles is not None and got.profiles is not None:
        wanted = want.profiles
        if profiles == "reversed":
            wanted = tuple(reversed(wanted))
        elif profiles == "any":
            wanted = tuple(sorted(wanted))
        have = tuple(sorted(got.profiles)) if profiles == "any" else got.profiles
        _check(diffs, "profiles", have, wanted)
    return diffs


def diff_replica_entry(dlg: ReplicaDialog, entry: DialogEntry, *, check_h_id: bool = False,
                       timeout_slack: int = MI_TIMEOUT_SLACK) -> list[str]:
    """pybin's reference backup against a real backup's dlg_list entry.

    The replica keeps the sender's h_id (1.10's renumbering depends on ``rand()``),
    so ``check_h_id`` is off by default. Vars and profiles are compared in the
    replica's list order, which models the backup's prepending.
    """
    diffs: list[str] = []
    _check(diffs, "callid", entry.callid, _text(dlg.call_id))
    _check(diffs, "from_uri", entry.from_uri, _text(dlg.from_uri))
    _check(diffs, "to_uri", entry.to_uri, _text(dlg.to_uri))
    _check(diffs, "h_entry", entry.h_entry, dlg.h_entry)
    if check_h_id:
        _check(diffs, "h_id", entry.h_id, dlg.h_id)
    _check(diffs, "state", entry.state, int(dlg.state))
    _check(diffs, "timestart", entry.timestart, dlg.start_ts)
    _check(diffs, "user_flags", entry.user_flags, dlg.user_flags)
    want_timeout = dlg.expires_at or 0
    if abs(entry.timeout - want_timeout) > timeout_slack:
        diffs.append(f"timeout: {entry.timeout} is more than {timeout_slack}s from {want_timeout}")
    _leg_diffs(diffs, "caller", entry.caller, dlg.from_tag, dlg.caller_contact, dlg.caller_cseq,
               dlg.caller_route_set, dlg.caller_sock)
    _leg_diffs(diffs, "callee", entry.callee, dlg.to_tag, dlg.callee_contact, dlg.callee_cseq,
               dlg.callee_route_set, dlg.callee_sock)
    if entry.vars is not None:
        _check(diffs, "vars", entry.vars, {_text(n): _text(v) for n, v in dlg.vars})
    if entry.profiles is not None:
        _check(diffs, "profiles", entry.profiles, _profiles(dlg.profiles, "same"))
    return diffs


def command_states(messages: Iterable[DialogMessage]) -> list[tuple[int, int | None]]:
    """``[(command, state), ...]`` of one dialog's packets; deleted has no state (None)."""
    return [(int(m.command), int(m.state) if isinstance(m, (DialogCreated, DialogUpdated)) else None)
            for m in messages]


def sequence_ok(sequence: Sequence[tuple[int, int | None]],
                middle: Sequence[tuple[int, int | None]] = ((2, 4),), *,
                created_required: bool = True) -> bool:
    """A confirmed call's packets as one destination received them.

    ``created(3)``, then exactly ``middle`` (first the ACK's ``updated(4)``), then
    ``deleted``. On 1.10.5 the 200 OK and the ACK are handled by different SIP
    worker processes, each sending to every destination in turn, so ``created`` may
    also arrive right after the ACK's ``updated`` (observed: one destination got
    created, updated while another got updated, created). A created serialised after
    the ACK's state change carries state 4 (observed), so created is (1, 3) or (1, 4).

    ``created_required=False`` also accepts a call without created: tm runs the
    dialog's RESPONSE_OUT callback after sending the 200 OK, and it replicates created
    only while the state is still 3, so when another worker handles the ACK first no
    created is sent at all (1.10.5 dlg_handlers.c/t_reply.c; measured: 4 of 420 calls,
    tests/README.md). A caller that allows it must bound how many calls lack one: a
    primary that never replicates created also produces such sequences.
    """
    tail = [*middle, (3, None)]
    seq = list(sequence)
    if not created_required and seq == tail:
        return True
    for at in (0, 1):
        if len(seq) == len(tail) + 1 and seq[at] in ((1, 3), (1, 4)):
            if seq[:at] + seq[at + 1:] == tail:
                return True
    return False


__all__ = [
    "MI_TIMEOUT_SLACK",
    "SipDialog",
    "SipDialogError",
    "command_states",
    "diff_entries",
    "diff_message_entry",
    "diff_message_sip",
    "diff_replica_entry",
    "sequence_ok",
    "sip_dialog",
    "split_header_list",
    "uri_of",
]
