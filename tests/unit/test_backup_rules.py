"""Per-release backup rules: the table in pybin.rules and Replica(release=...) applying it."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybin.dialog import Command, DlgFlag, DlgState, make
from pybin.replica import Applied, Crashed, DialogKey, Rejected, Replica
from pybin.rules import (
    BASELINE,
    CHANGES,
    RELEASES,
    RULE_NAMES,
    BackupRules,
    in_range,
    rules_for,
    version_key,
)

VIP = "udp:10.0.0.100:5060"
NOW = 1_700_000_000
KEY = DialogKey(b"call-1@h", b"ftag", b"ttag")

#: what each rule's releases are, written out by hand (tags read in upstream's sources)
EXPECTED = {
    "keeps_h_id": {"1.10.0", "1.10.1", "1.10.2", "1.11.0", "1.11.1", "1.11.2", "1.11.10", "1.11.11"},
    "update_timeout_ignored": {"1.10.0", "1.10.1", "1.10.2", "1.11.0", "1.11.1", "1.11.2"},
    "failed_create_stays_linked": {"1.10.0", "1.10.1", "1.10.2", "1.11.0", "1.11.1", "1.11.2"},
    "ping_flags_hang": {"1.10.0", "1.10.1", "1.10.2", "1.11.0", "1.11.1", "1.11.2"},
}
OLD = sorted(EXPECTED["update_timeout_ignored"], key=version_key)
NEW = [v for v in RELEASES if v not in EXPECTED["update_timeout_ignored"]]


def msg(command: Command = Command.CREATED, **fields: Any) -> Any:
    base: dict[str, Any] = dict(
        call_id=KEY.call_id, from_tag=KEY.from_tag, to_tag=KEY.to_tag,
        from_uri=b"sip:alice@a", to_uri=b"sip:bob@b", h_id=7, start_ts=NOW - 5,
        state=DlgState.CONFIRMED_NA, caller_sock=VIP.encode(), callee_sock=VIP.encode(),
        caller_cseq=b"1", callee_cseq=b"0", caller_route_set=b"", callee_route_set=b"",
        caller_contact=b"sip:alice@1.1.1.1", callee_contact=b"sip:bob@2.2.2.2",
        callee_from_uri=b"", callee_to_uri=b"", vars=((b"acct", b"a"),),
        profiles=((b"caller", b"alice"),), user_flags=3, flags=int(DlgFlag.ISINIT),
        timeout=NOW + 3600, caller_last_gen_cseq=0, callee_last_gen_cseq=0)
    if command == Command.DELETED:
        base = {k: base[k] for k in ("call_id", "from_tag", "to_tag")}
    base.update(fields)
    return make(command, **base)


# -- the table -----------------------------------------------------------------------------


def test_releases_are_the_upstream_tags_and_the_baseline_is_one() -> None:
    assert RELEASES[0] == "1.10.0" and RELEASES[5] == "1.10.5" and RELEASES[17] == "1.11.11"
    assert len(RELEASES) == 24 and RELEASES[-1] == "2.1.5" and list(RELEASES) == sorted(RELEASES, key=version_key)
    assert BASELINE == "1.10.5"
    assert rules_for(BASELINE) == BackupRules("1.10.5") and rules_for(BASELINE).changes == ()


def test_every_row_is_well_formed() -> None:
    for row in CHANGES:
        assert row.rule in RULE_NAMES, row
        assert re.fullmatch(r"[0-9a-f]{40}", row.commit), row
        assert row.note.endswith(".") and row.note.count(". ") == 0, row  # one sentence
        for part in row.releases.split(","):
            for bound in part.rstrip("+").split("-"):
                assert bound in RELEASES, (row, bound)  # ranges name real tags only
        assert not in_range(BASELINE, row.releases), row


def test_no_two_rows_of_one_rule_overlap() -> None:
    for v in RELEASES:
        rules = [c.rule for c in CHANGES if in_range(v, c.releases)]
        assert len(rules) == len(set(rules)), v


@pytest.mark.parametrize("release", RELEASES)
def test_each_release_gets_exactly_the_expected_rules(release: str) -> None:
    rules = rules_for(release)
    assert rules.release == release
    for name in RULE_NAMES:
        assert getattr(rules, name) == (release in EXPECTED[name]), name
        row = rules.explain(name)
        assert (row is not None) == getattr(rules, name)


@pytest.mark.parametrize(("release", "commit"), [
    ("1.10.2", "4e8f2730d9ac6731a01b211e9c974e3d1238d14d"),
    ("1.11.1", "c9b39731c4669bc2d91182bb6130cc1e88286b8a"),
    ("1.11.10", "b51eab998926c3fecb3710b968835873900b917c"),
])
def test_h_id_rows_name_their_commit(release: str, commit: str) -> None:
    assert rules_for(release).explain("keeps_h_id").commit == commit  # type: ignore[union-attr]


@pytest.mark.parametrize(("release", "kept"), [
    # the boundaries of every range
    ("1.10.0", True), ("1.10.2", True), ("1.10.3", False), ("1.10.5", False),
    ("1.11.0", True), ("1.11.2", True), ("1.11.3", False), ("1.11.9", False),
    ("1.11.10", True), ("1.11.11", True),
    # 2.1 renumbers like 1.10.5: 1.11.10's change never reached it
    ("2.1.0", False), ("2.1.5", False),
])
def test_h_id_range_boundaries(release: str, kept: bool) -> None:
    assert rules_for(release).keeps_h_id is kept


@pytest.mark.parametrize("bad", ["1.10.6", "1.12.0", "2.1.6", "2.2.0", "1.10", "1.10.0beta", "", "latest",
                                 "1.11.12"])
def test_unknown_release_is_a_clear_value_error(bad: str) -> None:
    with pytest.raises(ValueError, match="no backup rules for OpenSIPS release"):
        rules_for(bad)
    with pytest.raises(ValueError, match="known: 1.10.0-1.10.5, 1.11.0-1.11.11, 2.1.0-2.1.5"):
        Replica([VIP], release=bad)


def test_in_range_forms() -> None:
    assert in_range("1.10.2", "1.10.0-1.10.2,1.11.0-1.11.2")
    assert not in_range("1.10.3", "1.10.0-1.10.2,1.11.0-1.11.2")
    assert in_range("1.11.11", "1.11.10+") and not in_range("1.11.9", "1.11.10+")
    assert not in_range("1.12.0", "1.11.10+")  # "+" is the rest of that branch only
    assert in_range("1.10.3", "1.10.3") and not in_range("1.10.4", "1.10.3")
    with pytest.raises(ValueError):
        version_key("1.10")


@given(st.sampled_from(RELEASES), st.sampled_from(RELEASES), st.sampled_from(RELEASES))
def test_in_range_agrees_with_ordering(v: str, a: str, b: str) -> None:
    lo, hi = sorted((a, b), key=version_key)
    assert in_range(v, f"{lo}-{hi}") == (version_key(lo) <= version_key(v) <= version_key(hi))
    assert in_range(v, f"{a}+") == (v.rsplit(".", 1)[0] == a.rsplit(".", 1)[0]
                                    and version_key(v) >= version_key(a))


# -- Replica applying them -----------------------------------------------------------------


def test_default_release_is_the_baseline() -> None:
    replica = Replica([VIP])
    assert (replica.release, replica.rules) == ("1.10.5", rules_for("1.10.5"))


@pytest.mark.parametrize("release", RELEASES)
def test_h_id_kept_or_renumbered(release: str) -> None:
    replica = Replica([VIP], release=release)
    replica.apply(msg(h_id=1000), now=NOW)
    (dlg,) = replica
    assert dlg.h_id == 1000 and dlg.h_id_kept is (release in EXPECTED["keeps_h_id"])
    if dlg.h_id_kept:
        assert dlg.h_id_matches(1000) and not dlg.h_id_matches(1001)
    else:
        # max(next_id, h_id + 1): never the primary's, never below it
        assert not dlg.h_id_matches(1000) and not dlg.h_id_matches(999)
        assert dlg.h_id_matches(1001) and dlg.h_id_matches(2_000_000_000)


def test_renumbered_h_id_at_uint_max_wraps_to_anything() -> None:
    replica = Replica([VIP])
    replica.apply(msg(h_id=0xFFFFFFFF), now=NOW)
    (dlg,) = replica
    assert dlg.h_id_matches(0) and dlg.h_id_matches(5)


@given(release=st.sampled_from(RELEASES), delta=st.integers(-100, 100_000),
       cseq=st.integers(0, 0xFFFFFFFF), later=st.integers(0, 1000))
def test_updated_timeout_applied_or_ignored(release: str, delta: int, cseq: int, later: int) -> None:
    replica = Replica([VIP], release=release)
    replica.apply(msg(timeout=NOW + 3600), now=NOW)
    now = NOW + later
    replica.apply(msg(Command.UPDATED, state=DlgState.CONFIRMED, timeout=now + delta,
                      callee_last_gen_cseq=cseq), now=now)
    (dlg,) = replica
    if release in EXPECTED["update_timeout_ignored"]:
        # field 25 read as the relative timeout; 0 equals lifetime 0: no change
        lifetime = cseq - (1 << 32) if cseq >= 1 << 31 else cseq
        assert dlg.lifetime == lifetime
        assert dlg.expires_at == (NOW + 3600 if cseq == 0 else now + lifetime)
    else:
        # the relative timeout equal to lifetime 0 (created's) leaves the timer alone
        assert dlg.lifetime == delta
        assert dlg.expires_at == (NOW + 3600 if delta == 0 else now + delta)
    assert dlg.state == DlgState.CONFIRMED  # the rest of the update is the same everywhere


@pytest.mark.parametrize("release", ["1.10.2", "1.10.3", "1.11.2", "1.11.3"])
def test_updated_last_gen_cseq_moves_the_expiry_only_where_ignored(release: str) -> None:
    replica = Replica([VIP], release=release)
    replica.apply(msg(), now=NOW)
    replica.apply(msg(Command.UPDATED, timeout=NOW + 60, callee_last_gen_cseq=700), now=NOW + 1)
    (dlg,) = replica
    assert dlg.expires_at == (NOW + 701 if release in OLD else NOW + 60)


@pytest.mark.parametrize("release", RELEASES)
def test_refused_create_stays_linked_and_the_next_lookup_crashes(release: str) -> None:
    replica = Replica([VIP], release=release)
    refused = replica.apply(msg(caller_sock=b"udp:1.2.3.4:5060"), now=NOW)
    assert isinstance(refused, Rejected) and len(replica) == 0
    assert replica.stats.create_recv == 1
    old = release in EXPECTED["failed_create_stays_linked"]
    assert replica.legless == ((KEY,) if old else ())
    # another Call-ID is unaffected (match_dialog compares the Call-ID first)
    other = replica.apply(msg(call_id=b"other@h"), now=NOW)
    assert isinstance(other, Applied)
    again = replica.apply(msg(Command.UPDATED, state=DlgState.CONFIRMED), now=NOW)
    if old:
        assert isinstance(again, Crashed) and not again.hung and "SIGSEGV" in again.reason
        assert replica.down is not None
        assert replica.stats.update_recv == 0  # the handler never returned
        later = replica.apply(msg(Command.DELETED, call_id=b"other@h"), now=NOW)
        assert isinstance(later, Crashed) and "the node is down" in later.reason
        assert len(replica) == 1  # the other dialog is not ended by a dead node
    else:
        assert isinstance(again, Applied) and again.created and replica.down is None


@pytest.mark.parametrize("release", RELEASES)
@pytest.mark.parametrize("flag", [DlgFlag.PING_CALLER, DlgFlag.PING_CALLEE])
def test_ping_flags_hang_the_receiver_only_where_the_rule_says(release: str, flag: DlgFlag) -> None:
    replica = Replica([VIP], release=release)
    outcome = replica.apply(msg(flags=int(DlgFlag.ISINIT | flag)), now=NOW)
    stats = replica.stats
    if release in EXPECTED["ping_flags_hang"]:
        assert isinstance(outcome, Crashed) and outcome.hung
        # processed on entry; create_recv and active_dialogs never reached
        assert (stats.processed_dialogs, stats.create_recv, stats.active_dialogs) == (1, 0, 0)
        assert isinstance(replica.apply(msg(call_id=b"next@h"), now=NOW), Crashed)
        assert stats.processed_dialogs == 1
    else:
        assert isinstance(outcome, Applied)
        (dlg,) = replica
        assert dlg.flags & flag  # kept, never pinged
        assert (stats.processed_dialogs, stats.create_recv, stats.active_dialogs) == (1, 1, 1)


@pytest.mark.parametrize("release", RELEASES)
def test_created_updated_deleted_end_the_same_everywhere(release: str) -> None:
    """What no rule touches: the table after created, updated (cseq 0), deleted."""
    replica = Replica([VIP], release=release)
    replica.apply(msg(), now=NOW)
    replica.apply(msg(Command.UPDATED, state=DlgState.CONFIRMED, callee_cseq=b"2"), now=NOW + 1)
    (dlg,) = replica
    assert (dlg.state, dlg.callee_cseq, dlg.profiles) == (DlgState.CONFIRMED, b"2", [(b"caller", b"alice")])
    assert isinstance(replica.apply(msg(Command.DELETED), now=NOW + 2), Applied)
    assert len(replica) == 0
    assert replica.stats.as_dict() == {"create_recv": 1, "update_recv": 1, "delete_recv": 1,
                                       "active_dialogs": 0, "processed_dialogs": 1,
                                       "expired_dialogs": 0}


def test_2_1_backups_follow_the_baseline_in_every_rule() -> None:
    """2.1.0-2.1.5's dlg_replication.c backup side is 1.10.5's (see the module)."""
    for n in range(6):
        rules = rules_for(f"2.1.{n}")
        assert [name for name in RULE_NAMES if getattr(rules, name)] == []
