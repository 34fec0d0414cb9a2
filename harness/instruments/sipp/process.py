"""One SIPp process driven from Python: start once bound, control keys, stop, parsed results.

Readiness is observed, not slept for: SIPp writes the first statistics row from its
traffic loop, which starts only after its SIP (and 3PCC) sockets are bound (holding
calls: `harness.instruments.sipp.caller`). Stopping uses SIPp's UDP
remote-control socket (``q``, then ``Q``), which works the same whether SIPp runs
here, in a network namespace or in a container; a local process is signalled only as
a last resort. ``command_prefix`` runs SIPp elsewhere (``ip netns exec ns1``, a
container) with the workdir visible at ``remote_workdir``; ``socket_factory`` makes
the test-side sockets where SIPp's address is reachable.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Callable, Mapping, Sequence

from harness.base.errors import HarnessError
from harness.base.owner import child_env
from harness.base.wait import WaitTimeout, wait_until
from harness.instruments.sipp.results import (
    CallEvent,
    SippSummary,
    parse_error_log,
    parse_event_log,
    start_errors,
    summarize,
)
from harness.instruments.sipp.scenarios import render_scenario, scenario_path

EXIT_FATAL = frozenset({255, 254, -1, -2})


class SippError(HarnessError, RuntimeError):
    """SIPp could not run or failed fatally; the message carries its stderr tail."""


class SippTimeout(SippError):
    """An awaited SIPp event (readiness, held calls, exit) missed its deadline."""


def free_port(ip: str, kind: int) -> int:
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
        ack_delay_ms: int | None = None,
        answer_retrans_ms: int | None = None,
        ring_ms: int | None = None,
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
        trace_messages: bool = True,
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
        #: the caller's pause between the initial 200 OK and its ACK (None: none)
        self.ack_delay_ms = ack_delay_ms
        #: the callee's first retransmission of its answers (None: the scenario's 500 ms)
        self.answer_retrans_ms = answer_retrans_ms
        #: the callee's ringing between its 180 and its 200 OK (None: it answers at once)
        self.ring_ms = ring_ms
        if local_port is None:
            if self.command_prefix:
                raise ValueError("local_port is required when SIPp runs behind a command_prefix")
            local_port = free_port(local_ip, socket.SOCK_DGRAM)
        self.local_ip = local_ip
        self.local_port = local_port
        self.remote = remote
        #: SIPp's remote-control UDP port (default: the SIP port + 1, free in a fresh namespace)
        self.control_port = control_port if control_port is not None else (
            local_port + 1 if self.command_prefix else free_port(local_ip, socket.SOCK_DGRAM))
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
        #: -trace_msg: every message to a log (per-call results need it; at 10,000 calls
        #: it is ~100 MB written synchronously, so a side nobody judges can go without)
        self.trace_messages = trace_messages
        #: event kind -> count, read incrementally from the event log (see count_events)
        self._event_counts: dict[str, int] = {}
        self._event_offset = 0
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
            *(["-trace_msg", "-message_file", self._remote("_messages.log")] if self.trace_messages else []),
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
        self._event_counts, self._event_offset = {}, 0
        xml = render_scenario(self.scenario_file.read_text(encoding="latin-1"), hold=self.hold,
                              ack_delay_ms=self.ack_delay_ms, answer_retrans_ms=self.answer_retrans_ms,
                              ring_ms=self.ring_ms)
        self.file(".xml").write_text(xml, encoding="latin-1")
        stdout = open(self.file(".stdout"), "wb")
        stderr = open(self.file(".stderr"), "wb")
        self._out = [stdout, stderr]
        self.started_at = time.time()
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=stdout,
                                         stderr=stderr, start_new_session=True,
                                         env=child_env())
        except OSError as e:
            self._close_out()
            raise SippError(f"{self.name}: cannot run {self.command()[0]!r}: {e}") from e
        # A fatal error (e.g. cannot bind) is logged to the error file, then SIPp dumps its
        # statistics while exiting: a start error (not an entry about one call) before the
        # first row means failure.
        self._wait_until(lambda: bool(start_errors(parse_error_log(_read(self.error_log))))
                         or len(_read(self.stat_csv).splitlines()) >= 2, timeout, "ready (sockets bound)")
        if start_errors(parse_error_log(_read(self.error_log))):
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.halt()
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

    def count_events(self, kind: str) -> int:
        """How many markers of a kind were logged so far; reads only what is new since the
        last call (at 10,000 calls, re-parsing the whole log every poll is quadratic)."""
        try:
            with open(self.event_log, "rb") as f:
                f.seek(self._event_offset)
                data = f.read()
        except FileNotFoundError:
            return self._event_counts.get(kind, 0)
        end = data.rfind(b"\n") + 1  # whole lines only: SIPp may be mid-line
        for line in data[:end].decode("utf-8", "replace").splitlines():
            parts = line.split()
            if len(parts) == 5:
                self._event_counts[parts[3]] = self._event_counts.get(parts[3], 0) + 1
        self._event_offset += end
        return self._event_counts.get(kind, 0)

    def wait_events(self, kind: str, count: int, timeout: float) -> list[CallEvent]:
        """Wait until at least ``count`` markers of a kind were logged; return them."""
        self._wait_until(lambda: self.count_events(kind) >= count, timeout, f"{count} {kind} events")
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
        """End SIPp (`halt`) and return the parsed run."""
        self.halt(grace)
        return self.result()

    def halt(self, grace: float = 5.0) -> None:
        """End SIPp: ``q`` (finish running calls), then ``Q`` (abort them), then signals.

        Parses nothing: at 10,000 calls the caller's message trace takes seconds to
        parse, so whoever needs the run calls `result()` once.
        """
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
            self.halt()
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
