"""A live test written with the harness's pytest fixtures (the plugin is installed with
the package, so any project can write these).

Two calls through a primary/backup pair: the backup holds nothing afterwards, the
pybin peer saw each call's "deleted", and the backup counted every replicated packet.
Run it with ``pytest examples/test_fixture_example.py``; without OpenSIPS it skips
with the reason.
"""

from __future__ import annotations

import pytest


@pytest.mark.live
def test_two_calls_end_on_the_backup_too(opensips_cluster, sip_calls) -> None:
    lc = opensips_cluster(("primary", "backup"), peer=True)
    cluster = lc.cluster
    summary = sip_calls(cluster, "basic", calls=2).wait(timeout=60)
    assert len(summary.completed) == 2 and summary.failed == 0

    deleted = lc.peer.wait_for(lambda got: sum(p.packet.command == 3 for p in got) == 2,
                                    timeout=10, what="two 'deleted' packets")
    call_ids = {p.dialog().call_id.decode() for p in deleted if p.packet.command == 3}
    assert call_ids == {c.call_id for c in summary.calls}

    backup = cluster.mi("backup")
    stats = backup.get_statistics()
    assert stats["delete_recv"] == 2 and stats["active_dialogs"] == 0
    assert backup.dlg_list() == []
