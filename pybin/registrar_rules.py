"""Where a usrloc backup of another release applies ``ul`` packets differently.

The ``ul`` packet is the same in every release that has it (1.11.0-1.11.11,
2.1.0-2.1.5: ``replicate_*`` never changed). What changed is what a *backup* does with
the packets: ``receive_ucontact_insert`` / ``_update`` in ``ureplication.c`` and the
functions they call (``new_ucontact``, ``mem_update_ucontact`` in ``ucontact.c``).
``Registrar(..., release=V)`` applies release V's rules; the baseline is 1.11.11.

Same shape as ``pybin.rules`` (the dialog's table): ``CHANGES`` has one row per
difference from the baseline and per branch (release ranges, the upstream commit
whose presence or absence explains it, one sentence); ``rules_for(V)`` turns the rows
that cover V into a ``RegistrarRules``. Each row was read in the tagged sources at
its branch points (1.11.2/1.11.3, 1.11.5/1.11.6, 1.11.8/1.11.9, 1.11.9/1.11.10,
2.1.1/2.1.2, 2.1.4/2.1.5).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .rules import RuleChange, in_range

#: the release whose backup ``Registrar`` models when none is named
BASELINE = "1.11.11"

#: every release with usrloc replication: upstream tags 1.11.0-1.11.11 and 2.1.0-2.1.5
RELEASES: tuple[str, ...] = tuple([f"1.11.{n}" for n in range(12)] + [f"2.1.{n}" for n in range(6)])

CHANGES: tuple[RuleChange, ...] = (
    RuleChange(
        "refuses_foreign_socket", "1.11.0-1.11.9", "e643bcfe2b23360a85c204748dac5f1cf6f2e7b2",
        "A contact insert or update whose socket is not one of the backup's own (grep_sock_info "
        "finds none) is refused with 'non-local socket'; this commit (1.11.10, \"do not ignore "
        "contacts that don't match a listener\") stores it without a socket instead."),
    RuleChange(
        "refuses_foreign_socket", "2.1.0-2.1.5", "3b99412c9c5cff30baa9bcd0aeba71a2c5a63267",
        "As on 1.11.0-1.11.9: the 2.x form of the fix came with 2.3.0, so every 2.1 backup refuses "
        "a contact on a socket it does not listen on (or advertise)."),
    RuleChange(
        "takes_stale_updates", "1.11.0-1.11.8", "cdc4f6abd9e62bfce7ad80832137af7f8c100fa9",
        "An update for a binding the backup holds with a newer CSeq is applied anyway: get_ucontact "
        "-1 (older CSeq) inserts a second binding for the same contact, and -2 (the same CSeq "
        "within cseq_delay) calls update_ucontact with a NULL contact, which kills the node; this "
        "commit (1.11.9, \"fix race between update for different registers\") skips both."),
    RuleChange(
        "takes_stale_updates", "2.1.0-2.1.4", "c274d8dc52ae61567624b3f789645cee44ed2720",
        "As on 1.11.0-1.11.8, until this commit (2.1.5)."),
    RuleChange(
        "keeps_call_id_on_update", "1.11.0-1.11.2", "f4f6028e8ccd42d19d91e4511e3860af39f0af11",
        "mem_update_ucontact leaves the binding's Call-ID as its insert set it (\"constant per "
        "ucontact\"); this commit (1.11.3, \"Always update the call ID\") copies the update's."),
    RuleChange(
        "stores_unparsable_contact", "1.11.0-1.11.5", "7f37f0545b0abd74f237c7ea520662ea04b40293",
        "new_ucontact stores a contact whose own URI does not parse as long as its next hop (Path, "
        "else received) does; this commit (1.11.6, \"modify invalid contacts behaviour\") refuses it."),
    RuleChange(
        "stores_unparsable_contact", "2.1.0-2.1.1", "ef76542b84b2e3b7a682d96f34bab1ce216766d6",
        "As on 1.11.0-1.11.5, until this commit (2.1.2)."),
)


@dataclass(frozen=True)
class RegistrarRules:
    """How a usrloc backup of ``release`` applies ``ul`` packets, where releases differ.

    Every flag is False on the baseline (1.11.11); ``CHANGES`` sets the others.
    """

    release: str
    #: a contact on a socket the backup does not have is refused (baseline: stored without one)
    refuses_foreign_socket: bool = False
    #: an update older than the binding (get_ucontact -1) inserts a duplicate binding, one of
    #: the same CSeq within cseq_delay (-2) crashes the node (baseline: both skipped)
    takes_stale_updates: bool = False
    #: an update leaves the binding's Call-ID (baseline: takes the update's)
    keeps_call_id_on_update: bool = False
    #: only the next hop must parse, not the contact URI itself (baseline: both)
    stores_unparsable_contact: bool = False

    @property
    def changes(self) -> tuple[RuleChange, ...]:
        """The rows of ``CHANGES`` that make this release differ from the baseline."""
        return tuple(c for c in CHANGES if in_range(self.release, c.releases))

    def explain(self, rule: str) -> RuleChange | None:
        """The row behind ``rule`` for this release (None where it is as the baseline)."""
        return next((c for c in self.changes if c.rule == rule), None)


RULE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(RegistrarRules) if f.name != "release")


def rules_for(release: str) -> RegistrarRules:
    """The usrloc backup rules of ``release``; ValueError naming the known releases otherwise."""
    if not isinstance(release, str) or release.strip() not in RELEASES:
        raise ValueError(f"no usrloc replication in OpenSIPS release {release!r} "
                         f"(known: 1.11.0-1.11.11, 2.1.0-2.1.5)")
    release = release.strip()
    flags = {c.rule: True for c in CHANGES if in_range(release, c.releases)}
    return RegistrarRules(release, **flags)


__all__ = ["BASELINE", "CHANGES", "RELEASES", "RULE_NAMES", "RegistrarRules", "rules_for"]
