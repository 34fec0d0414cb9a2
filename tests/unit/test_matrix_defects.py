"""Named upstream defects: a node of a release with one that died is named beside its
cell, and the cell still fails the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.base.releases import Build
from harness.experiments.matrix import defects
from harness.experiments.matrix.judge import judge, unstable
from harness.experiments.matrix.html import render
from harness.experiments.matrix.known import KnownTableError
from harness.experiments.matrix.report import to_json, to_markdown
from harness.experiments.matrix.runner import MatrixRun
from harness.experiments.matrix.session import ERROR_KEY

ALIVE = {"calls.successful": 3, "nodes.alive": {"primary": True, "backup": True}}
PRIMARY_DEAD = {"calls.successful": 2, "nodes.alive": {"primary": False, "backup": True}}
DIED = {ERROR_KEY: "NodeDied: node backup (10.160.43.11) died at Dec  6 23:04:45.112 UTC (exit code 255); last"}


def test_the_committed_defects_load_and_name_1_11_0_only() -> None:
    (shm,) = [d for d in defects.load() if d.id == "shm-malloc-unlocked"]
    assert (shm.releases, shm.fixed_in, shm.commit[:10], shm.fixed_by[:10]) == (
        "1.11.0", "1.11.1", "56b325be0a", "84d919faf0")
    assert [v for v in ("1.10.5", "1.11.0", "1.11.1", "mine") if shm.has(v)] == ["1.11.0"]


@pytest.mark.parametrize("text, problem", [
    ("- {id: x}", "missing releases, commit, fixed_by, fixed_in, function, why"),
    ("- {id: x, releases: 1.11.0, commit: abc, fixed_by: abc, fixed_in: 1.11.1, function: f, why: w}",
     "commit must be a full 40-hex upstream commit id"),
    ("- {id: x, releases: 1.11.q, commit: " + "a" * 40 + ", fixed_by: " + "b" * 40
     + ", fixed_in: 1.11.1, function: f, why: w}", "1.11.q"),
    ("- {id: x, releases: 1.11.0, commit: " + "a" * 40 + ", fixed_by: " + "b" * 40
     + ", fixed_in: 1.11.1, function: f, why: w, observed: {}}", "unknown field 'observed'"),
])
def test_a_malformed_defects_file_is_one_line_naming_the_entry(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "known-defects.yaml"
    path.write_text(text)
    with pytest.raises(KnownTableError) as err:
        defects.load(path)
    assert "entry 1" in str(err.value) and problem in str(err.value) and "\n" not in str(err.value)


def test_died_reads_alive_flags_node_died_errors_and_every_repeat() -> None:
    assert defects.died(judge("sip.basic", "1.11.0", "1.11.0", PRIMARY_DEAD, ALIVE, [])) == ["primary"]
    assert defects.died(judge("sip.basic", "1.11.0", "1.11.0", DIED, ALIVE, [])) == ["backup"]
    assert defects.died(judge("sip.basic", "1.11.0", "1.11.0", {ERROR_KEY: "MITimeout: no reply"}, ALIVE, [])) == []
    moved = unstable("sip.basic", "1.11.0", "1.11.0", [ALIVE, ALIVE, PRIMARY_DEAD], ALIVE)
    assert moved is not None and defects.died(moved) == ["primary"]


def test_named_only_failing_cells_of_the_defects_releases_by_role() -> None:
    table = defects.load()
    versions = {"1.11.0": "1.11.0", "1.11.1": "1.11.1", "1.10.5": "1.10.5", "patched": "1.11.0"}
    cells = [
        judge("sip.basic", "1.11.0", "1.10.5", PRIMARY_DEAD, ALIVE, []),    # unexplained, 1.11.0 primary
        judge("sip.basic", "1.10.5", "1.11.0", PRIMARY_DEAD, ALIVE, []),    # the dead primary is 1.10.5
        judge("sip.basic", "1.11.1", "1.11.1", PRIMARY_DEAD, ALIVE, []),    # fixed there
        judge("parity", "1.10.5", "patched", DIED, ALIVE, []),              # error, backup reports 1.11.0
        judge("sip.cancel", "1.11.0", "1.11.0", ALIVE, ALIVE, []),          # same: nothing to name
    ]
    named = defects.named(cells, versions, table)
    assert [(n.check, n.primary, n.backup, n.role, n.release) for n in named] == [
        ("sip.basic", "1.11.0", "1.10.5", "primary", "1.11.0"),
        ("parity", "1.10.5", "patched", "backup", "1.11.0")]
    assert named[0].text().startswith("a 1.11.0 primary died: upstream defect `shm-malloc-unlocked`")


def test_reports_name_the_defect_and_the_run_still_fails() -> None:
    builds = {v: Build(v, f"/b/{v}", v) for v in ("1.10.5", "1.11.0")}
    run = MatrixRun("1.10.5", builds, [("1.10.5", "1.10.5"), ("1.11.0", "1.11.0")], ["sip.basic"],
                    "local", repeat=3, started=0.0, seconds=60.0)
    moved = unstable("sip.basic", "1.11.0", "1.11.0", [ALIVE, PRIMARY_DEAD, ALIVE], ALIVE)
    assert moved is not None
    run.results = [judge("sip.basic", "1.10.5", "1.10.5", ALIVE, ALIVE, []), moved]
    assert run.failed
    data = json.loads(json.dumps(to_json(run)))
    assert data["named_defects"] == [{"check": "sip.basic", "primary": "1.11.0", "backup": "1.11.0",
                                      "role": "primary", "release": "1.11.0",
                                      "defect": "shm-malloc-unlocked", "text": defects.named(
                                          run.results, {"1.11.0": "1.11.0"}, defects.load())[0].text()}]
    page = render(data)
    assert page.count('<p class="defect">a 1.11.0 primary died: upstream defect') == 1
    assert data["summary"]["unstable"] == 1
    md = to_markdown(run)
    assert "In 1 of the failing cells a node of a release with a named upstream defect died" in md
    assert "`nodes.alive.primary` took `[true, false]` — a 1.11.0 primary died: upstream defect `shm-malloc-unlocked`" in md
    assert "## Named upstream defects" in md and "fixed by 84d919faf0b84316db8a0870d85e4d45e4b0d5fd in 1.11.1" in md
    run.results = run.results[:1]
    assert "named_defects" in to_json(run) and to_json(run)["named_defects"] == []
    assert "Named upstream defects" not in to_markdown(run)


SHM_ERRORS = ["ERROR:tm:_reply_light: failed to allocate shmem buffer", "ERROR:tm:relay_reply: no more share memory"]


def test_a_logged_shared_memory_failure_names_the_defect_on_its_releases_only() -> None:
    table = defects.load()
    ok = {"calls.lost": 0, "backup.errors": []}
    bad = {"calls.lost": 0, "backup.errors": SHM_ERRORS}
    pkg = {"calls.lost": 0, "backup.errors": ["ERROR:core:new_dlg_cell: no more pkg memory"]}
    versions = {"1.11.0": "1.11.0", "1.11.1": "1.11.1", "1.10.5": "1.10.5"}
    cells = [unstable("failover", "1.10.5", "1.11.0", [bad, ok, ok], ok),   # the 1.11.0 backup logged it
             unstable("failover", "1.11.0", "1.10.5", [bad, ok, ok], ok),   # the backup is 1.10.5
             unstable("failover", "1.10.5", "1.11.1", [bad, ok, ok], ok),   # fixed there
             unstable("failover", "1.10.5", "1.11.0", [pkg, ok, ok], ok),   # private memory, not shm
             judge("failover", "1.10.5", "1.11.0", ok, ok, [])]             # same: nothing to name
    named = defects.named([c for c in cells if c is not None], versions, table)
    assert [(n.primary, n.backup, n.role, n.how) for n in named] == [
        ("1.10.5", "1.11.0", "backup", f'logged "{SHM_ERRORS[0]}"')]
    assert named[0].text().startswith(f'a 1.11.0 backup logged "{SHM_ERRORS[0]}": upstream defect '
                                      "`shm-malloc-unlocked`")


@pytest.mark.parametrize("line", [
    "no more shm mem", "no more shm memory!", "No more share memory", "no more shared memory",
    "out of shared memory", "out of shm!", "no shm memory left", "no shm more memory",
    "no more shme memory", "cannot allocate shared memory for new SIP dialog",
    "ERROR:tm:_reply_light: failed to allocate shmem buffer"])
def test_every_way_1_11_0_says_shm_ran_out_is_recognised(line: str) -> None:
    (shm,) = defects.load()
    cell = unstable("failover", "1.10.5", "1.11.0", [{"backup.errors": [line]}, {"backup.errors": []}], {})
    assert cell is not None and defects.logged(cell, shm.logs) == [("backup", f'logged "{line}"')]


def test_a_bad_log_pattern_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "known-defects.yaml"
    path.write_text("- {id: x, releases: 1.11.0, commit: " + "a" * 40 + ", fixed_by: " + "b" * 40
                    + ", fixed_in: 1.11.1, function: f, why: w, logs: ['no more (shm']}")
    with pytest.raises(KnownTableError) as err:
        defects.load(path)
    assert "entry 1 (x): logs pattern 'no more (shm'" in str(err.value) and "\n" not in str(err.value)


def test_every_failing_cell_of_the_committed_run_has_a_named_defect() -> None:
    """docs/matrix's run: every cell that does not pass (README: one unstable cell, a
    1.11.0 backup that failed a shared-memory allocation) is one where today's table
    names a defect of the node's release."""
    data = json.loads((Path(__file__).resolve().parents[2] / "docs" / "matrix" / "matrix.json").read_text())
    versions = {label: b.get("reports", label) for label, b in data["builds"].items()}
    failing = []
    for r in data["results"]:
        if r["outcome"] in ("same", "explained", "not run"):
            continue
        seen = [s["observed"] for s in r["seen"]] or [r["observed"]]
        cell = unstable(r["check"], r["primary"], r["backup"], seen, r["baseline"]) if r["seen"] else \
            judge(r["check"], r["primary"], r["backup"], r["observed"], r["baseline"], [])
        failing.append((r["check"], r["primary"], r["backup"], cell))
    for check, primary, backup, cell in failing:
        named = defects.named([cell], versions, defects.load())
        assert named, f"{check} {primary}>{backup}: failing, and no defect is named"
