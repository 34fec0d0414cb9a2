"""A node's location table against what it should hold: ``ul`` packets counted, a
``ul_dump`` compared field by field with pybin's registrar replica or with the SIP
REGISTERs that made it. Pure: the callers fetch the dump, the packets and the time.

Why here and not in a test: the live conformance checks, the failover with
registrations and the version matrix all ask the same questions of a usrloc node
(how many ``ul`` packets of each command, does its table equal the replica's), and
the answer must be computed one way.

A dump's Expires is relative to the node's ``time(0)`` while it answered: callers pass
the time taken just before the request (``at``) and the seconds the request took
(``took``), so a binding's absolute expiry may be off by up to ``took`` + 1 s.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from harness.instruments.mi_usrloc import UlContact, UlDomain
from pybin import usrloc
from pybin.bindings import Binding
from pybin.registrar import RecordKey
from pybin.usrloc import UlCommand
from pybin.wire import Packet

#: the words `ul_commands` counts by, in command order
COMMAND_WORDS = tuple(c.word for c in UlCommand)


def ul_commands(packets: Iterable[Packet]) -> dict[str, int]:
    """``{"record_insert": n, ...}`` for the ``ul`` packets among ``packets`` (every
    command named, 0 included), by the command number on the wire: a packet whose
    fields do not decode still counts."""
    counts = Counter(UlCommand(p.command).word for p in packets
                     if p.module == usrloc.MODULE_NAME and p.command in tuple(UlCommand))
    return {word: counts.get(word, 0) for word in COMMAND_WORDS}


def valid_contacts(domain: UlDomain) -> dict[str, tuple[UlContact, ...]]:
    """AOR → the bindings a lookup would find: those ``ul_dump`` shows with seconds left
    (or permanent); AORs left without any are left out, as the replica's snapshot does."""
    out = {}
    for record in domain.aors:
        valid = tuple(c for c in record.contacts if c.expires_text not in ("expired", "deleted", "0"))
        if valid:
            out[record.aor] = valid
    return out


def binding_diffs(entry: UlContact, binding: Binding, *, at: float, took: float = 0.0,
                  cflag_names: Mapping[int, str] | None = None) -> list[str]:
    """``field: node's ≠ replica's`` for every field ``ul_dump`` shows of one binding.

    ``cflag_names``: branch-flag bit → the script's name for it (MI prints names only;
    the harness's template names none, so any cflags print as nothing).
    """
    names = cflag_names or {}
    want = {
        "contact": binding.contact.decode("utf-8", "replace"),
        "q": usrloc.q_text(binding.q),
        "callid": binding.call_id.decode("utf-8", "replace"),
        "cseq": binding.cseq,
        "user_agent": binding.user_agent.decode("utf-8", "replace"),
        "received": binding.received.decode("utf-8", "replace"),
        "path": binding.path.decode("utf-8", "replace"),
        "state": "CS_NEW",  # db_mode 0: a binding is never synced to a database
        "flags": binding.flags,
        "cflags": tuple(n for bit, n in sorted(names.items()) if binding.cflags & bit),
        "socket": (binding.sock or b"").decode("utf-8", "replace"),
        "methods": binding.methods,
        "attr": binding.attr.decode("utf-8", "replace"),
        "sip_instance": binding.instance.decode("utf-8", "replace"),
    }
    diffs = [f"{field}: {getattr(entry, field)!r} ≠ {value!r}" for field, value in want.items()
             if getattr(entry, field) != value]
    if binding.expires == 0:
        if entry.expires_text != "permanent":
            diffs.append(f"expires: {entry.expires_text!r} ≠ 'permanent'")
    elif entry.expires is None:
        diffs.append(f"expires: {entry.expires_text!r} ≠ {binding.expires - at:.0f} s left")
    elif not binding.expires - at - took - 1 <= entry.expires <= binding.expires - at + 1:
        diffs.append(f"expires: {entry.expires} s left ≠ {binding.expires - at:.1f} (at {at:.1f})")
    return diffs


def table_diffs(domain: UlDomain, snapshot: Mapping[RecordKey, Sequence[Binding]], *, at: float,
                took: float = 0.0, cflag_names: Mapping[int, str] | None = None) -> list[str]:
    """Where one ``ul_dump`` table differs from the replica's ``snapshot(now=at)``: AORs,
    bindings in list order, every field. Empty when they are the same."""
    theirs = valid_contacts(domain)
    ours = {key.aor.decode("utf-8", "replace"): bindings for key, bindings in snapshot.items()
            if key.domain.decode("utf-8", "replace") == domain.name}
    diffs = []
    if set(theirs) != set(ours):
        diffs.append(f"AORs: only on the node {sorted(set(theirs) - set(ours))}, "
                     f"only in the replica {sorted(set(ours) - set(theirs))}")
    for aor in sorted(set(theirs) & set(ours)):
        node, replica = theirs[aor], ours[aor]
        if [c.contact for c in node] != [b.contact.decode("utf-8", "replace") for b in replica]:
            diffs.append(f"{aor}: bindings {[c.contact for c in node]} ≠ "
                         f"{[b.contact.decode('utf-8', 'replace') for b in replica]}")
            continue
        for entry, binding in zip(node, replica):
            diffs += [f"{aor} {entry.contact}: {d}"
                      for d in binding_diffs(entry, binding, at=at, took=took, cflag_names=cflag_names)]
    return diffs

