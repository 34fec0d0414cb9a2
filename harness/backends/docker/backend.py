"""The Docker backend a Cluster talks to: one network, its nodes, SIP clients, capture.

The harness reaches the cluster from the bridge's gateway address on the host
(``harness_ip``), so its sockets are plain host sockets; SIP clients run as fresh
SIPp containers at their planned address; tcpdump watches the host side of the bridge.
"""

from __future__ import annotations

import os
import socket
import tempfile
from dataclasses import dataclass

from harness.backends.core import AddressPlan, PlannedBackend
from harness.backends.docker.engine import (
    DockerBackendError,
    docker_backend_unavailable,
    labels_for,
    remove_by_name,
    slug,
)
from harness.backends.docker.host_tools import HostCapture, host_tools_in_container
from harness.backends.docker.image_info import image_release
from harness.backends.docker.network import DockerNetwork
from harness.backends.docker.node import MODULE_PATH, DockerNode
from harness.backends.images import OPENSIPS_IMAGE, SIPP_IMAGE
from harness.base.resources import shipped
from harness.base.settings import Settings, load_settings
from harness.cluster.interfaces import NodeAddresses, Release

#: SIPp scenarios shipped with the harness (mounted into client containers)
SCENARIO_DIR = shipped("scenarios")


@dataclass(frozen=True)
class DockerClientHost:
    """A SIP client's address on the cluster network; ``argv`` runs a command there.

    Each command runs in a fresh ``docker run --rm --init`` container of the SIPp
    image at ``ip``: the docker CLI forwards signals (SIGTERM, SIGUSR1...) and the exit
    code, so SIPp is driven like a local process. The harness's scenario directory, the
    temp directory and the working directory are mounted at their own paths, so host
    paths in the command line (``-sf``, trace files) work as they are. Needs the docker
    CLI and a local engine. One command per host at a time (it owns the address).
    """

    name: str
    ip: str
    network: str
    image: str
    labels: tuple[tuple[str, str], ...] = ()
    mounts: tuple[str, ...] = ()
    ifname: str = "eth0"

    def argv(self, command: list[str], *, cwd: str | None = None) -> list[str]:
        cwd = cwd or os.getcwd()
        labels = [arg for k, v in self.labels for arg in ("--label", f"{k}={v}")]
        volumes = [arg for m in dict.fromkeys((*self.mounts, cwd)) if os.path.isdir(m)
                   for arg in ("-v", f"{m}:{m}")]
        return ["docker", "run", "--rm", "-i", "--init", "--network", self.network,
                "--ip", self.ip, "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
                *labels, *volumes, "-w", cwd,
                "--name", f"{self.network}-{slug(self.name)}", self.image, *command]


class DockerBackend(PlannedBackend):
    """One cluster's Docker network and its OpenSIPS containers (a `harness.cluster.interfaces.Backend`)."""

    name = "docker"
    module_path = MODULE_PATH

    def __init__(self, settings: Settings | None = None, *, cluster: str = "cluster",
                 image: str = OPENSIPS_IMAGE, tool_image: str = SIPP_IMAGE,
                 run: str | None = None) -> None:
        super().__init__()
        self.settings = settings or load_settings()
        reason = docker_backend_unavailable(image)
        if reason:
            raise DockerBackendError(reason)
        self.image = image
        self.tool_image = tool_image
        self.network = DockerNetwork(cluster, subnet=self.settings.network.subnet, run=run)
        self.network.tools_image = image  # the OpenSIPS image carries iproute2, arping, tcpdump
        self._captures = 0
        self.nodes: dict[str, DockerNode] = {}
        self.clients: dict[str, DockerClientHost] = {}

    # addresses ------------------------------------------------------------------
    @property
    def plan(self) -> AddressPlan:
        self.open()
        return self.network.addresses()

    def describe(self) -> list[str]:
        return [f"docker network {self.network.name} ({self.network.subnet}), bridge "
                f"{self.network.bridge}, image {self.image}"]

    def release(self, artifact: str | None = None) -> Release:
        """What the default image (or ``artifact``, another image) reports."""
        return image_release(artifact or self.image)

    def module_path_for(self, artifact: str | None = None) -> str:
        """Every harness image installs its modules at the same place."""
        return self.module_path

    # lifecycle ------------------------------------------------------------------
    def open(self) -> None:
        """Create the cluster network (idempotent)."""
        if self.network.tc_network is None:
            self.network.create()
            self.network.flood()

    def close(self) -> None:
        """Remove every container, then the network; safe to call repeatedly."""
        for node in list(self.nodes.values()):
            node.remove_quietly()
        self.nodes.clear()
        for c in self.clients.values():
            remove_by_name(f"{self.network.name}-{slug(c.name)}")
        for i in range(self._captures):
            remove_by_name(f"{self.network.name}-capture{i}")
        self.network.remove_quietly()

    # nodes --------------------------------------------------------------------------
    def create_node(self, name: str, config: str, addresses: NodeAddresses,
                    artifact: str | None = None) -> DockerNode:
        """A node (not started) running ``config`` at ``addresses.ip``, in the default
        image or in ``artifact`` (another OpenSIPS image: mixed-release clusters)."""
        if name in self.nodes:
            raise DockerBackendError(f"node {name!r} exists already")
        image = artifact or self.image
        if image != self.image and (reason := docker_backend_unavailable(image)):
            raise DockerBackendError(reason)
        self.open()
        s = self.settings
        node = DockerNode(
            name, self.network, addresses.ip, config, image=image,
            sip_ip=addresses.sip_ip, sip_port=addresses.sip_port,
            bin_port=addresses.bin_port, mi_port=addresses.mi_port,
            opensips=s.opensips, start_timeout=s.timeouts.start,
            stop_timeout=s.timeouts.stop, mi_timeout=s.timeouts.mi,
            bin_children=s.opensips.bin_children,
        )
        node.siblings = lambda: [n for n in self.nodes.values() if n is not node]
        self.nodes[name] = node
        return node

    # clients and observation --------------------------------------------------------
    def client(self, name: str) -> DockerClientHost:
        """An address for a SIP client (e.g. "caller"); commands run via ``argv``."""
        if name not in self.clients:
            ip = self.client_ip(name)
            labels = labels_for("client", self.network.cluster, name, self.network.run)
            mounts = (str(SCENARIO_DIR), tempfile.gettempdir())
            self.clients[name] = DockerClientHost(name, ip, self.network.name, self.tool_image,
                                                  tuple(sorted(labels.items())), mounts)
        return self.clients[name]

    def capture_host(self) -> HostCapture:
        """tcpdump on the host side of the bridge sees the whole cluster (it floods).

        Not root: tcpdump runs in a host-network helper container instead.
        """
        plan = self.plan
        if not host_tools_in_container():
            return HostCapture("host", plan.gateway, self.network.bridge)
        name = f"{self.network.name}-capture{self._captures}"
        self._captures += 1
        labels = labels_for("capture", self.network.cluster, run=self.network.run)
        return HostCapture("host", plan.gateway, self.network.bridge, self.image, name,
                           tuple(sorted(labels.items())))

    def udp_socket(self, port: int = 0) -> socket.socket:
        """A UDP socket at harness_ip:port (the host's address on the bridge)."""
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((self.harness_ip, port))
        except OSError:
            s.close()
            raise
        return s

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """An unbound AF_INET socket that reaches the cluster (a host socket here)."""
        return socket.socket(socket.AF_INET, kind)

    def refresh_neighbours(self, ip: str) -> None:
        """Forget ``ip``'s MAC on the host side (clients got the gratuitous ARP)."""
        self.network.flush_neighbour(ip)
