"""Which of the written-down predictions a matrix run bore out.

Before a release is run for the first time we write down, from its sources, what the
matrix should show (``docs/matrix/predictions.yaml``): mostly "behaves as run release X
on behaviour B" (``same_as``), with the observation keys that show B. After the run
this module holds each prediction against the observations, mechanically, so a guess
that was wrong is reported as wrong and not quietly rewritten:

- for every predicted release that ran with itself and every check the prediction
  names, the self-pair cell is compared with the ``same_as`` release's self-pair cell
  on the keys the prediction's ``expect`` names (a key also covers the keys under it:
  ``backup.stats`` covers ``backup.stats.delete_recv``; ``backup.runt`` covers
  ``backup.runt 1``); with no key named, on the whole observation of the checks it
  names one by one;
- **held** when every compared value is equal, **missed** with the keys that are not,
  **not observed** when a cell is an error, not run or absent, and **by hand** when the
  prediction has no ``same_as`` (its ``expect`` is prose about a new behaviour) or
  names no key for a group of checks (``sip.*``, ``*``: an aspect such as the
  statistics' names or the MI layout, which no key records; comparing whole
  observations would hold it against every other difference of those checks).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.base.errors import HarnessError
from harness.base.releases import ReleaseError, in_range, version_key
from harness.experiments.matrix.judge import flatten
from harness.experiments.matrix.session import ERROR_KEY, NOT_RUN_KEY

VERDICTS = ("held", "missed", "not observed", "by hand")
_KEY = re.compile(r"\b(?:primary|backup|pybin|nodes|calls)\.[A-Za-z_.]*[A-Za-z_]")


class PredictionsError(HarnessError, ValueError):
    """The predictions file cannot be read (one line naming the entry)."""


@dataclass(frozen=True)
class Prediction:
    releases: str
    role: str
    behaviour: str
    checks: tuple[str, ...]
    expect: str
    same_as: str | None
    commit: str
    confidence: str

    @property
    def keys(self) -> tuple[str, ...]:
        """The observation keys ``expect`` names (empty: the whole observation)."""
        return tuple(sorted(set(_KEY.findall(self.expect))))

    @property
    def name(self) -> str:
        return f"{self.behaviour} {self.releases} ({self.role})"


@dataclass
class Assessment:
    """One prediction held against one release's run."""

    prediction: Prediction
    release: str
    verdict: str
    #: the run release the cells were compared with
    compared_with: str | None = None
    #: check -> [(key, this release's value, the compared release's value)]
    mismatches: dict[str, list[tuple[str, Any, Any]]] = field(default_factory=dict)
    #: checks whose cells could not be compared, with why
    unobserved: dict[str, str] = field(default_factory=dict)


def load(path: Path) -> list[Prediction]:
    try:
        raw = yaml.safe_load(Path(path).read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise PredictionsError(f"{Path(path).name}: {str(exc).splitlines()[0]}") from None
    out = []
    for i, entry in enumerate(raw if isinstance(raw, list) else [None], 1):
        if not isinstance(entry, dict) or not {"releases", "behaviour", "checks", "expect"} <= set(entry):
            raise PredictionsError(f"{Path(path).name} entry {i}: needs releases, behaviour, checks, expect")
        checks = entry["checks"] if isinstance(entry["checks"], list) else [entry["checks"]]
        out.append(Prediction(str(entry["releases"]), str(entry.get("role", "both")), str(entry["behaviour"]),
                              tuple(str(c) for c in checks), str(entry["expect"]),
                              str(entry["same_as"]) if entry.get("same_as") else None,
                              str(entry.get("commit", "")), str(entry.get("confidence", ""))))
    return out


def _self_cells(results: Iterable[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(release, check) -> the cell of that release paired with itself."""
    return {(r["primary"], r["check"]): r for r in results if r["primary"] == r["backup"]}


def _in(release: str, spec: str) -> bool:
    try:
        return in_range(release, spec)
    except ReleaseError:
        return False


def _covered(key: str, wanted: Sequence[str]) -> bool:
    return any(key == w or key.startswith(w + ".") or key.startswith(w + " ") for w in wanted)


def _compare(mine: dict[str, Any], theirs: dict[str, Any], keys: Sequence[str]) -> list[tuple[str, Any, Any]]:
    a, b = flatten(mine), flatten(theirs)
    names = sorted(set(a) | set(b))
    if keys:
        names = [k for k in names if _covered(k, keys)]
    return [(k, a.get(k, "(absent)"), b.get(k, "(absent)")) for k in names
            if a.get(k, "(absent)") != b.get(k, "(absent)")]


def _broken(cell: dict[str, Any] | None) -> str | None:
    if cell is None:
        return "not in the run"
    obs = cell.get("observed", {})
    if cell.get("outcome") in ("error", "not run") or ERROR_KEY in obs or NOT_RUN_KEY in obs:
        return str(obs.get(ERROR_KEY) or obs.get(NOT_RUN_KEY) or cell.get("outcome"))
    return None


def assess(run: dict[str, Any], predictions: Sequence[Prediction]) -> list[Assessment]:
    """Each prediction against each of its releases the run (matrix.json's object) has
    paired with itself, using the builds' reported releases for the ranges."""
    reported = {label: (b.get("reports") or label) for label, b in run["builds"].items()}
    cells = _self_cells(run["results"])
    ran = sorted({p for p, _ in cells}, key=lambda label: _sort_key(reported[label]))
    checks = list(run["checks"])
    out: list[Assessment] = []
    for pred in predictions:
        wanted = [c for c in checks if any(fnmatch.fnmatchcase(c, g) for g in pred.checks)]
        for label in (x for x in ran if _in(reported[x], pred.releases)):
            if pred.same_as is None or (not pred.keys and any(set(g) & set("*?[") for g in pred.checks)):
                out.append(Assessment(pred, label, "by hand"))
                continue
            others = [x for x in ran if _in(reported[x], pred.same_as) and not _in(reported[x], pred.releases)]
            if not others:
                out.append(Assessment(pred, label, "not observed",
                                      unobserved={"*": f"no release of {pred.same_as} in the run"}))
                continue
            # held when the release matches any run release of the range; otherwise the
            # closest one is named with what differs
            a = min((_against(pred, wanted, cells, label, other) for other in others),
                    key=lambda x: (x.verdict != "held", sum(map(len, x.mismatches.values()))))
            out.append(a)
    return out


def _against(pred: Prediction, wanted: Sequence[str], cells: dict[tuple[str, str], dict[str, Any]],
             label: str, other: str) -> Assessment:
    a = Assessment(pred, label, "held", other)
    for check in wanted:
        mine, theirs = cells.get((label, check)), cells.get((other, check))
        why = _broken(mine) or _broken(theirs)
        if why:
            a.unobserved[check] = why
            continue
        if diff := _compare(mine["observed"], theirs["observed"], pred.keys):
            a.mismatches[check] = diff
    if a.mismatches:
        a.verdict = "missed"
    elif a.unobserved or not wanted:
        a.verdict = "not observed"
    return a


def _sort_key(release: str) -> tuple[int, ...]:
    try:
        return tuple(version_key(release))
    except ReleaseError:
        return (999,)


def to_markdown(assessments: Sequence[Assessment]) -> str:
    """The report section: counts, then one line per prediction and release."""
    if not assessments:
        return ""
    counts = {v: sum(a.verdict == v for a in assessments) for v in VERDICTS}
    lines = ["## Predictions", "",
             "What `docs/matrix/predictions.yaml` said each release would show, written from its "
             "sources before it was run, held against this run (a prediction \"as release X\" is "
             "compared with X's cells on the keys it names): "
             + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", "",
             "| prediction | release | verdict | detail |", "|---|---|---|---|"]
    for a in assessments:
        if a.verdict == "missed":
            detail = "; ".join(f"{check}: " + ", ".join(f"`{k}` {_short(mine)} vs {_short(theirs)}"
                                                       for k, mine, theirs in diffs[:3])
                               + (f" +{len(diffs) - 3}" if len(diffs) > 3 else "")
                               for check, diffs in a.mismatches.items())
        elif a.verdict == "held":
            detail = f"as {a.compared_with}"
        elif a.verdict == "not observed":
            detail = "; ".join(f"{c}: {w}" for c, w in a.unobserved.items()) or "no check of it ran"
        elif a.prediction.same_as is None:
            detail = "new behaviour, checked against `expect` by hand"
        else:
            detail = "an aspect no observation key records, checked against `expect` by hand"
        lines.append(f"| {a.prediction.name} | {a.release} | {a.verdict} | {detail.replace('|', '/')} |")
    return "\n".join(lines) + "\n"


def _short(value: Any) -> str:
    text = repr(value)
    return "`" + (text if len(text) <= 40 else text[:37] + "...") + "`"
