"""What a failed live test leaves behind: the capture, a SIP/BIN ladder and every node's
log, saved under ``--harness-artifacts`` and attached to the report, and a failover's
report.html when the test handed its result over; and the check, after each test, that no
node of its clusters died unnoticed."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from harness.cluster.interfaces import NodeDied
from harness.experiments.failover.result import FailoverResult
from harness.instruments.capture import ladder_lines, render_ladder
from harness.live import LiveCluster

#: each phase's report, kept on the item so fixture teardown knows whether the test failed
REPORT_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()


def failed(item: pytest.Item) -> bool:
    reports = item.stash.get(REPORT_KEY, {})
    return any(r.failed for r in reports.values())


def slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:120]


def save_evidence(lc: LiveCluster, dest: Path) -> list[tuple[str, str]]:
    """Save pcap, ladder and logs of ``lc`` into ``dest``; return report sections."""
    dest.mkdir(parents=True, exist_ok=True)
    sections: list[tuple[str, str]] = []
    cluster = lc.cluster
    if lc.capture is not None and lc.capture.path.exists():
        pcap = dest / "capture.pcap"
        shutil.copy(lc.capture.path, pcap)
        names = {a.ip: n for n, a in cluster.addresses.items()}
        names[cluster.vip] = "vip"
        names[lc.backend.harness_ip] = "harness"
        try:
            ladder = render_ladder(ladder_lines(pcap), names)
        except Exception as err:  # evidence must never hide the real failure
            ladder = f"(ladder unavailable: {err})"
        (dest / "ladder.txt").write_text(ladder + "\n")
        sections.append(("SIP/BIN ladder", ladder))
    for name, node in cluster.nodes.items():
        try:
            text = node.logs()
        except Exception as err:
            text = f"(logs unavailable: {err})"
        (dest / f"{name}.log").write_text(text)
        tail = "\n".join(text.splitlines()[-40:])
        sections.append((f"{name} log (last 40 lines)", tail))
    return sections


def save_failover_report(result: FailoverResult, dest: Path) -> str:
    """``dest/report.html`` of a failover a failed test ran; what to attach to the report
    (the page's path, or why there is none: evidence must never hide the real failure)."""
    from harness.experiments.failover.report import write_report

    try:
        return str(write_report(dest, result.to_json(), result))
    except Exception as err:
        return f"(failover report unavailable: {type(err).__name__}: {err})"


def deaths(started: Sequence[LiveCluster]) -> list[str]:
    """Nodes that died while expected to run, checked once the test body is done.

    A test that never queries a node (e.g. one that only watches the pybin peer)
    would otherwise pass while the backup crashed on the packets it was sent.
    """
    died = []
    for lc in started:
        cluster = lc.cluster
        try:
            for name, node in cluster.nodes.items():
                if node.is_running():
                    # one MI round trip: a node killed a moment ago may not be known
                    # dead yet (the local backend's watcher thread), but it cannot answer,
                    # and the MI client raises NodeDied as soon as the death is seen
                    try:
                        cluster.mi(name).ps()
                    except NodeDied:
                        raise
                    except Exception:
                        pass  # frozen on purpose, or busy: judged by check() below
            cluster.check()
        except NodeDied as err:
            died.append(str(err))
    return died
