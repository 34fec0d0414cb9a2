"""Docker backend: each OpenSIPS node is a container, each cluster a Docker network.

Built on testcontainers (with its Ryuk reaper disabled: Ryuk needs an image from a
registry, and we clean up ourselves). Why the pieces look as they do:

- Every cluster gets its own user-defined network whose subnet is derived from the
  pytest-xdist worker and a per-run id, so ``pytest -n auto`` never collides; the
  engine refusing an overlapping subnet (another run, a leftover) makes us try the next.
- Containers get NET_ADMIN and ``net.ipv4.ip_nonlocal_bind=1``: a backup binds the
  cluster's virtual IP before owning it, and the VIP moves with ``ip addr`` + a
  gratuitous ARP on failover.
- Everything is labelled with the run id: ``sweep()`` removes leftovers of runs that
  were killed before their ``finally`` ran; an ``atexit`` hook covers interrupts.
- Death is observed, not guessed: a node whose container exited raises
  :class:`harness.node.NodeDied` naming it, when it died and its last log lines
  (OpenSIPS 1.10.5 really does die on its first BIN packet about 60% of the time).
- Readiness is an MI answer over UDP (mi_datagram) before a deadline, never a sleep.
"""

from __future__ import annotations

import atexit
import base64
import hashlib
import ipaddress
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from harness.images import OPENSIPS_IMAGE, SIPP_IMAGE, engine_socket_problem  # noqa: E402
from harness.node import NodeAddresses, NodeDied  # noqa: E402
from harness.wait import wait_until  # noqa: E402

__all__ = [
    "CONFIG_PATH",
    "MODULE_PATH",
    "DockerBackend",
    "DockerClientHost",
    "DockerNetwork",
    "DockerNode",
    "HostCapture",
    "host_tools_in_container",
    "derive_subnet",
    "docker_backend_unavailable",
    "labels_for",
    "run_id",
    "sweep",
    "worker_index",
]

LABEL_PREFIX = "org.opensips-bin-harness"
RUN_LABEL = f"{LABEL_PREFIX}.run"
KIND_LABEL = f"{LABEL_PREFIX}.kind"
CLUSTER_LABEL = f"{LABEL_PREFIX}.cluster"
NODE_LABEL = f"{LABEL_PREFIX}.node"

#: where the image installs modules and the config (``make install`` defaults)
MODULE_PATH = "/usr/local/lib64/opensips/modules"
CONFIG_PATH = "/usr/local/etc/opensips/opensips.cfg"

#: subnets for cluster networks: one /16 per xdist worker, one /24 per cluster
DEFAULT_POOL = "10.160.0.0/11"
SUBNET_POOL_ENV = "HARNESS_DOCKER_SUBNET_POOL"
RUN_ID_ENV = "HARNESS_RUN_ID"
#: where the host-side network tools (tcpdump on the bridge, ``ip`` on the bridge) run:
#: ``host``, ``container`` (a host-network helper container) or ``auto``
HOST_TOOLS_ENV = "HARNESS_DOCKER_HOST_TOOLS"

#: host numbers inside a cluster /24
GATEWAY_HOST = 1
FIRST_NODE_HOST = 10
VIP_HOST = 100
FIRST_TOOL_HOST = 200

#: SIPp scenarios shipped with the harness (mounted into client containers)
SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"

#: how many log lines a NodeDied message carries
LOG_TAIL = 25

ConfigSource = str | Callable[[NodeAddresses], str]


class DockerBackendError(RuntimeError):
    """The engine refused something (network, container) in a way a user must fix."""


class NodeStartTimeout(RuntimeError):
    """A node's container runs but its MI did not answer before the deadline."""


# ------------------------------------------------------------------------ identities

_RUN_ID: str | None = None


def run_id() -> str:
    """This test run's id: $HARNESS_RUN_ID, else xdist's shared run uid, else random.

    xdist workers share PYTEST_XDIST_TESTRUNUID, so one ``pytest -n auto`` session
    labels all its containers alike and ``sweep(run_id())`` cleans the whole session.
    """
    global _RUN_ID
    if _RUN_ID is None:
        raw = os.environ.get(RUN_ID_ENV) or os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex
        _RUN_ID = re.sub(r"[^a-z0-9]", "", raw.lower())[:12] or uuid.uuid4().hex[:12]
    return _RUN_ID


def worker_index(worker: str | None = None) -> int:
    """Index of the xdist worker (``gw3`` -> 3); 0 outside xdist.

    Unknown worker names hash to a stable index rather than failing.
    """
    worker = worker if worker is not None else os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker or worker == "master":
        return 0
    if m := re.fullmatch(r"gw(\d+)", worker):
        return int(m.group(1))
    return int(hashlib.sha256(worker.encode()).hexdigest(), 16) % 1024


def derive_subnet(
    worker: int, seq: int, run: str, pool: str = DEFAULT_POOL, prefix: int = 24
) -> ipaddress.IPv4Network:
    """The ``seq``-th cluster subnet of ``worker`` in run ``run``.

    The pool is cut in equal blocks, one per worker (so workers of one run never
    collide); inside a block the run id picks a starting offset (so concurrent runs
    rarely collide, and when they do the engine says so and the caller tries seq+1).
    """
    net = ipaddress.IPv4Network(pool)
    if prefix <= net.prefixlen:
        raise ValueError(f"subnet prefix /{prefix} does not fit in pool {pool}")
    subnets_total = 1 << (prefix - net.prefixlen)
    blocks = min(32, subnets_total)  # worker blocks in the pool
    per_block = subnets_total // blocks
    block = worker % blocks
    offset = int(hashlib.sha256(run.encode()).hexdigest(), 16) % per_block
    index = block * per_block + (offset + seq) % per_block
    size = 1 << (32 - prefix)
    return ipaddress.IPv4Network((int(net.network_address) + index * size, prefix))


def labels_for(kind: str, cluster: str | None = None, node: str | None = None,
               run: str | None = None) -> dict[str, str]:
    """Labels put on every container and network, so leftovers can be found."""
    labels = {RUN_LABEL: run or run_id(), KIND_LABEL: kind}
    if cluster is not None:
        labels[CLUSTER_LABEL] = cluster
    if node is not None:
        labels[NODE_LABEL] = node
    return labels


def _slug(text: str, limit: int = 24) -> str:
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", text)[:limit] or "x"


# -------------------------------------------------------------------- engine access

_client_lock = threading.Lock()
_CLIENT: Any = None


def _client() -> Any:
    """One docker SDK client per process (cheap to share, thread-safe enough)."""
    global _CLIENT
    with _client_lock:
        if _CLIENT is None:
            import docker

            _CLIENT = docker.from_env(timeout=120)
        return _CLIENT


def docker_backend_unavailable(image: str = OPENSIPS_IMAGE) -> str | None:
    """Why the docker backend cannot run here (a skip reason), or None when it can."""
    try:
        import docker  # noqa: F401
        import testcontainers.core.container  # noqa: F401
    except ImportError as exc:
        return f"docker backend needs python packages 'docker' and 'testcontainers' ({exc.name} missing)"
    if problem := engine_socket_problem():
        return f"docker engine not reachable ({problem}): start dockerd or set DOCKER_HOST"
    try:
        client = _client()
        client.ping()
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"docker engine not reachable ({first}): start dockerd or set DOCKER_HOST"
    try:
        client.images.get(image)
    except Exception:
        return f"docker image {image} not built: run `harness image build`"
    return None


# ------------------------------------------------------------- host-side network tools


def host_tools_in_container() -> bool:
    """Run tcpdump / ``ip`` for the bridge in a helper container rather than on the host?

    Capturing on the bridge and setting it to flood need CAP_NET_RAW / CAP_NET_ADMIN
    on the host, i.e. root, while using Docker only needs the docker group (a CI
    runner's user, e.g.). A container with ``--network host`` and those capabilities
    sees and changes the same bridge, so ``auto`` uses one unless we are root with
    both tools installed. ``$HARNESS_DOCKER_HOST_TOOLS`` = host | container forces it.
    """
    mode = os.environ.get(HOST_TOOLS_ENV, "auto").strip().lower()
    if mode == "container":
        return True
    if mode == "host":
        return False
    return os.geteuid() != 0 or shutil.which("tcpdump") is None or shutil.which("ip") is None


def host_tool_argv(command: Sequence[str], image: str, *, name: str | None = None,
                   labels: dict[str, str] | None = None, mounts: Sequence[str] = ()) -> list[str]:
    """``command`` run in the host's network namespace by a throw-away ``image`` container.

    ``--init`` so that the SIGINT the docker CLI forwards reaches the tool (tcpdump
    flushes its file on SIGINT); ``mounts`` are bind-mounted at their own paths.
    """
    label_args = [a for k, v in (labels or {}).items() for a in ("--label", f"{k}={v}")]
    volumes = [a for m in dict.fromkeys(mounts) for a in ("-v", f"{m}:{m}")]
    named = ["--name", name] if name else []
    return ["docker", "run", "--rm", "-i", "--init", "--network", "host",
            "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", *named, *label_args, *volumes,
            image, *command]


def _run_host_tool(command: list[str], image: str | None) -> None:
    """Best effort: a bridge tweak that a missing privilege must not turn into an error."""
    argv = host_tool_argv(command, image) if image and host_tools_in_container() else command
    if shutil.which(argv[0]) is None:
        return
    try:
        subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        pass


# ------------------------------------------------------------------- cleanup support

_live_lock = threading.Lock()
_LIVE: dict[str, Callable[[], None]] = {}


def _register(key: str, cleanup: Callable[[], None]) -> None:
    with _live_lock:
        _LIVE[key] = cleanup


def _unregister(key: str) -> None:
    with _live_lock:
        _LIVE.pop(key, None)


@atexit.register
def _cleanup_at_exit() -> None:
    """Remove what this process created and did not remove (interrupted runs)."""
    with _live_lock:
        pending = list(_LIVE.items())
        _LIVE.clear()
    # containers before networks: a network with endpoints cannot be removed
    for key, cleanup in sorted(pending, key=lambda kv: not kv[0].startswith("container:")):
        try:
            cleanup()
        except Exception:
            pass


def sweep(run_id: str | None = None) -> tuple[int, int]:
    """Remove harness containers and networks: of one run, or of every run if None.

    With None this also removes other live sessions' clusters: meant for a CLI
    cleanup, not for tests. Returns (containers removed, networks removed).
    """
    client = _client()
    label = f"{RUN_LABEL}={run_id}" if run_id else RUN_LABEL
    containers = 0
    for c in client.containers.list(all=True, filters={"label": label}):
        try:
            c.remove(force=True, v=True)
            containers += 1
        except Exception:
            pass
    networks = 0
    for n in client.networks.list(filters={"label": label}):
        try:
            n.remove()
            networks += 1
        except Exception:
            pass
    return containers, networks


# ------------------------------------------------------------------------- networks

_seq_lock = threading.Lock()
_SEQ = 0


def _next_seq() -> int:
    global _SEQ
    with _seq_lock:
        _SEQ += 1
        return _SEQ - 1


class DockerNetwork:
    """One cluster's user-defined bridge network, with a subnet of its own.

    Addresses inside the /24: gateway .1 (the host), nodes from .10, the virtual IP
    .100, SIP clients (SIPp containers) from .200.
    """

    def __init__(self, cluster: str = "cluster", *, subnet: str | None = None,
                 run: str | None = None, attempts: int = 64) -> None:
        self.cluster = _slug(cluster)
        self.run = run or run_id()
        self._fixed_subnet = ipaddress.IPv4Network(subnet) if subnet else None
        self._attempts = attempts if subnet is None else 1
        self.subnet: ipaddress.IPv4Network | None = self._fixed_subnet
        self.name = ""
        self.bridge = ""
        self._tc_network: Any = None
        #: image with iproute2 for bridge changes when the host cannot make them
        #: (see host_tools_in_container); None: on the host only
        self.tools_image: str | None = None

    # addresses ------------------------------------------------------------------
    def _host(self, n: int) -> str:
        if self.subnet is None:
            raise DockerBackendError("network not created yet")
        return str(self.subnet.network_address + n)

    @property
    def gateway(self) -> str:
        return self._host(GATEWAY_HOST)

    @property
    def vip(self) -> str:
        """The cluster's shared virtual SIP address."""
        return self._host(VIP_HOST)

    def node_ip(self, index: int) -> str:
        return self._host(FIRST_NODE_HOST + index)

    def tool_ip(self, index: int) -> str:
        return self._host(FIRST_TOOL_HOST + index)

    # lifecycle ------------------------------------------------------------------
    def create(self) -> DockerNetwork:
        """Create the network, trying further subnets while the engine says overlap."""
        from docker.errors import APIError
        from docker.types import IPAMConfig, IPAMPool
        from testcontainers.core.network import Network

        pool = os.environ.get(SUBNET_POOL_ENV, DEFAULT_POOL)
        worker = worker_index()
        last_error = ""
        for _ in range(self._attempts):
            seq = _next_seq()
            subnet = self._fixed_subnet or derive_subnet(worker, seq, self.run, pool)
            name = f"osh-{self.run}-w{worker}-{seq}-{self.cluster}"
            bridge = "osh" + hashlib.sha256(name.encode()).hexdigest()[:10]
            ipam = IPAMConfig(pool_configs=[IPAMPool(
                subnet=str(subnet), gateway=str(subnet.network_address + GATEWAY_HOST))])
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
                last_error = str(getattr(exc, "explanation", "") or exc)
                if "overlap" in last_error.lower() or "already exists" in last_error.lower():
                    continue
                raise DockerBackendError(f"cannot create network {name}: {last_error}") from exc
            self.subnet, self.name, self.bridge, self._tc_network = subnet, name, bridge, net
            _register(f"network:{name}", self._remove_quietly)
            return self
        raise DockerBackendError(f"no free subnet for cluster {self.cluster}: {last_error}")

    def remove(self) -> None:
        """Remove the network (its containers must be gone first)."""
        if self._tc_network is None:
            return
        try:
            self._tc_network.remove()
        except Exception as exc:
            if "not found" not in str(exc).lower():
                raise
        finally:
            _unregister(f"network:{self.name}")
            self._tc_network = None

    def _remove_quietly(self) -> None:
        try:
            self.remove()
        except Exception:
            pass

    def __enter__(self) -> DockerNetwork:
        return self.create() if self._tc_network is None else self

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
        _run_host_tool(["ip", "link", "set", "dev", self.bridge, "type", "bridge", "ageing_time", "0"],
                       self.tools_image)

    def flush_neighbour(self, ip: str) -> None:
        """Forget ``ip``'s MAC on the host side of the bridge (after a VIP move).

        The test process reaches the cluster through this bridge; a gratuitous ARP
        normally updates it, this makes it certain. Best effort: needs root and a
        local engine, silently does nothing otherwise.
        """
        if not self.bridge:
            return
        _run_host_tool(["ip", "neigh", "flush", "to", ip, "dev", self.bridge], self.tools_image)


# ------------------------------------------------------------------------ containers


class _Container:
    """Container plumbing: create on the cluster network at a fixed IP, exec, logs, remove."""

    kind = "container"

    def __init__(self, name: str, network: DockerNetwork, ip: str, image: str) -> None:
        self.name = name
        self.network = network
        self.ip = ip
        self.image = image
        self._tc: Any = None
        self._iface: str | None = None

    @property
    def container_name(self) -> str:
        return f"{self.network.name}-{_slug(self.name)}"

    def _create_and_start(self, command: Sequence[str], env: dict[str, str]) -> None:
        from docker.types import EndpointConfig
        from testcontainers.core.config import testcontainers_config
        from testcontainers.core.container import DockerContainer

        if self.network._tc_network is None:
            raise DockerBackendError(f"{self.name}: network {self.network.cluster} not created")
        testcontainers_config.ryuk_disabled = True
        tc = DockerContainer(self.image)
        tc.with_name(self.container_name).with_command(list(command))
        tc.with_network(self.network._tc_network)
        for k, v in env.items():
            tc.with_env(k, v)
        api_version = _client().api.api_version
        tc.with_kwargs(
            labels=labels_for(self.kind, self.network.cluster, self.name, self.network.run),
            cap_add=["NET_ADMIN", "NET_RAW"],
            sysctls={"net.ipv4.ip_nonlocal_bind": "1"},
            hostname=_slug(self.name, 63),
            networking_config={
                self.network.name: EndpointConfig(api_version, ipv4_address=self.ip)
            },
        )
        key = f"container:{self.container_name}"
        _register(key, self._remove_quietly)
        self._tc = tc
        try:
            tc.start()
        except Exception as exc:
            raise DockerBackendError(f"{self.name}: cannot start container: {exc}") from exc

    @property
    def container(self) -> Any:
        """The docker SDK container object (None before the first start)."""
        return self._tc.get_wrapped_container() if self._tc is not None else None

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

    def exec(self, cmd: Sequence[str], *, check: bool = True, detach: bool = False) -> tuple[int, str]:
        """Run ``cmd`` inside the container; (exit code, combined output)."""
        c = self.container
        if c is None:
            raise DockerBackendError(f"{self.name}: not started")
        if detach:
            c.exec_run(list(cmd), detach=True)
            return 0, ""
        result = c.exec_run(list(cmd), stdout=True, stderr=True)
        out = (result.output or b"").decode("utf-8", "replace")
        if check and result.exit_code != 0:
            raise DockerBackendError(f"{self.name}: {' '.join(cmd)} failed ({result.exit_code}): {out.strip()}")
        return int(result.exit_code or 0), out

    def logs(self) -> str:
        """Everything the container wrote to stdout/stderr so far (all its starts)."""
        c = self.container
        if c is None:
            return ""
        try:
            return c.logs(stdout=True, stderr=True).decode("utf-8", "replace")
        except Exception:
            return ""

    def interface(self) -> str:
        """The container's interface holding ``self.ip`` (eth0 in practice)."""
        if self._iface is None:
            _, out = self.exec(["ip", "-o", "-4", "addr", "show"])
            for line in out.splitlines():
                parts = line.split()
                if len(parts) > 3 and parts[3].split("/")[0] == self.ip:
                    self._iface = parts[1].rstrip(":").split("@")[0]
                    break
            else:
                self._iface = "eth0"
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
            _unregister(f"container:{self.container_name}")
            self._tc = None
            self._iface = None

    def _remove_quietly(self) -> None:
        try:
            self.remove()
        except Exception:
            pass


class DockerNode(_Container):
    """One OpenSIPS 1.10 node in a container; satisfies :class:`harness.node.Node`.

    ``config`` is the opensips.cfg text or a function of this node's addresses that
    returns it (e.g. ``lambda a: render_config("primary", s, a, module_path=MODULE_PATH)``).
    A stopped or killed node can be started again: the same container restarts with
    the same address and config, fresh process (and fresh ASLR).
    """

    kind = "node"

    def __init__(
        self,
        name: str,
        network: DockerNetwork,
        ip: str,
        config: ConfigSource,
        *,
        image: str = OPENSIPS_IMAGE,
        sip_ip: str | None = None,
        sip_port: int = 5060,
        bin_port: int = 5062,
        mi_port: int = 8080,
        extra_args: Sequence[str] = (),
        start_timeout: float = 15.0,
        stop_timeout: float = 10.0,
        mi_timeout: float = 2.0,
    ) -> None:
        super().__init__(name, network, ip, image)
        self._addresses = NodeAddresses(
            name=name, ip=ip, bin_port=bin_port, mi_port=mi_port,
            sip_ip=sip_ip or network.vip, sip_port=sip_port,
        )
        self._config = config
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.mi_timeout = mi_timeout
        #: True after stop()/kill(): an exit is then expected, not a death
        self._expect_down = True
        self._last_check = 0.0
        self.starts = 0

    @classmethod
    def from_settings(
        cls,
        name: str,
        role: str,
        settings: Any,
        network: DockerNetwork,
        ip: str,
        *,
        replicate_to: Sequence[str | tuple[str, int]] = (),
        image: str = OPENSIPS_IMAGE,
    ) -> DockerNode:
        """A node whose config is ``harness.render.render_config`` for ``role``."""
        from harness.render import render_config

        def config(addresses: NodeAddresses) -> str:
            return render_config(role, settings, addresses, replicate_to=replicate_to,
                                 module_path=MODULE_PATH)

        return cls(
            name, network, ip, config, image=image,
            sip_port=settings.ports.sip, bin_port=settings.ports.bin, mi_port=settings.ports.mi,
            extra_args=settings.opensips.extra_args,
            start_timeout=settings.timeouts.start, stop_timeout=settings.timeouts.stop,
            mi_timeout=settings.timeouts.mi,
        )

    # Node protocol ----------------------------------------------------------------
    def addresses(self) -> NodeAddresses:
        return self._addresses

    def config_text(self) -> str:
        """The opensips.cfg this node runs."""
        return self._config(self._addresses) if callable(self._config) else self._config

    def start(self) -> None:
        """Start (or restart) the container and return once MI answers."""
        if self.container is None:
            cfg = self.config_text()
            env = {"OPENSIPS_CFG_B64": base64.b64encode(cfg.encode()).decode()}
            command = ["opensips", "-F", "-E", "-f", CONFIG_PATH, *self.extra_args]
            self._expect_down = False
            self._create_and_start(command, env)
        else:
            status = self.state().get("Status")
            if status in ("running", "paused"):
                raise DockerBackendError(f"{self.name}: already {status}")
            self._expect_down = False
            self.container.start()
        self.starts += 1
        self._iface = None
        self.wait_ready()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll MI until it answers; NodeDied if the container exits meanwhile."""
        from harness.mi import MIClient, MITimeout

        limit = self.start_timeout if timeout is None else timeout
        client = MIClient(self._addresses.mi_addr, timeout=self.mi_timeout,
                          alive=self.check_alive, name=self.name)
        try:
            client.wait_ready(limit)
        except MITimeout:
            self.check_alive(force=True)
            raise NodeStartTimeout(
                f"node {self.name} ({self.ip}) runs but MI on {self.ip}:{self._addresses.mi_port} "
                f"did not answer within {limit:g}s; last log lines:\n{self._tail()}"
            ) from None

    def mi(self) -> Any:
        """An MI client for this node that reports its death instead of timing out."""
        from harness.mi import MIClient

        return MIClient(self._addresses.mi_addr, timeout=self.mi_timeout,
                        alive=self.check_alive, name=self.name)

    def stop(self) -> None:
        """SIGTERM and wait for the exit (SIGKILL after the stop timeout)."""
        self._expect_down = True
        c = self.container
        if c is not None and self.state().get("Status") in ("running", "paused", "restarting"):
            if self.state().get("Status") == "paused":
                c.unpause()
            c.stop(timeout=int(max(1, self.stop_timeout)))

    def kill(self) -> None:
        """SIGKILL the container's init: the kernel kills every process of the node at once."""
        self._expect_down = True
        c = self.container
        if c is None:
            return
        status = self.state().get("Status")
        if status not in ("running", "paused"):
            return
        c.kill(signal="SIGKILL")
        wait_until(lambda: self.state().get("Status") not in ("running", "paused"),
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
        return self.state().get("Status") in ("running", "paused")

    def is_frozen(self) -> bool:
        return self.state().get("Status") == "paused"

    def take_vip(self, vip: str) -> None:
        """Add the VIP to this node's interface and announce it (gratuitous ARP)."""
        iface = self.interface()
        code, out = self.exec(["ip", "addr", "add", f"{vip}/32", "dev", iface], check=False)
        if code != 0 and "File exists" not in out:
            raise DockerBackendError(f"{self.name}: cannot add {vip}: {out.strip()}")
        # -U: unsolicited ARP (sender = target = vip), updating every neighbour's cache.
        self.exec(["arping", "-q", "-U", "-c", "2", "-w", "1", "-I", iface, vip], check=False)
        self.network.flush_neighbour(vip)

    def release_vip(self, vip: str) -> None:
        """Drop the VIP (no-op if the node is down or does not hold it)."""
        if self.state().get("Status") != "running":
            return
        iface = self.interface()
        code, out = self.exec(["ip", "addr", "del", f"{vip}/32", "dev", iface], check=False)
        if code != 0 and "Cannot assign" not in out:
            raise DockerBackendError(f"{self.name}: cannot remove {vip}: {out.strip()}")

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
        state = self.state()
        if state.get("Status") in ("running", "paused", "restarting", "created"):
            return
        raise NodeDied(self.death_message(state))

    def death_message(self, state: dict[str, Any] | None = None) -> str:
        """``node X died at T (exit code N); last log lines: ...``."""
        state = state if state is not None else self.state()
        when = state.get("FinishedAt") or "an unknown time"
        code = state.get("ExitCode")
        extra = " (OOM-killed)" if state.get("OOMKilled") else ""
        return (f"node {self.name} ({self.ip}) died at {when} (exit code {code}){extra}; "
                f"last log lines:\n{self._tail()}")

    def _tail(self, lines: int = LOG_TAIL) -> str:
        text = self.logs().rstrip("\n").splitlines()
        return "\n".join(text[-lines:]) if text else "(no output)"

    def __enter__(self) -> DockerNode:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def __repr__(self) -> str:
        return f"DockerNode({self.name!r}, ip={self.ip!r}, image={self.image!r})"


# --------------------------------------------------------------------------- backend


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
                "--name", f"{self.network}-{_slug(self.name)}", self.image, *command]


@dataclass(frozen=True)
class HostCapture:
    """Where to capture every frame of a cluster: the host side of its bridge.

    With ``image`` the command (tcpdump) runs in a host-network helper container of
    that image, for hosts where the harness is not root (see
    :func:`host_tools_in_container`); the directory of its ``-w`` file is mounted.
    """

    name: str
    ip: str
    ifname: str
    image: str | None = None
    container_name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    def argv(self, command: list[str]) -> list[str]:
        if self.image is None:
            return list(command)
        mounts = []
        if "-w" in command and command.index("-w") + 1 < len(command):
            mounts.append(str(Path(command[command.index("-w") + 1]).resolve().parent))
        # -Z root: Debian's tcpdump would otherwise drop to its own user before opening
        # the file, which then lives in a directory only the harness's user may write
        tool = [command[0], "-Z", "root", *command[1:]] if command[:1] == ["tcpdump"] else list(command)
        return host_tool_argv(tool, self.image, name=self.container_name,
                              labels=dict(self.labels), mounts=mounts)


class DockerBackend:
    """One cluster's Docker network and its OpenSIPS containers.

    Same shape as the local backend (``harness.cluster.Backend``): a Cluster asks it
    for addresses and nodes and talks to them from ``harness_ip``, the bridge's
    gateway address on the host.
    """

    name = "docker"
    module_path = MODULE_PATH

    def __init__(self, settings: Any = None, *, cluster: str = "cluster",
                 image: str = OPENSIPS_IMAGE, tool_image: str = SIPP_IMAGE,
                 run: str | None = None) -> None:
        if settings is None:
            from harness.settings import load_settings

            settings = load_settings()
        self.settings = settings
        reason = docker_backend_unavailable(image)
        if reason:
            raise DockerBackendError(reason)
        self.image = image
        self.tool_image = tool_image
        self.network = DockerNetwork(cluster, subnet=settings.network.subnet, run=run)
        self.network.tools_image = image  # the OpenSIPS image carries iproute2, arping, tcpdump
        self._captures = 0
        self.nodes: dict[str, DockerNode] = {}
        self.clients: dict[str, DockerClientHost] = {}
        self._next_node = 0
        self._next_client = 0

    # addresses ------------------------------------------------------------------
    @property
    def subnet(self) -> ipaddress.IPv4Network:
        self.open()
        assert self.network.subnet is not None
        return self.network.subnet

    @property
    def vip(self) -> str:
        self.open()
        return self.network.vip

    @property
    def harness_ip(self) -> str:
        self.open()
        return self.network.gateway

    # lifecycle ------------------------------------------------------------------
    def open(self) -> None:
        """Create the cluster network (idempotent)."""
        if self.network._tc_network is None:
            self.network.create()
            self.network.flood()

    def close(self) -> None:
        """Remove every container, then the network; safe to call repeatedly."""
        for node in list(self.nodes.values()):
            node._remove_quietly()
        self.nodes.clear()
        for c in self.clients.values():
            _remove_by_name(f"{self.network.name}-{_slug(c.name)}")
        for i in range(self._captures):
            _remove_by_name(f"{self.network.name}-capture{i}")
        self.network._remove_quietly()

    def __enter__(self) -> DockerBackend:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # nodes --------------------------------------------------------------------------
    def node_addresses(self, name: str) -> NodeAddresses:
        """Allocate the addresses of a new node called ``name`` (SIP on the VIP)."""
        if name in self.nodes:
            return self.nodes[name].addresses()
        self.open()
        ip = self.network.node_ip(self._next_node)
        self._next_node += 1
        p = self.settings.ports
        return NodeAddresses(name=name, ip=ip, bin_port=p.bin, mi_port=p.mi,
                             sip_ip=self.network.vip, sip_port=p.sip)

    def create_node(self, name: str, config: str, addresses: NodeAddresses) -> DockerNode:
        """A node (not started) running ``config`` at ``addresses.ip``."""
        if name in self.nodes:
            raise DockerBackendError(f"node {name!r} exists already")
        self.open()
        s = self.settings
        node = DockerNode(
            name, self.network, addresses.ip, config, image=self.image,
            sip_ip=addresses.sip_ip, sip_port=addresses.sip_port,
            bin_port=addresses.bin_port, mi_port=addresses.mi_port,
            extra_args=s.opensips.extra_args, start_timeout=s.timeouts.start,
            stop_timeout=s.timeouts.stop, mi_timeout=s.timeouts.mi,
        )
        self.nodes[name] = node
        return node

    # clients and observation --------------------------------------------------------
    def client(self, name: str) -> DockerClientHost:
        """An address for a SIP client (e.g. "caller"); commands run via ``argv``."""
        if name not in self.clients:
            self.open()
            ip = self.network.tool_ip(self._next_client)
            self._next_client += 1
            labels = labels_for("client", self.network.cluster, name, self.network.run)
            mounts = (str(SCENARIO_DIR), tempfile.gettempdir())
            self.clients[name] = DockerClientHost(name, ip, self.network.name, self.tool_image,
                                                  tuple(sorted(labels.items())), mounts)
        return self.clients[name]

    def capture_host(self) -> HostCapture:
        """tcpdump on the host side of the bridge sees the whole cluster (it floods).

        Not root: tcpdump runs in a host-network helper container instead.
        """
        self.open()
        if not host_tools_in_container():
            return HostCapture("host", self.network.gateway, self.network.bridge)
        name = f"{self.network.name}-capture{self._captures}"
        self._captures += 1
        labels = labels_for("capture", self.network.cluster, run=self.network.run)
        return HostCapture("host", self.network.gateway, self.network.bridge, self.image, name,
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

    def mi(self, node: DockerNode) -> Any:
        return node.mi()

    def refresh_neighbours(self, ip: str) -> None:
        """Forget ``ip``'s MAC on the host side (clients got the gratuitous ARP)."""
        self.network.flush_neighbour(ip)


def _remove_by_name(name: str) -> None:
    """Remove a container by name if it exists (client containers outlive nothing)."""
    try:
        _client().containers.get(name).remove(force=True, v=True)
    except Exception:
        pass
