"""The version matrix offline: the known-differences table, judging, pairs, sessions, reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.backends import KINDS
from harness.base.releases import Build, expand_versions, in_range
from harness.base.settings import load_settings
from harness.experiments.matrix.expected import BASELINE_EXPECT, USRLOC_EXPECT, deviations
from harness.experiments.matrix.judge import OUTCOMES, flatten, judge, unstable
from harness.experiments.matrix.known import (
    Known,
    KnownTableError,
    explain,
    load,
    refuse_overlaps,
)
from harness.experiments.matrix.registry import (
    CHECKS,
    Check,
    MatrixError,
    select_checks,
)
from harness.experiments.matrix.report import to_json, to_junit, to_markdown
from harness.experiments.matrix.runner import MatrixRun, plan_pairs, run_matrix, run_pair, sort_labels
from harness.experiments.calls import ACK_DELAY_MS, RING_BEFORE_ANSWER_MS
from harness.experiments.matrix import session as session_module
from harness.experiments.matrix.session import ERROR_KEY, NOT_RUN_KEY, Pair, PairSession

CREATED = Known("created-before-200", ("sip.*",), "1.10.0-1.10.2,1.11.0-1.11.2", None, "f" * 40,
                "dlg_handlers.c:dlg_onreply", "created left before the 200 OK.",
                {"primary.created": [["before 200 OK", 3]]})
BASE = {"primary.created": [["after 200 OK", 3]], "primary.stats": {"delete_sent": 3}, "nodes.alive": True}


def test_the_committed_table_loads_and_every_entry_pins_values() -> None:
    table = load()
    assert all(len(k.commit) == 40 and k.why and k.function and k.observed for k in table)
    assert select_checks(None)[:2] == ["sip.basic", "sip.reinvite"]  # registry order, not import order
    assert select_checks(None)[-3:] == ["failover", "robustness", "recvfrom_defect"]


def test_a_known_difference_explains_only_its_range_role_and_exact_value() -> None:
    table = [CREATED]
    pinned = [["before 200 OK", 3]]
    assert explain(table, "sip.basic", "primary.created", "1.10.2", "1.10.5", pinned).explained
    assert explain(table, "sip.basic", "primary.created", "1.11.1", "1.11.1", pinned).explained
    # the backup's release does not matter for a primary's behaviour
    assert not explain(table, "sip.basic", "primary.created", "1.10.5", "1.10.2", pinned).explained
    assert not explain(table, "sip.basic", "primary.created", "1.10.3", "1.10.3", pinned).explained
    assert not explain(table, "expiry", "primary.created", "1.10.2", "1.10.2", pinned).explained
    assert not explain(table, "sip.basic", "primary.created", "patched", "1.10.5", pinned).explained
    # the entry applies, but pins another value: not explained, and says what it pins
    other = explain(table, "sip.basic", "primary.created", "1.10.2", "1.10.2", [["before 200 OK", 2],
                                                                                  ["not sent", 1]])
    assert (other.explained, other.entry, other.expected) == (False, CREATED, pinned)


def test_overlapping_entries_are_refused() -> None:
    """Two entries that could pin one key of one cell make the first-match order decide:
    the table is refused instead."""
    again = Known("same-again", ("sip.basic",), "1.10.2", None, "e" * 40, "x.c:f", "why",
                  {"primary.created": [["before 200 OK", 3]]})
    with pytest.raises(KnownTableError, match="created-before-200 and same-again both pin primary.created"):
        refuse_overlaps([CREATED, again], ["sip.basic"])
    # other releases, another key, or another check: no overlap
    refuse_overlaps([CREATED, Known("b", ("sip.*",), "1.10.3", None, "e" * 40, "x.c:f", "w",
                                    {"primary.created": 1})], ["sip.basic"])
    refuse_overlaps([CREATED, Known("c", ("sip.*",), "1.10.2", None, "e" * 40, "x.c:f", "w",
                                    {"primary.packets": 1})], ["sip.basic"])
    refuse_overlaps([CREATED, Known("d", ("expiry",), "1.10.2", None, "e" * 40, "x.c:f", "w",
                                    {"primary.created": 1})], ["sip.basic", "expiry"])
    # a role left open overlaps every release of that role
    with pytest.raises(KnownTableError):
        refuse_overlaps([CREATED, Known("e", ("sip.basic",), None, "1.10.5", "e" * 40, "x.c:f", "w",
                                        {"primary.created": 1})], ["sip.basic"])


@pytest.mark.parametrize("text, problem", [
    ("- {id: a, checks: a, primary: 1.10.0, commit: abc, function: f, why: x, observed: {k: 1}}", "40-hex"),
    ("- {id: a, checks: a, commit: '" + "a" * 40 + "', function: f, why: x, observed: {k: 1}}",
     "name the releases"),
    ("- {id: a, checks: a, backup: 1.x, commit: '" + "a" * 40 + "', function: f, why: x, observed: {k: 1}}",
     "backup: "),
    ("- {id: a, checks: a, backup: 1.10.0, commit: '" + "a" * 40 + "', why: x, observed: {k: 1}}",
     "missing function"),
    ("- {id: a, checks: a, backup: 1.10.0, commit: '" + "a" * 40 + "', function: f, why: x, observed: {}}",
     "observed must map"),
    ("- {id: a, checks: a, backup: 1.10.0, commit: '" + "a" * 40 + "', function: f, why: x, observed: "
     "{k: 1}, role: backup}", "unknown field"),
])
def test_a_malformed_table_is_one_line_naming_the_entry(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(text + "\n")
    with pytest.raises(KnownTableError, match=f"t.yaml entry 1.*{problem}"):
        load(path, checks=["a"])


def test_judge_names_each_difference_and_passes_only_exact_explanations() -> None:
    assert flatten({"a": {"b": 1, "c": {}}, "d": [1]}) == {"a.b": 1, "a.c": {}, "d": [1]}
    same = judge("sip.basic", "1.10.4", "1.10.4", dict(BASE), BASE, [CREATED])
    assert (same.outcome, same.differences, same.short(), same.passed) == ("same", [], "same", True)
    obs = {**BASE, "primary.created": [["before 200 OK", 3]], "primary.stats": {"delete_sent": 6}}
    r = judge("sip.cancel", "1.10.2", "1.10.5", obs, BASE, [CREATED])
    assert r.outcome == "unexplained" and not r.passed  # delete_sent is not explained
    assert [(d.key, d.observed, d.baseline, d.explained_by) for d in r.differences] == [
        ("primary.created", [["before 200 OK", 3]], [["after 200 OK", 3]], "created-before-200"),
        ("primary.stats.delete_sent", 6, 3, None)]
    assert r.short().startswith("unexplained: primary.stats.delete_sent 6 ≠ 3 +1 (unexplained)")
    explained = judge("sip.basic", "1.10.2", "1.10.2", {**BASE, "primary.created": [["before 200 OK", 3]]},
                      BASE, [CREATED])
    assert explained.outcome == "explained" and explained.passed


def test_an_error_or_not_run_is_never_same_or_passed() -> None:
    error = judge("sip.basic", "1.10.2", "1.10.2", {ERROR_KEY: "NodeDied: backup died"}, BASE, [])
    assert (error.outcome, error.passed) == ("error", False)
    # equal errors do not compare equal: an error on both sides is still an error
    both = judge("sip.basic", "1.10.5", "1.10.5", {ERROR_KEY: "x"}, {ERROR_KEY: "x"}, [])
    assert both.outcome == "error"
    na = {NOT_RUN_KEY: "the docker backend lacks host_pids"}
    skipped = judge("expiry", "1.10.5", "1.10.5", na, na, [])
    assert (skipped.outcome, skipped.passed) == ("not run", False)
    assert judge("expiry", "1.10.2", "1.10.2", BASE, na, []).outcome == "error"


def test_repeats_that_differ_are_unstable_with_every_value_seen() -> None:
    a = {**BASE, "primary.stats": {"delete_sent": 3}}
    b = {**BASE, "primary.stats": {"delete_sent": 4}}
    assert unstable("sip.basic", "1.10.2", "1.10.2", [a, a, a], BASE) is None
    r = unstable("sip.basic", "1.10.2", "1.10.2", [a, b, a], BASE)
    assert r is not None and r.outcome == "unstable" and not r.passed
    assert [(s["times"], s["observed"]["primary.stats"]) for s in r.seen] == [(2, {"delete_sent": 3}),
                                                                              (1, {"delete_sent": 4})]
    assert [(d.key, d.observed) for d in r.differences] == [("primary.stats.delete_sent", [3, 4])]


def _session(tmp_path: Path, run: object, needs: tuple[str, ...] = ()) -> PairSession:
    CHECKS["test.boom"] = Check("test.boom", "raises", run, needs)  # type: ignore[arg-type]
    build = Build("1.10.5", "/nonexistent/opensips", "1.10.5")
    return PairSession(KINDS["local"], load_settings(use_env=False), Pair(build, build), tmp_path)


def test_an_exception_inside_a_check_is_an_error_cell(tmp_path: Path) -> None:
    def boom(session: PairSession) -> dict:
        raise RuntimeError("the backup answered nonsense\nsecond line")
    try:
        with _session(tmp_path, boom) as session:
            assert session.run("test.boom") == {ERROR_KEY: "RuntimeError: the backup answered nonsense"}
        with _session(tmp_path, boom, needs=("host_pids",)) as session:
            session.kind = KINDS["docker"]
            assert session.run("test.boom") == {NOT_RUN_KEY: "the docker backend lacks host_pids"}
    finally:
        CHECKS.pop("test.boom")


def test_calls_answered_for_created_ring_before_the_200_ok(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The created race (two SIP workers relaying 180 and 200 back to back) is taken out
    of every matrix call whose ACK waits for created, and only of those; a check that
    says how long the callee rings keeps its own ring."""
    made: list[dict] = []

    class FakePair:
        def __init__(self, cluster: object, scenario: object, **options: object) -> None:
            made.append(options)

        def start(self) -> FakePair:
            return self

        def stop(self) -> None:
            pass

    monkeypatch.setattr(session_module, "CallPair", FakePair)
    lc = type("LC", (), {"cluster": object()})()
    try:
        with _session(tmp_path, lambda s: {}) as session:
            session.calls(lc, "basic", ack_delay_ms=ACK_DELAY_MS)  # type: ignore[arg-type]
            session.calls(lc, "basic", ack_delay_ms=ACK_DELAY_MS, uas_options={"extra_args": ["-aa"]})  # type: ignore[arg-type]
            session.calls(lc, "basic", ack_delay_ms=ACK_DELAY_MS, uas_options={"ring_ms": 1500})  # type: ignore[arg-type]
            session.calls(lc, "cancel")  # type: ignore[arg-type]
    finally:
        CHECKS.pop("test.boom")
    assert [m.get("uas_options") for m in made] == [
        {"ring_ms": RING_BEFORE_ANSWER_MS}, {"ring_ms": RING_BEFORE_ANSWER_MS, "extra_args": ["-aa"]},
        {"ring_ms": 1500}, None]
    assert RING_BEFORE_ANSWER_MS == 200


def test_a_check_compared_with_its_own_reference_release(tmp_path: Path) -> None:
    """A usrloc-like check: not run where a release lacks the feature, judged against
    its reference release's own pair (not the baseline's), whose observation is held to
    that release's expectations; without the reference in the run, not run, saying so."""
    seen = {"1.11.11": {"ul": 3}, "1.11.0": {"ul": 2}, "2.1.5": {"ul": 3}}
    CHECKS["test.ul"] = Check("test.ul", "ul", lambda s: dict(seen[s.pair.primary.version]), (),
                              ("usrloc replication",), "1.11.11")
    try:
        builds = {v: Build(v, f"/b/{v}", v) for v in ("1.10.5", "1.11.0", "1.11.11", "2.1.5")}
        pairs = plan_pairs(list(builds))
        run = run_matrix(builds, pairs, ["test.ul"], KINDS["local"], load_settings(use_env=False),
                         table=[], progress=lambda line: None, workdir=tmp_path)
        cells = {(r.primary, r.backup): r for r in run.results}
        assert cells[("1.10.5", "1.10.5")].outcome == "not run"
        assert cells[("1.10.5", "1.10.5")].observed == {NOT_RUN_KEY: "1.10.5 has no usrloc replication"}
        assert cells[("2.1.5", "1.10.5")].observed == {NOT_RUN_KEY: "1.10.5 has no usrloc replication"}
        assert (cells[("1.11.11", "1.11.11")].outcome, cells[("2.1.5", "2.1.5")].outcome) == ("same", "same")
        assert cells[("1.11.0", "1.11.0")].outcome == "unexplained"
        assert cells[("1.11.0", "1.11.0")].differences[0].baseline == 3  # 1.11.11's value
        assert cells[("1.11.11", "2.1.5")].outcome == "same"
        assert "test.ul" not in run.baseline_deviations  # no expectations for a test check
        without = {v: builds[v] for v in ("1.10.5", "2.1.5")}
        run = run_matrix(without, plan_pairs(list(without)), ["test.ul"], KINDS["local"],
                         load_settings(use_env=False), table=[], progress=lambda line: None,
                         workdir=tmp_path)
        assert run.cell("test.ul", ("2.1.5", "2.1.5")).observed == {NOT_RUN_KEY: (
            "compared with 1.11.11 with itself, which this run does not hold (add a 1.11.11 build)")}
        assert not run.failed
    finally:
        CHECKS.pop("test.ul")


def test_an_interrupted_pair_ends_its_check_and_starts_no_other(tmp_path: Path) -> None:
    """Ctrl-C or SIGTERM sets the run's stop: a running session finishes the check it is
    in (its cluster torn down with the session), and starts none after it."""
    import threading
    stop, ran = threading.Event(), []

    def interrupted(session: PairSession) -> dict:
        ran.append(session.current)
        stop.set()  # what run_matrix does when the main thread is interrupted
        return {"calls.successful": 3}
    CHECKS["test.a"] = Check("test.a", "a", interrupted)
    CHECKS["test.b"] = Check("test.b", "b", lambda s: ran.append(s.current) or {})
    build = Build("1.10.5", "/nonexistent/opensips", "1.10.5")
    try:
        out = run_pair(Pair(build, build), ["test.a", "test.b"], KINDS["local"], load_settings(use_env=False),
                       tmp_path, stop=stop)
    finally:
        CHECKS.pop("test.a")
        CHECKS.pop("test.b")
    assert (ran, out) == (["test.a"], {"test.a": {"calls.successful": 3}})


def _run(deviation: list[str] | None = None) -> MatrixRun:
    builds = {v: Build(v, f"/b/{v}", v) for v in ("1.10.2", "1.10.5")}
    run = MatrixRun("1.10.5", builds, [("1.10.5", "1.10.5"), ("1.10.2", "1.10.2")],
                    ["sip.basic", "sip.cancel", "expiry"], "docker", started=0.0, seconds=90.0)
    na = {NOT_RUN_KEY: "the docker backend lacks host_pids"}
    run.results = [
        judge("sip.basic", "1.10.5", "1.10.5", BASE, BASE, []),
        judge("sip.basic", "1.10.2", "1.10.2", {**BASE, "primary.created": [["before 200 OK", 3]]}, BASE,
              [CREATED]),
        judge("sip.cancel", "1.10.5", "1.10.5", BASE, BASE, []),
        judge("sip.cancel", "1.10.2", "1.10.2", {ERROR_KEY: "MITimeout: no reply"}, BASE, []),
        judge("expiry", "1.10.5", "1.10.5", na, na, []),
        judge("expiry", "1.10.2", "1.10.2", na, na, []),
    ]
    run.baseline_deviations = {"sip.basic": deviation or []}
    return run


def test_the_run_fails_on_an_error_or_a_baseline_deviation_not_on_not_run() -> None:
    run = _run()
    assert run.failed  # the error cell
    run.results = [r for r in run.results if r.outcome != "error"]
    assert not run.failed  # not run cells alone: listed, not failed
    run.baseline_deviations = {"sip.basic": ["primary.created: observed X, 1.10.5 must show Y"]}
    assert run.failed


def test_reports_carry_the_contract_the_table_and_junit_outcomes() -> None:
    run = _run()
    data = json.loads(json.dumps(to_json(run)))
    assert data["outcomes"] == list(OUTCOMES)
    assert data["summary"] == {"cells": 6, "same": 2, "explained": 1, "unexplained": 0, "error": 1,
                               "not run": 2, "unstable": 0, "baseline_deviations": 0}
    cell = data["results"][1]
    assert {k: cell[k] for k in ("primary", "backup", "check", "outcome")} == {
        "primary": "1.10.2", "backup": "1.10.2", "check": "sip.basic", "outcome": "explained"}
    assert cell["differences"][0]["explained_by"] == "created-before-200"
    md = to_markdown(run)
    assert "| check | 1.10.5 | 1.10.2 |" in md
    assert "| sip.basic | same | explained: primary.created" in md
    assert "| sip.cancel | same | error |" in md and "sip.cancel on 1.10.2: MITimeout: no reply" in md
    assert "| expiry | not run | not run |" in md and "- expiry: the docker backend lacks host_pids" in md
    suite = ET.fromstring(to_junit(run))
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors"), suite.get("skipped")) == \
        ("6", "0", "1", "2")


def test_pairs_default_all_and_explicit_with_the_baseline_first() -> None:
    labels = ["1.10.2", "1.10.5", "1.11.11"]
    assert plan_pairs(labels) == [("1.10.5", "1.10.5"), ("1.10.2", "1.10.2"), ("1.11.11", "1.11.11"),
                                  ("1.10.5", "1.10.2"), ("1.10.2", "1.10.5"),
                                  ("1.10.5", "1.11.11"), ("1.11.11", "1.10.5")]
    assert len(plan_pairs(labels, "all")) == 9 and plan_pairs(labels, "all")[0] == ("1.10.5", "1.10.5")
    assert plan_pairs(labels, "1.10.2:1.11.11") == [("1.10.5", "1.10.5"), ("1.10.2", "1.11.11")]
    # the last 1.11 also runs both ways with each release of a later branch (2.1)
    assert plan_pairs(["1.10.5", "1.11.11", "2.1.0"])[-2:] == [("1.11.11", "2.1.0"), ("2.1.0", "1.11.11")]
    assert ("1.11.11", "1.11.0") not in plan_pairs(["1.10.5", "1.11.0", "1.11.11"])
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


def test_baseline_expectations_name_each_deviation() -> None:
    # every check has its expectation: 1.10.5's, or 1.11.11's for the usrloc checks
    assert set(BASELINE_EXPECT) | set(USRLOC_EXPECT) == set(select_checks(None))
    assert all(CHECKS[c].baseline == "1.11.11" for c in USRLOC_EXPECT)
    assert deviations("usrloc.register", {**USRLOC_EXPECT["usrloc.register"], "backup.ul": [["contact_insert", 3]]},
                      release="1.11.11") == [
        "backup.ul: observed [['contact_insert', 3]], 1.11.11 must show [['(none)', 3]]"]
    good = dict(BASELINE_EXPECT["recvfrom_defect"])
    assert deviations("recvfrom_defect", good) == []
    assert deviations("recvfrom_defect", {"backup.first_packet": "survives"}) == [
        "backup.first_packet: observed 'survives', 1.10.5 must show 'dies'"]
    # nested observations are compared flattened
    obs = {**BASELINE_EXPECT["sip.cancel"], "primary.stats": {**BASELINE_EXPECT["sip.cancel"]["primary.stats"],
                                                             "delete_sent": 3}}
    assert deviations("sip.cancel", obs) == [
        "primary.stats: observed {'create_sent': 0, 'update_sent': 0, 'delete_sent': 3, 'processed_dialogs': 3, "
        "'failed_dialogs': 3}, 1.10.5 must show {'create_sent': 0, 'update_sent': 0, 'delete_sent': 0, "
        "'processed_dialogs': 3, 'failed_dialogs': 3}"]


def test_by_release_lists_the_pairs_without_the_baseline_a_row_each() -> None:
    """Upgrade pairs such as 1.11.11>2.1.0 hold neither node at the baseline: the
    by-release table counts them in rows of their own instead of leaving them out."""
    from harness.experiments.matrix.report import by_release

    builds = {v: Build(v, f"/b/{v}", v) for v in ("1.10.5", "1.11.11", "2.1.0")}
    pairs = [("1.10.5", "1.10.5"), ("1.11.11", "1.11.11"), ("2.1.0", "2.1.0"), ("1.11.11", "2.1.0")]
    run = MatrixRun("1.10.5", builds, pairs, ["sip.basic", "sip.cancel"], "local", started=0.0)
    run.results = [judge(c, p, b, BASE, BASE, []) for p, b in pairs for c in ("sip.basic", "sip.cancel")]
    run.results[-1] = judge("sip.cancel", "1.11.11", "2.1.0", {ERROR_KEY: "MITimeout: no reply"}, BASE, [])
    lines = by_release(run)
    assert lines[-3:] == ["| other pair | cells | entries |", "|---|---|---|", "| 1.11.11>2.1.0 | 1 same, 1 error | — |"]
    assert "| 2.1.0 | 2 same | — | — | — |" in lines
