"""The live-test example of README.md, verbatim, so the README cannot drift from the API."""

import pytest


@pytest.mark.live
def test_a_call_replicates(opensips_cluster, sip_calls):
    lc = opensips_cluster(("primary", "backup"), peer=True)   # + a pybin peer
    summary = sip_calls(lc.cluster, "basic", calls=3).wait(timeout=60)
    assert len(summary.completed) == 3
    lc.peer.wait_for(lambda got: sum(p.packet.command == 3 for p in got) == 3,
                     timeout=10, what="three 'deleted' packets")
    assert lc.cluster.mi("backup").get_statistics()["delete_recv"] == 3
