"""Run the behaviour checks over pairs of releases and judge each against the baseline.

The baseline pair (1.10.5 primary, 1.10.5 backup) runs every check first, in the same
run and on the same machine as the others, so a cell compares two observations made
minutes apart, never one against a remembered figure; its observations are also held
to what 1.10.5's code does (`harness.experiments.matrix.expected`), and a deviation
fails the run. Then the other pairs run, ``jobs`` at a time, each in its own
`PairSession` (its checks share one cluster where they can). With ``repeat`` > 1 each
pair runs every check that many times, in fresh sessions; a check whose observations
differ is ``unstable``, with every value seen.
"""

from __future__ import annotations

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
from harness.base.releases import BASELINE, Build, ReleaseError, version_key
from harness.base.settings import Settings
from harness.experiments.matrix.expected import EXPECTED_OF, deviations
from harness.experiments.matrix.judge import Result, judge, unstable
from harness.experiments.matrix.defects import load as load_defects
from harness.experiments.matrix.known import Known, load
from harness.experiments.matrix.registry import CHECKS, MatrixError, Observation
from harness.experiments.matrix.session import ERROR_KEY, NOT_RUN_KEY, Pair, PairSession

Progress = Callable[[str], Any]


#: the last release of the branch before 2.1: the default pairs also run it both ways
#: with every 2.1 release (the upgrade 1.11 users make; the usrloc checks' reference)
LAST_1_11 = "1.11.11"


def plan_pairs(labels: Sequence[str], how: str = "default", baseline: str = BASELINE) -> list[tuple[str, str]]:
    """Ordered (primary, backup) label pairs.

    ``default``: each release with itself, plus the baseline with each release in both
    directions, plus `LAST_1_11` (when given) with each later branch's release in both
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
        if LAST_1_11 in labels:
            for v in labels:
                if _later_branch(v, LAST_1_11):
                    pairs += [(LAST_1_11, v), (v, LAST_1_11)]
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
    repeat: int = 1
    results: list[Result] = field(default_factory=list)
    #: per check, how the baseline's own observation deviates from what 1.10.5's code
    #: does (harness.experiments.matrix.expected); empty lists when it behaved as expected
    baseline_deviations: dict[str, list[str]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    seconds: float = 0.0

    def cell(self, check: str, pair: tuple[str, str]) -> Result | None:
        return next((r for r in self.results if r.check == check and (r.primary, r.backup) == pair), None)

    def outcome(self, name: str) -> list[Result]:
        return [r for r in self.results if r.outcome == name]

    @property
    def unexplained(self) -> list[Result]:
        return self.outcome("unexplained")

    @property
    def errors(self) -> list[Result]:
        return self.outcome("error")

    @property
    def failed(self) -> bool:
        """Whether the run must exit 1: a cell that does not pass (a check the backend
        cannot run aside: it is listed, not failed), or the baseline off its own code."""
        bad = [r for r in self.results if not r.passed and r.outcome != "not run"]
        return bool(bad) or any(self.baseline_deviations.values())


def run_pair(pair: Pair, checks: Sequence[str], kind: BackendKind, settings: Settings,
             workdir: Path, on_cell: Callable[[str, Observation, float], None] | None = None,
             stop: threading.Event | None = None) -> dict[str, Observation]:
    """Every check on one pair in one session: {check: observation}. Once ``stop`` is
    set (the run was interrupted) no further check starts: the session tears down after
    the running one, and the observations so far are returned."""
    out: dict[str, Observation] = {}
    with PairSession(kind, settings, pair, workdir) as session:
        for check in checks:
            if stop is not None and stop.is_set():
                break
            start = time.monotonic()
            out[check] = session.run(check)
            if on_cell is not None:
                on_cell(check, out[check], time.monotonic() - start)
    return out


def run_matrix(builds: dict[str, Build], pairs: Sequence[tuple[str, str]], checks: Iterable[str],
               kind: BackendKind, settings: Settings, *, baseline: str = BASELINE,
               table: list[Known] | None = None, progress: Progress = print,
               workdir: Path | None = None, jobs: int = 1, repeat: int = 1) -> MatrixRun:
    """Every check on every pair (``repeat`` times), the baseline pair first; a progress
    line per cell as it completes."""
    checks = list(checks)
    table = load(checks=checks) if table is None else table
    load_defects()  # the report names them: a malformed file fails now, not after the run
    run = MatrixRun(baseline, dict(builds), list(pairs), checks, kind.name, repeat)
    total = len(checks) * len(run.pairs) * repeat
    own = workdir is None
    root = Path(workdir or tempfile.mkdtemp(prefix="harness-matrix-"))
    lock = threading.Lock()
    #: set on Ctrl-C or SIGTERM: running sessions finish their check and tear down
    stop = threading.Event()
    done = 0

    def observe_pair(p: str, b: str) -> dict[str, list[Observation]]:
        nonlocal done
        pair = Pair(builds[p], builds[b])
        seen: dict[str, list[Observation]] = {c: [] for c in checks}
        for n in range(repeat):
            if stop.is_set():
                break
            def cell(check: str, obs: Observation, seconds: float) -> None:
                nonlocal done
                with lock:
                    done += 1
                    state = ("error: " + str(obs[ERROR_KEY]) if ERROR_KEY in obs else
                             "not run: " + str(obs[NOT_RUN_KEY]) if NOT_RUN_KEY in obs else "observed")
                    again = f" (repeat {n + 1}/{repeat})" if repeat > 1 else ""
                    progress(f"[{done}/{total}] {check} {pair.id}{again}: {state} ({seconds:.1f} s)")
            for check, obs in run_pair(pair, checks, kind, settings, root / f"{pair.id}-{n}", cell,
                                       stop).items():
                seen[check].append(obs)
        return seen

    try:
        base_seen = observe_pair(baseline, baseline)
        base = {c: obs[0] for c, obs in base_seen.items()}
        if baseline == BASELINE:
            run.baseline_deviations = {c: deviations(c, o) for c, o in base.items()
                                       if ERROR_KEY not in o and NOT_RUN_KEY not in o}
        judged = {(baseline, baseline): base_seen}
        rest = [pb for pb in run.pairs if pb != (baseline, baseline)]
        pool = ThreadPoolExecutor(max_workers=max(1, jobs))
        try:
            futures = {pb: pool.submit(observe_pair, *pb) for pb in rest}
            for pb, future in futures.items():
                judged[pb] = future.result()
        except BaseException:
            # Ctrl-C or SIGTERM: start nothing new; each running session ends its check
            # and tears down its own nodes (the interpreter waits for them at exit)
            stop.set()
            pool.shutdown(wait=False, cancel_futures=True)
            progress(f"interrupted after {done} of {total} cells; running sessions end their "
                     "check and tear down")
            raise
        pool.shutdown()
        refs = {c: _reference(c, baseline, base, judged, builds) for c in checks}
        for check, (label, ref) in refs.items():
            wanted = CHECKS[check].baseline
            if label != baseline and ref is not None and check in EXPECTED_OF.get(wanted or "", {}) \
                    and ERROR_KEY not in ref and NOT_RUN_KEY not in ref:
                run.baseline_deviations[check] = deviations(check, ref, release=wanted)
        for (p, b), seen in judged.items():
            for check in checks:
                label, ref = refs[check]
                if ref is None:
                    run.results.append(Result(p, b, check, "not run", {NOT_RUN_KEY: label}, {}))
                    continue
                run.results.append(_cell(check, p, b, seen[check], ref, table, builds))
    finally:
        run.seconds = round(time.time() - run.started, 1)
        if own:
            shutil.rmtree(root, ignore_errors=True)
    order = {(c, p): i for i, (c, p) in enumerate((c, p) for c in run.checks for p in run.pairs)}
    run.results.sort(key=lambda r: order[(r.check, (r.primary, r.backup))])
    return run


def _reference(check: str, baseline: str, base: dict[str, Observation],
               judged: dict[tuple[str, str], dict[str, list[Observation]]],
               builds: dict[str, Build]) -> tuple[str, Observation | None]:
    """(label, observation) a check's cells are compared with: the baseline pair's, or
    for a check with a reference release of its own (`Check.baseline`) that release's
    own pair; (why not, None) when the run does not hold it."""
    wanted = CHECKS[check].baseline
    if wanted is None or wanted == builds[baseline].version:
        return baseline, base[check]
    label = next((lb for lb in sorted(builds, key=lambda x: x != wanted)
                  if builds[lb].version == wanted and (lb, lb) in judged), None)
    if label is None:
        return (f"compared with {wanted} with itself, which this run does not hold "
                f"(add a {wanted} build)"), None
    return label, judged[(label, label)][check][0]


def _cell(check: str, p: str, b: str, observations: list[Observation], base: Observation,
          table: list[Known], builds: dict[str, Build]) -> Result:
    moving = unstable(check, p, b, observations, base)
    if moving is not None:
        return moving
    return judge(check, p, b, observations[0], base, table,
                 primary_version=builds[p].version, backup_version=builds[b].version)


def _later_branch(label: str, than: str) -> bool:
    try:
        return version_key(label)[:2] > version_key(than)[:2]
    except ReleaseError:
        return False


def sort_labels(labels: Iterable[str]) -> list[str]:
    """Release labels oldest first; private labels (not x.y.z) after them, by name."""
    def key(label: str) -> tuple[int, tuple[int, int, int], str]:
        try:
            return (0, version_key(label), label)
        except ReleaseError:
            return (1, (0, 0, 0), label)
    return sorted(labels, key=key)
