"""``matrix.html``: the version matrix as a page a person scans, from ``matrix.json`` alone.

    harness matrix-html docs/matrix/matrix.json --out DIR   →   DIR/matrix.html

Cells are coloured by outcome: same, explained (every difference pinned by an entry of
the known-differences table), unexplained, unstable (the repeats observed different
things), error, not run (the backend cannot run the check), n/a (no cell for that check
and pair); an outcome this module does not know is shown by its name in a neutral
colour, never dropped. (Files from before the outcomes were split say ``differs``: read
as explained when every difference names its explanation.) Each cell that is not ``same`` links to its differences; each
difference links to its explanation (the table entry's ``why`` and the upstream commit).

It reads only the JSON object (``baseline``, ``pairs``, ``checks``, ``results`` with
``primary``, ``backup``, ``check``, ``outcome``, ``differences``, …, every key optional
but ``results``), not the matrix's code, so it outlives changes to how the matrix runs.
One self-contained file: no script, no style sheet or font from elsewhere.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from harness.base.errors import HarnessError
from harness.base.resources import package_path

UPSTREAM_COMMIT = "https://github.com/OpenSIPS/opensips/commit/{}"
HTML = "matrix.html"
#: outcome class -> (legend label, cell text); anything else is "other"
CLASSES = {"same": ("same as the baseline", "="),
           "explained": ("differs, every difference explained", "≠"),
           "unexplained": ("differs, unexplained", "≠ !"),
           "unstable": ("unstable: the repeats observed different things", "~"),
           "error": ("error", "error"),
           "notrun": ("not run: the backend cannot run the check", "not run"),
           "na": ("n/a: no cell for this pair", "n/a")}
NOT_APPLICABLE = {"n/a", "na", "not applicable", "skipped"}


class MatrixHtmlError(HarnessError):
    """The page cannot be written."""


class NotAMatrix(MatrixHtmlError):
    """The object is not shaped like a matrix.json (no list of result objects)."""


@dataclass(frozen=True)
class Explanation:
    """One entry of the known-differences table (its id; older files name the commit
    there), its upstream commit, and the cells it explains."""

    entry: str
    commit: str
    whys: tuple[str, ...]
    cells: tuple[tuple[str, str], ...]

    @property
    def anchor(self) -> str:
        return anchor("known", self.entry)

    @property
    def url(self) -> str:
        return UPSTREAM_COMMIT.format(self.commit)


@dataclass
class Cell:
    check: str
    pair: str
    primary: str
    backup: str
    outcome: str
    kind: str
    differences: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    #: a node of a release with a named upstream defect died, stalled or logged its mark here (matrix.json's
    #: ``named_defects``): what, in one sentence each
    defects: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return anchor("cell", self.check, self.primary, self.backup)

    @property
    def linked(self) -> bool:
        """Whether the page says more about it below (its differences, or its error)."""
        return bool(self.differences) or self.kind in ("error", "notrun")

    @property
    def text(self) -> str:
        if self.kind == "other":
            return self.outcome
        mark = CLASSES[self.kind][1]
        return f"{mark} {len(self.differences)}" if self.kind == "explained" else mark


def anchor(*parts: str) -> str:
    """An HTML id from ``parts``: letters, digits, dots, dashes; parts joined by ``--``."""
    return "--".join(re.sub(r"[^A-Za-z0-9.-]+", "_", str(p)) for p in parts)


def pair_name(primary: str, backup: str) -> str:
    """As matrix.md names a pair: one release when both nodes run it, else primary>backup."""
    return primary if primary == backup else f"{primary}>{backup}"


def kind_of(result: dict[str, Any]) -> str:
    """The colour class of a cell: see `CLASSES`; ``other`` for an unknown outcome."""
    outcome = str(result.get("outcome"))
    if outcome in ("same", "explained", "unexplained", "unstable", "error"):
        return outcome
    if outcome == "not run":
        return "notrun"
    if outcome == "differs":
        diffs = result.get("differences") or []
        explained = bool(diffs) and all(d.get("explained_by") for d in diffs)
        return "explained" if explained else "unexplained"
    return "na" if outcome.lower() in NOT_APPLICABLE else "other"


def _error_text(result: dict[str, Any]) -> str | None:
    """Why an error or not-run cell has no comparison (the observation's own words)."""
    for side in ("observed", "baseline"):
        value = result.get(side)
        for key in ("error", "not run"):
            if isinstance(value, dict) and value.get(key):
                return (f"{side}: " if side == "baseline" else "") + str(value[key])
    return None


def cells(matrix: dict[str, Any]) -> list[Cell]:
    """Every result of the JSON as a cell, in its order."""
    out = []
    named: dict[tuple[str, str, str], list[str]] = {}
    for n in matrix.get("named_defects") or []:
        if isinstance(n, dict):
            named.setdefault((str(n.get("check")), str(n.get("primary")), str(n.get("backup"))), []).append(
                str(n.get("text") or f"upstream defect {n.get('defect')}"))
    for i, r in enumerate(matrix["results"]):
        if not isinstance(r, dict):
            raise NotAMatrix(f"results[{i}] is not an object")
        primary, backup = str(r.get("primary", "?")), str(r.get("backup", "?"))
        out.append(Cell(str(r.get("check", "?")), pair_name(primary, backup), primary, backup,
                        str(r.get("outcome")), kind_of(r),
                        [d for d in r.get("differences") or [] if isinstance(d, dict)],
                        _error_text(r) if r.get("outcome") in ("error", "not run") else None,
                        named.get((str(r.get("check", "?")), primary, backup), [])))
    return out


def _unique(items: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(items))


def explanations(all_cells: list[Cell]) -> list[Explanation]:
    """Each entry that explains a difference, its commit and sentences, the cells it
    explains."""
    whys: dict[str, list[str]] = {}
    where: dict[str, list[tuple[str, str]]] = {}
    commits: dict[str, str] = {}
    for c in all_cells:
        for d in c.differences:
            entry = d.get("explained_by")
            if entry:
                commits.setdefault(entry, str(d.get("commit") or entry))
                whys.setdefault(entry, []).append(str(d.get("why") or ""))
                where.setdefault(entry, []).append((c.anchor, f"{c.check} on {c.pair}"))
    return [Explanation(entry, commits[entry], tuple(w for w in _unique(whys[entry]) if w),
                        tuple(_unique(where[entry]))) for entry in whys]


def _value(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def render(matrix: dict[str, Any]) -> str:
    """The page for a matrix.json object."""
    if not isinstance(matrix, dict) or not isinstance(matrix.get("results"), list):
        raise NotAMatrix("not a matrix.json object: it has no list of results")
    all_cells = cells(matrix)
    pairs = _unique([*(pair_name(str(p.get("primary")), str(p.get("backup")))
                       for p in matrix.get("pairs") or []),
                     *(c.pair for c in all_cells)])
    checks = _unique([*(matrix.get("checks") or {}), *(c.check for c in all_cells)])
    grid = {(c.check, c.pair): c for c in all_cells}
    counts = {kind: sum(1 for c in all_cells if c.kind == kind) for kind in (*CLASSES, "other")}
    others = _unique(c.outcome for c in all_cells if c.kind == "other")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(package_path("experiments", "matrix"))),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["value"] = _value
    return env.get_template("matrix.html.j2").render(
        m=matrix, checks=checks, pairs=pairs, grid=grid, classes=CLASSES, counts=counts,
        others=others, covers=matrix.get("checks") or {},
        differing=[c for c in all_cells if c.differences],
        errors=[c for c in all_cells if c.kind == "error"],
        not_run=[c for c in all_cells if c.kind == "notrun"],
        explanations=explanations(all_cells),
        deviations={k: v for k, v in (matrix.get("baseline_deviations") or {}).items() if v},
        anchor_of={e.entry: e.anchor for e in explanations(all_cells)})


def write_html(matrix_json: dict[str, Any], out: Path) -> Path:
    """Write ``out/matrix.html`` (creating ``out``) from a matrix.json object; its path."""
    page = render(matrix_json)
    path = out / HTML
    try:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as err:
        raise MatrixHtmlError(f"cannot write {path}: {err.strerror or err}") from None
    return path
