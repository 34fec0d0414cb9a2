"""Predictions written before a release ran, held against the run: held, missed (with
the keys), not observed, by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.experiments.matrix.predictions import (
    Prediction,
    PredictionsError,
    assess,
    load,
    to_markdown,
)
from harness.experiments.matrix.session import ERROR_KEY

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "matrix" / "predictions.yaml"


def _cell(release: str, check: str, observed: dict, outcome: str = "same") -> dict:
    return {"primary": release, "backup": release, "check": check, "outcome": outcome, "observed": observed}


def _run(*cells: dict) -> dict:
    releases = sorted({c["primary"] for c in cells})
    return {"builds": {r: {"reports": r} for r in releases}, "checks": sorted({c["check"] for c in cells}),
            "results": list(cells)}


def _pred(releases: str, same_as: str | None, expect: str, checks: tuple[str, ...] = ("sip.*",)) -> Prediction:
    return Prediction(releases, "primary", "created-timing", checks, expect, same_as, "a" * 40, "high")


BEFORE = {"primary.created": [["before 200 OK", 3]], "backup.h_id": "its own"}


def test_a_prediction_holds_on_the_keys_it_names_and_misses_with_them() -> None:
    run = _run(_cell("1.10.1", "sip.basic", BEFORE),
               _cell("1.11.0", "sip.basic", {**BEFORE, "backup.h_id": "primary's"}),
               _cell("1.11.1", "sip.basic", {**BEFORE, "primary.created": [["after 200 OK", 3]]}))
    pred = _pred("1.11.0-1.11.1", "1.10.0-1.10.2", "primary.created == ['before 200 OK']")
    assert pred.keys == ("primary.created",)
    held, missed = assess(run, [pred])
    assert (held.release, held.verdict, held.compared_with) == ("1.11.0", "held", "1.10.1")
    assert (missed.release, missed.verdict) == ("1.11.1", "missed")
    assert missed.mismatches == {"sip.basic": [("primary.created", [["after 200 OK", 3]],
                                                [["before 200 OK", 3]])]}
    # naming no key for a named check compares its whole observation: h_id then counts
    whole = assess(run, [_pred("1.11.0", "1.10.0-1.10.2", "as 1.10.1", ("sip.basic",))])
    assert [(a.verdict, list(a.mismatches["sip.basic"][0][:1])) for a in whole] == [("missed", ["backup.h_id"])]
    # ... but for a group of checks it is an aspect no key records: by hand
    aspect = assess(run, [_pred("1.11.0", "1.10.0-1.10.2", "the same statistics' names")])
    assert [a.verdict for a in aspect] == ["by hand"]
    assert "an aspect no observation key records" in to_markdown(aspect)


def test_a_key_covers_the_keys_under_it_and_any_release_of_the_range_will_do() -> None:
    run = _run(_cell("1.10.3", "robustness", {"backup.runt 1": [], "backup.stats": {"x": 1}}),
               _cell("1.10.4", "robustness", {"backup.runt 1": ["INFO"], "backup.stats": {"x": 1}}),
               _cell("1.11.4", "robustness", {"backup.runt 1": ["INFO"], "backup.stats": {"x": 2}}))
    pred = _pred("1.11.4", "1.10.3-1.10.5", "backup.runt datagrams logged", ("robustness",))
    [a] = assess(run, [pred])
    assert (a.verdict, a.compared_with) == ("held", "1.10.4")  # backup.stats is not named
    [b] = assess(run, [_pred("1.11.4", "1.10.3-1.10.5", "backup.stats.x equal", ("robustness",))])
    assert b.verdict == "missed" and b.mismatches["robustness"][0][0] == "backup.stats.x"


def test_errors_absent_releases_and_prose_are_never_held() -> None:
    run = _run(_cell("1.10.1", "sip.basic", BEFORE),
               _cell("1.11.0", "sip.basic", {ERROR_KEY: "NodeDied: backup died"}, "error"),
               _cell("2.1.0", "sip.basic", BEFORE))
    verdicts = assess(run, [_pred("1.11.0", "1.10.0-1.10.2", "primary.created"),
                            _pred("2.1.0", "1.11.11", "primary.created"),
                            _pred("2.1.0", None, "a new log line")])
    assert [(a.release, a.verdict) for a in verdicts] == [
        ("1.11.0", "not observed"), ("2.1.0", "not observed"), ("2.1.0", "by hand")]
    assert verdicts[0].unobserved == {"sip.basic": "NodeDied: backup died"}
    text = to_markdown(verdicts)
    assert "0 held, 0 missed, 2 not observed, 1 by hand" in text
    assert "| created-timing 2.1.0 (primary) | 2.1.0 | not observed | *: no release of 1.11.11 in the run |" in text
    # releases the run does not hold are not assessed at all
    assert assess(run, [_pred("1.11.5", "1.10.0-1.10.2", "primary.created")]) == []


def test_the_committed_predictions_load_and_name_keys(tmp_path: Path) -> None:
    preds = load(COMMITTED)
    assert len(preds) >= 60 and all(p.releases and p.checks for p in preds)
    assert any(p.keys == ("primary.created",) and p.same_as == "1.10.0-1.10.2" for p in preds)
    bad = tmp_path / "p.yaml"
    bad.write_text("- {releases: 1.11.0}\n")
    with pytest.raises(PredictionsError, match="p.yaml entry 1: needs releases, behaviour, checks, expect"):
        load(bad)
