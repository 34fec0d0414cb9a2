"""Packet capture of a cluster's network, and the call/replication ladder read from it.

One tcpdump on the cluster's bridge sees SIP and BIN alike, on one clock, so the
ladder shows which SIP message caused which replication packet, and timing figures
(replication lag) come from the same file.
"""

from __future__ import annotations

import re
import signal
import subprocess
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness.base.errors import HarnessError
from harness.base.owner import child_env
from harness.instruments.sip import sip_datagram
from pybin.errors import PybinError
from pybin.jsonio import packet_to_json
from pybin.pcap import CapturedDatagram, read_udp
from pybin.textio import summary_line
from pybin.wire import MARKER


class CaptureHost(Protocol):
    """Where tcpdump runs: ``argv`` wraps a command for that place (namespace, host)."""

    ifname: str

    def argv(self, command: list[str]) -> list[str]: ...


class CaptureError(HarnessError, RuntimeError):
    """tcpdump could not start or did not write its file."""


class Capture:
    """tcpdump on a cluster interface, writing ``path``; a context manager.

    ``--immediate-mode -U`` matters: without them, a tcpdump stopped by a signal may
    not have written a single packet yet.
    """

    def __init__(self, host: CaptureHost, path: str | Path, *, bpf: str = "udp",
                 snaplen: int = 0, buffer_kib: int | None = None) -> None:
        self.host = host
        self.path = Path(path)
        self.bpf = bpf
        self.snaplen = snaplen
        #: kernel capture buffer (tcpdump -B). In immediate mode every ring slot is
        #: snaplen-sized, so the 2 MB default holds only ~8 full-size packets and a burst
        #: of calls overflows it ("packets dropped by kernel"); bursts need more.
        self.buffer_kib = buffer_kib
        self._proc: subprocess.Popen[str] | None = None
        self._stderr: list[str] = []
        self._listening = threading.Event()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> Capture:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 10.0) -> None:
        """Start tcpdump and return once it says it is listening."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        command = ["tcpdump", "--immediate-mode", "-U", "-n", "-s", str(self.snaplen),
                   *(["-B", str(self.buffer_kib)] if self.buffer_kib else []),
                   "-i", self.host.ifname, "-w", str(self.path), self.bpf]
        try:
            self._proc = subprocess.Popen(self.host.argv(command), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, text=True,
                                          env=child_env())
        except FileNotFoundError as err:
            raise CaptureError(f"cannot run {err.filename}: install tcpdump") from None
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if not self._listening.wait(timeout):
            self.stop()
            raise CaptureError("tcpdump did not start listening within "
                               f"{timeout:.0f}s: {' '.join(self._stderr[-3:]) or 'no output'}")
        # The reader also sets the event when tcpdump's stderr closes, i.e. it exited
        # (no such interface, no permission, not installed in the helper image): that
        # is not a capture, and a test would otherwise fail later as a bare timeout.
        if not any("listening on" in line for line in self._stderr):
            try:
                code = self._proc.wait(timeout) if self._proc is not None else None
            except subprocess.TimeoutExpired:
                code = None
            self.stop()
            raise CaptureError(f"tcpdump exited (status {code}) without listening: "
                               f"{' '.join(self._stderr[-3:]) or 'no output'}")

    def _read_stderr(self) -> None:
        assert self._proc is not None and self._proc.stderr is not None
        stream = self._proc.stderr
        try:
            for line in stream:
                self._stderr.append(line.rstrip())
                if "listening on" in line:
                    self._listening.set()
        finally:
            stream.close()
            self._listening.set()  # exited: stop waiting, start() reports the output

    def stop(self, timeout: float = 10.0) -> Path:
        """Stop tcpdump (SIGINT flushes the file) and return the capture's path."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout)
            self._reader = None
        return self.path

    @property
    def output(self) -> str:
        return "\n".join(self._stderr)

    @property
    def dropped(self) -> int | None:
        """Packets the kernel dropped (tcpdump's exit report), None before it exited."""
        m = re.search(r"(\d+) packets? dropped by kernel", self.output)
        return int(m.group(1)) if m else None


@dataclass(frozen=True)
class LadderLine:
    time: float
    src: tuple[str, int]
    dst: tuple[str, int]
    kind: str  # "SIP" | "BIN" | "MI" | "UDP"
    summary: str
    #: the SIP Call-ID or the dialog's call_id, when there is one
    call_id: str | None = None

    def render(self, start: float, names: dict[str, str]) -> str:
        def who(addr: tuple[str, int]) -> str:
            label = names.get(addr[0])
            return f"{label}({addr[0]}:{addr[1]})" if label else f"{addr[0]}:{addr[1]}"

        return f"{self.time - start:9.3f}s  {who(self.src):>28} → {who(self.dst):<28} {self.kind} {self.summary}"


def classify(item: CapturedDatagram) -> LadderLine:
    """One datagram as a ladder line: SIP first line and Call-ID, or a decoded BIN packet."""
    data = item.data
    if data.startswith(MARKER):
        try:
            obj = packet_to_json(data)
        except PybinError as err:
            return LadderLine(item.timestamp, item.src, item.dst, "BIN", f"undecodable: {err}")
        dialog = obj.get("dialog") or {}
        return LadderLine(item.timestamp, item.src, item.dst, "BIN", summary_line(obj),
                          dialog.get("call_id"))
    sip = sip_datagram(data, item.timestamp)
    if sip is not None:
        call_id = sip.call_id or None
        return LadderLine(item.timestamp, item.src, item.dst, "SIP",
                          f"{sip.first_line}  [CSeq {sip.header('CSeq') or ''}] [Call-ID {call_id}]",
                          call_id)
    first = data.decode("utf-8", "replace").split("\n", 1)[0]
    if first.startswith(":") or re.match(r"\d{3} ", first):  # mi_datagram request / reply
        return LadderLine(item.timestamp, item.src, item.dst, "MI", first[:80])
    return LadderLine(item.timestamp, item.src, item.dst, "UDP", f"{len(data)} bytes")


def ladder_lines(pcap: str | Path) -> list[LadderLine]:
    return [classify(item) for item in read_udp(pcap)]


def render_ladder(lines: Iterable[LadderLine], names: dict[str, str] | None = None) -> str:
    """Text ladder, times relative to the first packet; ``names`` maps IPs to node names."""
    rows = list(lines)
    if not rows:
        return "(no packets captured)"
    start = rows[0].time
    return "\n".join(row.render(start, names or {}) for row in rows)

