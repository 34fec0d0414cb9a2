"""harness.instruments.link.LinkRelay on loopback: a pybin relay on its own thread, whose
log a synchronous caller reads while it runs."""

from __future__ import annotations

import socket
from pathlib import Path

from harness.instruments.link import LinkRelay

from _relay_logs import calls


def test_the_relay_forwards_with_its_faults_and_its_log_is_readable_while_it_runs(tmp_path: Path) -> None:
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    sink.settimeout(5)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagrams = calls(50)
    with LinkRelay("primary>backup", ("127.0.0.1", 0), sink.getsockname(), "loss=0.3,reorder=0.2,seed=7",
                   log=tmp_path / "link.jsonl") as link:
        for data in datagrams:
            sender.sendto(data, link.address)
        link.wait_received(100, timeout=5)
        link.drain(timeout=5)  # the reordered ones left after their timeout at the latest
        got = []
        while len(got) < link.counters.sent:  # each recv waits at most 5 s (an error then)
            got.append(sink.recv(65536))
        log = link.log()
        assert len(log) == 100 and link.counters.received == 100
        assert sorted(got) == sorted(s.data for r in log for s in r.sent)
        assert {a for r in log for a in r.actions} == {"forward", "drop", "reorder"}
        assert "loss=0.3,reorder=0.2,seed=7" in link.describe()
    assert link.log().counters is not None  # closed: the last line has the counters
    sink.close()
    sender.close()
