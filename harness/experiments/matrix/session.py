"""Where the checks of one primary/backup pair run: a shared cluster, and their own.

Starting a cluster (two nodes, their BIN warm-up) is the slowest thing a check does,
so the checks of one pair share one: started on first use, with a pybin peer among
the replication destinations and a capture of its network, and kept while the checks
leave it as they found it (every check waits until the behaviour it provoked is over:
`harness.experiments.matrix.complete`). A check that needs other settings, fresh
nodes, or may leave a node dead or stuck asks for a cluster of its own (`fresh`),
torn down when the check ends. A check that fails takes the shared cluster with it:
the next check gets a new one, so one broken cell does not become many.

A session never picks binaries or images itself: every cluster runs the pair's builds
(``artifacts`` per role) through `harness.live.start`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import live
from harness.backends import BackendKind
from harness.base.releases import Build
from harness.base.settings import Settings
from harness.base.wait import WaitTimeout, wait_until
from harness.cluster import Cluster, Destination
from harness.experiments.calls import RING_BEFORE_ANSWER_MS, CallPair
from harness.experiments.matrix.complete import Incomplete
from harness.experiments.matrix.registry import CHECKS, Observation
from harness.instruments import processes
from harness.instruments.mi import MITimeout
from harness.live import LiveCluster

#: the key an observation carries when the check could not run to the end
ERROR_KEY = "error"
#: the key of a check the backend cannot run (its `needs`)
NOT_RUN_KEY = "not run"
#: beside an error whose deadline passed: what each node's processes were doing then
#: (`harness.instruments.processes`), e.g. ``{"primary": ["pid 412 R cpu 98%: fm_malloc
#: < shm_malloc"]}``. Evidence of why the behaviour did not end, not an observation of
#: it: repeats whose errors differ only here are not unstable
STUCK_KEY = "stuck"
#: the errors that mean a deadline passed while the nodes may still run
DEADLINES = (Incomplete, WaitTimeout, MITimeout)
#: what the matrix's nodes run with, whatever the release: tm keeps a transaction 2 s
#: after its final reply (tm's minimum; releases default to 5 s). Checks wait for those
#: transactions to end before they read (a dialog's end can wait for them), so this is
#: time every check saves, and it is the same for the baseline and every pair.
#: fr_inv_timeout 120 (every release's default) is also set per INVITE by the script: a
#: 1.11.0 primary otherwise gives up a call whose 200 OK comes after a tick boundary
#: that fell between 180 and 200 (a race: seen once in 1,040 cells, a 408, and that
#: node died later in the session); ``sip.ringing`` shows the defect on purpose.
MATRIX_SETTINGS = {"tm": {"wt_timer": 2, "fr_inv_timeout": 120}}
#: no check's SIP reaches a node before it has been up this long (MI ``uptime``): in
#: OpenSIPS 1.11.0 a provisional reply relayed while the timer's tick counter is still 0
#: (the node's first second) crashes its SIP worker — tm's reply_received sets the
#: FR_INV timer with the unset timeout 0 (d244686dc5f), so the timer lands at time 0 and
#: insert_timer_unsafe dereferences the list head's empty link (fixed by ea6ab4d87ce,
#: 1.11.1). Whether a check's first call lands in that second would be a race; here it
#: never does, and every release is observed past its start
UP_S = 2


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


class PairSession:
    """Clusters and SIP calls for the checks of one pair; ``close()`` removes everything."""

    def __init__(self, kind: BackendKind, settings: Settings, pair: Pair, workdir: Path) -> None:
        self.kind = kind
        self.settings = settings.with_overrides(MATRIX_SETTINGS)
        self.pair = pair
        self.workdir = workdir
        self._session = contextlib.ExitStack()
        self._check = contextlib.ExitStack()
        #: shared clusters by settings name ("" is the matrix's own), with their teardown
        self._shared: dict[str, tuple[LiveCluster, contextlib.ExitStack]] = {}
        #: the shared clusters the running check used (a failure replaces them)
        self._used: set[str] = set()
        #: the clusters of the running check's own (`fresh`)
        self._own: list[LiveCluster] = []
        self._n = 0
        #: the check running now (names its files)
        self.current = ""

    def __enter__(self) -> PairSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            self._check.close()
        finally:
            self._drop_shared()
            self._session.close()

    # -- running checks ------------------------------------------------------------------
    def run(self, check: str) -> Observation:
        """Run one check here: its observation; ``error`` (one line) when it broke, ``not
        run`` when the backend lacks what it needs. Its own clusters and calls are gone
        after; a failure also replaces the shared cluster."""
        spec = CHECKS[check]
        if missing := spec.missing(self.kind):
            return {NOT_RUN_KEY: f"the {self.kind.name} backend lacks {', '.join(missing)}"}
        if lacking := spec.lacking([self.pair.primary.version, self.pair.backup.version]):
            return {NOT_RUN_KEY: "; ".join(lacking)}
        self.current, self._used, self._own = check, set(), []
        failed = False
        try:
            return spec.run(self)
        except Exception as exc:  # a broken check is a cell, not the end of the run
            failed = True
            text = str(exc).strip().splitlines()
            obs: Observation = {ERROR_KEY: f"{type(exc).__name__}: {text[0] if text else ''}"[:300]}
            if isinstance(exc, DEADLINES):
                try:
                    if stuck := self.stuck():
                        obs[STUCK_KEY] = stuck
                except Exception as why:  # evidence that cannot be read must not cost the cell
                    obs[STUCK_KEY] = {"?": [f"could not read the processes: {type(why).__name__}: {why}"[:200]]}
            return obs
        finally:
            try:
                self._check.close()
            finally:
                self._check = contextlib.ExitStack()
                if failed:
                    self._drop_shared(self._used)

    def stuck(self) -> dict[str, list[str]]:
        """What the processes of the running check's nodes are doing now, per node (one
        line per process; nodes whose processes the backend cannot see are left out)."""
        clusters = [self._shared[n][0] for n in sorted(self._used) if n in self._shared] + self._own
        out: dict[str, list[str]] = {}
        for i, lc in enumerate(clusters):
            for name, node in lc.cluster.nodes.items():
                if pids := node.opensips_pids():
                    key = name if name not in out else f"{name} (cluster {i + 1})"
                    out[key] = [p.text() for p in processes.snapshot(pids)]
        return out

    def dir(self, what: str) -> Path:
        self._n += 1
        path = self.workdir / f"{self.current or 'session'}-{what}{self._n}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- clusters -------------------------------------------------------------------------
    def artifacts(self, roles: Mapping[str, str]) -> dict[str, str]:
        """{node: artifact}: primaries run the pair's primary build, backups its backup build."""
        builds = {"primary": self.pair.primary, "backup": self.pair.backup,
                  "standalone": self.pair.primary}
        return {name: builds[role].artifact for name, role in roles.items()}

    def _start(self, stack: contextlib.ExitStack, roles: Iterable[str] | Mapping[str, str],
               settings: Mapping[str, Any] | None, **kw: Any) -> LiveCluster:
        effective = self.settings.with_overrides(settings) if settings else self.settings
        named = Cluster.node_roles(roles if isinstance(roles, Mapping) else tuple(roles))
        lc = stack.enter_context(live.start(
            self.kind, effective, named, workdir=self.dir("cluster"), default_build=self.pair.primary,
            artifacts=self.artifacts(named), **kw))
        if stack is self._check:
            self._own.append(lc)
        up_long_enough(lc)
        return lc

    def shared(self, name: str = "", settings: Mapping[str, Any] | None = None) -> LiveCluster:
        """The pair's primary/backup cluster with a pybin peer and a capture, started on
        first use and kept for the next checks; ``name`` and ``settings``: another one
        shared by the checks that need those settings (the usrloc checks' ``usrloc``)."""
        self._used.add(name)
        if name not in self._shared:
            stack = contextlib.ExitStack()
            try:
                lc = self._start(stack, ("primary", "backup"), settings, peer=True, capture=True)
            except BaseException:
                stack.close()
                raise
            self._shared[name] = (lc, stack)
        return self._shared[name][0]

    def retire_shared(self, name: str = "") -> None:
        """The running check will break the shared cluster: it lives until the check
        ends, and the next check gets a new one."""
        if name in self._shared:
            _, stack = self._shared.pop(name)
            self._check.callback(stack.close)

    def _drop_shared(self, names: Iterable[str] | None = None) -> None:
        """Tear down the shared clusters named (default: all of them)."""
        gone = [self._shared.pop(n) for n in list(self._shared if names is None else names)
                if n in self._shared]
        with contextlib.ExitStack() as all_of_them:
            for _, stack in gone:
                all_of_them.callback(stack.close)

    def cleanup(self, fn: Any) -> None:
        """Call ``fn()`` when the running check ends, however it ends."""
        self._check.callback(fn)

    def fresh(self, roles: Iterable[str] | Mapping[str, str] = ("primary", "backup"), *,
              settings: Mapping[str, Any] | None = None, peer: bool = True, capture: bool = False,
              warmup: bool | None = None,
              replicate: Mapping[str, Iterable[Destination]] | None = None) -> LiveCluster:
        """A cluster of the check's own (other settings, fresh nodes, or one it may break),
        torn down when the check ends."""
        return self._start(self._check, roles, settings, peer=peer, capture=capture, warmup=warmup,
                           replicate=replicate)

    def calls(self, lc: LiveCluster, scenario: str | Path = "basic", **options: Any) -> CallPair:
        """A started SIPp caller/callee pair through ``lc``, stopped when the check ends.
        Call-IDs name the check, so a shared cluster's capture tells checks apart.

        Calls answered for ``created`` to be seen (the caller delays its ACK,
        ``ack_delay_ms``) also ring `RING_BEFORE_ANSWER_MS` between 180 and 200 OK
        unless ``uas_options`` says how long: with the two replies back to back, a
        1.10.3+ primary replicates ``created`` twice now and then (a race in its dialog
        module, see `harness.experiments.calls`), which the check would report as the
        release's behaviour."""
        label = scenario.name if isinstance(scenario, Path) else scenario
        extra = list(options.pop("extra_args", ()))
        options["extra_args"] = ["-cid_str", f"{self.current}-{label}-{int(time.time())}-%u@%s", *extra]
        if options.get("ack_delay_ms") is not None:
            options["uas_options"] = {"ring_ms": RING_BEFORE_ANSWER_MS, **(options.get("uas_options") or {})}
        pair = CallPair(lc.cluster, scenario, workdir=self.dir("sipp"), **options)
        self._check.callback(pair.stop)
        return pair.start()


def up_long_enough(lc: LiveCluster, timeout: float = 15.0) -> None:
    """Wait until every node has been up `UP_S` seconds (their own clock, over MI)."""
    def up() -> bool:
        return all(lc.cluster.mi(n).uptime() >= UP_S for n in lc.cluster.nodes)
    wait_until(up, timeout=timeout, interval=0.1, what=f"every node to be up {UP_S} s")


def observe(check: str, pair: Pair, kind: BackendKind, settings: Settings, workdir: Path) -> Observation:
    """Run one check on one pair in a session of its own (the behaviour tests' way)."""
    with PairSession(kind, settings, pair, workdir) as session:
        return session.run(check)
