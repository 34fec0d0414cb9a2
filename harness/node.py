"""The one interface every way of running OpenSIPS satisfies.

Scenarios (cluster, failover, the pytest plugin) only talk to this protocol, so a test
written once runs on the Docker backend and on the local (network namespace) backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class NodeAddresses:
    """Where a node can be reached, as seen from the harness (the test process)."""

    name: str
    #: the node's own address on the cluster network (BIN and MI live here)
    ip: str
    bin_port: int
    mi_port: int
    #: the SIP listen address the node's config names (the cluster's virtual IP)
    sip_ip: str
    sip_port: int

    @property
    def bin_addr(self) -> tuple[str, int]:
        return (self.ip, self.bin_port)

    @property
    def mi_addr(self) -> tuple[str, int]:
        return (self.ip, self.mi_port)


class NodeDied(RuntimeError):
    """A node's process exited while the harness expected it to run.

    The message names the node, when it died and its last log lines, so a failure
    reads as a diagnosis, not as a timeout somewhere else.
    """


@runtime_checkable
class Node(Protocol):
    """A single OpenSIPS 1.10 instance under the harness's control."""

    name: str

    def start(self) -> None:
        """Start the process and return once it answers MI."""

    def stop(self) -> None:
        """Stop gracefully (SIGTERM), waiting for the exit."""

    def kill(self) -> None:
        """SIGKILL: what a crashed primary looks like to its peers."""

    def freeze(self) -> None:
        """SIGSTOP: alive but silent (a hung primary)."""

    def thaw(self) -> None:
        """SIGCONT after freeze."""

    def is_running(self) -> bool:
        """False once the process has exited (for any reason)."""

    def addresses(self) -> NodeAddresses:
        ...

    def logs(self) -> str:
        """Everything the node wrote to stderr so far."""

    def take_vip(self, vip: str) -> None:
        """Bind the cluster's virtual IP on this node and announce it (failover)."""

    def release_vip(self, vip: str) -> None:
        """Drop the virtual IP from this node."""
