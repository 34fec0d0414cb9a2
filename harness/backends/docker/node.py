"""One OpenSIPS 1.10 node as a container on its cluster's network.

Containers get NET_ADMIN and ``net.ipv4.ip_nonlocal_bind=1``: a backup binds the
cluster's virtual IP before owning it, and the VIP moves with ``ip addr`` + a
gratuitous ARP on failover. Death is observed, not guessed: a container that exited
while the harness expected it up raises `NodeDied` with the shared death report
(OpenSIPS 1.10.5 really does die on its first BIN packet about half the time).
Readiness is an MI answer over UDP (mi_datagram) before a deadline, never a sleep.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from harness.backends.core import (
    LOG_TAIL,
    death_report,
    opensips_command,
    wait_until_serving,
)
from harness.backends.docker import direct, vip_moves
from harness.backends.docker.engine import (
    DockerBackendError,
    client,
    labels_for,
    quietly,
    register,
    slug,
    unregister,
)
from harness.backends.docker.image_info import image_release
from harness.backends.docker.network import DockerNetwork
from harness.backends.images import OPENSIPS_IMAGE
from harness.base.errors import HarnessError
from harness.base.settings import OpenSIPSSettings
from harness.base.wait import WaitTimeout, wait_until
from harness.cluster.interfaces import NodeAddresses, NodeDied, Release
from harness.instruments import node_log
from harness.instruments.mi import MIClient

#: where the image installs modules and the config (``make install`` defaults)
MODULE_PATH = "/usr/local/lib64/opensips/modules"
CONFIG_PATH = "/usr/local/etc/opensips/opensips.cfg"
#: container states in which the node's processes exist
_UP = ("running", "paused")


class NodeStartTimeout(HarnessError, RuntimeError):
    """A node's container runs but its MI did not answer before the deadline."""


def _finished_at(stamp: str | None) -> float | None:
    """Docker's FinishedAt (RFC 3339, nanoseconds) as unix seconds; None if unset."""
    if not stamp or stamp.startswith("0001-"):
        return None
    trimmed = re.sub(r"(\.\d{6})\d*", r"\1", stamp).replace("Z", "+00:00")
    try:
        return datetime.fromisoformat(trimmed).timestamp()
    except ValueError:
        return None


class DockerNode:
    """One OpenSIPS node in a container; satisfies :class:`harness.cluster.interfaces.Node`.

    A stopped or killed node can be started again: the same container restarts with
    the same address and config, fresh process (and fresh ASLR).
    """

    kind = "node"

    def __init__(self, name: str, network: DockerNetwork, ip: str, config: str, *,
                 image: str = OPENSIPS_IMAGE, sip_ip: str | None = None, sip_port: int = 5060,
                 bin_port: int = 5062, mi_port: int = 8080, opensips: OpenSIPSSettings | None = None,
                 start_timeout: float = 15.0, stop_timeout: float = 10.0,
                 mi_timeout: float = 2.0, bin_children: int = 1) -> None:
        self.name = name
        self.network = network
        self.ip = ip
        self.image = image
        self._addresses = NodeAddresses(name=name, ip=ip, bin_port=bin_port, mi_port=mi_port,
                                        sip_ip=sip_ip or network.addresses().vip, sip_port=sip_port)
        self.config = config
        self.opensips = opensips or OpenSIPSSettings()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.mi_timeout = mi_timeout
        #: BIN receivers the config starts (opensips.bin_children): ready means all listed
        self.bin_children = bin_children
        #: True after stop()/kill(): an exit is then expected, not a death
        self._expect_down = True
        self._last_check = 0.0
        self._log_offset = 0
        self._tc: Any = None
        self._iface: str | None = None
        #: the container's init as a host process, where the harness may reach it directly
        self._pid: int | None = None
        #: killed directly (its init is gone) and not started since
        self._gone = False
        self.starts = 0
        #: the other nodes of the cluster (set by the backend): kill() pins this node's
        #: address on them, start() unpins it
        self.siblings: Callable[[], Iterable[DockerNode]] = lambda: ()
        self._pinned_on: list[DockerNode] = []

    @property
    def container_name(self) -> str:
        return f"{self.network.name}-{slug(self.name)}"

    @property
    def container(self) -> Any:
        """The docker SDK container object (None before the first start)."""
        return self._tc.get_wrapped_container() if self._tc is not None else None

    # Node protocol ----------------------------------------------------------------
    def addresses(self) -> NodeAddresses:
        return self._addresses

    def describe(self) -> str:
        return f"{self.name}: container {self.container_name} ({self.image}) at {self.ip}"

    def release(self) -> Release:
        return image_release(self.image)

    def start(self) -> None:
        """Start (or restart) the container and return once MI answers."""
        if self.container is None:
            env = {"OPENSIPS_CFG_B64": base64.b64encode(self.config.encode()).decode(),
                   "TZ": node_log.NODE_TZ}
            command = opensips_command("opensips", CONFIG_PATH, self.opensips)
            self._expect_down = False
            self._log_offset = 0
            self._create_and_start(command, env)
        else:
            if self._expect_down:  # killed directly: the engine may not have seen the exit yet
                wait_until(lambda: self.state().get("Status") not in _UP, timeout=self.stop_timeout,
                           what=f"the engine to see the container of {self.name} exit")
            status = self.state().get("Status")
            if status in _UP:
                raise DockerBackendError(f"{self.name}: already {status}")
            self._log_offset = len(self.logs())  # the engine keeps one log for every start
            self._expect_down = False
            vip_moves.unpin(self)
            self.container.start()
        self.starts += 1
        self._iface, self._pid, self._gone = None, None, False
        self.wait_ready()
        if direct.enabled():  # fetched now, so that a failover asks the engine nothing
            self.container.reload()
            self._pid = direct.host_pid(self.container)
            if self._pid is not None:
                self.interface()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Wait until MI lists every BIN receiver; NodeDied if the container exits meanwhile."""
        limit = self.start_timeout if timeout is None else timeout
        try:
            wait_until_serving(self.mi(), self.bin_children, limit, name=self.name,
                               alive=self.check_alive, evidence=self._log_tail)
        except WaitTimeout as err:
            self.check_alive(force=True)
            raise NodeStartTimeout(f"node {self.name} ({self.ip}) runs but {err}") from None

    def _log_tail(self) -> str:
        return "last log lines:\n" + "\n".join(self.current_logs().splitlines()[-LOG_TAIL:])

    def mi(self, timeout: float | None = None) -> MIClient:
        """An MI client for this node that reports its death instead of timing out."""
        return MIClient(self._addresses.mi_addr, timeout=timeout or self.mi_timeout,
                        alive=self.check_alive, name=self.name)

    def stop(self) -> None:
        """SIGTERM and wait for the exit (SIGKILL after the stop timeout)."""
        self._expect_down = True
        c = self.container
        if c is not None and self.state().get("Status") in (*_UP, "restarting"):
            if self.state().get("Status") == "paused":
                c.unpause()
            c.stop(timeout=int(max(1, self.stop_timeout)))

    def kill(self) -> None:
        """SIGKILL the container's init: the kernel kills every process of the node at once.

        A crashed OpenSIPS on a live host still has its address: its kernel answers ARP
        (and sends ICMP port unreachable), as on the local backend, whose namespaces
        outlive the processes. ``docker kill`` also removes the container's network
        namespace -- a dead *host*: peers' neighbour entries for it fail, and a 1.10
        peer replicating to it then blocks its SIP workers in ``sendto`` (the BIN
        socket's send buffer fills with packets queued for ARP, ~3 s per attempt).
        So, before the kill, every running sibling gets a permanent neighbour entry
        for this node's address and MAC (`vip_moves.pin`): frames to it still leave on
        the bridge and are dropped there, as after a process crash. `start` removes it.
        Where the harness can reach the init directly (`direct`), it kills it itself.
        """
        self._expect_down = True
        if self._pid is not None and direct.alive(self._pid):
            vip_moves.pin(self)
            killed, self._pid = direct.kill(self._pid, self.stop_timeout), None
            if killed:  # no engine round trip (harness.backends.docker.direct)
                self._gone = True  # dead, though the engine may not say so for a moment
                return
        c = self.container
        if c is None or self.state().get("Status") not in _UP:
            return
        vip_moves.pin(self)
        try:
            c.kill(signal="SIGKILL")
        except Exception as exc:  # it exited between the look and the kill: what we wanted
            if "is not running" not in str(exc):
                raise
        wait_until(lambda: self.state().get("Status") not in _UP,
                   timeout=self.stop_timeout, what=f"the container of {self.name} to exit")

    def freeze(self) -> None:
        """Freeze every process of the node (cgroup freezer via docker pause).

        A SIGSTOP to PID 1 alone would leave the SIP and BIN children running;
        a hung primary is silent on all its sockets.
        """
        self.check_alive(force=True)
        self.container.pause()

    def thaw(self) -> None:
        c = self.container
        if c is not None and self.state().get("Status") == "paused":
            c.unpause()

    def is_running(self) -> bool:
        return not self._gone and self.state().get("Status") in _UP

    def is_frozen(self) -> bool:
        return self.state().get("Status") == "paused"

    def logs(self) -> str:
        """Everything the container wrote to stdout/stderr so far (all its starts)."""
        c = self.container
        if c is None:
            return ""
        try:
            return c.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        except Exception:
            return ""

    def current_logs(self) -> str:
        """What the current (or last) start wrote."""
        return self.logs()[self._log_offset:]

    def bin_receiver_activity(self, pid: int) -> tuple[int, bool] | None:
        """Unknown here: MI's pids live in the container's pid namespace."""
        return None

    def opensips_pids(self) -> list[int] | None:
        """Unknown here, for the same reason."""
        return None

    def take_vip(self, vip: str) -> None:
        vip_moves.take(self, vip)

    def release_vip(self, vip: str) -> None:
        vip_moves.release(self, vip)

    def holds_vip(self, vip: str) -> bool:
        if self.state().get("Status") != "running":
            return False
        _, out = self.exec(["ip", "-o", "-4", "addr", "show"], check=False)
        return any(f" {vip}/" in line for line in out.splitlines())

    # death watching ---------------------------------------------------------------
    def check_alive(self, force: bool = False) -> None:
        """Raise NodeDied if the container exited while the harness expected it up.

        Cheap enough for polling loops: the engine is asked at most every 0.2 s
        unless ``force``.
        """
        if self._expect_down or self.container is None:
            return
        now = time.monotonic()
        if not force and now - self._last_check < 0.2:
            return
        self._last_check = now
        if report := self.death_report():
            raise NodeDied(report)

    def death_report(self) -> str | None:
        """The shared death report if the container exited unexpectedly, else None."""
        if self._expect_down or self.container is None:
            return None
        state = self.state()
        if state.get("Status") in (*_UP, "restarting", "created"):
            return None
        note = " (OOM-killed)" if state.get("OOMKilled") else ""
        return death_report(self.name, self.ip, _finished_at(state.get("FinishedAt")),
                            state.get("ExitCode"), self.current_logs(), note)

    # container plumbing -----------------------------------------------------------
    def _create_and_start(self, command: Sequence[str], env: dict[str, str]) -> None:
        from docker.types import EndpointConfig
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer

        if self.network.tc_network is None:
            raise DockerBackendError(f"{self.name}: network {self.network.cluster} not created")
        testcontainers_config.ryuk_disabled = True
        tc = DockerContainer(self.image)
        tc.with_name(self.container_name).with_command(list(command))
        tc.with_network(self.network.tc_network)
        for k, v in env.items():
            tc.with_env(k, v)
        tc.with_kwargs(
            labels=labels_for(self.kind, self.network.cluster, self.name, self.network.run),
            cap_add=["NET_ADMIN", "NET_RAW"],
            sysctls={"net.ipv4.ip_nonlocal_bind": "1"},
            hostname=slug(self.name, 63),
            networking_config={
                self.network.name: EndpointConfig(client().api.api_version, ipv4_address=self.ip)
            },
        )
        register(f"container:{self.container_name}", self.remove_quietly)
        self._tc = tc
        try:
            tc.start()
        except Exception as exc:
            raise DockerBackendError(f"{self.name}: cannot start container: {exc}") from exc

    def state(self) -> dict[str, Any]:
        """Docker's State block (Status, ExitCode, FinishedAt, ...), fresh."""
        c = self.container
        if c is None:
            return {}
        try:
            c.reload()
        except Exception:
            return {"Status": "removed"}
        return dict(c.attrs.get("State", {}))

    def read_proc_net(self, name: str) -> str:
        """``cat /proc/net/<name>`` in the container (its own network namespace)."""
        code, out = self.exec(["cat", f"/proc/net/{name}"], check=False)
        if code != 0:
            raise DockerBackendError(f"{self.name}: cat /proc/net/{name}: {out.strip()[:200]}")
        return out

    def exec(self, cmd: Sequence[str], *, check: bool = True) -> tuple[int, str]:
        """Run ``cmd`` inside the container; (exit code, combined output)."""
        c = self.container
        if c is None:
            raise DockerBackendError(f"{self.name}: not started")
        result = c.exec_run(list(cmd), stdout=True, stderr=True)
        out = (result.output or b"").decode("utf-8", "replace")
        if check and result.exit_code != 0:
            raise DockerBackendError(f"{self.name}: {' '.join(cmd)} failed ({result.exit_code}): {out.strip()}")
        return int(result.exit_code or 0), out

    def net(self, cmd: Sequence[str]) -> tuple[int, str]:
        """A network command (``ip``, ``arping``) in the container: through ``nsenter``
        where the harness can (`direct`), else ``docker exec``."""
        if self._pid is not None:
            return direct.run(self._pid, cmd)
        return self.exec(cmd, check=False)

    def interface(self) -> str:
        """The container's interface holding ``self.ip`` (eth0 in practice)."""
        if self._iface is None:
            _, out = self.net(["ip", "-o", "-4", "addr", "show"])
            self._iface = direct.interface_of(out, self.ip) or "eth0"
        return self._iface

    def remove(self) -> None:
        """Remove the container (forcefully: tests end, containers go)."""
        c = self.container
        try:
            if c is not None:
                c.remove(force=True, v=True)
        except Exception as exc:
            if "no such container" not in str(exc).lower() and "not found" not in str(exc).lower():
                raise
        finally:
            unregister(f"container:{self.container_name}")
            self._tc = None
            self._iface = self._pid = None

    def remove_quietly(self) -> None:
        quietly(self.remove)

    def __repr__(self) -> str:
        return f"DockerNode({self.name!r}, ip={self.ip!r}, image={self.image!r})"
