"""Measurement, not a test (not collected: run it by path). Where the suite's timer
tolerances come from: 1.10.5's packet and MI timeouts, and how often `created` goes
missing, on the chosen backend.

    pytest -s harness/conformance/measure_timers.py --opensips-backend local   # or docker

Prints one JSON line per run (``MEASURED {...}``):
- ``packet_timeout_minus_lifetime``: histogram of timeout - start_ts - dialog.timeout
  over every created/updated packet the pybin peer received (harness/conformance/_dialogs.py
  TIMEOUT_TOLERANCE);
- ``mi_primary_minus_packet``: the primary's dlg_list timeout minus the last packet's
  (harness.experiments.compare.MI_TIMEOUT_SLACK);
- ``backup_drift_over_burst``: the backup's dlg_list timeout after BURST hostile
  datagrams (in sentinel-closed rounds, as test_robustness sends them) minus before
  (test_robustness TIMER_DRIFT);
- ``calls_without_created``: calls whose packets at the peer had no created
  (harness.experiments.compare.sequence_ok).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable

import pytest
from _dialogs import all_have, by_call, is_confirmed_update, is_deleted, wait_until

from harness.cluster.warmup import sentinel_packet
from pybin.dialog import DialogCreated, DialogUpdated

CALLS = 60
BURST = 3000
BATCH = 250
SENTINEL_LINE = "Invalid dialog binary packet command: 424242"


@pytest.mark.live
def test_measure(opensips_cluster: Callable[..., Any], sip_calls: Callable[..., Any]) -> None:
    lc = opensips_cluster(peer=True)
    cluster = lc.cluster
    peer, lifetime = lc.peer, cluster.settings.dialog.timeout
    pair = sip_calls(cluster, "reinvite", calls=CALLS, rate=50, hold=True)
    pair.uac.wait_held(timeout=60)
    calls = {c.call_id.encode() for c in pair.uac.result().calls}
    peer.wait_for(all_have(calls, is_confirmed_update), 30, "updated(4) for every held call")
    wait_until(lambda: len(cluster.mi("backup").dlg_list()) == CALLS, 30, "every call on the backup")

    grouped = by_call(peer.received)
    last = {cid: [m for m in msgs if isinstance(m, (DialogCreated, DialogUpdated))][-1]
            for cid, msgs in grouped.items()}
    mi_primary = Counter(e.timeout - last[e.callid.encode()].timeout for e in cluster.mi("primary").dlg_list())

    node, mi = cluster.nodes["backup"], cluster.mi("backup")
    before = {e.key: e.timeout for e in mi.dlg_list()}
    sock = cluster.udp_socket()
    bad = b"P4CX" + sentinel_packet()[4:]
    try:
        for _ in range(0, BURST, BATCH):
            seen = node.logs().count(SENTINEL_LINE)
            for _ in range(BATCH):
                sock.sendto(bad, cluster.addresses["backup"].bin_addr)
            sock.sendto(sentinel_packet(), cluster.addresses["backup"].bin_addr)
            wait_until(lambda: node.logs().count(SENTINEL_LINE) > seen, 30, "the sentinel")
    finally:
        sock.close()
    drift = Counter(e.timeout - before[e.key] for e in mi.dlg_list())

    pair.uac.release()
    pair.wait(60)
    peer.wait_for(all_have(calls, is_deleted), 30, "deleted for every call")
    grouped = by_call(peer.received)
    packets = Counter(m.timeout - m.start_ts - lifetime for msgs in grouped.values() for m in msgs
                      if isinstance(m, (DialogCreated, DialogUpdated)))
    missing = sum(1 for msgs in grouped.values() if not any(isinstance(m, DialogCreated) for m in msgs))
    print("MEASURED", json.dumps({
        "backend": cluster.backend.name, "calls": CALLS,
        "packet_timeout_minus_lifetime": dict(sorted(packets.items())),
        "mi_primary_minus_packet": dict(sorted(mi_primary.items())),
        "backup_drift_over_burst": dict(sorted(drift.items())),
        "calls_without_created": missing,
        "sequences": dict(Counter(" ".join(str(int(m.command)) for m in msgs) for msgs in grouped.values())),
    }))
