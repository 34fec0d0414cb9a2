"""What a 1.10 backup does with a usrloc packet: nothing at all.

1.10's BIN receiver hands a packet to the first module registered under its name
(``bin_register_cb``) and drops it silently when there is none; only the dialog module
registers in 1.10, so a ``ul`` packet from a 1.11/2.1 primary (or a mixed cluster in the
middle of an upgrade) is passed over before any field is read. Proved on a real 1.10
backup logging at debug level: pybin sends one packet of every usrloc command, then a
dialog ``created`` as a fence (one BIN receiver: once the fence is counted, everything
before it was handled). The receiver logs its dispatch line (``binary Packet CMD: N.
Module: NAME``) for the fence alone, pops no field of the ``ul`` packets (none of their
strings is in the log), warns of nothing (checksum, header), keeps the same pid, and
the dialog statistics move by the fence only.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest
from _dialogs import vip_socket, wait_until

from harness.base.releases import BASELINE, replicates_usrloc
from harness.instruments import node_log
from harness.plugin.releases import optional_builds
from pybin import usrloc
from pybin.dialog import Command, DlgState, make

pytestmark = [pytest.mark.live, pytest.mark.optional_release]

#: a string in every ul packet sent, to look for in the backup's debug log
MARK = b"ul-probe-7f3a"


def _ul_packets(sock: bytes, now: int) -> list[usrloc.UlMessage]:
    binding = dict(domain=b"location", aor=MARK, contact=b"sip:" + MARK + b"@192.0.2.1", call_id=MARK,
                   user_agent=MARK, expires=now + 600, q=500, sock=sock, cseq=1, methods=0xFFFFFFFF,
                   last_modified=now)
    return [usrloc.make(1, domain=b"location", aor=MARK), usrloc.make(3, **binding),
            usrloc.make(4, **{**binding, "cseq": 2}),
            usrloc.make(5, domain=b"location", aor=MARK, contact=binding["contact"], call_id=MARK, cseq=2),
            usrloc.make(2, domain=b"location", aor=MARK)]


def test_a_1_10_backup_passes_usrloc_packets_over(
        request: pytest.FixtureRequest, opensips_cluster: Callable[..., Any]) -> None:
    builds = optional_builds(request, {"backup": BASELINE}, "a 1.10 backup")
    assert not replicates_usrloc(builds["backup"].version)
    lc = opensips_cluster(("backup",), settings={"opensips": {"log_level": 4}},
                          releases={"backup": BASELINE}, peer=True)
    cluster, peer = lc.cluster, lc.peer
    node, mi = cluster.nodes["backup"], cluster.mi("backup")
    receiver = [p.pid for p in mi.ps() if p.type.startswith("BIN receiver")]
    before = mi.get_statistics()
    mark = len(node.logs())
    sock = vip_socket(cluster).encode()
    now = int(time.time())
    for packet in _ul_packets(sock, now):
        peer.send(packet, cluster.addresses["backup"].bin_addr)
    fence = make(Command.CREATED, call_id=b"fence@harness", from_tag=b"f", to_tag=b"t",
                 from_uri=b"sip:a@192.0.2.1", to_uri=b"sip:b@192.0.2.2", h_id=1, start_ts=now,
                 state=DlgState.CONFIRMED_NA, caller_sock=sock, callee_sock=sock,
                 caller_contact=b"sip:a@192.0.2.1", callee_contact=b"sip:b@192.0.2.2", timeout=now + 60)
    peer.send(fence, cluster.addresses["backup"].bin_addr)
    wait_until(lambda: mi.get_statistics()["create_recv"] == before["create_recv"] + 1, 10,
               "the fence dialog counted")
    # the debug lines are written before the callback runs; the log may lag MI a little
    log = wait_until(lambda: "Module: dialog" in (text := node.logs()[mark:]) and text, 10,
                     "the fence's dispatch line")
    records = node_log.records(log)
    dispatched = [r.text for r in records if r.text.startswith("binary Packet CMD:")]
    assert dispatched == ["binary Packet CMD: 1. Module: dialog"]
    assert MARK.decode() not in log  # no field of a ul packet was ever popped
    assert not [r for r in records if r.level in ("WARNING", *node_log.ERROR_LEVELS)], \
        [r.text for r in records if r.level != "DBG"]
    after = mi.get_statistics()
    assert {k: after[k] - before[k] for k in ("create_recv", "update_recv", "delete_recv", "active_dialogs")} \
        == {"create_recv": 1, "update_recv": 0, "delete_recv": 0, "active_dialogs": 1}
    assert [p.pid for p in mi.ps() if p.type.startswith("BIN receiver")] == receiver
    cluster.check()
