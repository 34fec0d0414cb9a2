"""Where a backup of another OpenSIPS release applies dialog packets differently.

pybin's codec is the same for every release from 1.10.0 to 2.1.5 (the dialog
packet's ``bin_push_*`` lines never changed). What changed is what a *backup* does
with the packets in ``dlg_replicated_create`` / ``_update`` (dlg_replication.c).
``Replica(..., release=V)`` applies release V's rules; the baseline is 1.10.5.

The rules are data: ``CHANGES`` has one row per difference from the baseline and
per branch (release ranges, the upstream commit that explains it, one sentence),
and ``rules_for(V)`` turns the rows that cover V into a ``BackupRules``. Every row
was read in the tagged sources (``dlg_replication.c`` of each branch point:
1.10.2/1.10.3, 1.11.2/1.11.3, 1.11.9/1.11.10). 2.1.0-2.1.5 need no row: their backup
side is 1.10.5's (master had its own copies of the 1.10.3 fixes: the dialog is
linked under ``d_entry->next_id++`` after the pops, an ``updated``'s timeout is popped
in order less ``time(0)``, a failed create goes to ``pre_linking_error``, pinging is
commented out), and 1.11.10's h_id change never reached 2.1.

Pure data and string handling: nothing here imports the harness.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

#: the release whose backup ``Replica`` models when none is named
BASELINE = "1.10.5"

#: every release whose rules are known: upstream tags 1.10.0-1.10.5, 1.11.0-1.11.11, 2.1.0-2.1.5
RELEASES: tuple[str, ...] = tuple(
    [f"1.10.{n}" for n in range(6)] + [f"1.11.{n}" for n in range(12)] + [f"2.1.{n}" for n in range(6)]
)

_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")


def version_key(version: str) -> tuple[int, int, int]:
    """``"1.10.2"`` -> (1, 10, 2); ValueError when not x.y.z."""
    m = _VERSION.match(version.strip())
    if not m:
        raise ValueError(f"{version!r} is not a release number like 1.10.5")
    return (int(m[1]), int(m[2]), int(m[3]))


def in_range(version: str, spec: str) -> bool:
    """Whether ``version`` is in ``spec``: ``"1.10.0-1.10.2"``, ``"1.11.10+"`` (the rest
    of that branch only), ``"1.10.3"``, or several of those joined by commas."""
    v = version_key(version)
    for part in (p.strip() for p in spec.split(",")):
        if part.endswith("+"):
            low = version_key(part[:-1])
            if v[:2] == low[:2] and v >= low:
                return True
        elif "-" in part:
            lo, hi = (version_key(x) for x in part.split("-", 1))
            if lo <= v <= hi:
                return True
        elif part and v == version_key(part):
            return True
    return False


@dataclass(frozen=True)
class RuleChange:
    """One known difference of a backup from the baseline's: which ``BackupRules`` flag
    it sets, in which releases, and the upstream commit that explains it."""

    #: the ``BackupRules`` field this row sets to True
    rule: str
    #: release ranges, as ``in_range`` reads them
    releases: str
    #: the upstream commit (40 hex digits) whose presence or absence makes the difference
    commit: str
    #: what the backup does, in one sentence
    note: str


CHANGES: tuple[RuleChange, ...] = (
    RuleChange(
        "keeps_h_id", "1.10.0-1.10.2", "4e8f2730d9ac6731a01b211e9c974e3d1238d14d",
        "The dialog is linked (h_id = next_id++) before the packet's h_id is popped over it, so "
        "the backup keeps the primary's h_id; this commit (1.10.3) moved the linking after the "
        "pop, which renumbers to max(next_id, h_id + 1)."),
    RuleChange(
        "keeps_h_id", "1.11.0-1.11.2", "c9b39731c4669bc2d91182bb6130cc1e88286b8a",
        "As on 1.10.0-1.10.2: the primary's h_id is kept until this commit (1.11.3) moved the "
        "linking after the pop."),
    RuleChange(
        "keeps_h_id", "1.11.10+", "b51eab998926c3fecb3710b968835873900b917c",
        "\"Fix incorrect replicated dialog ids\" drops h_id = next_id++ from the linking, so the "
        "backup keeps the primary's h_id again (next_id only follows the maximum)."),
    RuleChange(
        "update_timeout_ignored", "1.10.0-1.10.2", "837032b63b092b45cae64668fd56e6e7cb3d7184",
        "An updated's timeout (field 23) is skipped and the callee's last_gen_cseq (field 25) is "
        "read as a relative timeout instead, so the expiry stays where the created put it unless "
        "that cseq is non-zero; this commit (with c19fc9c1, both 1.10.3) reads field 23 and "
        "subtracts time(0)."),
    RuleChange(
        "update_timeout_ignored", "1.11.0-1.11.2", "819d49e0a856a7e5c1cb5a834f6ac05d99e0d4d8",
        "As on 1.10.0-1.10.2: field 25 is read as the timeout until this commit (with 4c08b62c, "
        "both 1.11.3)."),
    RuleChange(
        "failed_create_stays_linked", "1.10.0-1.10.2", "4e8f2730d9ac6731a01b211e9c974e3d1238d14d",
        "A dialog refused for its sockets is already linked and is left in the table without "
        "legs, so the next lookup of that Call-ID (any later packet for it) dereferences NULL "
        "legs and the node dies; this commit (1.10.3) destroys it before linking."),
    RuleChange(
        "failed_create_stays_linked", "1.11.0-1.11.2", "c9b39731c4669bc2d91182bb6130cc1e88286b8a",
        "As on 1.10.0-1.10.2: the leg-less dialog stays linked until this commit (1.11.3)."),
    RuleChange(
        "ping_flags_hang", "1.10.0-1.10.2", "837032b63b092b45cae64668fd56e6e7cb3d7184",
        "A dialog with PING_CALLER/PING_CALLEE is put in the ping timer and then ref_dlg() takes "
        "the bucket lock the receiver already holds, so the BIN receiver deadlocks; this commit "
        "(1.10.3) stops pinging replicated dialogs."),
    RuleChange(
        "ping_flags_hang", "1.11.0-1.11.2", "819d49e0a856a7e5c1cb5a834f6ac05d99e0d4d8",
        "As on 1.10.0-1.10.2: the receiver deadlocks on ping flags until this commit (1.11.3)."),
)


@dataclass(frozen=True)
class BackupRules:
    """How a backup of ``release`` applies dialog packets, where releases differ.

    Every flag is False on the baseline (1.10.5); ``CHANGES`` sets the others.
    """

    release: str
    #: the backup's h_id is the packet's; otherwise it is renumbered to
    #: ``max(bucket next_id, h_id + 1)`` with next_id seeded by ``rand()``
    keeps_h_id: bool = False
    #: an updated does not move the expiry to its timeout field; the callee's
    #: ``last_gen_cseq`` is taken as a relative timeout instead (0: no change)
    update_timeout_ignored: bool = False
    #: a create refused for its sockets leaves a leg-less dialog linked: any later
    #: packet with that Call-ID (and MI dlg_list) crashes the node
    failed_create_stays_linked: bool = False
    #: a dialog with ping flags deadlocks the BIN receiver (the node stops applying)
    ping_flags_hang: bool = False

    @property
    def changes(self) -> tuple[RuleChange, ...]:
        """The rows of ``CHANGES`` that make this release differ from the baseline."""
        return tuple(c for c in CHANGES if in_range(self.release, c.releases))

    def explain(self, rule: str) -> RuleChange | None:
        """The row behind ``rule`` for this release (None where it is as the baseline)."""
        return next((c for c in self.changes if c.rule == rule), None)


RULE_NAMES: tuple[str, ...] = tuple(f.name for f in fields(BackupRules) if f.name != "release")


def rules_for(release: str) -> BackupRules:
    """The backup rules of ``release``; ValueError naming the known releases otherwise."""
    if not isinstance(release, str) or release.strip() not in RELEASES:
        raise ValueError(f"no backup rules for OpenSIPS release {release!r} "
                         f"(known: {RELEASES[0]}-1.10.5, 1.11.0-1.11.11, 2.1.0-{RELEASES[-1]})")
    release = release.strip()
    flags = {c.rule: True for c in CHANGES if in_range(release, c.releases)}
    return BackupRules(release, **flags)


__all__ = [
    "BASELINE",
    "CHANGES",
    "RELEASES",
    "RULE_NAMES",
    "BackupRules",
    "RuleChange",
    "in_range",
    "rules_for",
    "version_key",
]
