"""Record the corpus: every harness scenario through a live primary/backup pair, captured.

    harness record [--backend auto|docker|local] [--out DIR] [--scenario NAME ...]
                   [--calls N] [--subnet CIDR]      (arguments: harness/cli.py)

Why: offline tests (tests/corpus/test_recorded_corpus.py) must check pybin against
real OpenSIPS bytes from *every* scenario on machines that have no OpenSIPS at all
(CI). This command produces those bytes. For each scenario of ``harness.instruments.sipp.SCENARIOS``
it starts a fresh primary + backup (so addresses, hash ids and counters start from the
same place each time), captures the cluster network while a few SIPp calls run, and
writes into ``<out>/<scenario>/``:

- ``capture.pcap`` — the scenario's SIP and BIN datagrams only (MI polls, SIPp
  remote-control keys, ARP and the warm-up probes are left out), real timestamps;
- ``expected.jsonl`` — ``pybin decode --json`` of every BIN datagram, capture order;
- ``meta.json`` — OpenSIPS version, backend, date, addresses, calls, the command
  sequence each call produced, both nodes' statistics deltas, and what varies between
  two recordings.

Deterministic where the harness controls it: a pinned subnet (``--subnet``), a fresh
cluster per scenario (same node and client addresses every time) and SIPp Call-IDs
without SIPp's pid (``-cid_str <scenario>-%u@%s``). What still varies is listed in
``VARIES`` and written into every meta.json.

A scenario is finished when the capture holds as many BIN packets as the primary's
``*_sent`` counters moved and every confirmed call's deleted packet was counted —
observed, not slept for. Failures are one line; the partial scenario is not written.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from harness import live
from harness.backends import BackendKind
from harness.base.errors import HarnessError
from harness.base.resources import checkout_root
from harness.base.settings import Settings
from harness.base.wait import WaitTimeout, wait_until
from harness.cluster import Cluster
from harness.cluster.interfaces import Release
from harness.experiments.calls import CallPair
from harness.instruments.sipp import SCENARIOS, SippError, SippSummary
from pybin.dialog import Command
from pybin.errors import PybinError
from pybin.jsonio import packet_to_json
from pybin.pcap import CapturedDatagram, read_udp, write_pcap
from pybin.wire import MARKER

#: pinned so addresses (and Call-IDs, which name the caller's IP) repeat between
#: recordings (the shared address plan numbers hosts alike on both backends); outside
#: the automatic subnet pool (harness.backends.core.DEFAULT_POOL, 10.160.0.0/11)
DEFAULT_SUBNET = "10.250.0.0/24"
DEFAULT_CALLS = 2
#: what a reader must not compare between two recordings of the same scenario
VARIES = {
    "from_tag / to_tag": "SIPp writes its process id into every tag ([pid]SIPpTag00[call_number]): "
                         "small and often equal in containers, anything on the local backend",
    "h_id": "OpenSIPS 1.10 seeds each hash bucket's next id with rand()",
    "start_ts / timeout": "unix seconds of the recording (timeout = start + dialog.timeout)",
    "checksum / hex": "follow from the fields above",
    "SIP Via branches": "SIPp and OpenSIPS generate them per transaction",
    "pcap timestamps": "wall clock of the recording",
}
COMMAND_NAMES = {int(c): c.name.lower() for c in Command}


class RecordError(HarnessError, RuntimeError):
    """A scenario could not be recorded (one line)."""


def say(line: str) -> None:
    print(line, flush=True)


def default_out() -> Path:
    """Where ``harness record`` writes without ``--out``: the checkout's corpus (the
    offline tests read it there), else ``./corpus``."""
    root = checkout_root()
    return root / "tests" / "corpus" / "recorded" if root is not None else Path("corpus")


def record_corpus(kind: BackendKind, settings: Settings, out: Path, scenarios: list[str], *,
                  calls: int, timeout: float) -> None:
    """Record ``scenarios`` one after another into ``out/<scenario>/``."""
    if calls < 1:
        raise RecordError("--calls must be at least 1")
    say(f"recording {len(scenarios)} scenario(s) with the {kind.name} backend into {out}")
    started = time.monotonic()
    for scenario in scenarios:
        recorder = ScenarioRecorder(scenario, kind, settings, calls=calls, timeout=timeout)
        meta = recorder.record(out / scenario)
        say(f"{scenario}: {meta['calls_completed']}/{meta['calls']} calls, "
            f"{meta['packets']['bin']} BIN + {meta['packets']['sip']} SIP datagrams, "
            f"commands {_sequence_text(meta['commands_per_call'])}")
    say(f"done in {time.monotonic() - started:.0f}s")


def _sequence_text(per_call: dict[str, list[str]]) -> str:
    kinds = {tuple(v) for v in per_call.values()}
    if not kinds:
        return "(none)"
    if len(kinds) == 1:
        return "/".join(next(iter(kinds))) + " per call"
    return "; ".join(f"{cid}: {'/'.join(v)}" for cid, v in per_call.items())


@dataclass
class _Snapshot:
    primary: dict[str, int]
    backup: dict[str, int]


@dataclass
class ScenarioRecorder:
    """One scenario: fresh cluster, capture, calls, wait for BIN, write the three files."""

    scenario: str
    kind: BackendKind
    settings: Settings
    calls: int
    timeout: float

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise RecordError(f"unknown scenario {self.scenario!r}")

    def record(self, dest: Path) -> dict[str, Any]:
        from harness.instruments.capture import Capture

        # under the temp dir: the docker backend mounts it into SIPp's containers
        work = Path(tempfile.mkdtemp(prefix=f"harness-record-{self.scenario}-"))
        try:
            say(f"{self.scenario}: starting primary + backup ({self.kind.name}) …")
            t0 = time.monotonic()
            with live.start(self.kind, self.settings, ("primary", "backup"), workdir=work) as lc:
                cluster, backend = lc.cluster, lc.backend
                restarts = {n: c for n, c in cluster.restarts.items() if c}
                note = f", warm-up restarts {restarts}" if restarts else ""
                say(f"{self.scenario}: cluster up in {time.monotonic() - t0:.1f}s{note}")
                release = cluster.nodes["primary"].release()
                before = self._stats(cluster)
                capture = Capture(backend.capture_host(), work / "raw.pcap")
                capture.start()
                try:
                    summary, pair = self._calls(cluster, work)
                    confirmed = confirmed_calls(summary)
                    say(f"{self.scenario}: {len(summary.completed)}/{self.calls} calls done "
                        f"({len(confirmed)} confirmed); waiting for their BIN packets …")
                    datagrams = self._wait_for_bin(cluster, capture.path, before, len(confirmed))
                finally:
                    capture.stop()
                after = self._stats(cluster)
                backup_dialogs = len(cluster.mi("backup").dlg_list())
                addresses = {
                    "vip": f"{cluster.vip}:{self.settings.ports.sip}",
                    **{n: f"{a.ip}:{a.bin_port}" for n, a in cluster.addresses.items()},
                    "caller": f"{pair.caller_host.ip}:{pair.uac.local_port}",
                    "callee": f"{pair.callee_host.ip}:{pair.uas.local_port}",
                }
            kept = [d for d in datagrams if _kind(d) in ("SIP", "BIN")]
            bins = [d for d in kept if _kind(d) == "BIN"]
            decoded = [packet_to_json(d.data) for d in bins]
            meta = self._meta(release, summary, confirmed, kept, bins, decoded, before, after,
                              backup_dialogs, addresses)
            self._write(dest, kept, decoded, meta)
            return meta
        finally:
            shutil.rmtree(work, ignore_errors=True)

    # -- steps -------------------------------------------------------------------------
    def _calls(self, cluster: Cluster, work: Path) -> tuple[SippSummary, CallPair]:
        say(f"{self.scenario}: {self.calls} call(s) through {cluster.vip} …")
        pair = CallPair(cluster, self.scenario, calls=self.calls, workdir=work / "sipp",
                        extra_args=["-cid_str", f"{self.scenario}-%u@%s"])
        try:
            pair.start()
            summary = pair.wait(self.timeout)
        except SippError as err:  # its message carries SIPp's stderr: keep the first line
            pair.stop()
            raise RecordError(f"{self.scenario}: {str(err).splitlines()[0]}") from None
        except BaseException:
            pair.stop()
            raise
        if summary.failed or len(summary.completed) != self.calls:
            errors = "; ".join(summary.errors[:2]) or "no SIPp error logged"
            raise RecordError(f"{self.scenario}: {len(summary.completed)} of {self.calls} calls "
                              f"completed, {summary.failed} failed ({errors})")
        return summary, pair

    def _stats(self, cluster: Cluster) -> _Snapshot:
        return _Snapshot(cluster.mi("primary").get_statistics("dialog:"),
                         cluster.mi("backup").get_statistics("dialog:"))

    def _wait_for_bin(self, cluster: Cluster, pcap: Path, before: _Snapshot,
                      confirmed: int, timeout: float = 15.0) -> list[CapturedDatagram]:
        """Wait until the capture holds every BIN packet the primary says it sent."""
        seen: dict[str, int] = {}

        def complete() -> list[CapturedDatagram] | None:
            stats = cluster.mi("primary").get_statistics("dialog:")
            seen["sent"] = sum(stats.get(k, 0) - before.primary.get(k, 0)
                               for k in ("create_sent", "update_sent", "delete_sent"))
            seen["deleted"] = stats.get("delete_sent", 0) - before.primary.get("delete_sent", 0)
            datagrams = _read_partial(pcap)
            seen["got"] = sum(1 for d in datagrams if _kind(d) == "BIN")
            done = seen["deleted"] >= confirmed and seen["got"] == seen["sent"]
            return datagrams if done else None

        try:
            return wait_until(complete, timeout=timeout, interval=0.1, alive=cluster.check,
                              what="the capture to hold every BIN packet the primary sent")
        except WaitTimeout:
            raise RecordError(
                f"{self.scenario}: after {timeout:g}s the capture holds {seen['got']} BIN packets, "
                f"the primary counts {seen['sent']} sent ({seen['deleted']} deleted for "
                f"{confirmed} confirmed calls)") from None

    def _meta(self, release: Release, summary: SippSummary, confirmed: list[str],
              kept: list[CapturedDatagram], bins: list[CapturedDatagram], decoded: list[dict[str, Any]],
              before: _Snapshot, after: _Snapshot, backup_dialogs: int,
              addresses: dict[str, str]) -> dict[str, Any]:
        per_call: dict[str, list[str]] = {}
        states: dict[str, list[int]] = {}
        for obj in decoded:
            dialog = obj.get("dialog") or {}
            cid = dialog.get("call_id", "")
            per_call.setdefault(cid, []).append(COMMAND_NAMES.get(obj["command"], str(obj["command"])))
            if "state" in dialog:
                states.setdefault(cid, []).append(dialog["state"])
        sequences = {tuple(v) for v in per_call.values()}
        return {
            "scenario": self.scenario,
            "description": SCENARIOS[self.scenario],
            "opensips_version": release.version,
            "opensips_banner": release.banner,
            "backend": self.kind.name,
            "recorded_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
            "recorder": "harness record",
            "calls": self.calls,
            "calls_completed": len(summary.completed),
            "call_ids": [c.call_id for c in summary.calls],
            "confirmed_call_ids": confirmed,
            "addresses": addresses,
            "packets": {"bin": len(bins), "sip": len(kept) - len(bins)},
            "bin_flows": sorted({f"{d.src[0]}:{d.src[1]} -> {d.dst[0]}:{d.dst[1]}" for d in bins}),
            "commands_per_call": per_call,
            "commands_sequence": list(next(iter(sequences))) if len(sequences) == 1 else None,
            "states_per_call": states,
            "primary_stats_delta": _delta(before.primary, after.primary),
            "backup_stats_delta": _delta(before.backup, after.backup),
            "backup_dialogs_after": backup_dialogs,
            "dialog_settings": {
                "timeout": self.settings.dialog.timeout,
                "acct": self.settings.dialog.acct,
                "profile_no_value": self.settings.dialog.profile_no_value,
                "profile_with_value": self.settings.dialog.profile_with_value,
                "flag": self.settings.dialog.flag,
            },
            "sipp_cid_str": f"{self.scenario}-%u@%s",
            "varies_between_recordings": VARIES,
        }

    def _write(self, dest: Path, kept: list[CapturedDatagram], decoded: list[dict[str, Any]],
               meta: dict[str, Any]) -> None:
        """Write into a sibling temp dir, then swap: a failed run leaves the old files."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}-", dir=dest.parent))
        tmp.chmod(0o755)  # mkdtemp's 0700 would end up in the checkout
        try:
            write_pcap(tmp / "capture.pcap", kept)
            with open(tmp / "expected.jsonl", "w", encoding="utf-8") as f:
                for obj in decoded:
                    f.write(json.dumps(obj) + "\n")  # exactly as `pybin decode --json`
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
            if dest.exists():
                shutil.rmtree(dest)
            tmp.rename(dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


# -- helpers ---------------------------------------------------------------------------

def confirmed_calls(summary: SippSummary) -> list[str]:
    """Call-IDs whose initial INVITE got a 200 (only those are replicated by 1.10)."""
    out = []
    for call in summary.calls:
        invite = next((r for r in call.requests if r.method == "INVITE"), None)
        if invite is not None and 200 in call.codes("INVITE", invite.cseq):
            out.append(call.call_id)
    return out


def _kind(item: CapturedDatagram) -> str:
    """BIN, SIP or other (MI, SIPp remote control...), from the payload."""
    from harness.instruments.capture import classify

    if item.data.startswith(MARKER):
        return "BIN"
    return classify(item).kind


def _read_partial(pcap: Path) -> list[CapturedDatagram]:
    """Datagrams tcpdump has written so far (its last record may be half-written)."""
    out: list[CapturedDatagram] = []
    try:
        for item in read_udp(pcap):
            out.append(item)
    except (PybinError, OSError):
        pass
    return out


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in sorted(after)
            if k.endswith(("_sent", "_recv")) or k in ("active_dialogs", "processed_dialogs")}


