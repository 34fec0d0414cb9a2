"""SIP traffic for the harness: SIPp driven from Python, results parsed per call.

Why this module exists: the suite must drive real calls through OpenSIPS nodes and then
reason about *each call* (Call-ID, tags, which responses came back and when), not just
about SIPp's exit code. Failover tests also need calls held open while the test kills a
node, then resumed on demand.

How it works
------------
* Scenarios are kept in ``harness/scenarios`` as ``<name>_uac.xml`` / ``<name>_uas.xml``
  pairs (see `SCENARIOS`). Our own UAS files echo Record-Route (SIPp's built-in ``uas``
  does not), and callers send in-dialog requests to ``[next_url]`` with ``[routes]``, so
  they follow the proxy's Record-Route.
* Each SIPp run writes, into a *workdir* shared with the test process, its message log
  (``-trace_msg``: every datagram sent and received, retransmissions included, with a
  microsecond timestamp), an event log (``-trace_logs``: ``<log>`` markers such as
  ``END <call-id>``), an error log and its statistics CSV. SIPp flushes after every
  line, so these are read while SIPp runs. SIPp runs with ``TZ=UTC`` because the message
  log's timestamps carry no zone.
* Readiness is observed, not slept for: SIPp writes the first statistics row from its
  traffic loop, which starts only after its SIP (and 3PCC) sockets are bound.
* Holding calls: with ``hold=True`` the caller scenario's ``<!--HOLD-->`` marker becomes
  ``<log HELD>`` + ``<recvCmd>``. SIPp then listens on a TCP "twin" socket (3PCC,
  ``-3pcc ip:port``); `SippUAC.release` sends one twin command per Call-ID
  (``Call-ID: <id>`` terminated by ESC, the framing SIPp's 3PCC uses), and that call
  goes on (re-INVITE, BYE...). The twin connection stays open for the whole run: SIPp
  exits when it closes.
* Stopping uses SIPp's UDP remote-control socket (``q`` = no new calls, finish the
  running ones; ``Q`` = abort all and exit), which works the same whether SIPp runs
  here, in a network namespace or in a container; a local process is signalled only as
  a last resort.
* ``command_prefix`` runs SIPp elsewhere, e.g. ``["ip", "netns", "exec", "ns1"]`` or
  ``["docker", "exec", "<cid>"]``; the workdir must then be visible to that SIPp at
  ``remote_workdir`` (the same path by default, e.g. a bind mount at the same place).
  The test-side sockets to SIPp (control, twin) come from ``socket_factory`` when SIPp's
  address is only reachable from another namespace.

Verified against Debian's sip-tester 3.6.1 (``SIPp v3.6.1-SCTP-PCAP-RTPSTREAM``).
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Callable, Iterable, Mapping, NamedTuple, Sequence

from harness.sip import SipMessage
from harness.wait import WaitTimeout, wait_until

SCENARIO_DIR = Path(__file__).parent / "scenarios"

#: scenario name -> what it exercises (files: <name>_uac.xml and <name>_uas.xml)
SCENARIOS: dict[str, str] = {
    "basic": "INVITE/100/180/200/ACK, pause, BYE/200 from the caller",
    "reinvite": "basic call with a re-INVITE (CSeq 2) mid-call, then BYE; the failover scenario",
    "callee_bye": "the callee hangs up: BYE from the UAS through the route set",
    "cancel": "CANCEL after 180, 487 + ACK; the dialog is never confirmed",
    "long_headers": "1.2 KB Call-ID, 600-char From display name, long Contacts, 4 KB of X- headers",
    "record_route": "the callee adds two Record-Route hops below the proxy's",
}
#: scenarios whose caller can be held open after the ACK (they carry <!--HOLD-->)
HOLDABLE = frozenset({"basic", "reinvite", "long_headers", "record_route"})

HOLD_MARKER = "<!--HOLD-->"
HOLD_XML = (
    '<nop><action><log message="[timestamp] HELD [call_id]"/></action></nop>\n'
    '  <recvCmd><action><log message="[timestamp] RELEASED [call_id]"/></action></recvCmd>'
)

#: SIPp exit codes (sipp -h): 0 all calls OK, 1 some failed, 97 internal command,
#: 99 no call processed; -1 / -2 (255 / 254) are fatal errors.
EXIT_FATAL = frozenset({255, 254, -1, -2})

_SEPARATOR = "-" * 47
_TIME_FMT = "%Y-%m-%d %H:%M:%S.%f"


class SippError(RuntimeError):
    """SIPp could not run or failed fatally; the message carries its stderr tail."""


class SippTimeout(SippError):
    """An awaited SIPp event (readiness, held calls, exit) missed its deadline."""


def sipp_version(binary: str = "sipp") -> str | None:
    """Return SIPp's version banner (e.g. ``v3.6.1-SCTP-PCAP-RTPSTREAM``), or None if absent.

    Live tests use it for their skip reason.
    """
    path = shutil.which(binary)
    if path is None:
        return None
    try:
        out = subprocess.run([path, "-v"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    m = re.search(r"SIPp\s+(v\S+)", out.stdout + out.stderr)
    return m.group(1).rstrip(".") if m else None


def scenario_path(name: str, role: str) -> Path:
    """Path of a kept scenario file, e.g. ``scenario_path("basic", "uac")``."""
    if role not in ("uac", "uas"):
        raise ValueError(f"role must be 'uac' or 'uas', not {role!r}")
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(sorted(SCENARIOS))}")
    return SCENARIO_DIR / f"{name}_{role}.xml"


def render_scenario(text: str, *, hold: bool) -> str:
    """Fill (or drop) the HOLD marker of a scenario's XML."""
    if hold:
        if HOLD_MARKER not in text:
            raise ValueError("hold=True needs a scenario with a <!--HOLD--> marker")
        return text.replace(HOLD_MARKER, HOLD_XML)
    return text


# --------------------------------------------------------------------------- results


class Response(NamedTuple):
    """A response received by this SIPp: to which request (CSeq), which code, when."""

    method: str
    code: int
    t: float
    cseq: int


class Request(NamedTuple):
    """A request this SIPp sent; ``retransmission`` when the same bytes went out before."""

    method: str
    cseq: int
    t: float
    retransmission: bool


@dataclass
class CallEvent:
    """A ``<log>`` marker written by a scenario: ``HELD``, ``RELEASED`` or ``END``."""

    t: float
    kind: str
    call_id: str  # SIPp's own call id: the part after '///' of a prefixed Call-ID


@dataclass
class CallResult:
    """Everything one SIPp side saw of one call."""

    call_id: str
    #: tag of the caller leg (From of the initial INVITE)
    from_tag: str | None
    #: tag of the callee leg (To of the responses to the initial INVITE)
    to_tag: str | None
    messages: list[SipMessage] = field(default_factory=list)
    #: event kind -> time (unix seconds) from the scenario's markers
    events: dict[str, float] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        """The scenario ran to its end for this call (its END marker was logged)."""
        return "END" in self.events

    @property
    def responses(self) -> list[Response]:
        """Responses received, in arrival order (retransmissions included)."""
        return [Response(m.method, m.code or 0, m.t, m.cseq[0])
                for m in self.messages if m.direction == "received" and m.is_response]

    @property
    def requests(self) -> list[Request]:
        """Requests sent, in order, each marked when it repeats an earlier datagram."""
        return self._requests("sent")

    @property
    def received_requests(self) -> list[Request]:
        """Requests received (a UAS's view), retransmissions marked."""
        return self._requests("received")

    def _requests(self, direction: str) -> list[Request]:
        seen: set[str] = set()
        out = []
        for m in self.messages:
            if m.direction == direction and not m.is_response:
                out.append(Request(m.method, m.cseq[0], m.t, m.text in seen))
                seen.add(m.text)
        return out

    def codes(self, method: str | None = None, cseq: int | None = None) -> list[int]:
        """Codes of the received responses, optionally for one method / CSeq number."""
        return [r.code for r in self.responses
                if (method is None or r.method == method) and (cseq is None or r.cseq == cseq)]

    def final_response(self, method: str, cseq: int | None = None) -> Response | None:
        """First final (>= 200) response received for a request, or None."""
        for r in self.responses:
            if r.method == method and r.code >= 200 and (cseq is None or r.cseq == cseq):
                return r
        return None

    def first_sent(self, method: str, cseq: int | None = None) -> float | None:
        """When a request first went out (its retransmissions are later)."""
        for r in self.requests:
            if r.method == method and (cseq is None or r.cseq == cseq):
                return r.t
        return None

    def retransmissions(self, method: str | None = None) -> int:
        """How many sent requests were retransmissions."""
        return sum(1 for r in self.requests if r.retransmission and (method is None or r.method == method))


@dataclass
class SippSummary:
    """One SIPp run, parsed: SIPp's own counters plus a `CallResult` per Call-ID."""

    role: str
    scenario: str
    exit_code: int | None
    #: SIPp's cumulative SuccessfulCall / FailedCall counters (statistics CSV)
    successful: int
    failed: int
    calls: list[CallResult]
    #: lines of SIPp's error log (unexpected messages, aborted calls, timeouts)
    errors: list[str] = field(default_factory=list)
    #: the last row of the statistics CSV, column -> value
    stats: dict[str, str] = field(default_factory=dict)

    def call(self, call_id: str) -> CallResult:
        """The call with this Call-ID (the full header value or SIPp's short id)."""
        for c in self.calls:
            if c.call_id == call_id or _short_id(c.call_id) == call_id:
                return c
        raise KeyError(call_id)

    @property
    def completed(self) -> list[CallResult]:
        return [c for c in self.calls if c.completed]

    @property
    def incomplete(self) -> list[CallResult]:
        return [c for c in self.calls if not c.completed]


def _short_id(call_id: str) -> str:
    """SIPp matches calls on the part after the first '///' of a Call-ID."""
    _, sep, rest = call_id.partition("///")
    return rest if sep else call_id


def _parse_time(stamp: str) -> float:
    return datetime.strptime(stamp, _TIME_FMT).replace(tzinfo=timezone.utc).timestamp()


_ENTRY_HEAD = re.compile(r"^(UDP|TCP|TLS|SCTP) (control )?message (sent|received)\b")


def parse_message_log(text: str) -> list[SipMessage]:
    """SIP messages of a ``-trace_msg`` log (SIPp run with TZ=UTC), in log order.

    Each entry is a 47-dash line with a timestamp, a line such as ``UDP message sent (N
    bytes):`` or ``UDP message received [N] bytes :``, a blank line and the message.
    Entries without a timestamp ("Unexpected ... message received", "Ignoring ...")
    repeat a message already logged and are skipped, as are 3PCC control messages.
    """
    out: list[SipMessage] = []
    text = text.replace("\r\n", "\n")
    chunks = re.split(rf"^{_SEPARATOR} ?(.*)\n", text, flags=re.M)
    # chunks: [before, stamp1, body1, stamp2, body2, ...]
    for i in range(1, len(chunks) - 1, 2):
        stamp, body = chunks[i].strip(), chunks[i + 1]
        if not stamp:
            continue
        head, _, msg = body.partition("\n\n")
        m = _ENTRY_HEAD.match(head)
        if not m or m.group(2):
            continue
        msg = msg.lstrip("\n")
        if not msg.strip():
            continue
        # keep the body to its Content-Length: SIPp may append notes after a message
        hdrs, sep, payload = msg.partition("\n\n")
        clen = re.search(r"^(?:Content-Length|l)\s*:\s*(\d+)", hdrs, flags=re.M | re.I)
        if clen and sep:
            payload = payload.replace("\n", "\r\n")[: int(clen.group(1))]
            wire = hdrs.replace("\n", "\r\n") + "\r\n\r\n" + payload
        else:
            wire = hdrs.rstrip("\n").replace("\n", "\r\n") + "\r\n\r\n"
        out.append(SipMessage(_parse_time(stamp), m.group(3), wire))
    return out


def parse_event_log(text: str) -> list[CallEvent]:
    """Markers of a ``-trace_logs`` log: ``<date> <time> <epoch> KIND <call-id>`` lines."""
    events = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        try:
            t = float(parts[2])
        except ValueError:
            continue
        events.append(CallEvent(t, parts[3], parts[4]))
    return events


_ERROR_STAMP = re.compile(r"\d{4}-\d\d-\d\d\t\d\d:\d\d:\d\d\.\d{6}\t\d+\.\d{6}: ")


def parse_error_log(text: str) -> list[str]:
    """Entries of a ``-trace_err`` log, one string each (``<epoch>: <what happened>``).

    SIPp writes entries without a newline between them, so they are split on the
    timestamp that starts each one; the zone-free date/time part is dropped.
    """
    starts = [m for m in _ERROR_STAMP.finditer(text)]
    out = []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        epoch = m.group(0).split("\t")[2].rstrip(": ")
        out.append(f"{epoch}: {text[m.end():end].strip()}")
    return out


def parse_stat_csv(text: str) -> dict[str, str]:
    """Last row of a ``-trace_stat`` CSV (';'-separated, header first) as a dict."""
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=";") if r]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {k: v for k, v in zip(header, last) if k}


def build_calls(messages: Iterable[SipMessage], events: Iterable[CallEvent] = ()) -> list[CallResult]:
    """Group messages by Call-ID (first-seen order) and attach the markers."""
    calls: dict[str, CallResult] = {}
    for m in messages:
        cid = m.call_id
        if not cid:
            continue
        c = calls.get(cid)
        if c is None:
            c = calls[cid] = CallResult(cid, None, None)
        c.messages.append(m)
    for c in calls.values():
        invite = next((m for m in c.messages if not m.is_response and m.method == "INVITE"), None)
        if invite is not None:
            c.from_tag = invite.from_tag
            icseq = invite.cseq[0]
            tagged = [m for m in c.messages if m.is_response and m.cseq == (icseq, "INVITE") and m.to_tag]
            final = [m for m in tagged if (m.code or 0) >= 200]
            pick = final[0] if final else (tagged[0] if tagged else None)
            c.to_tag = pick.to_tag if pick else None
        elif c.messages:
            c.from_tag = c.messages[0].from_tag
            c.to_tag = c.messages[0].to_tag
    by_short = {_short_id(cid): c for cid, c in calls.items()}
    for e in events:
        c = calls.get(e.call_id) or by_short.get(e.call_id)
        if c is None:  # a marker before any message (cannot happen with our scenarios)
            c = calls[e.call_id] = CallResult(e.call_id, None, None)
            by_short[e.call_id] = c
        c.events.setdefault(e.kind, e.t)
    return list(calls.values())


def summarize(role: str, scenario: str, exit_code: int | None, *, message_log: str, event_log: str,
              stat_csv: str, error_log: str = "") -> SippSummary:
    """Build a `SippSummary` from the texts of one run's files (used offline in tests)."""
    stats = parse_stat_csv(stat_csv)
    calls = build_calls(parse_message_log(message_log), parse_event_log(event_log))
    errors = parse_error_log(error_log)

    def num(key: str) -> int:
        try:
            return int(stats.get(key, "0") or 0)
        except ValueError:
            return 0

    return SippSummary(role, scenario, exit_code, num("SuccessfulCall(C)"), num("FailedCall(C)"),
                       calls, errors, stats)


# --------------------------------------------------------------------------- processes


def _free_port(ip: str, kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind((ip, 0))
        return int(s.getsockname()[1])


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


class _RunFile:
    """One of a SIPp run's files as the test process sees it: ``<workdir>/<name><suffix>``."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    def __get__(self, run: SippProcess, owner: type | None = None) -> Path:
        return run.file(self.suffix)


class SippProcess:
    """One SIPp process (UAC or UAS) with its files in ``workdir``.

    Use `SippUAC` / `SippUAS`. Lifecycle: ``start()`` (returns once SIPp's sockets are
    bound), then ``wait(timeout)`` or ``stop()``, each returning a `SippSummary`; or as a
    context manager that starts and, on exit, stops whatever still runs.
    """

    role = "?"

    def __init__(
        self,
        scenario: str | Path,
        *,
        local_ip: str,
        local_port: int | None,
        workdir: str | Path,
        remote: str | None = None,
        name: str | None = None,
        hold: bool = False,
        command_prefix: Sequence[str] = (),
        netns: str | None = None,
        remote_workdir: str | None = None,
        control_port: int | None = None,
        pause_ms: int = 100,
        buff_size: int = 1 << 20,
        socket_factory: Callable[[int], socket.socket] | None = None,
        extra_vars: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        sipp_binary: str = "sipp",
    ) -> None:
        if netns is not None:
            if command_prefix:
                raise ValueError("give either netns or command_prefix, not both")
            command_prefix = ["ip", "netns", "exec", netns]
        self.command_prefix = list(command_prefix)
        if isinstance(scenario, Path) or scenario.endswith(".xml"):
            self.scenario_file = Path(scenario)
            self.scenario = self.scenario_file.stem
        else:
            self.scenario_file = scenario_path(scenario, self.role)
            self.scenario = scenario
        self.hold = hold
        if local_port is None:
            if self.command_prefix:
                raise ValueError("local_port is required when SIPp runs behind a command_prefix")
            local_port = _free_port(local_ip, socket.SOCK_DGRAM)
        self.local_ip = local_ip
        self.local_port = local_port
        self.remote = remote
        #: SIPp's remote-control UDP port (default: the SIP port + 1, free in a fresh namespace)
        self.control_port = control_port if control_port is not None else (
            local_port + 1 if self.command_prefix else _free_port(local_ip, socket.SOCK_DGRAM))
        self.workdir = Path(workdir)
        self.remote_workdir = remote_workdir or str(self.workdir)
        self.name = name or f"{self.role}-{self.scenario}-{local_port}"
        self.pause_ms = pause_ms
        #: socket buffers (-buff_size): bursts of hundreds of calls overflow SIPp's 64 KB default
        self.buff_size = buff_size
        #: makes the test-side sockets to SIPp (UDP control, TCP twin), given SOCK_DGRAM or
        #: SOCK_STREAM; e.g. a backend's factory creating them in its hub namespace
        self.socket_factory: Callable[[int], socket.socket] = socket_factory or (
            lambda kind: socket.socket(socket.AF_INET, kind))
        self.extra_vars = dict(extra_vars or {})
        self.extra_args = list(extra_args)
        self.sipp_binary = sipp_binary
        self.proc: subprocess.Popen[bytes] | None = None
        self.exit_code: int | None = None
        self.started_at: float | None = None
        self._out: list[io.BufferedWriter] = []

    # files, as the test process sees them
    def file(self, suffix: str) -> Path:
        return self.workdir / f"{self.name}{suffix}"

    message_log = _RunFile("_messages.log")
    event_log = _RunFile("_events.log")
    error_log = _RunFile("_errors.log")
    stat_csv = _RunFile("_stat.csv")

    def _remote(self, suffix: str) -> str:
        return f"{self.remote_workdir.rstrip('/')}/{self.name}{suffix}"

    def _role_args(self) -> list[str]:
        return []

    def command(self) -> list[str]:
        """The full command line (prefix included) this object runs."""
        cmd = [*self.command_prefix, "env", "TZ=UTC", self.sipp_binary]
        if self.remote:
            cmd.append(self.remote)
        cmd += [
            "-sf", self._remote(".xml"),
            "-i", self.local_ip, "-p", str(self.local_port), "-bind_local",
            "-ci", self.local_ip, "-cp", str(self.control_port),
            "-nostdin", "-d", str(self.pause_ms), "-buff_size", str(self.buff_size),
            "-trace_msg", "-message_file", self._remote("_messages.log"),
            "-trace_logs", "-log_file", self._remote("_events.log"),
            "-trace_err", "-error_file", self._remote("_errors.log"),
            "-trace_stat", "-stf", self._remote("_stat.csv"), "-fd", "1",
        ]
        for k, v in self.extra_vars.items():
            cmd += ["-key", k, str(v)]
        return cmd + self._role_args() + self.extra_args

    def start(self, timeout: float = 10.0) -> "SippProcess":
        """Launch SIPp and return once its sockets are bound (first statistics row)."""
        if self.proc is not None:
            raise SippError(f"{self.name}: already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        for suffix in ("_messages.log", "_events.log", "_errors.log", "_stat.csv"):
            self.file(suffix).unlink(missing_ok=True)
        xml = render_scenario(self.scenario_file.read_text(encoding="latin-1"), hold=self.hold)
        self.file(".xml").write_text(xml, encoding="latin-1")
        stdout = open(self.file(".stdout"), "wb")
        stderr = open(self.file(".stderr"), "wb")
        self._out = [stdout, stderr]
        self.started_at = time.time()
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=stdout,
                                         stderr=stderr, start_new_session=True)
        except OSError as e:
            self._close_out()
            raise SippError(f"{self.name}: cannot run {self.command()[0]!r}: {e}") from e
        # A fatal error (e.g. cannot bind) is logged to the error file, then SIPp dumps its
        # statistics while exiting: an error entry before the first row means failure.
        self._wait_until(lambda: bool(parse_error_log(_read(self.error_log)))
                         or len(_read(self.stat_csv).splitlines()) >= 2, timeout, "ready (sockets bound)")
        if parse_error_log(_read(self.error_log)):
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.stop()
            self._finish()
            raise self._fail("failed at start")
        self._after_start(timeout)
        return self

    def _after_start(self, timeout: float) -> None:
        pass

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stderr_tail(self, lines: int = 20) -> str:
        """The last lines SIPp wrote to stderr plus its error log (for diagnostics)."""
        text = _read(self.file(".stderr")).strip().splitlines()[-lines:]
        err = [ln for ln in _read(self.error_log).splitlines() if ln.strip()][-lines:]
        out = "\n".join(text)
        if err:
            out += "\n--- error log ---\n" + "\n".join(err)
        return out

    def _fail(self, what: str, exc: type[SippError] = SippError) -> SippError:
        rc = self.proc.poll() if self.proc else None
        return exc(f"SIPp {self.name} ({self.scenario} {self.role}) {what}; exit code {rc}; "
                   f"command: {' '.join(self.command())}\n{self.stderr_tail()}")

    def _wait_until(self, cond: Callable[[], bool], timeout: float, what: str) -> None:
        """Wait for an observed condition; fail fast if SIPp exits first."""
        def still_running() -> None:
            if self.proc is not None and self.proc.poll() is not None:
                self._finish()
                raise self._fail(f"exited before {what}")

        try:
            wait_until(cond, timeout=timeout, interval=0.02, what=what, alive=still_running)
        except WaitTimeout:
            raise self._fail(f"not {what} within {timeout:.1f}s", SippTimeout) from None

    def events(self, kind: str | None = None) -> list[CallEvent]:
        """Markers logged so far (readable while SIPp runs)."""
        return [e for e in parse_event_log(_read(self.event_log)) if kind is None or e.kind == kind]

    def wait_events(self, kind: str, count: int, timeout: float) -> list[CallEvent]:
        """Wait until at least ``count`` markers of a kind were logged; return them."""
        self._wait_until(lambda: len(self.events(kind)) >= count, timeout, f"{count} {kind} events")
        return self.events(kind)

    def control(self, key: str) -> None:
        """Send a remote-control key (``q``, ``Q``, ``p``, ``+``...) to SIPp's UDP socket."""
        with self.socket_factory(socket.SOCK_DGRAM) as s:
            s.sendto(key.encode(), (self.local_ip, self.control_port))

    def wait(self, timeout: float) -> SippSummary:
        """Wait for SIPp to exit by itself and return the parsed run.

        Raises `SippTimeout` (SIPp keeps running; ``stop()`` or the context manager ends
        it) or `SippError` on a fatal exit code.
        """
        if self.proc is None:
            raise SippError(f"{self.name}: not started")
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            done = len(self.events("END"))
            raise self._fail(f"still running after {timeout:.1f}s ({done} calls completed)",
                             SippTimeout) from None
        self._finish()
        if self.exit_code in EXIT_FATAL:
            raise self._fail("failed fatally")
        return self.result()

    def stop(self, grace: float = 5.0) -> SippSummary:
        """End SIPp: ``q`` (finish running calls), then ``Q`` (abort them), then signals."""
        if self.proc is None:
            raise SippError(f"{self.name}: not started")
        steps: list[Callable[[], None]] = [
            lambda: self.control("q"),
            lambda: self.control("Q"),
            lambda: self._signal(signal.SIGTERM),
            lambda: self._signal(signal.SIGKILL),
        ]
        for step in steps:
            if self.proc.poll() is not None:
                break
            try:
                step()
            except OSError:
                pass
            try:
                self.proc.wait(grace / 2)
            except subprocess.TimeoutExpired:
                continue
        self.proc.wait(grace)
        self._finish()
        return self.result()

    def _signal(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass

    def _finish(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self.exit_code = self.proc.returncode
        self._close_out()

    def _close_out(self) -> None:
        for f in self._out:
            f.close()
        self._out = []

    def result(self) -> SippSummary:
        """Parse the run's files now (complete once SIPp exited; partial before)."""
        return summarize(self.role, self.scenario, self.exit_code, message_log=_read(self.message_log),
                         event_log=_read(self.event_log), stat_csv=_read(self.stat_csv),
                         error_log=_read(self.error_log))

    def __enter__(self) -> "SippProcess":
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self._finish()


class SippUAS(SippProcess):
    """The callee side: answers calls on ``listen_ip:port`` until stopped."""

    role = "uas"

    def __init__(self, scenario: str | Path, listen_ip: str, port: int | None, *,
                 workdir: str | Path, **kwargs: object) -> None:
        super().__init__(scenario, local_ip=listen_ip, local_port=port, workdir=workdir, **kwargs)  # type: ignore[arg-type]

    @property
    def address(self) -> str:
        return f"{self.local_ip}:{self.local_port}"


class SippUAC(SippProcess):
    """The caller side: places ``calls`` calls to ``target`` then exits.

    ``target`` (``host:port``) goes in the Request-URI and To; ``outbound_proxy``
    (``host:port``, SIPp's ``-rsa``) is where every request is actually sent, e.g. the
    cluster's virtual IP, so a proxy routes the INVITE to the UAS named in the R-URI.
    With ``hold=True`` each call stops after its ACK until `release` names it.
    """

    role = "uac"

    def __init__(
        self,
        scenario: str | Path,
        target: str,
        local_ip: str,
        port: int | None = None,
        *,
        workdir: str | Path,
        calls: int = 1,
        rate: float = 10.0,
        rate_period_ms: int = 1000,
        max_concurrent: int | None = None,
        outbound_proxy: str | None = None,
        service: str = "service",
        hold: bool = False,
        twin_port: int | None = None,
        recv_timeout_ms: int | None = None,
        max_invite_retrans: int | None = None,
        max_non_invite_retrans: int | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scenario, local_ip=local_ip, local_port=port, workdir=workdir,  # type: ignore[arg-type]
                         remote=target, hold=hold, **kwargs)
        self.target = target
        self.calls = calls
        self.rate = rate
        self.rate_period_ms = rate_period_ms
        self.max_concurrent = max_concurrent
        self.outbound_proxy = outbound_proxy
        self.service = service
        self.recv_timeout_ms = recv_timeout_ms
        self.max_invite_retrans = max_invite_retrans
        self.max_non_invite_retrans = max_non_invite_retrans
        #: TCP port of the 3PCC twin socket SIPp listens on when holding calls
        self.twin_port = twin_port if twin_port is not None else (
            self.local_port + 1 if self.command_prefix else _free_port(local_ip, socket.SOCK_STREAM))
        #: Call-ID (SIPp's short id) -> when `release` sent its command
        self.released: dict[str, float] = {}
        self._twin: socket.socket | None = None
        self._twin_reader: threading.Thread | None = None

    def _role_args(self) -> list[str]:
        args = ["-m", str(self.calls), "-r", f"{self.rate:g}", "-rp", str(self.rate_period_ms),
                "-s", self.service]
        if self.max_concurrent is not None:
            args += ["-l", str(self.max_concurrent)]
        if self.outbound_proxy:
            args += ["-rsa", self.outbound_proxy]
        if self.recv_timeout_ms is not None:
            args += ["-recv_timeout", str(self.recv_timeout_ms)]
        if self.max_invite_retrans is not None:
            args += ["-max_invite_retrans", str(self.max_invite_retrans)]
        if self.max_non_invite_retrans is not None:
            args += ["-max_non_invite_retrans", str(self.max_non_invite_retrans)]
        if self.hold:
            args += ["-3pcc", f"{self.local_ip}:{self.twin_port}"]
        return args

    def _after_start(self, timeout: float) -> None:
        if not self.hold:
            return
        def connect() -> socket.socket | None:
            sock = self.socket_factory(socket.SOCK_STREAM)
            try:
                sock.settimeout(1.0)
                sock.connect((self.local_ip, self.twin_port))
            except OSError:
                sock.close()
                return None
            return sock

        # the twin socket is bound before the first statistics row; retry anyway
        try:
            self._twin = wait_until(connect, timeout=timeout, what="the 3PCC twin socket to accept",
                                    alive=lambda: None if self.running() else self._fail_twin())
        except (WaitTimeout, SippError) as err:
            self.stop()
            raise self._fail(f"3PCC twin socket {self.local_ip}:{self.twin_port} unreachable "
                             f"({str(err).splitlines()[0]})") from None
        self._twin.settimeout(None)
        self._twin_reader = threading.Thread(target=self._drain_twin, name=f"{self.name}-twin", daemon=True)
        self._twin_reader.start()

    def _fail_twin(self) -> None:
        raise SippError("SIPp exited")

    def _drain_twin(self) -> None:
        """Read (and drop) what SIPp writes back on the twin socket, so it never blocks."""
        sock = self._twin
        while sock is not None:
            try:
                if not sock.recv(65536):
                    return
            except OSError:
                return

    def held(self) -> list[str]:
        """Short Call-IDs of calls that reached the hold point and were not released."""
        return [e.call_id for e in self.events("HELD") if e.call_id not in self.released]

    def wait_held(self, count: int | None = None, timeout: float = 30.0) -> list[str]:
        """Wait until ``count`` calls (default: all) wait at the hold point; their Call-IDs."""
        if not self.hold:
            raise SippError(f"{self.name}: not started with hold=True")
        want = self.calls if count is None else count
        return [e.call_id for e in self.wait_events("HELD", want, timeout)]

    def release(self, call_ids: Iterable[str] | None = None) -> list[str]:
        """Let held calls go on (default: every call held now); returns the ids released.

        A twin command for a Call-ID SIPp does not know would start a failed call there,
        so only ids that logged HELD are sent.
        """
        if self._twin is None:
            raise SippError(f"{self.name}: no 3PCC twin connection (hold=False or not started)")
        held = set(e.call_id for e in self.events("HELD"))
        ids = self.held() if call_ids is None else [_short_id(c) for c in call_ids]
        unknown = [c for c in ids if c not in held]
        if unknown:
            raise SippError(f"{self.name}: not held: {unknown[:5]}")
        out = []
        for cid in ids:
            if cid in self.released:
                continue
            self.released[cid] = time.time()  # taken before sending: SIPp may act at once
            self._twin.sendall(f"Call-ID: {cid}\r\n\r\n\x1b".encode())
            out.append(cid)
        return out

    def _finish(self) -> None:
        super()._finish()
        if self.exit_code is not None and self._twin is not None:
            self._twin.close()
            self._twin = None
            if self._twin_reader is not None:
                self._twin_reader.join(2)
                self._twin_reader = None
