"""The conformance gate: the whole suite under pytest, a JUnit report and a summary.

``harness run`` is what a CI job calls: it runs the project's tests (in a checkout) or
the shipped conformance checks (installed) against real OpenSIPS with ``pytest -n auto``, writes ``junit.xml`` and ``summary.md`` into the
artifacts directory and passes pytest's exit status on.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

from harness.resources import suite_paths


class GateError(RuntimeError):
    """The gate could not run (no test suite, no report); not a test failure."""


def run_gate(backend: str, artifacts: Path, workers: str, pytest_args: Sequence[str],
             say: Callable[[str], None]) -> int:
    """Run the suite; write junit.xml and summary.md; return pytest's exit status."""
    paths, checkout = suite_paths()
    artifacts = artifacts.resolve()  # pytest does not always run from the checkout
    artifacts.mkdir(parents=True, exist_ok=True)
    junit = artifacts / "junit.xml"
    (artifacts / "warmup.json").unlink(missing_ok=True)
    # installed (no checkout): nothing may be written into site-packages
    no_cache = [] if checkout else ["-p", "no:cacheprovider"]
    command = [sys.executable, "-m", "pytest", *map(str, paths), *no_cache, "-n", workers,
               "--opensips-backend", backend, "--harness-artifacts", str(artifacts),
               f"--junitxml={junit}", "-o", "junit_logging=all", *pytest_args]
    say("$ " + " ".join(command))
    started = time.monotonic()
    code = subprocess.call(command, cwd=checkout)
    wall = time.monotonic() - started
    if not junit.exists():
        raise GateError(f"pytest wrote no JUnit report (exit {code})")
    table = summary_table(junit, wall, artifacts / "warmup.json")
    (artifacts / "summary.md").write_text(table + "\n")
    say("")
    say(table)
    return code


def summary_table(junit: Path, wall: float, warmup: Path | None = None) -> str:
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
    if warmup is not None and warmup.exists():
        lines += ["", json.loads(warmup.read_text())["summary"]]
    if rows:
        lines += ["", "| outcome | test | reason |", "|---|---|---|", *rows]
    return "\n".join(lines)
