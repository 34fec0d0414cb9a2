"""The local backend a Cluster talks to: namespaces on a bridge, OpenSIPS processes in them.

Failover moves the VIP with ``ip addr del/add`` and sends gratuitous ARP from the new
owner (raw AF_PACKET frames, no arping needed; a live test shows it alone moves a
client's ARP entry). ``refresh_neighbours`` also flushes the VIP's neighbour entry in
client namespaces, because Linux may ignore a gratuitous ARP for an entry updated
less than ``locktime`` (1 s) ago; the flush makes the next packet re-resolve.
"""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness.backends.core import (
    AddressPlan,
    PlannedBackend,
    cluster_subnet,
    next_cluster_seq,
)
from harness.backends.local import netns
from harness.backends.local.node import (
    LocalBackendError,
    LocalNode,
    Runtime,
    binary_release,
)
from harness.backends.local.topology import Topology
from harness.base.settings import (
    Settings,
    SettingsError,
    find_opensips_binary,
    load_settings,
)
from harness.cluster.interfaces import NodeAddresses, Release


def local_backend_unavailable(settings: Settings | None = None) -> str | None:
    """Why the local backend cannot run here (a skip reason), or None if it can."""
    if os.name != "posix" or not Path("/proc/self/ns/net").exists():
        return "local backend needs Linux network namespaces"
    if os.geteuid() != 0:
        return "local backend needs root (it creates network namespaces and a bridge)"
    if shutil.which("ip") is None:
        return "local backend needs iproute2's `ip` on PATH"
    # it runs tcpdump (every live cluster is captured) and SIPp on the host
    missing = [tool for tool in ("tcpdump", "sipp") if shutil.which(tool) is None]
    if missing:
        return (f"local backend runs {' and '.join(missing)} on the host: not on PATH "
                "(Debian: tcpdump, sip-tester)")
    settings = settings or load_settings()
    try:
        settings.module_path_for(find_opensips_binary(settings.opensips.binary))
    except SettingsError as exc:
        return f"local backend: {exc}"
    return None


@dataclass(frozen=True)
class LocalClientHost:
    """A namespace for a SIP client (SIPp); run commands there with `argv()`."""

    name: str
    ns: str
    ip: str
    ifname: str = "eth0"

    def argv(self, command: list[str], *, cwd: str | None = None) -> list[str]:
        """``command`` wrapped to run inside this host's namespace (``cwd`` is shared)."""
        return ["ip", "netns", "exec", self.ns, *command]


class LocalBackend(PlannedBackend):
    """One cluster's network (hub + bridge) and its nodes and client hosts.

    Use as a context manager or call open()/close(); close() removes every process and
    namespace it created, whatever state they are in.
    """

    name = "local"

    def __init__(self, settings: Settings | None = None, *,
                 workdir: str | Path | None = None) -> None:
        super().__init__()
        self.settings = settings or load_settings()
        reason = local_backend_unavailable(self.settings)
        if reason:
            raise LocalBackendError(reason)
        self.binary = self.settings.opensips_binary()
        self.module_path = self.settings.module_path_for(self.binary)
        seq = next_cluster_seq()
        self.plan = AddressPlan.of(cluster_subnet(self.settings.network.subnet, seq))
        self.topology = Topology(self.plan, seq)
        #: a work directory we made is ours to remove at close (the caller's is theirs)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"harness-{self.topology.prefix}-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._runtime = Runtime(self.binary, self.settings, self.workdir,
                                self.plan.subnet.prefixlen, self.udp_socket)
        self.nodes: dict[str, LocalNode] = {}
        self.clients: dict[str, LocalClientHost] = {}

    @property
    def prefix(self) -> str:
        """What every namespace of this cluster is named after."""
        return self.topology.prefix

    def describe(self) -> list[str]:
        hub, ip = self.topology.hub_ns, self.harness_ip
        return [f"the network lives in namespace {hub}: ip netns exec {hub} pybin listen "
                f"{ip}:PORT (start with --replicate-to {ip}:PORT)"]

    def release(self, artifact: str | None = None) -> Release:
        """What the default binary (or ``artifact``, another binary) reports."""
        return binary_release(self._binary(artifact))

    def module_path_for(self, artifact: str | None = None) -> str:
        """Where ``artifact``'s modules are (each release has its own dialog.so)."""
        if artifact is None or artifact == self.binary:
            return self.module_path
        return self.settings.module_path_for(self._binary(artifact))

    def _binary(self, artifact: str | None) -> str:
        if artifact is None:
            return self.binary
        try:
            return find_opensips_binary(artifact)
        except SettingsError as exc:
            raise LocalBackendError(str(exc)) from None

    # -- lifecycle -------------------------------------------------------------------
    def open(self) -> None:
        """Create the hub namespace with its bridge (idempotent)."""
        try:
            self.topology.open()
        except netns.NetnsError as exc:
            self.close()
            raise LocalBackendError(f"cannot build the cluster network: {exc}") from None

    def close(self) -> None:
        """Kill every node, delete every namespace and our temp dir; safe to call repeatedly."""
        for node in list(self.nodes.values()):
            try:
                node.teardown()
            except Exception:  # keep tearing down the rest
                pass
        self.topology.close()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- nodes and hosts ---------------------------------------------------------------
    def create_node(self, name: str, config: str, addresses: NodeAddresses,
                    artifact: str | None = None) -> LocalNode:
        """A node (not started) running ``config`` in a fresh namespace at addresses.ip,
        with the default binary or ``artifact`` (another opensips binary)."""
        self.open()
        if name in self.nodes:
            raise LocalBackendError(f"node {name!r} exists already")
        try:
            ns = self.topology.add_host(name, addresses.ip)
        except netns.NetnsError as exc:
            raise LocalBackendError(f"cannot create node {name}: {exc}") from None
        node = LocalNode(name, ns, addresses, config, self._runtime, self._binary(artifact))
        self.nodes[name] = node
        return node

    def client(self, name: str) -> LocalClientHost:
        """A namespace for a SIP client (e.g. "caller", "callee"), created on first use."""
        if name not in self.clients:
            self.open()
            ip = self.client_ip(name)
            try:
                ns = self.topology.add_host(name, ip)
            except netns.NetnsError as exc:
                raise LocalBackendError(f"cannot create client host {name}: {exc}") from None
            self.clients[name] = LocalClientHost(name, ns, ip)
        return self.clients[name]

    def capture_host(self) -> LocalClientHost:
        """Where to run tcpdump to see all cluster traffic: the hub, interface br0."""
        return LocalClientHost("hub", self.topology.hub_ns, self.harness_ip, "br0")

    def udp_socket(self, port: int = 0) -> socket.socket:
        """A UDP socket at harness_ip:port on the cluster network (MI, probes, pybin peers)."""
        return self.topology.udp_socket(port)

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """An unbound AF_INET socket in the hub namespace (e.g. TCP to SIPp's 3PCC port)."""
        return self.topology.socket(kind)

    def refresh_neighbours(self, ip: str) -> None:
        """Forget ``ip``'s MAC in every client namespace and the hub (after the VIP moved)."""
        self.topology.flush_neighbour(ip, [c.ns for c in self.clients.values()])
