"""The version matrix offline: the known-differences table, judging, pairs and reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.base.releases import Build, expand_versions, in_range
from harness.experiments.matrix.judge import flatten, judge
from harness.experiments.matrix.known import Known, KnownTableError, explain, load
from harness.experiments.matrix.report import to_json, to_junit, to_markdown
from harness.experiments.matrix.runner import (
    MatrixError,
    MatrixRun,
    plan_pairs,
    select_checks,
    sort_labels,
)

CREATED = Known(("sip.*",), ("primary.created",), "primary", "1.10.0-1.10.2,1.11.0-1.11.2",
                "f" * 40, "created left before the 200 OK.", ["before 200 OK"])
BASE = {"primary.created": ["after 200 OK"], "primary.stats": {"delete_sent": 4}, "nodes.alive": True}


def test_the_committed_table_loads_and_every_entry_names_a_full_commit() -> None:
    table = load()
    assert all(len(k.commit) == 40 and k.why and k.role in ("primary", "backup") for k in table)
    assert select_checks(None)  # every check module imports and registers


def test_a_known_difference_is_explained_only_in_its_range_role_and_value() -> None:
    table = [CREATED]
    assert explain(table, "sip.basic", "primary.created", "1.10.2", "1.10.5", ["before 200 OK"]) is CREATED
    assert explain(table, "sip.basic", "primary.created", "1.11.1", "1.11.1", ["before 200 OK"]) is CREATED
    # the backup's release does not matter for a primary's behaviour
    assert explain(table, "sip.basic", "primary.created", "1.10.5", "1.10.2", ["before 200 OK"]) is None
    assert explain(table, "sip.basic", "primary.created", "1.10.3", "1.10.3", ["before 200 OK"]) is None
    assert explain(table, "sip.basic", "primary.created", "1.10.2", "1.10.2", ["no 200 OK seen"]) is None
    assert explain(table, "expiry", "primary.created", "1.10.2", "1.10.2", ["before 200 OK"]) is None
    assert explain(table, "sip.basic", "primary.created", "patched", "1.10.5", ["before 200 OK"]) is None


@pytest.mark.parametrize("text, problem", [
    ("- {check: a, keys: [b], role: primary, releases: 1.10.0, commit: abc, why: x}", "40-hex"),
    ("- {check: a, keys: [b], role: nobody, releases: 1.10.0, commit: '" + "a" * 40 + "', why: x}", "role"),
    ("- {check: a, keys: [b], role: backup, releases: 1.x, commit: '" + "a" * 40 + "', why: x}", "releases"),
    ("- {check: a, role: backup, releases: 1.10.0, commit: '" + "a" * 40 + "', why: x}", "missing keys"),
    ("- {check: a, keys: [b], role: backup, releases: 1.10.0, commit: '" + "a" * 40 + "', why: x, y: 1}",
     "unknown field"),
])
def test_a_malformed_table_is_one_line_naming_the_entry(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text + "\n")
    with pytest.raises(KnownTableError, match=f"t.yaml entry 1: .*{problem}"):
        load(path)


def test_judge_flattens_and_names_each_difference_with_its_commit() -> None:
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "a.c": {}, "d": [1]}
    same = judge("sip.basic", "1.10.4", "1.10.4", dict(BASE), BASE, [CREATED])
    assert (same.outcome, same.differences, same.short()) == ("same", [], "same")
    obs = {**BASE, "primary.created": ["before 200 OK"], "primary.stats": {"delete_sent": 7}}
    r = judge("sip.cancel", "1.10.2", "1.10.5", obs, BASE, [CREATED])
    assert r.outcome == "differs" and r.explained_by is None  # delete_sent is not explained
    assert [(d.key, d.observed, d.baseline, d.explained_by) for d in r.differences] == [
        ("primary.created", ["before 200 OK"], ["after 200 OK"], "f" * 40),
        ("primary.stats.delete_sent", 7, 4, None)]
    assert r.short() == "differs: primary.created ['before 200 OK'] ≠ ['after 200 OK'] +1 (ffffffffff)"
    assert [d.key for d in r.unexplained] == ["primary.stats.delete_sent"]
    explained = judge("sip.basic", "1.10.2", "1.10.2", {**BASE, "primary.created": ["before 200 OK"]},
                      BASE, [CREATED])
    assert explained.explained_by == "f" * 40
    error = judge("sip.basic", "1.10.2", "1.10.2", {"error": "NodeDied: backup died"}, BASE, [])
    assert (error.outcome, error.short()) == ("error", "error")


def test_pairs_default_all_and_explicit_with_the_baseline_first() -> None:
    labels = ["1.10.2", "1.10.5", "1.11.11"]
    assert plan_pairs(labels) == [("1.10.5", "1.10.5"), ("1.10.2", "1.10.2"), ("1.11.11", "1.11.11"),
                                  ("1.10.5", "1.10.2"), ("1.10.2", "1.10.5"),
                                  ("1.10.5", "1.11.11"), ("1.11.11", "1.10.5")]
    assert len(plan_pairs(labels, "all")) == 9 and plan_pairs(labels, "all")[0] == ("1.10.5", "1.10.5")
    assert plan_pairs(labels, "1.10.2:1.11.11") == [("1.10.5", "1.10.5"), ("1.10.2", "1.11.11")]
    with pytest.raises(MatrixError, match="baseline 1.10.5 must be among"):
        plan_pairs(["1.10.2"])
    with pytest.raises(MatrixError, match="expected PRIMARY:BACKUP"):
        plan_pairs(labels, "1.10.2-1.11.11")
    assert sort_labels(["1.11.11", "mine", "1.10.10", "1.10.2"]) == ["1.10.2", "1.10.10", "1.11.11", "mine"]


def test_release_ranges_stay_on_their_branch() -> None:
    assert in_range("1.11.8", "1.11.7+") and not in_range("1.10.5", "1.11.7+")
    assert in_range("1.10.5", "1.10.3+") and not in_range("1.11.4", "1.10.3+")
    assert in_range("1.11.1", "1.10.0-1.10.2,1.11.0-1.11.2")
    assert expand_versions("1.11")[-1] == "1.11.11" and len(expand_versions("all")) == 24
    assert expand_versions("2.1") == [f"2.1.{n}" for n in range(6)]


def _run() -> MatrixRun:
    builds = {v: Build(v, f"/b/{v}", v) for v in ("1.10.2", "1.10.5")}
    run = MatrixRun("1.10.5", builds, [("1.10.5", "1.10.5"), ("1.10.2", "1.10.2")], ["sip.basic", "sip.cancel"],
                    "local", started=0.0, seconds=90.0)
    run.results = [
        judge("sip.basic", "1.10.5", "1.10.5", BASE, BASE, []),
        judge("sip.basic", "1.10.2", "1.10.2", {**BASE, "primary.created": ["before 200 OK"]}, BASE, [CREATED]),
        judge("sip.cancel", "1.10.5", "1.10.5", BASE, BASE, []),
        judge("sip.cancel", "1.10.2", "1.10.2", {"error": "MITimeout: no reply"}, BASE, []),
    ]
    return run


def test_reports_carry_the_contract_the_table_and_junit_outcomes() -> None:
    run = _run()
    data = json.loads(json.dumps(to_json(run)))
    assert data["baseline"] == "1.10.5" and data["summary"] == {
        "cells": 4, "same": 2, "differs": 1, "error": 1, "explained": 1, "unexplained": 0}
    cell = data["results"][1]
    assert {k: cell[k] for k in ("primary", "backup", "check", "outcome", "explained_by")} == {
        "primary": "1.10.2", "backup": "1.10.2", "check": "sip.basic", "outcome": "differs",
        "explained_by": "f" * 40}
    assert cell["observed"]["primary.created"] == ["before 200 OK"]
    assert cell["baseline"]["primary.created"] == ["after 200 OK"]
    md = to_markdown(run)
    assert "| check | 1.10.5 | 1.10.2 |" in md
    assert "| sip.basic | same | differs: primary.created ['before 200 OK'] ≠ ['after 200 OK'] (ffffffffff) |" in md
    assert "| sip.cancel | same | error |" in md and "sip.cancel on 1.10.2: MITimeout: no reply" in md
    assert "4 cells: 2 same, 1 differ (1 explained by an upstream commit, 0 unexplained), 1 error." in md
    suite = ET.fromstring(to_junit(run))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("4", "0", "1")
    assert [c.get("classname") for c in suite] == ["matrix.1.10.5", "matrix.1.10.2"] * 2


def test_the_readme_quotes_the_committed_matrix_table() -> None:
    """README shows the table of the committed run (docs/matrix/matrix.md) as it is."""
    root = Path(__file__).resolve().parents[2]
    committed = (root / "docs/matrix/matrix.md").read_text()
    table = [line for line in committed.splitlines() if line.startswith("| ")]
    assert table and table[0].startswith("| check | 1.10.5 |")
    readme = (root / "README.md").read_text()
    assert "\n".join(table) in readme
    data = json.loads((root / "docs/matrix/matrix.json").read_text())
    s = data["summary"]
    assert f"{s['unexplained']} unexplained" in readme
    assert all(r["outcome"] in ("same", "differs", "error") for r in data["results"])
    assert {r["outcome"] for r in data["results"] if r["primary"] == r["backup"] == "1.10.5"} == {"same"}


def test_baseline_expectations_name_each_deviation_and_local_only_checks_say_na() -> None:
    from harness.backends import KINDS
    from harness.experiments.matrix.expected import BASELINE_EXPECT, deviations
    local, docker = KINDS["local"], KINDS["docker"]
    assert set(BASELINE_EXPECT) == set(select_checks(None))  # every check has its expectation
    good = {"primary.own_copy": "expired", "backup.stats": {"expired_dialogs": 1}}
    wrong = deviations("expiry", good, local)
    assert "primary.own_copy" not in " ".join(wrong)
    assert "backup.stats.expired_dialogs" not in " ".join(wrong)
    assert "primary.bye_to: observed '(absent)', 1.10.5 must show ['callee', 'caller']" in wrong
    assert deviations("recvfrom_defect", {"backup.first_packet_aslr": "survives"}, local) == [
        "backup.first_packet_aslr: observed 'survives', 1.10.5 must show 'dies'"]
    na = {"nodes.expiry": "n/a: needs the local backend (stops BIN receivers by pid)"}
    assert deviations("expiry", na, docker) == []
    assert deviations("expiry", good, docker) != []
