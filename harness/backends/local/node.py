"""One OpenSIPS process tree in its network namespace: start, watch, signal, logs.

A watcher thread waits on the main process, so a death is known the moment it
happens and reported with the shared death report; readiness is MI listing every BIN
receiver, never a sleep.
"""

from __future__ import annotations

import functools
import platform
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.backends.core import (
    LOG_TAIL,
    death_report,
    opensips_command,
    wait_until_serving,
)
from harness.backends.local import netns
from harness.backends.local.topology import signal_pid, until_empty
from harness.base.errors import HarnessError
from harness.base.owner import child_env
from harness.base.settings import Settings
from harness.base.wait import WaitTimeout
from harness.cluster.interfaces import NodeAddresses, NodeDied, Release, parse_release
from harness.instruments import node_log
from harness.instruments.mi import MIClient

#: recvfrom(2) syscall numbers, as /proc/<pid>/syscall shows them while blocked
_RECVFROM_NR = {"x86_64": 45, "aarch64": 207}


class LocalBackendError(HarnessError, RuntimeError):
    """The local backend could not build its network or run a node (one-line cause)."""


@functools.cache
def binary_release(binary: str) -> Release:
    """What ``binary -V`` says (asked once per binary and process)."""
    proc = subprocess.run([binary, "-V"], capture_output=True, text=True, timeout=10)
    return parse_release(proc.stdout + proc.stderr, binary)


@dataclass(frozen=True)
class Runtime:
    """What every node of one local cluster shares."""

    binary: str
    settings: Settings
    #: where configs and logs are written
    workdir: Path
    #: the cluster subnet's prefix length (for the VIP on eth0)
    prefixlen: int
    #: UDP sockets in the hub namespace, for MI
    sock_factory: Callable[[], socket.socket]


class LocalNode:
    """One OpenSIPS process tree in namespace ``ns`` (satisfies harness.cluster.interfaces.Node)."""

    def __init__(self, name: str, ns: str, addresses: NodeAddresses, config: str,
                 runtime: Runtime, binary: str | None = None) -> None:
        self.name = name
        #: this node's opensips (a mixed-release cluster runs several)
        self.binary = binary or runtime.binary
        self.ns = ns
        self._addresses = addresses
        self.runtime = runtime
        self.settings = runtime.settings
        self.cfg_path = runtime.workdir / f"{name}.cfg"
        self.log_path = runtime.workdir / f"{name}.log"
        self.cfg_path.write_text(config)
        self.log_path.write_text("")
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._exited = threading.Event()
        self._exited.set()
        self._expected = False  # True while the harness wants it running
        self._death: tuple[float, int | None] | None = None
        self._log_offset = 0
        self._lock = threading.Lock()

    # -- Node protocol ---------------------------------------------------------------
    def start(self) -> None:
        """Start opensips -F -E and return once MI lists the BIN and SIP receivers."""
        if self.is_running():
            return
        timeouts = self.settings.timeouts
        if not until_empty(self.ns, timeouts.stop):
            raise LocalBackendError(f"{self.name}: processes of the previous run do not exit")
        self.starts += 1
        argv = ["ip", "netns", "exec", self.ns,
                *opensips_command(self.binary, str(self.cfg_path), self.settings.opensips)]
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"=== harness: start #{self.starts} of {self.name} at "
                      f"{node_log.stamp(time.time())} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True,
                                          env=child_env() | {"TZ": node_log.NODE_TZ})
        self._death = None
        self._exited.clear()
        self._expected = True
        threading.Thread(target=self._watch, args=(self._proc,), daemon=True,
                         name=f"watch-{self.name}").start()
        try:
            wait_until_serving(self.mi(), self.settings.opensips.bin_children, timeouts.start,
                               name=self.name, alive=self.check_alive, evidence=self._log_tail)
        except WaitTimeout as err:
            raise LocalBackendError(str(err)) from None

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL whatever is left after timeouts.stop."""
        self._expected = False
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self.thaw()
            signal_pid(proc.pid, signal.SIGTERM)
            if not self._exited.wait(self.settings.timeouts.stop):
                self._kill_all()
        self._reap_namespace()

    def kill(self) -> None:
        """SIGKILL every process of the node at once: a crash, as peers see it."""
        self._expected = False
        self._kill_all()
        self._reap_namespace()

    def freeze(self) -> None:
        """SIGSTOP main first (so it never sees children stop), then the children."""
        for pid in self._pids_main_first():
            signal_pid(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in reversed(self._pids_main_first()):
            signal_pid(pid, signal.SIGCONT)

    def is_running(self) -> bool:
        return self._proc is not None and not self._exited.is_set()

    def addresses(self) -> NodeAddresses:
        return self._addresses

    def describe(self) -> str:
        return f"{self.name}: {self.binary} in namespace {self.ns} at {self._addresses.ip}"

    def release(self) -> Release:
        return binary_release(self.binary)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def current_logs(self) -> str:
        """Log output of the current (or last) run only."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def take_vip(self, vip: str) -> None:
        """Add the VIP to eth0 and announce it with gratuitous ARP."""
        out = subprocess.run(["ip", "-n", self.ns, "addr", "add", f"{vip}/{self.runtime.prefixlen}",
                              "dev", "eth0"], capture_output=True, text=True)
        if out.returncode != 0 and "File exists" not in out.stderr:
            raise LocalBackendError(f"{self.name}: cannot add VIP {vip}: {out.stderr.strip()}")
        netns.send_garp(self.ns, "eth0", vip)

    def release_vip(self, vip: str) -> None:
        netns.run(["ip", "-n", self.ns, "addr", "del", f"{vip}/{self.runtime.prefixlen}", "dev", "eth0"],
                  check=False)

    def mi(self, timeout: float | None = None) -> MIClient:
        """MI client from the hub namespace; raises NodeDied if the node dies meanwhile."""
        return MIClient(self._addresses.mi_addr, timeout=timeout or self.settings.timeouts.mi,
                        sock_factory=self.runtime.sock_factory, alive=self.check_alive, name=self.name)

    def check_alive(self) -> None:
        """Raise NodeDied if the process exited while the harness expected it running."""
        if report := self.death_report():
            raise NodeDied(report)

    def death_report(self) -> str | None:
        """The shared death report if the process exited unexpectedly, else None."""
        if self._death is None or not self._expected:
            return None
        when, code = self._death
        return death_report(self.name, self._addresses.ip, when, code, self.current_logs())

    def bin_receiver_activity(self, pid: int) -> tuple[int, bool] | None:
        """(voluntary context switches, sleeping in recvfrom) of a receiver, from /proc.

        Lets the warm-up see a receiver take a packet and return to recvfrom without
        any log line. None when unknown (process gone, unsupported architecture).
        """
        nr = _RECVFROM_NR.get(platform.machine())
        if nr is None:
            return None
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            syscall = Path(f"/proc/{pid}/syscall").read_text().split()
        except OSError:
            return None
        switches = state = None
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                switches = int(line.split()[1])
            elif line.startswith("State:"):
                state = line.split()[1]
        if switches is None or state in (None, "Z", "X"):
            return None
        return switches, state == "S" and bool(syscall) and syscall[0] == str(nr)

    def read_proc_net(self, name: str) -> str:
        """/proc/<pid>/net/<name> of any process in the node's namespace (same namespace,
        same view); LocalBackendError when none is left to read it through."""
        for pid in self.pids():
            try:
                return Path(f"/proc/{pid}/net/{name}").read_text()
            except OSError:
                continue
        raise LocalBackendError(f"{self.name}: no process left to read /proc/net/{name} through")

    def opensips_pids(self) -> list[int]:
        """Processes in the node's namespace running its binary (a namespace may also
        hold what runs beside the node, a capture for instance): beside MI ``ps``, they
        show which processes MI lists under no pid."""
        binary = Path(self.binary).resolve()
        found = []
        for pid in self.pids():
            try:
                if Path(f"/proc/{pid}/exe").resolve() == binary:
                    found.append(pid)
            except OSError:
                continue
        return found

    # -- extras ----------------------------------------------------------------------
    def pids(self) -> list[int]:
        return netns.pids(self.ns)

    def teardown(self) -> None:
        """Kill whatever runs, expected or not (the backend is closing)."""
        self._expected = False
        self._kill_all()
        self._reap_namespace()

    # -- internals -------------------------------------------------------------------
    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            if proc is not self._proc:
                return
            self._death = (time.time(), code)
            self._exited.set()

    def _log_tail(self) -> str:
        return "last log lines:\n" + "\n".join(self.current_logs().splitlines()[-LOG_TAIL:])

    def _pids_main_first(self) -> list[int]:
        pids = netns.pids(self.ns)
        main = self._proc.pid if self._proc else None
        return sorted(pids, key=lambda p: p != main)

    def _kill_all(self) -> None:
        for pid in netns.pids(self.ns):
            signal_pid(pid, signal.SIGKILL)

    def _reap_namespace(self) -> None:
        limit = self.settings.timeouts.stop
        if self._proc is not None:
            self._exited.wait(limit)
        if not until_empty(self.ns, limit):
            self._kill_all()
            until_empty(self.ns, 5)
