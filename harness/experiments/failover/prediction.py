"""Which calls a failover should lose, call by call, and the check against what it lost.

Pure: from what the run recorded (the relay's log, the restart, the resync's packets),
pybin's `Replica` of the backup's release rebuilds the backup's dialog table as the
backup's own rules build it, and `pybin.relay.replay.carries` says which calls it can
carry: a dialog found by Call-ID and tags, CONFIRMED or CONFIRMED_NA, its timer not
fired (the rule's docstring says why exactly those, from how the failover judges a
call recovered). Every predicted loss carries its explanation: the packets of that
call the link dropped or damaged, or the restart that emptied the backup.

`check` puts the prediction beside the judged outcome: ``lost``, ``predicted_lost``,
the explanation of each lost call the prediction foresaw (``lost_causes``), and the
disagreements either way (``unexpected_lost``: lost but predicted carried;
``unexpected_survivors``: predicted lost but recovered). A live test fails on either.
Calls a cut packet of which reached the backup's parser are left out of the
disagreements (``prediction_figures.unpredictable_calls``): 1.10.5 goes on with
uninitialised memory there, which no model predicts (and which has killed the backup).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.experiments.failover.metrics import CallKey, _ms, percentile
from pybin.dialog import DialogCreated
from pybin.relay import RelayLog, carries, replay
from pybin.replica import Replica


def _raw(text: str | None) -> bytes:
    return (text or "").encode("utf-8", "surrogateescape")


def _key(key: CallKey) -> tuple[bytes, bytes, bytes]:
    return (_raw(key[0]), _raw(key[1]), _raw(key[2]))


@dataclass
class Prediction:
    """Call-ID → why the backup cannot carry it (absent: it can), and on what basis."""

    #: "link primary>backup (loss=0.2,seed=7)", "restart", "restart + resync"
    basis: str
    lost: dict[str, list[str]] = field(default_factory=dict)
    #: calls the prediction covered
    calls: int = 0
    #: figures of the replay (what the relay sent, what the receiver accepted ...)
    figures: dict[str, Any] = field(default_factory=dict)
    #: calls the prediction cannot speak for (a cut packet of theirs reached a 1.10.5
    #: backup's parser: undefined behaviour), with what happened to their packets; left
    #: out of the check
    unpredictable: dict[str, list[str]] = field(default_factory=dict)


def from_link(name: str, log: RelayLog, keys: Iterable[CallKey], listen_sockets: Iterable[str],
              release: str, at: float) -> Prediction:
    """What the relay's log says the backup holds at ``at`` (the kill), replayed by
    ``release``'s rules, for the calls ``keys``."""
    keys = list(keys)
    result = replay(log, Replica(listen_sockets, release=release))
    prediction = Prediction(f"link {name} ({log.header.get('impairment', '')})", calls=len(keys))
    for key in keys:
        if not result.carried(_key(key), at):
            prediction.lost[key[0]] = result.explain(_raw(key[0]))
        if result.undefined[_raw(key[0])]:
            prediction.unpredictable[key[0]] = result.explain(_raw(key[0]))
    # how long the relay kept each datagram it sent (to its first copy): the time a call
    # set up just before a kill would still be missing on the backup
    held = [min(s.t for s in r.sent) - r.t for r in log if r.sent]
    prediction.figures = {"relay_sent": result.sent, "backup_accepted": result.accepted,
                          "refused": dict(result.refused),
                          "dialog_packets_accepted": sum(result.received.values()),
                          "backup_holds": len(result.replica),
                          "link_delay_ms_p50": _ms(percentile(held, 50)),
                          "link_delay_ms_p99": _ms(percentile(held, 99)),
                          "undefined_packets": sum(result.undefined.values()),
                          "unpredictable_calls": sorted(prediction.unpredictable)}
    return prediction


def after_restart(keys: Iterable[CallKey], restarted_at: float, listen_sockets: Iterable[str],
                  release: str, resent: Iterable[tuple[float, DialogCreated]] = (),
                  at: float = 0.0) -> Prediction:
    """A restarted 1.x backup holds nothing it held before, and nothing re-sends it the
    calls already up: each of ``keys`` (set up before ``restarted_at``) is lost unless
    ``resent`` (a resync's created packets, with their send times) rebuilt it."""
    replica = Replica(listen_sockets, release=release)
    resent = list(resent)
    for t, packet in resent:
        replica.apply(packet, now=int(t))
    keys = list(keys)
    basis = "restart + resync" if resent else "restart"
    prediction = Prediction(basis, calls=len(keys))
    for key in keys:
        if not carries(replica, _key(key), at or restarted_at):
            why = [f"set up before the backup restarted at {restarted_at:.3f}: a 1.x backup starts "
                   "empty and no 1.x primary re-sends the dialogs already up"]
            if resent:
                why.append("the resync did not rebuild it")
            prediction.lost[key[0]] = why
    prediction.figures = {"backup_holds": len(replica), "resent": len(resent)}
    return prediction


def check(prediction: Prediction | None, lost_calls: Mapping[str, str]) -> dict[str, Any]:
    """``predicted_lost``, ``lost_causes`` (each lost call the prediction foresaw, with
    its explanation), ``unexpected_lost`` and ``unexpected_survivors`` (Call-IDs, sorted);
    all None without a prediction."""
    if prediction is None:
        return {"predicted_lost": None, "lost_causes": None, "unexpected_lost": None,
                "unexpected_survivors": None}
    unpredictable = set(prediction.unpredictable)
    lost, predicted = set(lost_calls) - unpredictable, set(prediction.lost) - unpredictable
    explained = sorted((lost & predicted) | (set(lost_calls) & unpredictable))
    return {
        "predicted_lost": len(predicted),
        "lost_causes": {cid: prediction.lost.get(cid) or prediction.unpredictable[cid] for cid in explained},
        "unexpected_lost": sorted(lost - predicted),
        "unexpected_survivors": sorted(predicted - lost),
    }
