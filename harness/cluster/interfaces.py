"""The interfaces every way of running OpenSIPS satisfies: `Node`, `Backend`, `ClientHost`.

Scenarios (cluster, warm-up, calls, failover, record, the pytest plugin, the CLI)
only talk to these protocols, never to a concrete class, so a test written once runs
on the Docker backend and on the local (network namespace) backend. They are wide on
purpose: whatever a caller needs from a node or a backend is a method here, so
nobody has to ask which backend it is.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from harness.base.errors import HarnessError

if TYPE_CHECKING:  # types only: the MI client and settings do not depend on nodes
    from harness.base.settings import Settings
    from harness.instruments.mi import MIClient


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


class NodeDied(HarnessError, RuntimeError):
    """A node's process exited while the harness expected it to run.

    The message names the node, when it died and its last log lines, so a failure
    reads as a diagnosis, not as a timeout somewhere else.
    """


class ZeroedPid(HarnessError, RuntimeError):
    """MI lists a started BIN receiver with pid 0 for good (OpenSIPS 2.1.0-2.1.1's
    internal_fork race): MI cannot give its pid, and only a fresh start can."""


class ReleaseUnknown(HarnessError, ValueError):
    """``opensips -V`` did not say which release it is."""


@dataclass(frozen=True)
class Release:
    """The OpenSIPS release a binary reports (``opensips -V``), not the one we asked for."""

    #: e.g. "1.10.5"
    version: str
    #: the whole ``version:`` line, e.g. "opensips 1.10.5-notls (x86_64/linux)"
    banner: str
    #: where the binary is: the image name (docker) or the binary's path (local)
    artifact: str = ""
    #: the image id (docker); "" where the path is the identity (local)
    artifact_id: str = ""


def parse_release(text: str, artifact: str = "", artifact_id: str = "") -> Release:
    """The release in ``opensips -V`` output (of ``artifact``); ReleaseUnknown when it names none."""
    for line in text.splitlines():
        if line.startswith("version:"):
            banner = line.split(":", 1)[1].strip()
            if m := re.search(r"opensips (\d+\.\d+\.\d+)", banner):
                return Release(m.group(1), banner, artifact, artifact_id)
    raise ReleaseUnknown(f"cannot tell the OpenSIPS release from `opensips -V`: {text.strip()[:200]!r}")


@dataclass(frozen=True)
class ConfigCheck:
    """How a backend runs ``opensips -c`` on a rendered config, before any node starts."""

    #: the module directory a config must name (``mpath``) where the check runs
    module_path: str
    #: where the check runs, for messages: "the local binary", "a throw-away … container"
    where: str
    #: the command line that checks the config file at a host path
    argv: Callable[[Path], list[str]]


@runtime_checkable
class Node(Protocol):
    """A single OpenSIPS 1.10 instance under the harness's control."""

    name: str

    def start(self) -> None:
        """Start the process and return once it answers MI (restart after stop/kill)."""

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

    def check_alive(self) -> None:
        """Raise NodeDied if the node exited while the harness expected it to run."""

    def death_report(self) -> str | None:
        """Who died when, with the last log lines; None while alive or stopped on purpose."""

    def addresses(self) -> NodeAddresses: ...

    def describe(self) -> str:
        """One line: where this node runs (container, namespace) and at which address."""

    def release(self) -> Release:
        """The release the node's binary reports."""

    def mi(self, timeout: float | None = None) -> MIClient:
        """An MI client for the node; waiting on it raises NodeDied if the node dies."""

    def logs(self) -> str:
        """Everything the node wrote to stderr so far, over all its starts."""

    def current_logs(self) -> str:
        """What the current (or last) start wrote."""

    def bin_receiver_activity(self, pid: int) -> tuple[int, bool] | None:
        """(voluntary context switches, blocked in recvfrom) of a BIN receiver; None if
        this backend cannot see the node's processes (the warm-up then uses the logs)."""

    def opensips_pids(self) -> list[int] | None:
        """The pids of the node's running OpenSIPS processes, as its MI ``ps`` numbers
        them (an error shows them beside MI's list); None if this backend cannot see them."""

    def read_proc_net(self, name: str) -> str:
        """``/proc/net/<name>`` (e.g. ``snmp``, ``udp``) as the node's network namespace
        sees it: the kernel's own counts of what the node's sockets received and dropped."""

    def take_vip(self, vip: str) -> None:
        """Bind the cluster's virtual IP on this node and announce it (failover)."""

    def release_vip(self, vip: str) -> None:
        """Drop the virtual IP from this node."""


@runtime_checkable
class ClientHost(Protocol):
    """A place on the cluster network where a command runs (SIPp, tcpdump)."""

    name: str
    ip: str
    #: the interface that carries the cluster's traffic there
    ifname: str

    def argv(self, command: list[str], *, cwd: str | None = None) -> list[str]:
        """``command`` wrapped to run at that place; ``cwd`` is shared with it."""


@runtime_checkable
class Backend(Protocol):
    """One cluster's network and the nodes on it (local namespaces, Docker...)."""

    name: str
    settings: Settings
    #: module directory as the OpenSIPS processes see it
    module_path: str

    @property
    def vip(self) -> str:
        """The cluster's virtual IP (SIP listen address of every node)."""

    @property
    def harness_ip(self) -> str:
        """The harness's own address on the cluster network (MI, probes, pybin peers)."""

    def open(self) -> None: ...
    def close(self) -> None: ...

    def describe(self) -> list[str]:
        """Lines telling a person where the cluster lives and how to reach into it."""

    def release(self, artifact: str | None = None) -> Release:
        """The release the backend's OpenSIPS binary (or image) reports, or ``artifact``'s
        (another binary or image of the same backend)."""

    def module_path_for(self, artifact: str | None = None) -> str:
        """The module directory of ``artifact`` (default: the backend's own binary or image)."""

    def node_addresses(self, name: str) -> NodeAddresses:
        """Node ``name``'s addresses, by the shared plan (same name, same address)."""

    def create_node(self, name: str, config: str, addresses: NodeAddresses,
                    artifact: str | None = None) -> Node:
        """A node (not started) running ``config``; ``artifact`` is the binary (local) or
        image (docker) to run instead of the backend's default: mixed-release clusters."""

    def client(self, name: str) -> ClientHost:
        """A host for a SIP client (e.g. "caller"), created on first use."""

    def capture_host(self) -> ClientHost:
        """Where tcpdump sees every packet of the cluster."""

    def udp_socket(self, port: int = 0) -> socket.socket:
        """A UDP socket bound at harness_ip:port."""

    def socket(self, kind: int = socket.SOCK_STREAM) -> socket.socket:
        """An unbound AF_INET socket that reaches the cluster network."""

    def refresh_neighbours(self, ip: str) -> None:
        """Make every host re-resolve ``ip`` (after the VIP moved)."""
