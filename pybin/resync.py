"""A ``created`` for a dialog as a running 1.x node lists it: the packet of a resync.

A 1.x backup starts empty, and no 1.x primary ever sends it the dialogs already up:
after a backup restart every call set up before it is lost at the next failover. A
resync reads the primary's live dialogs (MI ``dlg_list_ctx``) and sends each to the
backup as a ``created``, which a 1.x backup builds like any other (and ignores for a
dialog it already has). pybin has no MI client; this module is the pure half: the
dialog as MI shows it (``LiveDialog``, legs already sorted out) → ``DialogCreated``.

**What MI cannot give.** 1.10.5's ``internal_mi_print_dlg`` (``dlg_hash.c``) prints
h_entry:h_id, state, user_flags, timestart, timeout, callid, from_uri, to_uri, and
per leg its tag, contact, cseq, route set and socket; ``dlg_list_ctx`` adds the vars
and profiles. It never prints the fields in ``MI_CANNOT_GIVE``, so a resync has to
choose them; what each choice costs is written beside it. Two more things to know:
MI labels the caller leg's cseq ``callee_cseq`` and a callee leg's ``caller_cseq``
(here each cseq stays with its leg), and it prints every callee leg without saying
which one answered 200 (a forked call lists several; the last one printed is the
one a resync takes).
"""

from __future__ import annotations

from dataclasses import dataclass

from .dialog import DialogCreated, DlgFlag, DlgState

#: the fields of a created that MI does not print: what a resync sends, and what it costs
MI_CANNOT_GIVE: dict[str, str] = {
    "flags": "internal flags (BYE on timeout, pinging, topology hiding): the resync sends "
             "ISINIT plus the create_dialog() flags it is told (--create-flags); told wrong, "
             "the backup's copy ends differently on timeout or pings differently",
    "callee_from_uri": "From as mangled towards the callee (uac_replace_from): sent empty, so "
                       "requests the backup itself sends the callee (BYE on timeout) carry the "
                       "unmangled From",
    "callee_to_uri": "To as mangled towards the callee: sent empty, as callee_from_uri",
    "caller_last_gen_cseq": "the last cseq the node generated towards the caller (pings, "
                            "BYE on timeout): sent 0, so the backup renumbers nothing; harmless "
                            "without ping flags, a cseq the caller may refuse with them",
    "callee_last_gen_cseq": "as caller_last_gen_cseq, towards the callee",
    "h_id": "printed, but a 1.10.3+ backup gives every dialog it accepts its own h_id "
            "anyway (dlg_match_mode 1 is needed after any failover)",
}

#: create_dialog() flag letters of 1.10 (dialog.c) → DLG_FLAG_*
CREATE_FLAGS = {"B": DlgFlag.BYEONTIMEOUT, "P": DlgFlag.PING_CALLER, "p": DlgFlag.PING_CALLEE}
#: states worth re-sending: a confirmed dialog (1.10.5 primaries replicate no other)
RESYNC_STATES = (DlgState.CONFIRMED_NA, DlgState.CONFIRMED)


def flags_for(create_flags: str) -> int:
    """The internal flags a dialog created with ``create_dialog("<create_flags>")`` holds
    once its INVITE was handled (ISINIT is set by dlg_onreq for every dialog)."""
    flags = DlgFlag.ISINIT
    for letter in create_flags:
        if letter not in CREATE_FLAGS:
            raise ValueError(f"create_dialog flag {letter!r} is not one of {', '.join(CREATE_FLAGS)}")
        flags |= CREATE_FLAGS[letter]
    return int(flags)


@dataclass(frozen=True)
class LiveLeg:
    """One leg of a live dialog: what MI prints for it (its own cseq, whatever the label)."""

    tag: bytes
    contact: bytes = b""
    cseq: bytes = b""
    route_set: bytes = b""
    #: the node's socket for this leg, e.g. ``udp:10.0.0.100:5060``
    socket: bytes = b""


@dataclass(frozen=True)
class LiveDialog:
    """A dialog as a running node lists it (MI ``dlg_list_ctx``)."""

    call_id: bytes
    from_uri: bytes
    to_uri: bytes
    h_id: int
    state: int
    user_flags: int
    start_ts: int
    #: absolute expiry, unix seconds (0: no timer armed)
    timeout: int
    caller: LiveLeg
    callee: LiveLeg
    vars: tuple[tuple[bytes, bytes], ...] = ()
    #: (profile, value), value b"" for a profile without one
    profiles: tuple[tuple[bytes, bytes], ...] = ()


def created_for(dialog: LiveDialog, *, flags: int = DlgFlag.ISINIT) -> DialogCreated:
    """The ``created`` a primary would have sent for ``dialog``, with ``flags`` and the
    choices of ``MI_CANNOT_GIVE`` for what MI does not show.

    Vars and profiles go in the order MI listed them: the node keeps them newest first,
    and the backup prepends each as it reads them, so its copy lists them the other way
    round (the values are the same; order is not part of a dialog's behaviour).
    """
    return DialogCreated(
        call_id=dialog.call_id, from_tag=dialog.caller.tag, to_tag=dialog.callee.tag,
        from_uri=dialog.from_uri, to_uri=dialog.to_uri, h_id=dialog.h_id,
        start_ts=dialog.start_ts, state=dialog.state,
        caller_sock=dialog.caller.socket, callee_sock=dialog.callee.socket,
        caller_cseq=dialog.caller.cseq, callee_cseq=dialog.callee.cseq,
        caller_route_set=dialog.caller.route_set, callee_route_set=dialog.callee.route_set,
        caller_contact=dialog.caller.contact, callee_contact=dialog.callee.contact,
        callee_from_uri=b"", callee_to_uri=b"",
        vars=tuple(dialog.vars), profiles=tuple(dialog.profiles),
        user_flags=dialog.user_flags, flags=flags, timeout=dialog.timeout,
        caller_last_gen_cseq=0, callee_last_gen_cseq=0,
    )


__all__ = ["CREATE_FLAGS", "MI_CANNOT_GIVE", "RESYNC_STATES", "LiveDialog", "LiveLeg", "created_for",
           "flags_for"]
