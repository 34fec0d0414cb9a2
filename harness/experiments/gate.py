"""The conformance gate: the suite under pytest, a JUnit report, a summary and a verdict.

``harness run`` is what a CI job calls: it runs the project's tests (in a checkout) or
the shipped conformance checks (installed) against real OpenSIPS with ``pytest -n
auto``, writes ``junit.xml``, ``observed.json`` and ``summary.md`` into the artifacts
directory, and exits with pytest's status, or EXIT_NOT_LIVE when the suite passed
but too little of it was live.

A gate that exits 0 when every live test skipped checks nothing, and a summary that
repeats the configuration can lie about what ran. So the run records what it
observed: every live test's outcome (ran, or skipped and why) and, for every backend
a live test started, the backend's name and what its binary reports through
``Backend.release()`` (release, image and image id, or binary path). Each xdist
worker records its own share; the controller merges them into ``observed.json``.

Origins are recorded for every backend the ``opensips_cluster`` fixture or a
``backend_only`` test's own fixture starts; a ``backend_only`` test that drives the
binary without any Backend (test_sipp_proxy) is named in the summary by its marker only.

A live test marked ``backend_only("local")`` (or ``"docker"``) exercises one backend
directly; its skip does not fail the gate when the run used another backend, nor does
a check the backend cannot run (skipped with `CANNOT_RUN`). One marked
``optional_release`` runs on another release's build than the run's own (the usrloc
checks need 1.11 or 2.1); skipped because that build is not here, it does not fail the
gate either (each is counted apart, and the summary says so). Every category of check
(`CATEGORIES`: byte-exact, parity, robustness, failover, behaviour) must have run at
least one live test; ``--allow-partial`` accepts a run where one did not, or where
live tests were skipped, as long as something ran.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness.base.errors import HarnessError
from harness.base.resources import suite_paths
from harness.cluster.interfaces import Backend

#: ``harness run``'s exit status when the suite passed but too little of it was live
EXIT_NOT_LIVE = 6
#: what the suite checks, by the conformance module that checks it: each must run live
CATEGORIES = {"byte-exact": "test_byte_exact", "parity": "test_parity",
              "robustness": "test_robustness", "failover": "test_failover",
              "behaviour": "test_behaviour"}
#: the start of a live test's skip reason when the backend lacks what the check needs
#: (`harness.backends.BackendKind` capabilities): excused like a backend_only test
CANNOT_RUN = "the backend cannot run this check: "


def category_of(nodeid: str) -> str | None:
    module = nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")
    return next((c for c, m in CATEGORIES.items() if m == module), None)


class GateError(HarnessError, RuntimeError):
    """The gate could not run (no test suite, no report); not a test failure."""


def run_gate(backend: str, artifacts: Path, workers: str, pytest_args: Sequence[str],
             say: Callable[[str], None], *, allow_offline: bool = False,
             allow_partial: bool = False) -> int:
    """Run the suite; write junit.xml, observed.json and summary.md; return the gate's status."""
    paths, checkout = suite_paths()
    artifacts = artifacts.resolve()  # pytest does not always run from the checkout
    artifacts.mkdir(parents=True, exist_ok=True)
    junit = artifacts / "junit.xml"
    (artifacts / "warmup.json").unlink(missing_ok=True)
    observed = artifacts / "observed.json"
    observed.unlink(missing_ok=True)
    # installed (no checkout): nothing may be written into site-packages
    no_cache = [] if checkout else ["-p", "no:cacheprovider"]
    command = [sys.executable, "-m", "pytest", *map(str, paths), *no_cache, "-n", workers,
               "--opensips-backend", backend, "--harness-artifacts", str(artifacts),
               f"--junitxml={junit}", "-o", "junit_logging=all", "--harness-observed", str(observed),
               *pytest_args]
    say("$ " + " ".join(command))
    started = time.monotonic()
    code = subprocess.call(command, cwd=checkout)
    wall = time.monotonic() - started
    if not junit.exists():
        raise GateError(f"pytest wrote no JUnit report (exit {code})")
    record = RunRecord.load(observed)
    table = summary_table(junit, wall, artifacts / "warmup.json", record)
    status, why = gate_exit(code, record, allow_offline, allow_partial)
    if why:
        table += f"\n\n**Gate failed:** {why}"
    (artifacts / "summary.md").write_text(table + "\n")
    say("")
    say(table)
    if why:
        print(f"harness: gate failed: {why}", file=sys.stderr)
    return status


def summary_table(junit: Path, wall: float, warmup: Path | None = None,
                  record: RunRecord | None = None) -> str:
    """Markdown: totals per outcome, the recvfrom-defect tally, every test that did not pass."""
    root = ET.parse(junit).getroot()
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    rows = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, why = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                why = (el.get("message") or "").splitlines()[0][:160] if el.get("message") else ""
                break
        counts[outcome] += 1
        if outcome != "passed":
            rows.append(f"| {outcome} | `{name}` | {why.replace('|', '/')} |")
    lines = [
        "## OpenSIPS 1.10 BIN conformance",
        "",
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
        f"{counts['skipped']} skipped in {wall:.0f}s",
    ]
    if record is not None:
        lines += ["", *record.summary_lines()]
    if warmup is not None and warmup.exists():
        lines += ["", json.loads(warmup.read_text())["summary"]]
    if rows:
        lines += ["", "| outcome | test | reason |", "|---|---|---|", *rows]
    return "\n".join(lines)


# -- what the run observed ------------------------------------------------------------

@dataclass(frozen=True, order=True)
class ClusterOrigin:
    """Where one started cluster's OpenSIPS came from."""

    backend: str
    #: as ``opensips -V`` reports it, e.g. ``1.10.5-notls``
    release: str
    #: image name (docker) or binary path (local)
    artifact: str
    #: image id (docker) or "" (local: the path is the identity)
    artifact_id: str = ""


@dataclass
class RunRecord:
    """Live outcomes by test id, and the distinct origins of every cluster started."""

    live: dict[str, dict[str, str]] = field(default_factory=dict)
    origins: set[ClusterOrigin] = field(default_factory=set)

    def note(self, item: pytest.Item, report: pytest.TestReport) -> None:
        """Keep a live test's outcome: skipped in any phase, else ran once it was called."""
        if item.get_closest_marker("live") is None:
            return
        only = item.get_closest_marker("backend_only")
        optional = item.get_closest_marker("optional_release") is not None
        entry = self.live.setdefault(item.nodeid, {"outcome": "", "reason": "",
                                                   "only": str(only.args[0]) if only else "",
                                                   "optional": "release" if optional else ""})
        if report.skipped:
            entry["outcome"] = "skipped"
            entry["reason"] = _skip_reason(report)
        elif report.when == "call" and entry["outcome"] != "skipped":
            entry["outcome"] = "ran"
        if entry["outcome"] == "skipped" and entry["reason"].startswith(CANNOT_RUN):
            entry["outcome"] = "cannot run"

    def to_json(self) -> dict[str, Any]:
        return {"live": self.live, "origins": [vars(o) for o in sorted(self.origins)]}

    def merge(self, data: dict[str, Any]) -> None:
        self.live.update(data.get("live", {}))
        self.origins.update(ClusterOrigin(**o) for o in data.get("origins", ()))

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        record = cls()
        if path.is_file():
            record.merge(json.loads(path.read_text()))
        return record

    # -- judgement ---------------------------------------------------------------------
    def backends_used(self) -> set[str]:
        used = {o.backend for o in self.origins}
        used.update(e["only"] for e in self.live.values() if e["outcome"] == "ran" and e["only"])
        return used

    def _excused(self, entry: dict[str, str], used: set[str]) -> str:
        """Why a skipped test does not count against the gate: "backend", "release" or ""."""
        if entry["only"] and entry["only"] not in used:
            return "backend"
        return entry.get("optional", "")

    def counts(self) -> dict[str, int]:
        """ran / skipped (gate-relevant) / excused (bound to a backend this run did not
        use, or a check this backend cannot run) / optional (needing another release's
        build that is not here), of ``held`` live tests."""
        used = self.backends_used()
        counts = {"held": len(self.live), "ran": 0, "skipped": 0, "excused": 0, "optional": 0}
        for entry in self.live.values():
            if entry["outcome"] == "ran":
                counts["ran"] += 1
            elif entry["outcome"] == "cannot run":
                counts["excused"] += 1
            elif entry["outcome"] == "skipped":
                why = self._excused(entry, used)
                counts[{"backend": "excused", "release": "optional"}.get(why, "skipped")] += 1
        return counts

    def categories(self) -> dict[str, int]:
        """Live tests that ran, per category of check (`CATEGORIES`)."""
        ran = {c: 0 for c in CATEGORIES}
        for nodeid, entry in self.live.items():
            if entry["outcome"] == "ran" and (c := category_of(nodeid)):
                ran[c] += 1
        return ran

    def verdict(self, allow_partial: bool = False) -> str | None:
        """Why this run does not pass the gate (one line), or None when it does."""
        counts = self.counts()
        used = self.backends_used()
        skipped = sorted((nodeid, e["reason"]) for nodeid, e in self.live.items()
                         if e["outcome"] == "skipped" and not self._excused(e, used))
        if counts["ran"] == 0:
            why = f": {skipped[0][1]}" if skipped else ""
            return f"no live test ran, nothing was checked against OpenSIPS{why}"
        if allow_partial:
            return None
        if skipped:
            nodeid, reason = skipped[0]
            return (f"{len(skipped)} of {counts['ran'] + len(skipped)} live tests skipped "
                    f"(first: {nodeid}: {reason}); pass --allow-partial if that is intended")
        idle = [c for c, n in self.categories().items() if n == 0]
        if idle:
            return (f"no live {', '.join(idle)} check ran ({counts['ran']} of {counts['held']} live "
                    f"tests ran); pass --allow-partial if that is intended")
        return None

    def summary_lines(self) -> list[str]:
        """Markdown: how many live checks ran, per category, and what they ran against."""
        counts = self.counts()
        per = ", ".join(f"{c} {n}" for c, n in self.categories().items())
        lines = [f"Live checks: {counts['ran']} of {counts['held']} ran ({per}), {counts['skipped']} "
                 f"skipped, {counts['excused']} excused (bound to a backend this run did not use, "
                 f"or a check this backend cannot run)."]
        if counts["optional"]:
            lines[0] += (f" {counts['optional']} skipped for want of another release's build "
                         "(optional_release).")
        if self.origins:
            lines += ["", "| OpenSIPS release | backend | image / binary | id |", "|---|---|---|---|"]
            lines += [f"| {o.release} | {o.backend} | `{o.artifact}` | {o.artifact_id[:19] or '—'} |"
                      for o in sorted(self.origins)]
        else:
            lines += ["", "No OpenSIPS cluster was started."]
        direct = sorted({e["only"] for e in self.live.values() if e["outcome"] == "ran" and e["only"]}
                        - {o.backend for o in self.origins})
        if direct:
            lines += ["", f"Backends exercised only by `backend_only` tests that start no "
                          f"Backend (their origin is not recorded): {', '.join(direct)}."]
        return lines


def gate_exit(pytest_code: int, record: RunRecord, allow_offline: bool,
              allow_partial: bool = False) -> tuple[int, str | None]:
    """``harness run``'s exit status and the one line saying why the gate failed, if it did.

    A failing suite keeps pytest's own status; a passing one that checked too little
    against OpenSIPS gets EXIT_NOT_LIVE, unless the caller said offline (nothing live)
    or partial (something live) is intended.
    """
    why = record.verdict(allow_partial)
    if why is not None and allow_offline:
        return pytest_code, None
    if why is not None and why.startswith("no live test ran"):
        why += "; pass --allow-offline if that is intended"
    if why is not None:
        return (pytest_code or EXIT_NOT_LIVE), why
    return pytest_code, None


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "").splitlines()[0] if longrepr else ""


# -- the pytest side ---------------------------------------------------------------------

PLUGIN_NAME = "opensips_gate"


def origin_of(backend: Backend) -> ClusterOrigin:
    """What the backend's own OpenSIPS says it is (``Backend.release()``: ``opensips -V``)."""
    release = backend.release()
    # the banner's first word after "opensips" keeps the build flavour, e.g. 1.10.5-notls
    words = release.banner.split()
    flavour = words[1] if len(words) > 1 and words[0] == "opensips" else release.version
    return ClusterOrigin(backend.name, flavour, release.artifact, release.artifact_id)


def observe(config: pytest.Config, backend: Backend) -> None:
    """Record, in this session's record, where a started backend's OpenSIPS came from.

    Called by the ``opensips_cluster`` fixture for every cluster it starts, and by the
    ``backend_only`` tests for the backend they drive directly.
    """
    plugin = config.pluginmanager.get_plugin(PLUGIN_NAME)
    if not isinstance(plugin, GatePlugin):
        return
    try:
        plugin.record.origins.add(origin_of(backend))
    except Exception as err:  # the record must never fail the test it observes
        plugin.record.origins.add(ClusterOrigin(backend.name, f"unknown ({type(err).__name__})", "?"))


class GatePlugin:
    """Collects one session's record per worker; writes it, merged, to ``--harness-observed``.

    One record per session (not per process): pytester's inner sessions run in the
    same process and must not leak their live tests into the outer run's record.
    """

    def __init__(self) -> None:
        self.record = RunRecord()

    def pytest_configure(self, config: pytest.Config) -> None:
        config.addinivalue_line("markers", "backend_only(name): a live test that exercises one "
                                           "backend directly; skipping it is expected on the other")

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Any:
        outcome = yield
        self.record.note(item, outcome.get_result())

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput["harness_record"] = self.record.to_json()
            return
        target = session.config.getoption("--harness-observed", None)
        if target:
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            Path(target).write_text(json.dumps(self.record.to_json(), indent=1) + "\n")

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        self.record.merge(getattr(node, "workeroutput", {}).get("harness_record", {}))
