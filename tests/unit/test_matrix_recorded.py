"""The committed matrix (docs/matrix/matrix.json, real builds) against the committed
table of known differences: the table explains exactly what was observed, and any
other value — one packet more, a node that dies instead of logging, a release outside
the range — is unexplained. These are the mutants that keep the table falsifiable."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.experiments.matrix.expected import deviations
from harness.experiments.matrix.judge import Result, flatten, judge
from harness.experiments.matrix.known import load

RECORDED = Path(__file__).resolve().parents[2] / "docs" / "matrix" / "matrix.json"
MATRIX = json.loads(RECORDED.read_text())
TABLE = load()


def _rejudge(cell: dict[str, Any], observed: dict[str, Any] | None = None,
             primary: str | None = None, backup: str | None = None) -> Result:
    builds = MATRIX["builds"]
    p, b = primary or cell["primary"], backup or cell["backup"]
    return judge(cell["check"], p, b, cell["observed"] if observed is None else observed,
                 cell["baseline"], TABLE,
                 primary_version=builds.get(p, {}).get("reports") or p,
                 backup_version=builds.get(b, {}).get("reports") or b)


def _explained_cells() -> list[tuple[str, dict[str, Any]]]:
    """(entry id, cell) once per entry and check: a recorded cell it explains."""
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for cell in MATRIX["results"]:
        for diff in cell["differences"]:
            if diff["explained_by"]:
                seen.setdefault((diff["explained_by"], cell["check"]), cell)
    return [(entry, cell) for (entry, _), cell in sorted(seen.items())]


def _mutate(value: Any, baseline: Any) -> Any:
    """Another value of the same kind, neither the pinned one nor the baseline's (that
    would be no difference at all): a count one more, a list one item shorter or
    longer, a flipped flag, another word."""
    if isinstance(value, bool):
        candidates: list[Any] = [not value, "running, MI unanswered"]
    elif isinstance(value, int):
        candidates = [value + 1, value + 2]
    elif isinstance(value, list):
        candidates = [value[:-1], value + ["ERROR:core:something else"]]
    else:
        candidates = [f"{value} (mutated)"]
    return next(c for c in candidates if c not in (value, baseline))


def _set(observed: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    """``observed`` with the flattened ``key`` set (nested mappings rebuilt)."""
    flat = dict(flatten(observed))
    flat[key] = value
    return flat


def test_rejudging_the_committed_matrix_gives_its_committed_outcomes() -> None:
    """The table and the committed matrix agree: a table edit that changes a verdict
    must come with a new run."""
    changed = [(c["check"], c["primary"], c["backup"], c["outcome"], _rejudge(c).outcome)
               for c in MATRIX["results"] if c["outcome"] in ("same", "explained", "unexplained")
               and _rejudge(c).outcome != c["outcome"]]
    assert changed == []


def test_every_entry_explains_some_recorded_cell() -> None:
    """An entry no real build showed is a guess, not a known difference."""
    used = {entry for entry, _ in _explained_cells()}
    assert sorted(k.id for k in TABLE if k.id not in used) == []


@pytest.mark.parametrize("entry, cell", _explained_cells(),
                         ids=lambda x: x if isinstance(x, str) else f"{x['check']}@{x['primary']}>{x['backup']}")
def test_any_other_value_of_a_pinned_key_is_unexplained(entry: str, cell: dict[str, Any]) -> None:
    assert _rejudge(cell).outcome == "explained" or cell["outcome"] == "unexplained"
    pinned = [d["key"] for d in cell["differences"] if d["explained_by"] == entry]
    for key in pinned:
        value = flatten(cell["observed"]).get(key, "(absent)")
        mutant = _mutate(value, flatten(cell["baseline"]).get(key))
        result = _rejudge(cell, _set(cell["observed"], key, mutant))
        assert key in [d.key for d in result.unexplained], (key, value)
        if key in flatten(cell["baseline"]) and value != "(absent)":  # (a key standing for a whole mapping the
            # baseline has, like backup.stats "no answer", is judged by its parts)
            gone = _rejudge(cell, {k: v for k, v in flatten(cell["observed"]).items() if k != key})
            assert key in [d.key for d in gone.unexplained], (key, "absent")


@pytest.mark.parametrize("entry, cell", _explained_cells(),
                         ids=lambda x: x if isinstance(x, str) else f"{x['check']}@{x['primary']}>{x['backup']}")
def test_the_same_observation_outside_the_entrys_releases_is_unexplained(entry: str, cell: dict[str, Any]) -> None:
    """Moved to a release the entry does not name (a private build reporting no release
    at all), the very same values are unexplained."""
    result = _rejudge(cell, primary="patched-build", backup="patched-build")
    assert entry not in {d.explained_by for d in result.differences}
    assert result.outcome == "unexplained"


def _cell(check: str, primary: str, backup: str) -> dict[str, Any]:
    return next(c for c in MATRIX["results"]
                if (c["check"], c["primary"], c["backup"]) == (check, primary, backup))


@pytest.mark.skipif("1.10.0" not in MATRIX["builds"], reason="the committed matrix has no 1.10.0")
def test_a_1_10_0_that_never_replicated_deleted_is_unexplained() -> None:
    """1.10.0 sends a deleted for every finished call; one that sent none after a BYE
    would be a new behaviour, whatever the table says about failed calls."""
    cell = _cell("sip.basic", "1.10.0", "1.10.0")
    observed = _set(cell["observed"], "primary.packets", [["created(3) updated(4)", 3]])
    observed["primary.stats.delete_sent"] = 0
    result = _rejudge(cell, observed)
    assert result.outcome == "unexplained"
    assert {d.key for d in result.unexplained} == {"primary.packets", "primary.stats.delete_sent"}


def test_a_baseline_that_drops_created_deviates_from_its_own_code() -> None:
    """The baseline is held to 1.10.5's sources, not only compared with itself: a 1.10.5
    that stopped replicating created fails the run even though every pair would then
    differ from it identically."""
    cell = _cell("sip.basic", MATRIX["baseline"], MATRIX["baseline"])
    assert deviations("sip.basic", cell["baseline"]) == []
    dropped = {**cell["baseline"], "primary.packets": [["updated(4) deleted", 3]],
               "primary.stats": {**cell["baseline"]["primary.stats"], "create_sent": 0}}
    problems = deviations("sip.basic", dropped)
    assert [p.split(":")[0] for p in problems] == ["primary.packets", "primary.stats"]
