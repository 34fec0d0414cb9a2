"""The one way in to a live cluster: `start` a backend, its nodes, a pybin peer and a
capture together, and tear all of it down in reverse when the block ends.

    with live.start(kind, settings, ("primary", "backup"), peer=True, capture=True,
                    workdir=tmp, link={"primary>backup": Impairment.parse("loss=0.02,seed=7")}) as lc:
        lc.cluster.mi("backup").dlg_list()
        lc.peer.wait_for(...)
        lc.links["primary>backup"].log()     # every datagram the relay saw, and its fate

The pytest fixture, ``harness up``, ``harness failover``, ``harness record``, the
benches and the version matrix all start their clusters here (testcontainers'
``DockerContainer`` is the model: nobody assembles one by hand and patches attributes
on afterwards). `preflight` checks a user's config template once, before any start.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from harness.backends import BackendKind, choose_backend
from harness.backends.clean import sweep_quietly
from harness.base.releases import Build
from harness.base.settings import Settings
from harness.cluster import Cluster, Destination
from harness.cluster.interfaces import Backend
from harness.cluster.user_config import UserConfigError, check_user_config
from harness.instruments.capture import Capture
from harness.instruments.link import LinkError, LinkRelay, parse_link_name
from harness.instruments.peer import BinPeer
from pybin.relay import Impairment

#: tcpdump's kernel buffer for a cluster capture: with the 2 MB default it drops packets
#: of bursts such as 200 calls set up at once, and the evidence would lie
CAPTURE_BUFFER_KIB = 65536

PeerPlace = Literal["first", "last"]


@dataclass(frozen=True)
class LiveCluster:
    """What `start` started. ``peer``/``capture`` are None unless asked for."""

    cluster: Cluster
    kind: BackendKind
    #: where the capture and other evidence of this cluster go
    workdir: Path
    #: a pybin endpoint every replicating node also sends to
    peer: BinPeer | None
    #: tcpdump on the cluster network since before the nodes started
    capture: Capture | None
    #: "source>dest" → the relay impairing that replication link (``start(link=...)``)
    links: Mapping[str, LinkRelay] = field(default_factory=dict)

    @property
    def backend(self) -> Backend:
        return self.cluster.backend


@contextlib.contextmanager
def start(kind: BackendKind, settings: Settings,
          roles: Sequence[str] | Mapping[str, str] = ("primary", "backup"), *,
          workdir: str | Path | None = None,
          replicate: Mapping[str, Iterable[Destination]] | None = None,
          extra_destinations: Iterable[Destination] = (),
          peer: bool | PeerPlace = False, capture: bool = False, warmup: bool | None = None,
          default_build: Build | None = None,
          artifacts: Mapping[str, str] | None = None,
          link: Mapping[str, Impairment | str] | None = None) -> Iterator[LiveCluster]:
    """Start a cluster of ``roles`` on a fresh ``kind`` backend; yield its `LiveCluster`.

    peer: a pybin peer among every replicating node's destinations; ``"first"`` (the
      failover witness) configures it before the node's own peers, which 1.10's reverse
      send order makes the *last* one sent to (see harness.experiments.failover).
    capture: tcpdump of the cluster network into ``workdir/capture.pcap``, started before
      the nodes so the evidence holds their whole life.
    default_build: the backend's own OpenSIPS (binary or image); ``artifacts``: {node or
      role: binary or image} for nodes of another release (mixed clusters).
    workdir: given, it is the caller's and stays; else a temporary one, removed at the end.
    link: {"source>dest": Impairment or its text}: the source's replication to dest goes
      through a `LinkRelay` (pybin's relay at the harness's address, forwarding to dest's
      BIN address with those seeded faults; its log is ``workdir/link-SOURCE-DEST.jsonl``).

    Leftovers of runs that were killed are swept first. Whatever fails, everything
    started so far is torn down, in reverse.
    """
    sweep_quietly()
    own_workdir = workdir is None
    work = Path(tempfile.mkdtemp(prefix="harness-live-")) if own_workdir else Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        if own_workdir:
            stack.callback(shutil.rmtree, work, ignore_errors=True)
        backend = kind.backend(settings, default_build)
        stack.callback(backend.close)
        backend.open()
        cap = None
        if capture:
            cap = Capture(backend.capture_host(), work / "capture.pcap", buffer_kib=CAPTURE_BUFFER_KIB)
            stack.callback(cap.stop)
            cap.start()
        bin_peer = None
        first: list[Destination] = []
        extra = list(extra_destinations)
        if peer:
            bin_peer = BinPeer((backend.harness_ip, 0),
                               socket_factory=lambda family: backend.socket(socket.SOCK_DGRAM))
            stack.callback(bin_peer.close)
            bin_peer.start()
            (first if peer == "first" else extra).append(bin_peer.address)
        relays = _links(stack, backend, Cluster.node_roles(roles), link or {}, work)
        if relays:
            replicate = _through_links(Cluster.node_roles(roles), replicate or {}, relays)
        cluster = Cluster(backend, roles, replicate=replicate, first_destinations=first,
                          extra_destinations=extra, warmup=warmup, artifacts=artifacts)
        stack.callback(cluster.close)
        cluster.start()
        yield LiveCluster(cluster, kind, work, bin_peer, cap, relays)


def _links(stack: contextlib.ExitStack, backend: Backend, roles: Mapping[str, str],
           links: Mapping[str, Impairment | str], work: Path) -> dict[str, LinkRelay]:
    """A started relay per link, at the harness's address, towards the dest's BIN address."""
    relays: dict[str, LinkRelay] = {}
    for name, impairment in links.items():
        src, dst = parse_link_name(name, roles)
        relay = LinkRelay(f"{src}>{dst}", (backend.harness_ip, 0), backend.node_addresses(dst).bin_addr,
                          impairment, log=work / f"link-{src}-{dst}.jsonl",
                          socket_factory=lambda family: backend.socket(socket.SOCK_DGRAM))
        stack.callback(relay.close)
        relay.start()
        relays[relay.name] = relay
    return relays


def _through_links(roles: Mapping[str, str], replicate: Mapping[str, Iterable[Destination]],
                   relays: Mapping[str, LinkRelay]) -> dict[str, list[Destination]]:
    """The replication topology with each linked destination replaced by its relay."""
    out = {name: list(dests) for name, dests in replicate.items()}
    for relay in relays.values():
        src, dst = relay.name.split(">")
        dests = out.get(src, Cluster.peers(roles, src))
        if dst not in dests:
            raise LinkError(f"link {relay.name}: {src} does not replicate to {dst}")
        out[src] = [relay.address if d == dst else d for d in dests]
    return out


def preflight(settings: Settings, config: str | None, roles: Iterable[str],
              wanted_backend: str) -> tuple[Settings, str | None]:
    """`settings` using ``config`` (absolute path), checked for ``roles``; and a note saying how.

    The CLI and the pytest plugin both call this, so ``--config`` means the same
    everywhere. A missing file is refused before anything else is asked of the machine;
    the ``-c`` check runs where the chosen backend would run OpenSIPS.
    """
    if not config:
        return settings, None
    path = Path(config).resolve()
    if not path.is_file():
        raise UserConfigError([f"config {config}: no such file"])
    settings = settings.with_overrides({"opensips": {"config": str(path)}})
    chosen = choose_backend(wanted_backend, settings).kind
    return settings, check_user_config(settings, roles, chosen.config_check(settings) if chosen else None)
