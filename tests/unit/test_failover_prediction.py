"""The failover's call-by-call prediction, offline: from a relay's log, from a restart and a
resync; checked against a judged outcome; carried into the result and its JSON."""

from __future__ import annotations

import json

import pytest

from harness.experiments.failover.metrics import JSON_KEYS
from harness.experiments.failover.prediction import after_restart, check, from_link
from harness.experiments.failover.result import Evidence, result_from
from harness.instruments.sipp import SippSummary
from pybin.dialog import Command

from _relay_logs import T0, VIP_SOCK, calls, packet, relay_log
from test_failover_figures import BACKUP_BIN, PRIMARY_BIN, VIP, call, ladder, recovered_call, sip

SOCKETS = [VIP_SOCK.decode()]


def keys(n: int) -> list[tuple[str, str, str]]:
    return [(f"call-{i}@10.0.0.1", f"ft-{i}", f"tt-{i}") for i in range(n)]


def test_the_link_s_prediction_names_each_lost_call_s_packets() -> None:
    log = relay_log(calls(100, ack_first=frozenset({5})), "loss=0.4,seed=3")
    prediction = from_link("primary>backup", log, keys(100), SOCKETS, "1.10.5", T0 + 60)
    dropped = {r.index for r in log if "drop" in r.actions}
    by_call: dict[str, list[int]] = {}
    for r in log:
        by_call.setdefault(r.call_id.decode(), []).append(r.index)  # type: ignore[union-attr]
    assert set(prediction.lost) == {cid for cid, idx in by_call.items() if set(idx) <= dropped}
    assert prediction.basis == "link primary>backup (loss=0.4,seed=3)" and prediction.calls == 100
    cid = next(iter(prediction.lost))
    assert prediction.lost[cid][:len(by_call[cid])] == [
        f"#{i} {'created' if log.records[i].command == Command.CREATED else 'updated'}: drop"
        for i in by_call[cid]]
    assert prediction.figures["relay_sent"] == len(log) - len(dropped)
    assert prediction.figures["dialog_packets_accepted"] == len(log) - len(dropped)


def test_the_prediction_uses_the_backups_release() -> None:
    """The same log, two releases: a rule a release does not share changes the prediction
    only where that rule matters (here: none for a 1.10.2 backup, same dialogs)."""
    log = relay_log(calls(20), "loss=0.5,seed=1")
    a = from_link("p>b", log, keys(20), SOCKETS, "1.10.5", T0 + 60)
    b = from_link("p>b", log, keys(20), SOCKETS, "1.10.2", T0 + 60)
    assert a.lost.keys() == b.lost.keys()
    with pytest.raises(ValueError):
        from_link("p>b", log, keys(20), SOCKETS, "9.9.9", T0 + 60)


def test_a_restart_loses_every_call_set_up_before_it_and_a_resync_none() -> None:
    before = keys(5)
    prediction = after_restart(before, T0 + 10, SOCKETS, "1.10.5", at=T0 + 20)
    assert set(prediction.lost) == {k[0] for k in before} and prediction.basis == "restart"
    assert "a 1.x backup starts empty" in prediction.lost[before[0][0]][0]
    from pybin.dialog import decode

    resent = [(T0 + 11, decode(packet(Command.CREATED, i, state=4))) for i in range(4)]
    prediction = after_restart(before, T0 + 10, SOCKETS, "1.10.5", resent, at=T0 + 20)
    assert prediction.basis == "restart + resync" and set(prediction.lost) == {before[4][0]}
    assert prediction.lost[before[4][0]][-1] == "the resync did not rebuild it"


def test_check_puts_the_prediction_beside_the_outcome() -> None:
    log = relay_log(calls(4), "seed=0")
    prediction = from_link("p>b", log, keys(4), SOCKETS, "1.10.5", T0)
    prediction.lost = {"a": ["#1 created: drop"], "b": ["#3 updated: drop"]}
    figures = check(prediction, {"a": "re-INVITE unanswered", "c": "backup sent no BIN updated"})
    assert figures == {"predicted_lost": 2, "lost_causes": {"a": ["#1 created: drop"]},
                       "unexpected_lost": ["c"], "unexpected_survivors": ["b"]}
    # a call a cut packet of which reached the parser is neither expected nor unexpected
    prediction.unpredictable = {"c": ["1 cut packet(s) reached the backup's dialog module: ..."]}
    figures = check(prediction, {"a": "re-INVITE unanswered", "c": "backup sent no BIN updated"})
    assert figures["unexpected_lost"] == [] and figures["lost_causes"]["c"][0].startswith("1 cut packet")
    assert check(None, {"a": "x"}) == dict.fromkeys(
        ("predicted_lost", "lost_causes", "unexpected_lost", "unexpected_survivors"))


def test_the_result_carries_the_prediction_and_the_restart_s_exposure() -> None:
    relayed = call("call-2", (10.060, "sent", sip("INVITE", "call-2", "2 INVITE")),
                   (10.070, "received", sip(200, "call-2", "2 INVITE")),
                   (10.100, "sent", sip("BYE", "call-2", "3 BYE")),
                   (10.110, "received", sip(200, "call-2", "3 BYE")))
    relayed.events["END"] = T0 + 10.2
    keys_ = {("call-1", "a", "b"), ("call-2", "a", "b")}
    prediction = after_restart(keys_, T0 + 5, SOCKETS, "1.10.5", at=T0 + 10)
    restart = {"node": "backup", "at": T0 + 5, "took_s": 0.3, "held_before": 2, "held_after": 0,
               "lacking": 2, "warmup_restarts": 0}
    ev = Evidence(backend="local", mode="kill", calls=2, keys=keys_,
                  summary=SippSummary("uac", "reinvite", 0, 2, 0, [recovered_call(), relayed]),
                  datagrams=ladder(), kill_at=T0 + 10.0, proxy=VIP, primary_bin=PRIMARY_BIN,
                  backup_bin=BACKUP_BIN, prediction=prediction, restart=restart)
    r = result_from(ev)
    # call-1 recovered (the ladder's capture proves it) though the restart predicted it lost
    assert (r.lost, r.predicted_lost) == (1, 2)
    assert r.unexpected_survivors == ["call-1"] and r.unexpected_lost == []
    assert list(r.lost_causes) == ["call-2"]  # type: ignore[arg-type]
    assert r.restart == {**restart, "exposure_s": pytest.approx(5.2)}
    obj = r.to_json()
    assert list(obj) == list(JSON_KEYS) and json.loads(json.dumps(obj))["predicted_lost"] == 2
    table = r.table()
    assert any(line.startswith("lost / predicted lost") and line.endswith("  1 / 2") for line in table.splitlines())
    assert "lacked 2 for 5.2" in table
    # a resync ends the exposure when it restored the calls
    ev.resync = {"done_at": T0 + 6.5, "sent": 2, "took_s": 0.1, "differences": 0, "compared": 2}
    assert result_from(ev).restart["exposure_s"] == pytest.approx(1.5)  # type: ignore[index]


def test_a_run_without_faults_has_none_of_it() -> None:
    ev = Evidence(backend="local", mode="kill", calls=1, keys={("call-1", "a", "b")},
                  summary=SippSummary("uac", "reinvite", 0, 1, 0, [recovered_call()]),
                  datagrams=ladder(), kill_at=T0 + 10.0, proxy=VIP, primary_bin=PRIMARY_BIN,
                  backup_bin=BACKUP_BIN)
    obj = result_from(ev).to_json()
    assert all(obj[k] is None for k in ("link", "predicted_lost", "unexpected_lost",
                                        "unexpected_survivors", "lost_causes", "prediction_figures",
                                        "restart", "resync"))
