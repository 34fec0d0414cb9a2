"""One cluster's user-defined Docker bridge network, on a subnet of its own.

The subnet comes from the shared derivation (worker, run id, sequence), so
``pytest -n auto`` never collides; the engine refusing an overlapping subnet (another
run, a leftover) makes us try the next one. Addresses follow the shared plan.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from harness.backends.core import (
    AddressPlan,
    cluster_subnet,
    next_cluster_seq,
    run_id,
    worker_index,
)
from harness.backends.docker.engine import (
    DockerBackendError,
    labels_for,
    quietly,
    register,
    slug,
    unregister,
)
from harness.backends.docker.host_tools import run_host_tool


class DockerNetwork:
    """One cluster's bridge network; ``plan`` says who has which address on it."""

    def __init__(self, cluster: str = "cluster", *, subnet: str | None = None,
                 run: str | None = None, attempts: int = 64) -> None:
        self.cluster = slug(cluster)
        self.run = run or run_id()
        self._fixed_subnet = subnet
        self._attempts = attempts if subnet is None else 1
        self.plan: AddressPlan | None = AddressPlan.of(subnet) if subnet else None
        self.name = ""
        self.bridge = ""
        self.tc_network: Any = None
        #: image with iproute2 for bridge changes when the host cannot make them
        #: (see host_tools_in_container); None: on the host only
        self.tools_image: str | None = None

    @property
    def subnet(self) -> ipaddress.IPv4Network | None:
        return self.plan.subnet if self.plan else None

    def addresses(self) -> AddressPlan:
        if self.plan is None:
            raise DockerBackendError("network not created yet")
        return self.plan

    # lifecycle ------------------------------------------------------------------
    def create(self) -> DockerNetwork:
        """Create the network, trying further subnets while the engine says overlap."""
        from docker.errors import APIError
        from docker.types import IPAMConfig, IPAMPool
        from testcontainers.core.network import Network

        worker = worker_index()
        last_error = ""
        for _ in range(self._attempts):
            seq = next_cluster_seq()
            plan = AddressPlan.of(cluster_subnet(self._fixed_subnet, seq))
            name = f"osh-{self.run}-w{worker}-{seq}-{self.cluster}"
            bridge = "osh" + hashlib.sha256(name.encode()).hexdigest()[:10]
            ipam = IPAMConfig(pool_configs=[IPAMPool(subnet=str(plan.subnet), gateway=plan.gateway)])
            net = Network(docker_network_kw={
                "driver": "bridge",
                "ipam": ipam,
                "labels": labels_for("network", self.cluster, run=self.run),
                "options": {"com.docker.network.bridge.name": bridge},
                "check_duplicate": True,
            })
            net.name = name
            try:
                net.create()
            except APIError as exc:
                last_error = str(exc.explanation or exc)
                if "overlap" in last_error.lower() or "already exists" in last_error.lower():
                    continue
                raise DockerBackendError(f"cannot create network {name}: {last_error}") from exc
            self.plan, self.name, self.bridge, self.tc_network = plan, name, bridge, net
            register(f"network:{name}", self.remove_quietly)
            return self
        raise DockerBackendError(f"no free subnet for cluster {self.cluster}: {last_error}")

    def remove(self) -> None:
        """Remove the network (its containers must be gone first)."""
        if self.tc_network is None:
            return
        try:
            self.tc_network.remove()
        except Exception as exc:
            if "not found" not in str(exc).lower():
                raise
        finally:
            unregister(f"network:{self.name}")
            self.tc_network = None

    def remove_quietly(self) -> None:
        quietly(self.remove)

    def __enter__(self) -> DockerNetwork:
        return self.create() if self.tc_network is None else self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def flood(self) -> None:
        """Make the bridge flood every frame (ageing_time 0), like the local backend.

        A learning bridge forwards unicast port to port, invisible to tcpdump on the
        bridge device; flooding lets one capture on the host see the whole cluster.
        Best effort (needs a local engine; root, or a helper container without it).
        """
        if not self.bridge:
            return
        run_host_tool(["ip", "link", "set", "dev", self.bridge, "type", "bridge", "ageing_time", "0"],
                      self.tools_image)

    def flush_neighbour(self, ip: str) -> None:
        """Forget ``ip``'s MAC on the host side of the bridge (after a VIP move).

        The test process reaches the cluster through this bridge; a gratuitous ARP
        normally updates it, this makes it certain. Best effort.
        """
        if not self.bridge:
            return
        run_host_tool(["ip", "neigh", "flush", "to", ip, "dev", self.bridge], self.tools_image)
