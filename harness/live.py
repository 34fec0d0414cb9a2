"""The one way in to a live cluster: `start` a backend, its nodes, a pybin peer and a
capture together, and tear all of it down in reverse when the block ends.

    with live.start(kind, settings, ("primary", "backup"), peer=True, capture=True,
                    workdir=tmp) as lc:
        lc.cluster.mi("backup").dlg_list()
        lc.peer.wait_for(...)

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
from dataclasses import dataclass
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
from harness.instruments.peer import BinPeer

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
          artifacts: Mapping[str, str] | None = None) -> Iterator[LiveCluster]:
    """Start a cluster of ``roles`` on a fresh ``kind`` backend; yield its `LiveCluster`.

    peer: a pybin peer among every replicating node's destinations; ``"first"`` (the
      failover witness) configures it before the node's own peers, which 1.10's reverse
      send order makes the *last* one sent to (see harness.experiments.failover).
    capture: tcpdump of the cluster network into ``workdir/capture.pcap``, started before
      the nodes so the evidence holds their whole life.
    default_build: the backend's own OpenSIPS (binary or image); ``artifacts``: {node or
      role: binary or image} for nodes of another release (mixed clusters).
    workdir: given, it is the caller's and stays; else a temporary one, removed at the end.

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
        cluster = Cluster(backend, roles, replicate=replicate, first_destinations=first,
                          extra_destinations=extra, warmup=warmup, artifacts=artifacts)
        stack.callback(cluster.close)
        cluster.start()
        yield LiveCluster(cluster, kind, work, bin_peer, cap)


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
