"""Record the usrloc corpus: every REGISTER scenario through a live 1.11/2.1 pair, captured.

    harness record --registrations [--backend auto|docker|local] [--out DIR] [--users N]

Why: pybin's usrloc codec must be byte-exact against what real 1.11 and 2.1 primaries
send, checked offline where no OpenSIPS runs (tests/corpus/test_recorded_usrloc.py).
This records those bytes. One fresh primary + backup with registrations replicated
(settings ``usrloc.replicate``), the release its binary (or image) reports, on the
pinned subnet; every scenario of ``REGISTRATIONS`` registers its own users through the
VIP, one after another, while tcpdump captures the cluster network. Written into
``<out>/<release>/`` (``harness record`` passes ``<corpus>/usrloc``):

- ``capture.pcap`` — the REGISTERs, their replies and the ``ul`` packets (MI, SIPp
  control, ARP and warm-up probes left out), real timestamps;
- ``expected.jsonl`` — ``pybin decode --json`` of every BIN datagram, capture order;
- ``meta.json`` — release, backend, date, addresses, users per scenario, the commands
  each AOR replicated, both nodes' usrloc statistics at the end, what varies.

Finished when the capture holds as many ``ul`` packets as the scenarios replicate
(`RegisterScenario.replicates`, per user) and the backup's table holds as many
bindings as the primary's — observed, not slept for.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import live
from harness.backends import BackendKind
from harness.base.releases import replicates_usrloc
from harness.base.settings import Settings
from harness.base.wait import WaitTimeout, wait_until
from harness.cluster import Cluster
from harness.experiments.record import RecordError, say
from harness.experiments.registrations import Users, user_names
from harness.instruments.capture import Capture, classify
from harness.instruments.sipp import REGISTRATIONS, SippError
from pybin import usrloc
from pybin.errors import PybinError
from pybin.jsonio import packet_to_json
from pybin.pcap import CapturedDatagram, read_udp, write_pcap
from pybin.wire import MARKER, parse_header

DEFAULT_USERS = 2
#: what a reader must not compare between two recordings
VARIES = {
    "expires / last_modified": "unix seconds of the recording (expires = save time + the Contact's expires)",
    "checksum / hex": "follow from the times",
    "SIP From tags and Via branches": "SIPp writes its process id into tags; branches are per transaction",
    "pcap timestamps": "wall clock of the recording",
}


def record_usrloc(kind: BackendKind, settings: Settings, out: Path, *, users: int,
                  timeout: float) -> dict[str, Any]:
    """Record every REGISTER scenario through one pair into ``out/<release>/``; its meta."""
    if users < 1:
        raise RecordError("--users must be at least 1")
    settings = settings.with_overrides({"usrloc": {"replicate": True}})
    work = Path(tempfile.mkdtemp(prefix="harness-record-usrloc-"))
    try:
        say(f"usrloc: starting primary + backup ({kind.name}) with registrations replicated …")
        with live.start(kind, settings, ("primary", "backup"), workdir=work) as lc:
            cluster = lc.cluster
            release = cluster.nodes["primary"].release()
            if not replicates_usrloc(release.version):  # the template refused it already
                raise RecordError(f"OpenSIPS {release.version} has no usrloc replication")
            capture = Capture(cluster.backend.capture_host(), work / "raw.pcap")
            capture.start()
            try:
                per_scenario = {name: _register(cluster, name, users, work, timeout)
                                for name in REGISTRATIONS}
                want = users * sum(len(s.replicates) for s in REGISTRATIONS.values())
                datagrams = _wait_for_ul(cluster, capture.path, want)
            finally:
                capture.stop()
            stats = {n: cluster.mi(n).get_statistics("usrloc:") for n in ("primary", "backup")}
            addresses = {"vip": f"{cluster.vip}:{settings.ports.sip}",
                         **{n: f"{a.ip}:{a.bin_port}" for n, a in cluster.addresses.items()}}
        kept = [d for d in datagrams if d.data.startswith(MARKER) or classify(d).kind == "SIP"]
        bins = [d for d in kept if d.data.startswith(MARKER)]
        decoded = [packet_to_json(d.data) for d in bins]
        meta = _meta(kind, release, users, per_scenario, kept, bins, decoded, stats, addresses)
        dest = out / release.version
        _write(dest, kept, decoded, meta)
        say(f"usrloc {release.version}: {len(bins)} ul packets, {len(kept) - len(bins)} SIP "
            f"datagrams into {dest}")
        return meta
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _register(cluster: Cluster, scenario: str, users: int, work: Path, timeout: float) -> list[str]:
    """Run one REGISTER scenario for its own users; their names (refused in one line when
    a REGISTER failed)."""
    names = user_names(users, prefix=scenario.replace("_", ""))
    say(f"usrloc: {scenario} for {users} user(s) …")
    with Users(cluster, names, workdir=work / scenario) as group:
        try:
            summary = group.register(scenario, extra_args=["-cid_str", f"{scenario}-%u@%s"]).wait(timeout)
        except SippError as err:
            raise RecordError(f"{scenario}: {str(err).splitlines()[0]}") from None
    if summary.successful != users or summary.failed:
        raise RecordError(f"{scenario}: {summary.successful} of {users} users registered "
                          f"({'; '.join(summary.errors[:2]) or 'no SIPp error logged'})")
    return names


def _wait_for_ul(cluster: Cluster, pcap: Path, want: int, timeout: float = 20.0) -> list[CapturedDatagram]:
    """The capture, once it holds ``want`` ul packets and the backup holds the primary's bindings."""
    seen = {"ul": 0}

    def complete() -> list[CapturedDatagram] | None:
        datagrams: list[CapturedDatagram] = []
        try:
            datagrams.extend(read_udp(pcap))
        except (PybinError, OSError):
            pass  # tcpdump's last record may be half written
        seen["ul"] = sum(1 for d in datagrams if d.data.startswith(MARKER) and _is_ul(d.data))
        stats = [cluster.mi(n).get_statistics("usrloc:") for n in ("primary", "backup")]
        same = stats[0].get("location-contacts") == stats[1].get("location-contacts")
        return datagrams if seen["ul"] == want and same else None

    try:
        return wait_until(complete, timeout=timeout, interval=0.2, alive=cluster.check,
                          what="the capture to hold every ul packet")
    except WaitTimeout:
        raise RecordError(f"usrloc: after {timeout:g}s the capture holds {seen['ul']} ul packets "
                          f"of the {want} the scenarios replicate") from None


def _is_ul(data: bytes) -> bool:
    try:
        return parse_header(data).module == usrloc.MODULE_NAME
    except PybinError:
        return False


def _meta(kind: BackendKind, release: Any, users: int, per_scenario: dict[str, list[str]],
          kept: list[CapturedDatagram], bins: list[CapturedDatagram], decoded: list[dict[str, Any]],
          stats: dict[str, dict[str, int]], addresses: dict[str, str]) -> dict[str, Any]:
    commands: dict[str, list[str]] = {}
    for obj in decoded:
        ul = obj.get("ul") or {}
        commands.setdefault(ul.get("aor", ""), []).append(usrloc.UlCommand(obj["command"]).word)
    return {
        "opensips_version": release.version,
        "opensips_banner": release.banner,
        "backend": kind.name,
        "recorded_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "recorder": "harness record --registrations",
        "users_per_scenario": users,
        "scenarios": {name: {"description": REGISTRATIONS[name].description, "users": names,
                             "replicates": list(REGISTRATIONS[name].replicates),
                             "sipp_cid_str": f"{name}-%u@%s"}
                      for name, names in per_scenario.items()},
        "addresses": addresses,
        "packets": {"bin": len(bins), "sip": len(kept) - len(bins)},
        "bin_flows": sorted({f"{d.src[0]}:{d.src[1]} -> {d.dst[0]}:{d.dst[1]}" for d in bins}),
        "commands_per_aor": commands,
        "usrloc_stats": stats,
        "varies_between_recordings": VARIES,
    }


def _write(dest: Path, kept: list[CapturedDatagram], decoded: list[dict[str, Any]],
           meta: dict[str, Any]) -> None:
    """Write into a sibling temp dir, then swap: a failed run leaves the old files."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        write_pcap(tmp / "capture.pcap", kept)
        with open(tmp / "expected.jsonl", "w", encoding="utf-8") as f:
            for obj in decoded:
                f.write(json.dumps(obj) + "\n")
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
