"""Local backend: real OpenSIPS 1.10 processes, each in its own network namespace.

Why namespaces: every node must listen on the *same* virtual IP (a 1.10 backup only
accepts dialogs whose sockets it owns), which one host can only do once; namespaces
give each node its own stack, and a bridge joins them like a LAN. Nothing is added to
the host's own namespace: the bridge lives in a "hub" namespace, which is also where
the harness talks from (MI, BIN probes, pybin peers) through sockets created there.

Layout of one cluster (subnet 10.a.b.0/24 derived from run id + xdist worker):

    hub ns:     br0 10.a.b.1  (harness vantage point; tcpdump -i br0 sees everything)
    node ns:    eth0 10.a.b.11, .12, ...   (+ VIP 10.a.b.100 on the active node)
    client ns:  eth0 10.a.b.201, .202 ...  (SIPp caller / callee)

Failover moves the VIP with `ip addr del/add` and sends gratuitous ARP from the new
owner (raw AF_PACKET frames, no arping needed; a live test shows it alone moves a
client's ARP entry). The cluster also flushes the VIP's neighbour entry in client
namespaces (`refresh_neighbours`), because Linux may ignore a gratuitous ARP for an
entry updated less than `locktime` (1 s) ago; the flush makes the next packet
re-resolve whatever the timing.

Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN); `local_backend_unavailable()` says why not.
"""

from __future__ import annotations

import atexit
import ipaddress
import itertools
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from harness.backends import _netns as netns
from harness.mi import MIClient, MITimeout
from harness.node import NodeAddresses, NodeDied
from harness.settings import Settings, SettingsError, find_opensips_binary, load_settings
from harness.wait import WaitTimeout, wait_until

NS_PREFIX = "hx"
_NS_RE = re.compile(rf"^{NS_PREFIX}(\d+)x\d+-")
_counter = itertools.count()
_LOG_TAIL = 15
#: recvfrom(2) syscall numbers, as /proc/<pid>/syscall shows them while blocked
_RECVFROM_NR = {"x86_64": 45, "aarch64": 207}


class LocalBackendError(RuntimeError):
    """The local backend could not build its network or run a node (one-line cause)."""


def local_backend_unavailable(settings: Settings | None = None) -> str | None:
    """Why the local backend cannot run here (a skip reason), or None if it can."""
    if os.name != "posix" or not Path("/proc/self/ns/net").exists():
        return "local backend needs Linux network namespaces"
    if os.geteuid() != 0:
        return "local backend needs root (it creates network namespaces and a bridge)"
    if shutil.which("ip") is None:
        return "local backend needs iproute2's `ip` on PATH"
    try:
        binary = find_opensips_binary((settings or load_settings()).opensips.binary)
        (settings or load_settings()).module_path_for(binary)
    except SettingsError as exc:
        return f"local backend: {exc}"
    return None


def derive_subnet(worker: str | None, index: int, run_id: str | None = None) -> ipaddress.IPv4Network:
    """10.<a>.<b>.0/24 from the xdist worker ("gw3"), the run id and a cluster counter.

    Clusters are isolated by namespaces anyway; distinct subnets keep captures and
    logs of parallel workers unambiguous.
    """
    w = int(re.sub(r"\D", "", worker or "") or 0)
    r = zlib.crc32((run_id or str(os.getpid())).encode()) % 50
    a = 100 + (w + r * 3) % 150
    return ipaddress.IPv4Network(f"10.{a}.{index % 256}.0/24")


def sweep_stale() -> list[str]:
    """Delete namespaces left by harness processes that no longer exist (crash, SIGKILL)."""
    removed = []
    for name in netns.list_names():
        m = _NS_RE.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        for pid in netns.pids(name):
            _signal(pid, signal.SIGKILL)
        netns.delete(name)
        removed.append(name)
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _until_empty(ns: str, timeout: float) -> bool:
    """Wait until no process lives in namespace ``ns``; False if some still do."""
    try:
        wait_until(lambda: not netns.pids(ns), timeout=timeout, interval=0.02,
                   what=f"the processes of namespace {ns} to exit")
    except WaitTimeout:
        return False
    return True


@dataclass(frozen=True)
class ClientHost:
    """A namespace for a SIP client (SIPp); run commands there with `argv()`."""

    name: str
    ns: str
    ip: str
    ifname: str = "eth0"

    @property
    def command_prefix(self) -> list[str]:
        """Prefix that runs a command in this namespace (harness.sipp's command_prefix)."""
        return ["ip", "netns", "exec", self.ns]

    def argv(self, command: list[str]) -> list[str]:
        """`command` wrapped to run inside this host's namespace."""
        return [*self.command_prefix, *command]


class LocalBackend:
    """One cluster's network (hub + bridge) and its nodes and client hosts.

    Use as a context manager or call open()/close(); close() removes every process and
    namespace it created, whatever state they are in.
    """

    name = "local"

    def __init__(self, settings: Settings | None = None, *, workdir: str | Path | None = None,
                 worker: str | None = None, run_id: str | None = None) -> None:
        self.settings = settings or load_settings()
        reason = local_backend_unavailable(self.settings)
        if reason:
            raise LocalBackendError(reason)
        self.binary = self.settings.opensips_binary()
        self.module_path = self.settings.module_path_for(self.binary)
        index = next(_counter)
        worker = worker if worker is not None else os.environ.get("PYTEST_XDIST_WORKER")
        subnet = self.settings.network.subnet
        self.subnet = (ipaddress.IPv4Network(subnet) if subnet
                       else derive_subnet(worker, index, run_id))
        self.prefix = f"{NS_PREFIX}{os.getpid()}x{index}"
        self.hub_ns = f"{self.prefix}-hub"
        hosts = list(self.subnet.hosts())
        self.harness_ip = str(hosts[0])
        self.vip = str(hosts[99])
        self._node_ips = (str(h) for h in hosts[10:90])
        self._client_ips = (str(h) for h in hosts[200:250])
        self._owned_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"harness-{self.prefix}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.nodes: dict[str, LocalNode] = {}
        self.clients: dict[str, ClientHost] = {}
        self._namespaces: list[str] = []
        self._veth = itertools.count()
        self._opened = False

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> LocalBackend:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        """Create the hub namespace with its bridge (idempotent)."""
        if self._opened:
            return
        sweep_stale()
        atexit.register(self.close)
        self._opened = True
        try:
            self._add_ns(self.hub_ns)
            # A fixed MAC: a bridge without one takes the lowest MAC of its ports, so it
            # changes when a client namespace joins later and the nodes' ARP entries for
            # the harness address go stale (their packets to it are then dropped).
            mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
            netns.run(["ip", "-n", self.hub_ns, "link", "add", "br0", "address", mac,
                       "type", "bridge"])
            # promiscuous br0: the bridge passes every frame it forwards up to br0 too,
            # so tcpdump -i br0 in the hub sees all traffic between namespaces (else
            # only frames to/from the hub's own address)
            netns.run(["ip", "-n", self.hub_ns, "link", "set", "br0", "promisc", "on"])
            netns.run(["ip", "-n", self.hub_ns, "addr", "add",
                       f"{self.harness_ip}/{self.subnet.prefixlen}", "dev", "br0"])
            netns.run(["ip", "-n", self.hub_ns, "link", "set", "br0", "up"])
        except netns.NetnsError as exc:
            self.close()
            raise LocalBackendError(f"cannot build the cluster network: {exc}") from None

    def close(self) -> None:
        """Kill every node, delete every namespace; safe to call repeatedly."""
        for node in list(self.nodes.values()):
            try:
                node._teardown()
            except Exception:  # keep tearing down the rest
                pass
        for ns in reversed(self._namespaces):
            for pid in netns.pids(ns):
                _signal(pid, signal.SIGKILL)
            _until_empty(ns, 5)
            netns.delete(ns)
        self._namespaces.clear()
        self._opened = False
        try:
            atexit.unregister(self.close)
        except Exception:
            pass

    # -- topology --------------------------------------------------------------------
    def _add_ns(self, ns: str) -> None:
        netns.add(ns)
        self._namespaces.append(ns)
        netns.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"])

    def _attach(self, ns: str, ip: str) -> None:
        """veth pair: eth0 in `ns` with `ip`, its peer enslaved to the hub bridge."""
        peer = f"v{next(self._veth)}"
        netns.run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth",
                   "peer", "name", peer, "netns", self.hub_ns])
        netns.run(["ip", "-n", self.hub_ns, "link", "set", peer, "master", "br0", "up"])
        netns.run(["ip", "-n", ns, "addr", "add", f"{ip}/{self.subnet.prefixlen}", "dev", "eth0"])
        netns.run(["ip", "-n", ns, "link", "set", "eth0", "up"])

    def node_addresses(self, name: str) -> NodeAddresses:
        """Allocate the addresses of a new node called `name` (SIP on the cluster VIP)."""
        if name in self.nodes:
            return self.nodes[name].addresses()
        p = self.settings.ports
        return NodeAddresses(name=name, ip=next(self._node_ips), bin_port=p.bin,
                             mi_port=p.mi, sip_ip=self.vip, sip_port=p.sip)

    def create_node(self, name: str, config: str, addresses: NodeAddresses) -> LocalNode:
        """A node (not started) running `config` in a fresh namespace at addresses.ip."""
        self.open()
        if name in self.nodes:
            raise LocalBackendError(f"node {name!r} exists already")
        ns = f"{self.prefix}-{name}"
        try:
            self._add_ns(ns)
            self._attach(ns, addresses.ip)
        except netns.NetnsError as exc:
            raise LocalBackendError(f"cannot create node {name}: {exc}") from None
        node = LocalNode(self, name, ns, addresses, config)
        self.nodes[name] = node
        return node

    def client(self, name: str) -> ClientHost:
        """A namespace for a SIP client (e.g. "caller", "callee"), created on first use."""
        if name not in self.clients:
            self.open()
            ns = f"{self.prefix}-{name}"
            ip = next(self._client_ips)
            try:
                self._add_ns(ns)
                self._attach(ns, ip)
            except netns.NetnsError as exc:
                raise LocalBackendError(f"cannot create client host {name}: {exc}") from None
            self.clients[name] = ClientHost(name, ns, ip)
        return self.clients[name]

    def capture_host(self) -> ClientHost:
        """Where to run tcpdump to see all cluster traffic: the hub, interface br0."""
        return ClientHost("hub", self.hub_ns, self.harness_ip, "br0")

    def udp_socket(self, port: int = 0) -> socket.socket:
        """A UDP socket at harness_ip:port on the cluster network (MI, probes, pybin peers)."""
        return netns.udp_socket(self.hub_ns, self.harness_ip, port)

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """An unbound AF_INET socket in the hub namespace (e.g. TCP to SIPp's 3PCC port)."""
        return netns.in_netns(self.hub_ns, lambda: socket.socket(socket.AF_INET, kind))

    def mi(self, node: LocalNode) -> MIClient:
        return node.mi()

    def refresh_neighbours(self, ip: str) -> None:
        """Forget `ip`'s MAC in every client namespace (after the VIP moved)."""
        for c in self.clients.values():
            netns.run(["ip", "-n", c.ns, "neigh", "flush", "to", ip], check=False)
        netns.run(["ip", "-n", self.hub_ns, "neigh", "flush", "to", ip], check=False)


class LocalNode:
    """One OpenSIPS process tree in its namespace (satisfies harness.node.Node)."""

    def __init__(self, backend: LocalBackend, name: str, ns: str,
                 addresses: NodeAddresses, config: str) -> None:
        self.backend = backend
        self.name = name
        self.ns = ns
        self._addresses = addresses
        self.settings = backend.settings
        self.cfg_path = backend.workdir / f"{name}.cfg"
        self.log_path = backend.workdir / f"{name}.log"
        self.cfg_path.write_text(config)
        self.log_path.write_text("")
        self.starts = 0
        self.bin_receiver_pids: list[int] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._exited = threading.Event()
        self._exited.set()
        self._expected = False  # True while the harness wants it running
        self._death: tuple[float, int | None] | None = None
        self._log_offset = 0
        self._lock = threading.Lock()
        self.on_death: list[Callable[[LocalNode, NodeDied], None]] = []

    # -- Node protocol ---------------------------------------------------------------
    def start(self) -> None:
        """Start opensips -F -E and return once MI lists the BIN and SIP receivers."""
        if self.is_running():
            return
        timeouts = self.settings.timeouts
        if not _until_empty(self.ns, timeouts.stop):
            raise LocalBackendError(f"{self.name}: processes of the previous run do not exit")
        self.starts += 1
        argv = ["ip", "netns", "exec", self.ns, self.backend.binary, "-F", "-E",
                "-f", str(self.cfg_path), *self.settings.opensips.extra_args]
        with open(self.log_path, "ab") as log:
            self._log_offset = log.tell()
            log.write(f"=== harness: start #{self.starts} of {self.name} at "
                      f"{time.strftime('%H:%M:%S')} ===\n".encode())
            log.flush()
            self._proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=subprocess.STDOUT, start_new_session=True)
        self._death = None
        self._exited.clear()
        self._expected = True
        threading.Thread(target=self._watch, args=(self._proc,), daemon=True,
                         name=f"watch-{self.name}").start()
        want = self.settings.opensips.bin_children
        mi = self.mi()

        def receivers() -> list[int]:
            try:
                procs = mi.ps(timeout=0.25)
            except MITimeout:
                return []
            return [p.pid for p in procs if p.type.startswith("BIN receiver")]

        try:
            wait_until(lambda: len(receivers()) >= want, timeout=timeouts.start,
                       what=f"{self.name}'s MI to list {want} BIN receiver(s)",
                       alive=self.check_alive, evidence=self._log_tail)
        except WaitTimeout as err:
            raise LocalBackendError(str(err)) from None

    def stop(self) -> None:
        """SIGTERM and wait; SIGKILL whatever is left after timeouts.stop."""
        self._expected = False
        proc = self._proc
        if proc is not None and proc.poll() is None:
            self.thaw()
            _signal(proc.pid, signal.SIGTERM)
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
        pids = self._pids_main_first()
        for pid in pids:
            _signal(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in reversed(self._pids_main_first()):
            _signal(pid, signal.SIGCONT)

    def is_running(self) -> bool:
        return self._proc is not None and not self._exited.is_set()

    def addresses(self) -> NodeAddresses:
        return self._addresses

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def take_vip(self, vip: str) -> None:
        """Add the VIP to eth0 and announce it with gratuitous ARP."""
        prefix = self.backend.subnet.prefixlen
        out = subprocess.run(["ip", "-n", self.ns, "addr", "add", f"{vip}/{prefix}",
                              "dev", "eth0"], capture_output=True, text=True)
        if out.returncode != 0 and "File exists" not in out.stderr:
            raise LocalBackendError(f"{self.name}: cannot add VIP {vip}: {out.stderr.strip()}")
        netns.send_garp(self.ns, "eth0", vip)

    def release_vip(self, vip: str) -> None:
        prefix = self.backend.subnet.prefixlen
        netns.run(["ip", "-n", self.ns, "addr", "del", f"{vip}/{prefix}", "dev", "eth0"],
                  check=False)

    # -- extras used by the cluster --------------------------------------------------
    def mi(self, timeout: float | None = None) -> MIClient:
        """MI client from the hub namespace; raises NodeDied if the node dies meanwhile."""
        return MIClient(self._addresses.mi_addr,
                        timeout=timeout or self.settings.timeouts.mi,
                        sock_factory=self.backend.udp_socket,
                        alive=self.check_alive, name=self.name)

    def check_alive(self) -> None:
        """Raise NodeDied if the process exited while the harness expected it running."""
        if self._death is not None and self._expected:
            raise self._died_error()

    @property
    def died_at(self) -> float | None:
        """Wall-clock time of the last exit, None while running / never started."""
        return self._death[0] if self._death else None

    def current_logs(self) -> str:
        """Log output of the current (or last) run only."""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_offset)
                return f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_exit(self, timeout: float) -> bool:
        return self._exited.wait(timeout)

    def pids(self) -> list[int]:
        return netns.pids(self.ns)

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

    # -- internals -------------------------------------------------------------------
    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        code = proc.wait()
        with self._lock:
            if proc is not self._proc:
                return
            self._death = (time.time(), code)
            self._exited.set()
            expected = self._expected
        if expected:
            err = self._died_error()
            for cb in list(self.on_death):
                try:
                    cb(self, err)
                except Exception:
                    pass

    def _log_tail(self) -> str:
        return "last log lines:\n" + "\n".join(self.current_logs().splitlines()[-_LOG_TAIL:])

    def _died_error(self) -> NodeDied:
        when, code = self._death or (time.time(), None)
        tail = "\n".join(self.current_logs().splitlines()[-_LOG_TAIL:])
        stamp = time.strftime("%H:%M:%S", time.localtime(when)) + f".{int(when % 1 * 1000):03d}"
        return NodeDied(f"node {self.name} died at {stamp} (exit {code}); last log lines:\n{tail}")

    def _pids_main_first(self) -> list[int]:
        pids = netns.pids(self.ns)
        main = self._proc.pid if self._proc else None
        return sorted(pids, key=lambda p: p != main)

    def _kill_all(self) -> None:
        for pid in netns.pids(self.ns):
            _signal(pid, signal.SIGKILL)

    def _reap_namespace(self) -> None:
        limit = self.settings.timeouts.stop
        if self._proc is not None:
            self._exited.wait(limit)
        if not _until_empty(self.ns, limit):
            self._kill_all()
            _until_empty(self.ns, 5)

    def _teardown(self) -> None:
        self._expected = False
        self._kill_all()
        self._reap_namespace()
