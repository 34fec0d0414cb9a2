"""One local cluster's network: a hub namespace with a bridge, a namespace per host.

Layout (addresses from the shared plan):

    hub ns:     br0 .1   (harness vantage point; tcpdump -i br0 sees everything)
    node ns:    eth0 .10, .11, ...   (+ the VIP .100 on the active node)
    client ns:  eth0 .200, .201 ...  (SIPp caller / callee)

The harness talks from the hub (MI, BIN probes, pybin peers) through sockets created
there. Namespaces are named after their owner, ``hx<pid>t<start time>x<seq>-<host>``,
so ``harness.backends.clean`` can remove those of harness processes that no longer exist
(crash, SIGKILL); ``sweep_stale`` (kept for names without a start time) those whose
pid is gone.
"""

from __future__ import annotations

import atexit
import itertools
import os
import re
import signal
import socket

from harness.backends.core import AddressPlan
from harness.backends.local import netns
from harness.base.owner import me
from harness.base.wait import WaitTimeout, wait_until

NS_PREFIX = "hx"
_NS_RE = re.compile(rf"^{NS_PREFIX}(\d+)(?:t\d+)?x\d+-")


def signal_pid(pid: int, sig: int) -> None:
    """Signal a process that may already be gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def until_empty(ns: str, timeout: float) -> bool:
    """Wait until no process lives in namespace ``ns``; False if some still do."""
    try:
        wait_until(lambda: not netns.pids(ns), timeout=timeout, interval=0.02,
                   what=f"the processes of namespace {ns} to exit")
    except WaitTimeout:
        return False
    return True


def sweep_stale() -> list[str]:
    """Delete namespaces left by harness processes that no longer exist (crash, SIGKILL)."""
    removed = []
    for name in netns.list_names():
        m = _NS_RE.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        for pid in netns.pids(name):
            signal_pid(pid, signal.SIGKILL)
        netns.delete(name)
        removed.append(name)
    return removed


class Topology:
    """The hub, its bridge and the namespaces attached to it; ``close()`` removes them all."""

    def __init__(self, plan: AddressPlan, seq: int) -> None:
        self.plan = plan
        self.prefix = f"{NS_PREFIX}{me().tag}x{seq}"
        self.hub_ns = f"{self.prefix}-hub"
        self._namespaces: list[str] = []
        self._veth = itertools.count()
        self._opened = False

    def open(self) -> None:
        """Create the hub namespace with its bridge (idempotent)."""
        if self._opened:
            return
        sweep_stale()
        atexit.register(self.close)
        self._opened = True
        hub = self.hub_ns
        self.add_namespace(hub)
        # A fixed MAC: a bridge without one takes the lowest MAC of its ports, so it
        # changes when a client namespace joins later and the nodes' ARP entries for
        # the harness address go stale (their packets to it are then dropped).
        mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
        netns.run(["ip", "-n", hub, "link", "add", "br0", "address", mac, "type", "bridge"])
        # promiscuous br0: the bridge passes every frame it forwards up to br0 too,
        # so tcpdump -i br0 in the hub sees all traffic between namespaces (else
        # only frames to/from the hub's own address)
        netns.run(["ip", "-n", hub, "link", "set", "br0", "promisc", "on"])
        netns.run(["ip", "-n", hub, "addr", "add",
                   f"{self.plan.gateway}/{self.plan.subnet.prefixlen}", "dev", "br0"])
        netns.run(["ip", "-n", hub, "link", "set", "br0", "up"])

    def close(self) -> None:
        """Kill every process in the namespaces, delete them; safe to call repeatedly."""
        for ns in reversed(self._namespaces):
            for pid in netns.pids(ns):
                signal_pid(pid, signal.SIGKILL)
            until_empty(ns, 5)
            netns.delete(ns)
        self._namespaces.clear()
        self._opened = False
        try:
            atexit.unregister(self.close)
        except Exception:
            pass

    def add_namespace(self, ns: str) -> None:
        netns.add(ns)
        self._namespaces.append(ns)
        netns.run(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_nonlocal_bind=1"])

    def add_host(self, name: str, ip: str) -> str:
        """A namespace for ``name`` with eth0 at ``ip`` on the bridge; its name."""
        ns = f"{self.prefix}-{name}"
        self.add_namespace(ns)
        peer = f"v{next(self._veth)}"
        netns.run(["ip", "link", "add", "eth0", "netns", ns, "type", "veth",
                   "peer", "name", peer, "netns", self.hub_ns])
        netns.run(["ip", "-n", self.hub_ns, "link", "set", peer, "master", "br0", "up"])
        netns.run(["ip", "-n", ns, "addr", "add", f"{ip}/{self.plan.subnet.prefixlen}", "dev", "eth0"])
        netns.run(["ip", "-n", ns, "link", "set", "eth0", "up"])
        return ns

    def udp_socket(self, port: int = 0) -> socket.socket:
        """A UDP socket at the gateway address, inside the hub."""
        return netns.udp_socket(self.hub_ns, self.plan.gateway, port)

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """An unbound AF_INET socket in the hub namespace (e.g. TCP to SIPp's 3PCC port)."""
        return netns.in_netns(self.hub_ns, lambda: socket.socket(socket.AF_INET, kind))

    def flush_neighbour(self, ip: str, namespaces: list[str]) -> None:
        """Forget ``ip``'s MAC in ``namespaces`` and the hub."""
        for ns in [*namespaces, self.hub_ns]:
            netns.run(["ip", "-n", ns, "neigh", "flush", "to", ip], check=False)
