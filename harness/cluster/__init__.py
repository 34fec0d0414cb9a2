"""A cluster of OpenSIPS nodes sharing one virtual IP, on any backend.

    with Cluster(backend) as c:                         # primary + backup
        c.mi("backup").dlg_list()
        c.nodes["primary"].kill()
        c.failover()                                     # VIP -> backup

The cluster renders each node's config (harness.cluster.render), starts the nodes, gives each
the BIN warm-up probe (harness.cluster.warmup: the 1.10.5 recvfrom defect) and puts the VIP
on the primary. Leaving the `with` block — normally, on an exception, on Ctrl-C —
tears everything down; if starting fails, `__enter__` tears down before re-raising.
Callers start clusters through `harness.live.start`, which also makes the backend, a
pybin peer and a capture, and sweeps what killed runs left behind.
"""

from __future__ import annotations

import socket
from typing import Iterable, Mapping, Sequence

from harness.base.errors import HarnessError
from harness.base.settings import Settings
from harness.base.wait import WaitTimeout, wait_until
from harness.cluster.interfaces import Backend, Node, NodeAddresses, ZeroedPid
from harness.cluster.render import ROLES, render_config
from harness.cluster.warmup import STATS, WarmupStats, warm_up
from harness.instruments.mi import MIClient

Destination = str | tuple[str, int] | int


#: why a receiver listed with pid 0 may never get one: OpenSIPS 2.1.0-2.1.1's
#: internal_fork sets ``pt[process_counter].pid = 0`` after fork(), in the parent as in
#: the child, so a child that wrote its own pid first is zeroed for good; "Fix bug in
#: populating the PIDs" (13c60437f8, 2.1.2) zeroes it before the fork. A loaded machine
#: lets the child run first more often.
ZEROED_PID = ("; a pid still 0 is the race of 2.1.0-2.1.1's internal_fork, which zeroes "
              "pt[].pid after fork() (fixed in 2.1.2 by 13c60437f8)")


class ClusterError(HarnessError, RuntimeError):
    """Bad cluster description (unknown role, unknown destination node...)."""


class Cluster:
    """Nodes of one backend, their replication topology and the VIP.

    roles: a sequence of roles (node name = role, numbered if repeated: "standalone",
      "standalone2") or a mapping {name: role}.
    replicate: optional {name: [destination, ...]} replacing the default topology
      (every primary/backup replicates to every other primary/backup). A destination
      is a node name, "ip:port", (ip, port), or a bare port on the harness's address
      (where a pybin peer bound with `udp_socket(port)` listens).
    first_destinations / extra_destinations: put before / after every replicating
      node's own destinations (e.g. a pybin peer).
    artifacts: optional {node name or role: binary (local) or image (docker)} for nodes
      that run another release than the backend's default: a 1.10.2 primary with a
      1.11.11 backup. Each node's config is rendered for the release its own binary
      reports.
    """

    def __init__(self, backend: Backend, roles: Sequence[str] | Mapping[str, str] = ("primary", "backup"),
                 *, replicate: Mapping[str, Iterable[Destination]] | None = None,
                 first_destinations: Iterable[Destination] = (),
                 extra_destinations: Iterable[Destination] = (),
                 warmup: bool | None = None, close_backend: bool = True,
                 warmup_stats: WarmupStats = STATS,
                 artifacts: Mapping[str, str] | None = None) -> None:
        self.backend = backend
        self.settings: Settings = backend.settings
        self.roles = self.node_roles(roles)
        self._replicate = {k: list(v) for k, v in (replicate or {}).items()}
        for name in self._replicate:
            if name not in self.roles:
                raise ClusterError(f"replicate names unknown node {name!r}")
        self._first = list(first_destinations)
        self._extra = list(extra_destinations)
        self._artifacts = dict(artifacts or {})
        for key in self._artifacts:
            if key not in self.roles and key not in self.roles.values():
                raise ClusterError(f"artifacts names unknown node or role {key!r}")
        self._warmup = self.settings.warmup.enabled if warmup is None else warmup
        self._close_backend = close_backend
        self._stats = warmup_stats
        self.nodes: dict[str, Node] = {}
        self.addresses: dict[str, NodeAddresses] = {}
        #: warm-up restarts per node (1.10.5 recvfrom defect)
        self.restarts: dict[str, int] = {}
        self.vip_owner: str | None = None
        self._probe_sock: socket.socket | None = None

    @staticmethod
    def node_roles(roles: Sequence[str] | Mapping[str, str]) -> dict[str, str]:
        """{node name: role}: a mapping as given, a sequence named by role (numbered if repeated)."""
        if isinstance(roles, Mapping):
            named = dict(roles)
        else:
            named, seen = {}, {}
            for role in roles:
                seen[role] = seen.get(role, 0) + 1
                named[role if seen[role] == 1 else f"{role}{seen[role]}"] = role
        for name, role in named.items():
            if role not in ROLES:
                raise ClusterError(f"node {name!r}: unknown role {role!r} "
                                   f"(expected one of {', '.join(ROLES)})")
        if not named:
            raise ClusterError("a cluster needs at least one node")
        return named

    @staticmethod
    def peers(roles: Mapping[str, str], name: str) -> list[str]:
        """The nodes ``name`` replicates to by default: every other primary/backup
        (none for a standalone)."""
        if roles[name] == "standalone":
            return []
        return [n for n, r in roles.items() if n != name and r in ("primary", "backup")]

    # -- lifecycle -------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        """Create, start and warm up every node; the VIP on the primary."""
        self.backend.open()
        for name in self.roles:
            self.addresses[name] = self.backend.node_addresses(name)
        for name, role in self.roles.items():
            artifact = self.artifact(name)
            config = render_config(role, self.settings, self.addresses[name],
                                   replicate_to=self.destinations(name),
                                   module_path=self.backend.module_path_for(artifact),
                                   release=self.backend.release(artifact).version)
            self.nodes[name] = self.backend.create_node(name, config, self.addresses[name],
                                                        artifact=artifact)
        for node in self.nodes.values():
            node.start()
        if self._warmup:
            for name, node in self.nodes.items():
                self.restarts[name] = warm_up(node, self.send_bin, lambda n=name: self.bin_receiver_pids(n),
                                              self.settings, self._stats)
        owner = next((n for n, r in self.roles.items() if r == "primary"), next(iter(self.roles)))
        self.move_vip(owner)

    def close(self) -> None:
        """Tear down every node (and the backend unless close_backend=False)."""
        if self._probe_sock is not None:
            self._probe_sock.close()
            self._probe_sock = None
        if self._close_backend:
            self.backend.close()
        else:
            for node in self.nodes.values():
                try:
                    node.kill()
                except Exception:
                    pass

    def restart(self, name: str, *, graceful: bool = True) -> None:
        """Stop node ``name`` (SIGTERM; SIGKILL with ``graceful=False``) and start it again,
        with the BIN warm-up a fresh 1.10.5 process needs; it takes the VIP back if it held it.

        A 1.x node keeps its dialogs in memory only (``db_mode`` 0), and a backup is
        never sent the dialogs already up: after this it holds none of them.
        """
        node = self.nodes[name]
        if graceful:
            node.stop()
        else:
            node.kill()
        node.start()
        if self._warmup:
            self.restarts[name] = self.restarts.get(name, 0) + warm_up(
                node, self.send_bin, lambda: self.bin_receiver_pids(name), self.settings, self._stats)
        if self.vip_owner == name:
            self.move_vip(name)

    def artifact(self, name: str) -> str | None:
        """The binary or image node ``name`` runs; None for the backend's default."""
        return self._artifacts.get(name, self._artifacts.get(self.roles[name]))

    # -- topology --------------------------------------------------------------------
    def destinations(self, name: str) -> list[str]:
        """The "ip:port" BIN destinations node `name` replicates to."""
        role = self.roles[name]
        if role == "standalone":
            return []
        dests = list(self._replicate[name]) if name in self._replicate else self.peers(self.roles, name)
        return [self._resolve(d) for d in [*self._first, *dests, *self._extra]]

    def _resolve(self, d: Destination) -> str:
        if isinstance(d, int):
            return f"{self.backend.harness_ip}:{d}"
        if isinstance(d, tuple):
            return f"{d[0]}:{d[1]}"
        if d in self.roles:
            a = self.addresses[d]
            return f"{a.ip}:{a.bin_port}"
        return d

    # -- access ----------------------------------------------------------------------
    @property
    def vip(self) -> str:
        return self.backend.vip

    @property
    def sip_addr(self) -> tuple[str, int]:
        """Where SIP clients send: VIP and SIP port."""
        return (self.backend.vip, self.settings.ports.sip)

    def __getitem__(self, name: str) -> Node:
        return self.nodes[name]

    def mi(self, name: str, timeout: float | None = None) -> MIClient:
        """MI client for node `name`; waiting on a dead node raises NodeDied."""
        return self.nodes[name].mi(timeout)

    def udp_socket(self, port: int = 0) -> socket.socket:
        """A socket at harness_ip:port on the cluster network (for pybin peers, probes)."""
        return self.backend.udp_socket(port)

    def check(self) -> None:
        """Raise NodeDied for the first node that died while expected to run."""
        for node in self.nodes.values():
            node.check_alive()

    # -- failover --------------------------------------------------------------------
    def move_vip(self, to: str) -> None:
        """Drop the VIP from its owner (dead or alive), add it on `to`, refresh ARP."""
        if self.vip_owner and self.vip_owner != to:
            self.nodes[self.vip_owner].release_vip(self.vip)
        self.nodes[to].take_vip(self.vip)
        self.vip_owner = to
        self.backend.refresh_neighbours(self.vip)

    def failover(self, to: str | None = None) -> None:
        """Move the VIP to the backup (or node `to`). Kill/freeze the primary yourself."""
        if to is None:
            to = next((n for n, r in self.roles.items() if r == "backup"), None)
            if to is None:
                raise ClusterError("failover: the cluster has no backup node")
        self.move_vip(to)

    def send_bin(self, packet: bytes, addr: tuple[str, int]) -> None:
        """Send a datagram from the harness's address on the cluster network (one
        socket, reused): probes, sentinels, forged packets."""
        if self._probe_sock is None:
            self._probe_sock = self.backend.udp_socket(0)
        self._probe_sock.sendto(packet, addr)

    # -- internals -------------------------------------------------------------------

    def _opensips_pids(self, name: str) -> list[int] | None:
        """The node's OpenSIPS processes as its backend sees them (None: it cannot)."""
        node = self.nodes.get(name)
        return node.opensips_pids() if node is not None else None

    def bin_receiver_pids(self, name: str, timeout: float = 15.0) -> list[int]:
        """The pids of ``name``'s BIN receivers, once MI ``ps`` lists as many as the
        config starts (``bin_children``), each with its pid: MI may answer before the
        main process has forked them all (a 2.1 node listed none), and lists a process
        not yet started with pid 0 — signalled, pid 0 would be this whole process
        group. A pid MI keeps at 0 is `ZeroedPid` (at once where the backend sees that
        every process has started); past ``timeout``: `ClusterError` with the last listing."""
        seen: list[list[tuple[int, str]]] = []
        all_pids: list[list[int]] = [[]]
        want = self.settings.opensips.bin_children

        def listed() -> list[int] | None:
            everyone = self.mi(name).ps()
            entries = [(p.pid, p.type) for p in everyone if p.type.startswith("BIN receiver")]
            seen[:] = [entries]
            all_pids[0] = [p.pid for p in everyone]
            if len(entries) < want:
                return None
            if all(pid > 0 for pid, _ in entries):
                return [pid for pid, _ in entries]
            mine = self._opensips_pids(name)
            if mine is not None and len(mine) >= len(everyone):
                # every process MI lists has started, so a 0 is not "not yet forked"
                raise ZeroedPid(f"{name}: MI ps lists {entries} once all {len(everyone)} processes "
                                f"run (pids {sorted(mine)})" + ZEROED_PID)
            return None
        try:
            return wait_until(listed, timeout=timeout, interval=0.05,
                              what=f"{name}'s BIN receivers to have pids in MI ps")
        except WaitTimeout:
            listing = seen[0] if seen else []
            zeroed = any(pid == 0 for pid, _ in listing)
            seen_by_backend = ""
            if zeroed:
                mine = self._opensips_pids(name)
                seen_by_backend = (f"; MI ps pids {sorted(all_pids[0])}, the node's processes "
                                   f"{'unseen by this backend' if mine is None else sorted(mine)}")
            error = ZeroedPid if zeroed else ClusterError
            raise error(f"{name}: MI ps lists {len(listing)} of {want} BIN receivers with pids "
                        f"after {timeout:g} s: {listing}"
                        + (ZEROED_PID + seen_by_backend if zeroed else "")) from None
