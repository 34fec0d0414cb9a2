"""pybin.relay.replay: a relay's log replayed into a Replica predicts the backup's table.

The logs are made the way the forwarder makes them (the Impairer decides, LogWriter
writes, read_relay_log reads), with time passed in; the expected survivors are
computed here a second time from the rule in the module docstring: a call survives
unless no intact copy of any of its packets reached the backup.
"""

from __future__ import annotations


import pytest

from pybin import dialog
from pybin.dialog import Command, DlgState
from pybin.relay import RelayLog, carries, replay

from _relay_logs import T0, TIMEOUT, backup, calls, key, packet, relay_log


def test_a_perfect_link_carries_every_call_and_counts_what_the_backup_counts() -> None:
    log = relay_log(calls(50, ack_first=frozenset({3, 9})), "seed=1")
    result = replay(log, backup())
    assert all(result.carried(key(i), T0 + 10) for i in range(50))
    assert (result.sent, result.accepted) == (98, 98)
    assert result.received == {Command.CREATED: 48, Command.UPDATED: 50}
    assert result.replica.stats.create_recv == 48 and result.replica.stats.update_recv == 50
    assert {d.state for d in result.replica} == {DlgState.CONFIRMED}


def test_under_loss_a_call_dies_only_when_every_packet_of_it_was_lost() -> None:
    n, ack_first = 400, frozenset(range(0, 400, 25))
    log = relay_log(calls(n, ack_first), "loss=0.3,seed=7")
    result = replay(log, backup())
    dropped = {r.index for r in log if "drop" in r.actions}
    by_call: dict[int, list[int]] = {}
    for r in log:
        by_call.setdefault(int(r.call_id.split(b"@")[0][5:]), []).append(r.index)  # type: ignore[index]
    expected_lost = {i for i, indexes in by_call.items() if set(indexes) <= dropped}
    lost = {i for i in range(n) if not result.carried(key(i), T0 + 10)}
    assert lost == expected_lost
    # pinned for seed 7: both packets lost (~0.3²) or the lone updated of an ACK-first call
    assert len(lost) == 47 and lost & ack_first == {i for i in ack_first if set(by_call[i]) <= dropped}
    # every lost call is explained by its own dropped packets
    for i in lost:
        reasons = result.explain(key(i)[0])
        assert all(f"#{index} " in " ".join(reasons) for index in by_call[i])
        assert all(": drop" in r for r in reasons if r.startswith("#"))
        if i in ack_first:
            assert any("sent no created" in r for r in reasons)
    # a call that lost only its created is held from its updated, confirmed
    half = next(i for i in range(n) if i not in ack_first and by_call[i][0] in dropped
                and by_call[i][1] not in dropped)
    assert result.replica.get(*key(half)).state == DlgState.CONFIRMED  # type: ignore[union-attr]


def test_a_call_that_lost_its_updated_stays_confirmed_na_and_is_still_carried() -> None:
    log = relay_log(calls(1), "loss=1,only=updated,seed=0")
    result = replay(log, backup())
    assert result.replica.get(*key(0)).state == DlgState.CONFIRMED_NA  # type: ignore[union-attr]
    assert result.carried(key(0), T0 + 10)


def test_reordering_costs_nothing_the_updated_builds_and_the_late_created_is_ignored() -> None:
    log = relay_log(calls(200), "reorder=0.5,reorder_by=2,seed=3")
    result = replay(log, backup())
    assert all(result.carried(key(i), T0 + 10) for i in range(200))
    swapped = [r for r in log if "reorder" in r.actions and r.command == Command.CREATED]
    assert swapped, "the seed reorders some created past their updated"
    assert result.replica.stats.processed_dialogs == 200 + sum(
        1 for outcomes in result.outcomes.values() for o in outcomes if type(o).__name__ == "Ignored")


def test_duplicates_are_received_twice_and_change_nothing() -> None:
    log = relay_log(calls(100), "duplicate=0.2,seed=5")
    result = replay(log, backup())
    doubled = sum(1 for r in log if "duplicate" in r.actions)
    assert doubled and result.sent == 200 + doubled and sum(result.received.values()) == 200 + doubled
    assert len(result.replica) == 100 and all(result.carried(key(i), T0) for i in range(100))


def test_a_corrupted_copy_is_refused_by_the_checksum_like_a_loss() -> None:
    log = relay_log(calls(300), "corrupt=0.4,seed=11")
    result = replay(log, backup())
    corrupted = {r.index for r in log if "corrupt" in r.actions}
    assert result.refused["BAD_CHECKSUM"] == len(corrupted)
    lost = {i for i in range(300) if not result.carried(key(i), T0)}
    assert lost == {i for i in range(300) if {2 * i, 2 * i + 1} <= corrupted}
    assert lost and all(all(": corrupt" in r for r in result.explain(key(i)[0])) for i in lost)


def test_a_truncated_packet_is_not_applied_and_explains_its_call() -> None:
    log = relay_log(calls(1), "truncate=1,seed=2")
    result = replay(log, backup())
    assert not result.carried(key(0), T0)
    reasons = result.explain(key(0)[0])
    assert [r.split(":")[1].strip() for r in reasons][:2] == ["truncate", "truncate"]
    # cut packets the receiver passed on (re-sealed, 18 bytes or more) are undefined on 1.10.5
    delivered = sum(1 for r in log if len(r.sent[0].data) >= 18)
    assert result.undefined[key(0)[0]] == delivered
    if delivered:
        assert "uninitialised memory" in reasons[-1]


def test_what_the_relay_held_and_never_sent_explains_a_loss_too() -> None:
    log = relay_log(calls(1), "seed=0")
    unsent = RelayLog(log.header, tuple(r.__class__(**{**{s: getattr(r, s) for s in r.__slots__},
                                                       "sent": (), "held": True}) for r in log), None)
    result = replay(unsent, backup())
    assert result.sent == 0 and not result.carried(key(0), T0)
    assert result.explain(key(0)[0]) == ["#0 created: held, never sent", "#1 updated: held, never sent"]


def test_until_stops_the_replay_at_a_moment() -> None:
    log = relay_log(calls(10), "seed=0")
    result = replay(log, backup(), until=T0 + 0.0095)
    assert result.sent == 10 and len(result.replica) == 5


def test_the_carrying_rule_states_and_timer() -> None:
    replica = backup()
    for i, state in enumerate((DlgState.UNCONFIRMED, DlgState.EARLY, DlgState.CONFIRMED_NA, DlgState.CONFIRMED)):
        replica.apply(dialog.decode(packet(Command.CREATED, i, state=int(state))), now=int(T0))
    assert [carries(replica, key(i), T0) for i in range(4)] == [False, False, True, True]
    assert not carries(replica, key(3), TIMEOUT + 1), "its timer fired: the dialog is gone"
    assert not carries(replica, key(7), T0), "never replicated"


def test_a_dialog_the_backup_refused_is_explained_by_the_backup() -> None:
    log = relay_log([packet(Command.CREATED, 0, caller_sock=b"udp:10.9.9.9:5060")], "seed=0")
    result = replay(log, backup())
    assert not result.carried(key(0), T0)
    assert any(r.startswith("rejected by the backup: caller socket udp:10.9.9.9:5060") for r in result.explain(key(0)[0]))


@pytest.mark.parametrize("text", ["", "seed=4"])
def test_no_packet_at_all(text: str) -> None:
    result = replay(relay_log([], text), backup())
    assert result.explain(b"nobody@x") == ["no packet of this call reached the relay"]
