"""Write a matrix run as matrix.md (for people), matrix.json (for tools) and JUnit (for CI).

matrix.md is a table (rows = checks, columns = pairs, cells = same / explained /
unexplained / error / not run / unstable, see `harness.experiments.matrix.judge`), then
every difference with its observed and baseline values and the table entry (upstream
commit) that explains it, or "unexplained" with what the applying entry pins; the
values an unstable cell took; the errors; the checks not run and why; and where a node
of a release with a named upstream defect died, stalled or logged its mark
(`harness.experiments.matrix.defects`) —
so the README can quote the file as is.
"""

from __future__ import annotations

import datetime as _dt
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness.experiments.matrix import defects
from harness.experiments.matrix.html import write_html
from harness.experiments.matrix.judge import OUTCOMES
from harness.experiments.matrix.registry import CHECKS, register_all
from harness.experiments.matrix.runner import MatrixRun
from harness.experiments.matrix.session import ERROR_KEY, NOT_RUN_KEY, STUCK_KEY


def harness_version() -> str:
    """The installed distribution's version (what a report was made with), and the git
    commit when the harness runs from a checkout."""
    import subprocess
    from importlib.metadata import PackageNotFoundError, version
    try:
        text = version("pybin-opensips")
    except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        text = "unknown"
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{text}, git {commit}" if commit else text


def named_defects(run: MatrixRun) -> list[defects.Named]:
    """The failing cells where a node of a release with a known upstream defect died,
    stalled or logged its mark."""
    versions = {label: b.version for label, b in run.builds.items()}
    return defects.named(run.results, versions, defects.load())


def _stuck_lines(observed: dict[str, Any]) -> list[str]:
    """Sub-items: what each node's processes were doing when the observation's deadline
    passed (the session's ``STUCK_KEY``), for an error and for an unstable cell's repeat."""
    return [f"  - {node}'s processes at the deadline: " + "; ".join(f"`{_md_escape(str(p))}`" for p in procs)
            for node, procs in (observed.get(STUCK_KEY) or {}).items()]


def _pair_id(pair: tuple[str, str]) -> str:
    return pair[0] if pair[0] == pair[1] else f"{pair[0]}>{pair[1]}"


def to_json(run: MatrixRun) -> dict[str, Any]:
    """The JSON contract: ``baseline`` and ``results`` (primary, backup, check, outcome —
    one of `OUTCOMES` —, observed, baseline, differences with the entry explaining each,
    the values an unstable cell took), plus how the run was made."""
    return {
        "baseline": run.baseline,
        "backend": run.backend,
        "harness_version": harness_version(),
        "date": _dt.datetime.fromtimestamp(run.started, _dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": run.seconds,
        "repeat": run.repeat,
        "outcomes": list(OUTCOMES),
        "builds": {label: {"artifact": b.artifact, "reports": b.reported, "verified": b.verified}
                   for label, b in run.builds.items()},
        "pairs": [{"primary": p, "backup": b} for p, b in run.pairs],
        "checks": {name: _covers(name) for name in run.checks},
        "summary": summary(run),
        "baseline_deviations": run.baseline_deviations,
        "results": [r.to_json() for r in run.results],
        # the failing cells where a node of a release with a known upstream defect died,
        # stalled or logged its mark
        "named_defects": [n.to_json() for n in named_defects(run)],
    }


def _covers(name: str) -> str:
    """What check ``name`` shows, in one sentence (checks register when imported)."""
    register_all()
    return CHECKS[name].covers


def summary(run: MatrixRun) -> dict[str, int]:
    counts = {"cells": len(run.results), **{o: 0 for o in OUTCOMES}}
    for r in run.results:
        counts[r.outcome] += 1
    counts["baseline_deviations"] = sum(len(d) for d in run.baseline_deviations.values())
    return counts


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _value(value: Any) -> str:
    return "`" + json.dumps(value, sort_keys=True).replace("`", "'") + "`"


def to_markdown(run: MatrixRun) -> str:
    """matrix.md: header, the table, then each difference and error in detail."""
    s = summary(run)
    named = named_defects(run)
    notes: dict[tuple[str, str, str], list[str]] = {}
    for n in named:
        notes.setdefault((n.check, n.primary, n.backup), []).append(n.text())

    def note(r: Any) -> str:
        found = notes.get((r.check, r.primary, r.backup))
        return f" — {'; '.join(found)}" if found else ""

    date = _dt.datetime.fromtimestamp(run.started, _dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# OpenSIPS BIN behaviour matrix",
        "",
        f"Made by `harness matrix` (harness {harness_version()}, {run.backend} backend) on {date} "
        f"in {run.seconds / 60:.0f} min. Baseline: {run.baseline}. Pairs are primary>backup; a "
        "single release means both nodes run it.",
        "",
        f"{s['cells']} cells (each check run {run.repeat} time(s) per pair): {s['same']} same, "
        f"{s['explained']} differ as an upstream commit explains, {s['unexplained']} unexplained, "
        f"{s['unstable']} unstable, {s['error']} error, {s['not run']} not run."
        + (f" In {len(notes)} of the failing cells a node of a release with a named upstream "
           "defect died, stalled or logged its mark (see Named upstream defects)." if notes else ""),
        "",
        "Builds:",
        "",
    ]
    for label, b in run.builds.items():
        how = "verified upstream tree" if b.verified else "unverified build"
        lines.append(f"- `{label}`: {how}, reports {b.reported}")
    lines += ["", *by_release(run)]
    pairs = run.pairs
    lines += ["", "## Every cell", "",
              "| check | " + " | ".join(_pair_id(p) for p in pairs) + " |",
              "|---|" + "---|" * len(pairs)]
    for check in run.checks:
        cells = []
        for pair in pairs:
            r = run.cell(check, pair)
            cells.append(_md_escape(r.short()) if r else "—")
        lines.append(f"| {check} | " + " | ".join(cells) + " |")
    lines += ["", "## Checks", ""]
    lines += [f"- `{name}`: {_covers(name)}" for name in run.checks]
    if run.baseline_deviations:
        bad = {c: d for c, d in run.baseline_deviations.items() if d}
        lines += ["", "## The baseline against its own code", ""]
        if not bad:
            lines.append(f"In every check {run.baseline} showed what its sources say it does "
                         "(`harness/experiments/matrix/expected.py`).")
        for check, devs in bad.items():
            lines.append(f"- {check}: " + "; ".join(_md_escape(d) for d in devs))
    diffs = [r for r in run.results if r.outcome in ("explained", "unexplained")]
    if diffs:
        lines += ["", "## Differences", ""]
        for r in diffs:
            lines.append(f"### {r.check} on {r.pair}")
            lines.append("")
            if note(r):
                lines += [f"Named defect{note(r)}.", ""]
            for d in r.differences:
                if d.explained_by:
                    why = f"explained by `{d.explained_by}` (upstream commit {d.commit}): {d.why}"
                elif d.commit:
                    why = (f"**unexplained**: the applying entry (commit {d.commit}) pins "
                           f"{_value(d.entry_expected)}")
                else:
                    why = "**unexplained**: no entry pins this key"
                lines.append(f"- `{d.key}`: observed {_value(d.observed)}, baseline "
                             f"{_value(d.baseline)} — {why}")
            lines.append("")
    moving = run.outcome("unstable")
    if moving:
        lines += ["## Unstable", ""]
        for r in moving:
            lines.append(f"- {r.check} on {r.pair}: " + "; ".join(
                f"`{d.key}` took {_value(d.observed)}" for d in r.differences) + note(r))
            for seen in r.seen:
                lines += _stuck_lines(seen["observed"])
        lines.append("")
    errors = run.errors
    if errors:
        lines += ["## Errors", ""]
        for r in errors:
            cause = r.observed.get(ERROR_KEY) or f"baseline: {r.baseline.get(ERROR_KEY) or r.baseline.get(NOT_RUN_KEY)}"
            lines.append(f"- {r.check} on {r.pair}: {_md_escape(str(cause))}{note(r)}")
            lines += _stuck_lines(r.observed)
        lines.append("")
    if named:
        lines += ["## Named upstream defects", "",
                  "Not explanations: these cells fail the run. When such a node dies or stalls, "
                  "and what the check had seen by then, is chance (`known-defects.yaml`).", ""]
        for d in {n.defect.id: n.defect for n in named}.values():
            cells = [n for n in named if n.defect.id == d.id]
            lines.append(f"- `{d.id}` ({d.releases}; {d.function}; commit {d.commit}, fixed by "
                         f"{d.fixed_by} in {d.fixed_in}), {len(cells)} cell(s): {_md_escape(d.why)}")
        lines.append("")
    skipped = run.outcome("not run")
    if skipped:
        lines += ["## Not run", ""]
        reasons = sorted({(r.check, str(r.observed.get(NOT_RUN_KEY))) for r in skipped})
        lines += [f"- {check}: {_md_escape(reason)}" for check, reason in reasons]
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def by_release(run: MatrixRun) -> list[str]:
    """The short table README quotes: one row per release, its cells with itself and
    both ways with the baseline counted by outcome, and the table entries explaining
    them; then the pairs neither of whose nodes is the baseline (upgrade paths such as
    1.11.11>2.1.0), a row each."""
    lines = ["## By release", "",
             f"Cells per pair counted by outcome (of {len(run.checks)} checks); `entries` are the "
             "known differences that explain them (matrix.html links each to its commit).", "",
             f"| release | with itself | as primary, {run.baseline} backup | {run.baseline} primary, "
             "as backup | entries |", "|---|---|---|---|---|"]
    others = [label for label in run.builds if label != run.baseline]
    for label in [run.baseline, *others]:
        pairs = [(label, label), (label, run.baseline), (run.baseline, label)]
        cols, entries = [], []
        for pair in pairs:
            if label == run.baseline and pair != (label, label):
                cols.append("—")
                continue
            counted, explained_by = _pair_counts(run, pair)
            cols.append(counted)
            entries += explained_by
        lines.append(f"| {label} | " + " | ".join(cols) + f" | {_entries(entries)} |")
    rest = [p for p in run.pairs if p[0] != p[1] and run.baseline not in p]
    if rest:
        lines += ["", "| other pair | cells | entries |", "|---|---|---|"]
        for pair in rest:
            counted, explained_by = _pair_counts(run, pair)
            lines.append(f"| {_pair_id(pair)} | {counted} | {_entries(explained_by)} |")
    return lines


def _pair_counts(run: MatrixRun, pair: tuple[str, str]) -> tuple[str, list[str]]:
    """A pair's cells counted by outcome ("16 same, 5 not run"; "—" for none), and the
    entries explaining them."""
    cells = [r for r in run.results if (r.primary, r.backup) == pair]
    if not cells:
        return "—", []
    counts = {o: sum(r.outcome == o for r in cells) for o in OUTCOMES}
    return (", ".join(f"{n} {o}" for o, n in counts.items() if n),
            [d.explained_by for r in cells for d in r.differences if d.explained_by])


def _entries(entries: list[str]) -> str:
    return ", ".join(f"`{e}`" for e in dict.fromkeys(sorted(entries))) or "—"


def to_junit(run: MatrixRun) -> str:
    """JUnit XML: one testcase per cell; unexplained differences fail, errors error."""
    failures = [r for r in run.results if r.outcome in ("unexplained", "unstable")]
    suite = ET.Element("testsuite", name="opensips-bin-matrix", tests=str(len(run.results)),
                       failures=str(len(failures)), errors=str(len(run.errors)),
                       skipped=str(len(run.outcome("not run"))), time=f"{run.seconds:.1f}")
    for r in run.results:
        case = ET.SubElement(suite, "testcase", classname=f"matrix.{r.pair}", name=r.check,
                             time=f"{r.seconds:.1f}")
        text = "\n".join(f"{d.key}: observed {json.dumps(d.observed)} baseline {json.dumps(d.baseline)}"
                         f" ({d.explained_by or 'unexplained'})" for d in r.differences)
        if r.outcome == "error":
            cause = r.observed.get(ERROR_KEY) or f"baseline: {r.baseline.get(ERROR_KEY)}"
            ET.SubElement(case, "error", message=str(cause)[:500])
        elif r.outcome == "not run":
            ET.SubElement(case, "skipped", message=str(r.observed.get(NOT_RUN_KEY))[:500])
        elif r.outcome in ("unexplained", "unstable"):
            ET.SubElement(case, "failure", message=r.short()).text = text
        elif r.outcome == "explained":
            ET.SubElement(case, "system-out").text = text
    return ET.tostring(suite, encoding="unicode") + "\n"


def write_reports(run: MatrixRun, out: Path, appendix: str = "") -> dict[str, Path]:
    """matrix.md (with ``appendix``, markdown sections, at its end), matrix.json,
    matrix.junit.xml and matrix.html in ``out``; their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / "matrix.md", "json": out / "matrix.json", "junit": out / "matrix.junit.xml"}
    paths["md"].write_text(to_markdown(run) + ("\n" + appendix if appendix else ""))
    paths["json"].write_text(json.dumps(to_json(run), indent=2, sort_keys=False) + "\n")
    paths["junit"].write_text(to_junit(run))
    paths["html"] = write_html(to_json(run), out)
    return paths
