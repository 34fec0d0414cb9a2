"""Run the behaviour checks over pairs of releases and judge each against the baseline.

For every check the baseline pair (1.10.5 primary, 1.10.5 backup) runs first, in the
same run and on the same machine as the others, so a cell compares two observations
made minutes apart, never one against a remembered figure. Each check on each pair
gets fresh nodes, networks and temp dirs; a check that breaks (a node dies where it
should not, a timeout) is an ``error`` cell holding its one-line cause, and the run
goes on.
"""

from __future__ import annotations

import fnmatch
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.backends import BackendKind
from harness.base.errors import UsageError
from harness.base.releases import BASELINE, Build, ReleaseError, version_key
from harness.base.settings import Settings
from harness.experiments.matrix.checks import CHECKS
from harness.experiments.matrix.context import CheckContext, Pair
from harness.experiments.matrix.expected import deviations
from harness.experiments.matrix.judge import ERROR_KEY, Result, judge
from harness.experiments.matrix.known import Known, load

Progress = Callable[[str], Any]


class MatrixError(UsageError, ValueError):
    """The matrix cannot run as asked (no baseline build, an unknown check...)."""


def register_all() -> None:
    """Import every module that registers checks (they register on import)."""
    import harness.experiments.matrix.checks  # noqa: F401
    import harness.experiments.matrix.checks_nodes  # noqa: F401


def select_checks(patterns: Sequence[str] | None) -> list[str]:
    """Check names matching any glob in ``patterns`` (all when None), in registry order."""
    register_all()
    names = list(CHECKS)
    if not patterns:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise MatrixError(f"no check matches {', '.join(patterns)} (checks: {', '.join(names)})")
    return chosen


def plan_pairs(labels: Sequence[str], how: str = "default", baseline: str = BASELINE) -> list[tuple[str, str]]:
    """Ordered (primary, backup) label pairs.

    ``default``: each release with itself, plus the baseline with each release in both
    directions. ``all``: every ordered pair. Otherwise a comma-separated list of
    ``PRIMARY:BACKUP``. The baseline pair always comes first.
    """
    if baseline not in labels:
        raise MatrixError(f"the baseline {baseline} must be among the builds "
                          f"(have {', '.join(labels) or 'none'})")
    if how == "all":
        pairs = [(p, b) for p in labels for b in labels]
    elif how == "default":
        pairs = [(v, v) for v in labels]
        for v in labels:
            if v != baseline:
                pairs += [(baseline, v), (v, baseline)]
    else:
        pairs = []
        for item in (i.strip() for i in how.split(",") if i.strip()):
            p, sep, b = item.partition(":")
            if not sep or p not in labels or b not in labels:
                raise MatrixError(f"pair {item!r}: expected PRIMARY:BACKUP of known builds "
                                  f"({', '.join(labels)})")
            pairs.append((p, b))
    ordered = [(baseline, baseline)] + [x for x in pairs if x != (baseline, baseline)]
    return list(dict.fromkeys(ordered))


@dataclass
class MatrixRun:
    """Everything one run produced: builds, pairs, checks and the judged cells."""

    baseline: str
    builds: dict[str, Build]
    pairs: list[tuple[str, str]]
    checks: list[str]
    backend: str
    results: list[Result] = field(default_factory=list)
    #: per check, how the baseline's own observation deviates from what 1.10.5's code
    #: does (harness.experiments.matrix.expected); empty lists when it behaved as expected
    baseline_deviations: dict[str, list[str]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    def cell(self, check: str, pair: tuple[str, str]) -> Result | None:
        return next((r for r in self.results if r.check == check and (r.primary, r.backup) == pair), None)

    @property
    def unexplained(self) -> list[Result]:
        return [r for r in self.results if r.outcome == "differs" and r.explained_by is None]

    @property
    def errors(self) -> list[Result]:
        return [r for r in self.results if r.outcome == "error"]


def observe(check: str, pair: Pair, kind: BackendKind, settings: Settings,
            workdir: Path) -> dict[str, Any]:
    """Run one check on one pair; an ``error`` observation (one line) when it breaks."""
    with CheckContext(kind, settings, pair, workdir) as ctx:
        try:
            return CHECKS[check].run(ctx)
        except Exception as exc:  # a broken check is a cell, not the end of the run
            text = str(exc).strip().splitlines()
            return {ERROR_KEY: f"{type(exc).__name__}: {text[0] if text else ''}"[:300]}


def run_matrix(builds: dict[str, Build], pairs: Sequence[tuple[str, str]], checks: Iterable[str],
               kind: BackendKind, settings: Settings, *,
               baseline: str = BASELINE, table: list[Known] | None = None,
               progress: Progress = print, workdir: Path | None = None, jobs: int = 1) -> MatrixRun:
    """Every check on every pair, baseline pair first; progress lines as cells complete.

    ``jobs`` > 1 runs that many pairs of one check at once (each on its own network),
    once the check's baseline observation exists.
    """
    table = load() if table is None else table
    run = MatrixRun(baseline, dict(builds), list(pairs), list(checks), kind.name)
    total = len(run.checks) * len(run.pairs)
    own = workdir is None
    root = Path(workdir or tempfile.mkdtemp(prefix="harness-matrix-"))
    done = 0
    try:
        lock = threading.Lock()

        def cell(check: str, p: str, b: str, base_obs: dict[str, Any] | None) -> dict[str, Any]:
            nonlocal done
            start = time.monotonic()
            pair = Pair(builds[p], builds[b])
            obs = observe(check, pair, kind, settings, root / f"{check}-{pair.id}")
            base = obs if base_obs is None else base_obs
            result = judge(check, p, b, obs, base, table,
                           primary_version=builds[p].version, backup_version=builds[b].version)
            result.seconds = round(time.monotonic() - start, 1)
            with lock:
                done += 1
                run.results.append(result)
                note = result.short() if result.outcome != "error" else f"error: {obs.get(ERROR_KEY, '')}"
                progress(f"[{done}/{total}] {check} {result.pair}: {note} ({result.seconds:g} s)")
            return obs

        for check in run.checks:
            base_obs = cell(check, baseline, baseline, None)
            if baseline == BASELINE and ERROR_KEY not in base_obs:
                run.baseline_deviations[check] = deviations(check, base_obs, kind)
            rest = [(p, b) for p, b in run.pairs if (p, b) != (baseline, baseline)]
            pool = ThreadPoolExecutor(max_workers=max(1, jobs))
            try:
                for future in [pool.submit(cell, check, p, b, base_obs) for p, b in rest]:
                    future.result()
            except BaseException:
                # Ctrl-C: start nothing new; cells already running tear down their own nodes
                pool.shutdown(wait=False, cancel_futures=True)
                progress(f"interrupted after {done} of {total} cells; running cells are tearing down")
                raise
            pool.shutdown()
        order = {(c, p): i for i, (c, p) in enumerate((c, p) for c in run.checks for p in run.pairs)}
        run.results.sort(key=lambda r: order[(r.check, (r.primary, r.backup))])
    finally:
        run.seconds = round(time.time() - run.started, 1)
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return run


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Release labels oldest first; private labels (not x.y.z) after them, by name."""
    def key(label: str) -> tuple[int, tuple[int, int, int], str]:
        try:
            return (0, version_key(label), label)
        except ReleaseError:
            return (1, (0, 0, 0), label)
    return sorted(labels, key=key)
