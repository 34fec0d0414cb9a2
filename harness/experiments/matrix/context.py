"""What a behaviour check runs in: clusters of a primary release and a backup release.

A check never picks binaries or images itself: the context starts every cluster
(through `harness.live.start`) with the pair it was given (``artifacts`` per role), a
pybin peer among the replication destinations and, when asked, a capture of the
cluster's network, and tears all of it down when the check ends, whatever happened. The same context serves ``harness
matrix`` and the pytest behaviour tests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import live
from harness.backends import BackendKind
from harness.base.releases import Build
from harness.base.settings import Settings
from harness.cluster import Cluster, Destination
from harness.experiments.calls import CallPair
from harness.live import LiveCluster


@dataclass(frozen=True)
class Pair:
    """A primary build and a backup build (the same build twice for one release)."""

    primary: Build
    backup: Build

    @property
    def id(self) -> str:
        """``1.10.2`` for a same-release pair, ``1.10.5>1.11.11`` (primary>backup) otherwise."""
        if self.primary.label == self.backup.label:
            return self.primary.label
        return f"{self.primary.label}>{self.backup.label}"


class CheckContext:
    """Starts clusters for one check on one pair; ``close()`` removes everything.

    kind: the backend kind every cluster runs on (its capabilities decide what a check
    can observe, e.g. ``host_pids``).
    """

    def __init__(self, kind: BackendKind, settings: Settings, pair: Pair, workdir: Path) -> None:
        self.kind = kind
        self.settings = settings
        self.pair = pair
        self.workdir = workdir
        self._stack = contextlib.ExitStack()
        self._n = 0

    def __enter__(self) -> CheckContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()

    def _dir(self, what: str) -> Path:
        self._n += 1
        path = self.workdir / f"{what}{self._n}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def artifacts(self, roles: Mapping[str, str]) -> dict[str, str]:
        """{node: artifact}: primaries run the pair's primary build, backups its backup build."""
        builds = {"primary": self.pair.primary, "backup": self.pair.backup,
                  "standalone": self.pair.primary}
        return {name: builds[role].artifact for name, role in roles.items()}

    def cluster(self, roles: Iterable[str] | Mapping[str, str] = ("primary", "backup"), *,
                settings: Mapping[str, Any] | None = None, peer: bool = True,
                capture: bool = False, warmup: bool | None = None,
                replicate: Mapping[str, Iterable[Destination]] | None = None) -> LiveCluster:
        """A started cluster of the pair's builds (`harness.live.start`), torn down with the context."""
        effective = self.settings.with_overrides(settings) if settings else self.settings
        named = Cluster.node_roles(roles if isinstance(roles, Mapping) else tuple(roles))
        return self._stack.enter_context(live.start(
            self.kind, effective, named, workdir=self._dir("cluster"), replicate=replicate,
            peer=peer, capture=capture, warmup=warmup, default_build=self.pair.primary,
            artifacts=self.artifacts(named)))

    def calls(self, cluster: Cluster, scenario: str | Path = "basic", **options: Any) -> CallPair:
        """A started SIPp caller/callee pair through ``cluster`` (stopped with the context)."""
        pair = CallPair(cluster, scenario, workdir=self._dir("sipp"), **options)
        self._stack.callback(pair.stop)
        return pair.start()
