"""Faults on the replication link, a restarted backup and a resync, against real OpenSIPS.

Each run is the failover scenario (harness.experiments.failover) with one fault, and
each makes a call-by-call prediction from what it recorded — the relay's log replayed
into pybin's Replica of the backup's release, or the restart that emptied the backup —
which must match the outcome exactly: no lost call the prediction did not foresee, no
predicted loss that did not happen, every lost call explained. Faults are seeded, so
a failure names packets that can be looked up in the relay's log (kept with the
test's evidence).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from harness.experiments.failover import FailoverError
from harness.experiments.failover.run import run_failover
from harness.live import LiveCluster
from pybin.relay import Impairment

pytestmark = [pytest.mark.live, pytest.mark.failover]

#: held calls per run: enough for a 30 % loss to lose some calls (both packets of about
#: 9 % of them), few enough to keep each run to seconds
CALLS = 200

#: fault → (its text, the relay counter that proves it struck, whether calls may be lost)
FAULTS = {
    "loss": ("loss=0.3,seed=7", "dropped", True),
    "corrupt": ("corrupt=0.3,seed=7", "corrupted", True),
    "duplicate": ("duplicate=0.3,seed=7", "duplicated", False),
    "reorder": ("reorder=0.3,seed=7", "reordered", False),
    "delay": ("delay=20±10,seed=7", "delayed", False),
}


def _check_prediction(result, n: int) -> None:  # type: ignore[no-untyped-def]
    assert result.timed_out == [] and result.capture_drops == 0
    assert result.unexpected_lost == [], (
        f"lost but predicted carried: {result.unexpected_lost[:5]}; {dict(list(result.lost_calls.items())[:3])}")
    assert result.unexpected_survivors == [], f"predicted lost but recovered: {result.unexpected_survivors[:5]}"
    assert result.lost == result.predicted_lost
    assert result.lost_causes is not None and set(result.lost_causes) == set(result.lost_calls)
    assert all(result.lost_causes.values()), "every lost call is explained"
    assert len(result.final_codes) == n


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_link_fault_is_predicted_call_by_call(opensips_cluster: Callable[..., LiveCluster],
                                                   request: pytest.FixtureRequest, tmp_path: Path,
                                                   fault: str) -> None:
    text, counter, may_lose = FAULTS[fault]
    lc = opensips_cluster(("primary", "backup"), peer="first",
                          link={"primary>backup": Impairment.parse(text)})
    link = lc.links["primary>backup"]
    result = run_failover(lc.cluster, CALLS, workdir=tmp_path / "failover", witness=lc.peer, link=link)
    request.node.user_properties.extend(
        (k, v) for k, v in result.to_json().items() if not isinstance(v, (dict, list)))

    assert getattr(link.counters, counter) > 0, f"the relay never {counter} a datagram"
    _check_prediction(result, CALLS)
    if may_lose:
        # 30 % of 2 packets per call: some calls lose both; each is explained by its packets
        assert result.lost > 0
        action = {"loss": "drop"}.get(fault, fault)
        assert all(any(f": {action}" in why for why in causes) for causes in result.lost_causes.values())
    else:
        # 1.10 backups build a dialog from an updated and ignore a second created: duplicates,
        # reordering and delay (which the run lets drain before the kill) cost nothing
        assert (result.lost, result.predicted_lost) == (0, 0)
        assert result.backup_bin_witnessed is not None and result.backup_bin_witnessed >= 2 * CALLS


@pytest.mark.node_deaths_expected
def test_cut_packets_kill_a_1_10_5_backup(opensips_cluster: Callable[..., LiveCluster],
                                          tmp_path: Path) -> None:
    """A packet cut short (re-sealed, so it passes the checksum) makes 1.10.5's dialog
    module pop past its end and go on with the uninitialised strings of the failed pops
    (PROTOCOL.md fact 3): garbage lengths ("no more shm mem for realloc (980444277)"),
    then SIGSEGV in the BIN receiver, and the node goes down. Measured: at truncate=0.3
    the backup died in 4 of 4 runs of 200 calls; at 0.01, in 1 of 3 (3 cut packets)."""
    lc = opensips_cluster(("primary", "backup"), peer="first",
                          link={"primary>backup": Impairment.parse("truncate=0.3,seed=7")})
    with pytest.raises(FailoverError, match=r"node backup .*died"):
        run_failover(lc.cluster, CALLS, workdir=tmp_path / "failover", witness=lc.peer,
                     link=lc.links["primary>backup"])
    backup = lc.cluster.nodes["backup"]
    assert not backup.is_running()
    log = backup.logs()
    assert "Receive binary packet buffer overflow" in log
    assert "exited by a signal 11" in log  # the BIN receiver's SIGSEGV took the node down
    replayed = lc.links["primary>backup"].log()
    assert sum(1 for r in replayed if "truncate" in r.actions) > 0


def test_a_restarted_backup_loses_every_call_set_up_before_it(
        opensips_cluster: Callable[..., LiveCluster], request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    lc = opensips_cluster(("primary", "backup"), peer="first")
    result = run_failover(lc.cluster, CALLS, workdir=tmp_path / "failover", witness=lc.peer, restart=True)
    request.node.user_properties.extend(
        (k, v) for k, v in result.to_json().items() if not isinstance(v, (dict, list)))

    restart = result.restart
    assert restart is not None
    # it held every call before the restart and none after: 1.x re-sends nothing
    assert (restart["held_before"], restart["held_after"], restart["lacking"]) == (CALLS, 0, CALLS)
    assert restart["exposure_s"] is not None and restart["exposure_s"] > 0
    _check_prediction(result, CALLS)
    assert (result.lost, result.predicted_lost) == (CALLS, CALLS)
    assert all("restarted" in causes[0] for causes in result.lost_causes.values())


def test_a_resync_after_the_restart_restores_every_call_field_by_field(
        opensips_cluster: Callable[..., LiveCluster], request: pytest.FixtureRequest,
        tmp_path: Path) -> None:
    lc = opensips_cluster(("primary", "backup"), peer="first")
    result = run_failover(lc.cluster, CALLS, workdir=tmp_path / "failover", witness=lc.peer,
                          restart=True, resync=True)
    request.node.user_properties.extend(
        (k, v) for k, v in result.to_json().items() if not isinstance(v, (dict, list)))

    resync = result.resync
    assert resync is not None
    assert (resync["listed"], resync["sent"], resync["skipped"]) == (CALLS, CALLS, 0)
    # state, both cseqs, timeout (within MI's rounding: 2 s), URIs, contacts, route sets,
    # sockets, vars, profiles
    assert (resync["compared"], resync["differences"]) == (CALLS, 0), resync["first_differences"]
    assert resync["held_after"] == CALLS
    _check_prediction(result, CALLS)
    assert (result.lost, result.predicted_lost) == (0, 0)
    assert set(result.final_codes.values()) == {(200, 200)}
    # the resynced dialogs behave like replicated ones: the backup replicated the
    # re-INVITE and the BYE of every call itself
    assert result.backup_bin_witnessed is not None and result.backup_bin_witnessed >= 2 * CALLS
