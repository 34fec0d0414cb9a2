"""What both backends share: run identity, cluster subnets, the address plan, death reports.

Why one place: a cluster must look the same whichever backend runs it (the recorded
corpus and the failover figures name addresses), parallel runs and xdist workers must
never pick the same subnet, and a node's death must read the same everywhere.
"""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import os
import re
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Self

from harness.base.settings import OpenSIPSSettings, PortSettings, Settings
from harness.base.wait import wait_until
from harness.cluster.interfaces import NodeAddresses
from harness.instruments import node_log
from harness.instruments.mi import MIClient, MITimeout

RUN_ID_ENV = "HARNESS_RUN_ID"
#: cluster subnets: one block per xdist worker, one /24 per cluster
DEFAULT_POOL = "10.160.0.0/11"
SUBNET_POOL_ENV = "HARNESS_SUBNET_POOL"

#: host numbers inside a cluster subnet, on every backend
GATEWAY_HOST = 1
FIRST_NODE_HOST = 10
VIP_HOST = 100
FIRST_CLIENT_HOST = 200

#: how many log lines a death report carries
LOG_TAIL = 20

_RUN_ID: str | None = None
_cluster_seq = itertools.count()
_seq_lock = threading.Lock()


def run_id() -> str:
    """This test run's id: $HARNESS_RUN_ID, else xdist's shared run uid, else random.

    xdist workers share PYTEST_XDIST_TESTRUNUID, so one ``pytest -n auto`` session
    labels everything alike and a sweep of its id cleans the whole session.
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


def next_cluster_seq() -> int:
    """A process-wide counter: the n-th cluster (network) this process builds."""
    with _seq_lock:
        return next(_cluster_seq)


def derive_subnet(worker: int, seq: int, run: str, pool: str | None = None,
                  prefix: int = 24) -> ipaddress.IPv4Network:
    """The ``seq``-th cluster subnet of ``worker`` in run ``run``.

    The pool is cut in equal blocks, one per worker (so workers of one run never
    collide); inside a block the run id picks a starting offset (so concurrent runs
    rarely collide, and when they do the engine says so and the caller tries seq+1).
    """
    net = ipaddress.IPv4Network(pool or os.environ.get(SUBNET_POOL_ENV, DEFAULT_POOL))
    if prefix <= net.prefixlen:
        raise ValueError(f"subnet prefix /{prefix} does not fit in pool {net}")
    subnets_total = 1 << (prefix - net.prefixlen)
    blocks = min(32, subnets_total)  # worker blocks in the pool
    per_block = subnets_total // blocks
    block = worker % blocks
    offset = int(hashlib.sha256(run.encode()).hexdigest(), 16) % per_block
    index = block * per_block + (offset + seq) % per_block
    size = 1 << (32 - prefix)
    return ipaddress.IPv4Network((int(net.network_address) + index * size, prefix))


@dataclass(frozen=True)
class AddressPlan:
    """Who has which address in a cluster subnet, the same on every backend.

    gateway .1 (the harness's own address: MI, probes, pybin peers, captures), nodes
    from .10, the shared virtual SIP address .100, SIP clients (SIPp) from .200.
    """

    subnet: ipaddress.IPv4Network

    @classmethod
    def of(cls, subnet: str | ipaddress.IPv4Network) -> AddressPlan:
        net = ipaddress.IPv4Network(subnet)
        if net.num_addresses < 256:
            raise ValueError(f"cluster subnet {net} is smaller than a /24")
        return cls(net)

    def _host(self, n: int) -> str:
        return str(self.subnet.network_address + n)

    @property
    def gateway(self) -> str:
        return self._host(GATEWAY_HOST)

    @property
    def vip(self) -> str:
        return self._host(VIP_HOST)

    def node_ip(self, index: int) -> str:
        if not 0 <= index < VIP_HOST - FIRST_NODE_HOST:
            raise ValueError(f"node index {index} outside the plan (0..{VIP_HOST - FIRST_NODE_HOST - 1})")
        return self._host(FIRST_NODE_HOST + index)

    def client_ip(self, index: int) -> str:
        if not 0 <= index < 255 - FIRST_CLIENT_HOST:
            raise ValueError(f"client index {index} outside the plan (0..{254 - FIRST_CLIENT_HOST})")
        return self._host(FIRST_CLIENT_HOST + index)


class Seats:
    """Plan indexes handed out by name: the n-th name asked for gets index n, for good.

    Both backends number nodes (and clients) this way, so the same cluster gets the
    same addresses whichever backend runs it.
    """

    def __init__(self) -> None:
        self._index: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        return self._index.setdefault(name, len(self._index))


def planned_node(plan: AddressPlan, seats: Seats, name: str, ports: PortSettings) -> NodeAddresses:
    """Node ``name``'s addresses: its own planned IP for BIN and MI, SIP on the VIP."""
    return NodeAddresses(name=name, ip=plan.node_ip(seats(name)), bin_port=ports.bin,
                         mi_port=ports.mi, sip_ip=plan.vip, sip_port=ports.sip)


class PlannedBackend:
    """What both backends do alike on top of their address plan.

    The VIP, the harness's address, which node and client gets which address, and
    the context manager; a backend supplies ``plan``, ``settings``, ``open`` and
    ``close``.
    """

    plan: AddressPlan
    settings: Settings

    def __init__(self) -> None:
        self._node_seats, self._client_seats = Seats(), Seats()

    @property
    def vip(self) -> str:
        return self.plan.vip

    @property
    def harness_ip(self) -> str:
        return self.plan.gateway

    def node_addresses(self, name: str) -> NodeAddresses:
        """Where node ``name`` lives (SIP on the VIP), by the shared plan."""
        return planned_node(self.plan, self._node_seats, name, self.settings.ports)

    def client_ip(self, name: str) -> str:
        """The planned address of SIP client ``name``."""
        return self.plan.client_ip(self._client_seats(name))

    def open(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def opensips_command(binary: str, cfg: str, opensips: OpenSIPSSettings) -> list[str]:
    """The one opensips command line, on every backend.

    ``-F`` (main process in the foreground) and ``-E`` (log to stderr), never ``-D``:
    1.10's dont_fork path starts one SIP process and no BIN receiver. Then the
    memory sizes from the settings (``-m`` shared MB, ``-M`` pkg MB per process) and
    ``extra_args``. The cfg is parsed after getopt, so cfg keywords (``maxbuffer=``,
    ``children=``) override ``-b``/``-n``; ``-m``/``-M`` exist only here.
    """
    return [binary, "-F", "-E", "-f", cfg, *opensips.argv()]


def cluster_subnet(configured: str | None, seq: int) -> ipaddress.IPv4Network:
    """The configured subnet (settings ``network.subnet``) or this worker's ``seq``-th one."""
    if configured:
        return ipaddress.IPv4Network(configured)
    return derive_subnet(worker_index(), seq, run_id())


def wait_until_serving(mi: MIClient, want: int, timeout: float, *, name: str,
                       alive: Callable[[], None], evidence: Callable[[], str]) -> list[int]:
    """Wait until MI lists ``want`` BIN receivers; their pids (WaitTimeout if not in time).

    Ready is not "MI answers": 1.10 forks the mi_datagram process before the BIN
    receivers, so a warm-up asking `ps` at once could find no receiver to probe and
    pass without sending anything (seen on Docker under load: the backup then died of
    the recvfrom defect on the first replicated dialog).
    """
    def receivers() -> list[int] | None:
        try:
            procs = mi.ps(timeout=0.25)
        except MITimeout:
            return None
        pids = [p.pid for p in procs if p.type.startswith("BIN receiver")]
        return pids if len(pids) >= want else None

    return wait_until(receivers, timeout=timeout, interval=0.02, alive=alive, evidence=evidence,
                      what=f"{name}'s MI to list {want} BIN receiver(s)")


def clock(when: float) -> str:
    """``Dec  6 16:05:33.123 UTC``: a time as the nodes' logs write it (plus ms), so a
    death report reads against the log tail it quotes."""
    return f"{node_log.stamp(when)}.{int(when % 1 * 1000):03d} UTC"


def death_report(name: str, ip: str, when: float | None, exit_code: int | None, logs: str,
                 note: str = "") -> str:
    """``node X (ip) died at T (exit code N)<note>; last log lines: ...``: one wording, one tail."""
    at = clock(when) if when is not None else "an unknown time"
    lines = logs.rstrip("\n").splitlines()[-LOG_TAIL:]
    tail = "\n".join(lines) if lines else "(no output)"
    return f"node {name} ({ip}) died at {at} (exit code {exit_code}){note}; last log lines:\n{tail}"
