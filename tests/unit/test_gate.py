"""The gate's judgement: what counts as a live check, and when a run checked too little."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from types import SimpleNamespace

import pytest

from harness.cluster.interfaces import parse_release
from harness.experiments.gate import (
    CANNOT_RUN,
    CATEGORIES,
    EXIT_NOT_LIVE,
    ClusterOrigin,
    RunRecord,
    category_of,
    gate_exit,
    observe,
    origin_of,
)

pytest_plugins = ["pytester"]


def _record(**live: tuple[str, str, str]) -> RunRecord:
    record = RunRecord()
    for name, (outcome, reason, only) in live.items():
        record.live[f"t.py::{name}"] = {"outcome": outcome, "reason": reason, "only": only}
    return record


def _every_category(record: RunRecord) -> RunRecord:
    """One live test that ran in each category of check, so the category rule holds."""
    for category, module in CATEGORIES.items():
        record.live[f"harness/conformance/{module}.py::t"] = {"outcome": "ran", "reason": "", "only": ""}
    return record


def test_no_live_test_ran_fails_with_the_first_skip_reason():
    record = _record(a=("skipped", "no OpenSIPS to test against", ""))
    assert record.verdict() == "no live test ran, nothing was checked against OpenSIPS: no OpenSIPS to test against"
    assert gate_exit(0, record, allow_offline=False) == (
        EXIT_NOT_LIVE, "no live test ran, nothing was checked against OpenSIPS: no OpenSIPS "
                       "to test against; pass --allow-offline if that is intended")
    assert gate_exit(0, record, allow_offline=True) == (0, None)


def test_an_empty_record_is_no_live_test():
    assert RunRecord().verdict() == "no live test ran, nothing was checked against OpenSIPS"


def test_one_skipped_live_test_fails_a_run_where_others_ran():
    record = _record(a=("ran", "", ""), b=("skipped", "needs sipp", ""), c=("ran", "", ""))
    assert record.verdict() == ("1 of 3 live tests skipped (first: t.py::b: needs sipp); pass "
                                "--allow-partial if that is intended")
    assert record.counts() == {"held": 3, "ran": 2, "skipped": 1, "excused": 0, "optional": 0}
    assert record.verdict(allow_partial=True) is None
    assert gate_exit(0, record, allow_offline=False, allow_partial=True) == (0, None)


def test_a_skip_bound_to_a_backend_the_run_did_not_use_is_excused():
    record = _every_category(_record(a=("ran", "", ""), b=("skipped", "not root", "local")))
    record.origins.add(ClusterOrigin("docker", "1.10.5-notls", "img", "sha256:abc"))
    assert record.verdict() is None
    assert record.counts() == {"held": 7, "ran": 6, "skipped": 0, "excused": 1, "optional": 0}
    assert gate_exit(0, record, allow_offline=False) == (0, None)


def test_a_check_the_backend_cannot_run_is_excused_not_passed():
    record = _every_category(_record(b=("cannot run", CANNOT_RUN + "docker lacks host_pids", "")))
    assert record.verdict() is None
    assert record.counts() == {"held": 6, "ran": 5, "skipped": 0, "excused": 1, "optional": 0}


def test_a_category_that_ran_no_test_fails_the_gate_unless_partial():
    record = _every_category(RunRecord())
    record.live["harness/conformance/test_failover.py::t"]["outcome"] = "cannot run"
    assert record.categories()["failover"] == 0
    assert record.verdict() == ("no live failover check ran (4 of 5 live tests ran); pass "
                                "--allow-partial if that is intended")
    assert gate_exit(0, record, allow_offline=False) == (EXIT_NOT_LIVE, record.verdict())
    assert gate_exit(0, record, allow_offline=False, allow_partial=True) == (0, None)
    assert category_of("harness/conformance/test_behaviour.py::test_x[sip.basic]") == "behaviour"
    assert category_of("tests/unit/test_gate.py::t") is None


def test_a_skip_for_want_of_another_releases_build_is_optional():
    """usrloc tests need a 1.11/2.1 build: its absence skips them without failing the gate,
    but a run where only they would have run still has no live test."""
    record = _every_category(_record(b=("skipped", "needs a 1.11.11 build", "")))
    record.live["t.py::b"]["optional"] = "release"
    assert record.verdict() is None
    assert record.counts() == {"held": 6, "ran": 5, "skipped": 0, "excused": 0, "optional": 1}
    assert record.summary_lines()[0].endswith(
        "0 skipped, 0 excused (bound to a backend this run did not use, or a check this backend "
        "cannot run). 1 skipped for want of another release's build (optional_release).")
    only = _record(b=("skipped", "needs a 1.11.11 build", ""))
    only.live["t.py::b"]["optional"] = "release"
    assert only.verdict() == "no live test ran, nothing was checked against OpenSIPS"


def test_a_skip_bound_to_the_backend_the_run_used_counts():
    record = _record(a=("ran", "", ""), b=("skipped", "no sipp", "local"))
    record.origins.add(ClusterOrigin("local", "1.10.5-notls", "/x/opensips"))
    assert record.verdict() == ("1 of 2 live tests skipped (first: t.py::b: no sipp); pass "
                                "--allow-partial if that is intended")


def test_a_failing_suite_keeps_pytests_status_and_still_says_why():
    record = _record(a=("skipped", "why", ""))
    assert gate_exit(1, record, allow_offline=False)[0] == 1


def test_summary_names_release_backend_artifact_and_id():
    record = _record(a=("ran", "", ""), b=("skipped", "no", "docker"))
    record.origins.add(ClusterOrigin("local", "1.10.5-notls", "/x/sbin/opensips"))
    record.origins.add(ClusterOrigin("docker", "1.10.5-notls", "o/opensips:1.10.5", "sha256:0123456789abcdef0123"))
    assert record.summary_lines() == [
        "Live checks: 1 of 2 ran (byte-exact 0, parity 0, robustness 0, failover 0, behaviour 0), "
        "1 skipped, 0 excused (bound to a backend this run did not use, or a check this backend "
        "cannot run).",
        "",
        "| OpenSIPS release | backend | image / binary | id |",
        "|---|---|---|---|",
        "| 1.10.5-notls | docker | `o/opensips:1.10.5` | sha256:0123456789ab |",
        "| 1.10.5-notls | local | `/x/sbin/opensips` | — |",
    ]


def test_summary_names_backends_seen_only_through_backend_only_tests():
    record = _record(a=("ran", "", "docker"), b=("ran", "", "local"), c=("ran", "", ""))
    record.origins.add(ClusterOrigin("local", "1.10.5-notls", "/x/sbin/opensips"))
    assert record.summary_lines()[-2:] == [
        "", "Backends exercised only by `backend_only` tests that start no Backend "
            "(their origin is not recorded): docker."]


def test_record_survives_json_round_trip(tmp_path):
    record = _record(a=("ran", "", "local"))
    record.origins.add(ClusterOrigin("local", "1.10.5", "/b"))
    path = tmp_path / "observed.json"
    path.write_text(json.dumps(record.to_json()))
    assert RunRecord.load(path) == record
    assert RunRecord.load(tmp_path / "missing.json") == RunRecord()


def test_origin_of_a_local_backend_is_what_its_binary_says(tmp_path):
    from harness.backends.local.node import binary_release

    binary = tmp_path / "opensips"
    binary.write_text("#!/bin/sh\necho 'version: opensips 1.10.9-tls (x86_64/linux)'\n")
    binary.chmod(binary.stat().st_mode | stat.S_IXUSR)
    backend = SimpleNamespace(name="local", release=lambda: binary_release(str(binary)))
    assert origin_of(backend) == ClusterOrigin("local", "1.10.9-tls", str(binary), "")


def test_origin_of_a_docker_backend_names_image_and_id():
    release = parse_release("version: opensips 1.10.5-notls (x86_64/linux)\n",
                            "test/opensips:gate-unit", "sha256:feed")
    backend = SimpleNamespace(name="docker", release=lambda: release)
    assert origin_of(backend) == ClusterOrigin("docker", "1.10.5-notls", "test/opensips:gate-unit", "sha256:feed")


def test_observe_records_a_backend_whose_release_fails_without_failing(pytestconfig):
    from harness.experiments.gate import PLUGIN_NAME

    def broken():
        raise OSError("no binary")

    plugin = pytestconfig.pluginmanager.get_plugin(PLUGIN_NAME)
    before = set(plugin.record.origins)
    observe(pytestconfig, SimpleNamespace(name="local", release=broken))
    assert plugin.record.origins - before == {ClusterOrigin("local", "unknown (OSError)", "?")}
    plugin.record.origins = before


INNER = """
import pytest

@pytest.mark.live
def test_live_ran():
    pass

@pytest.mark.live
def test_live_skipped():
    pytest.skip("no OpenSIPS here")

@pytest.mark.live
@pytest.mark.backend_only("docker")
def test_docker_only():
    pytest.skip("no engine")

@pytest.mark.live
@pytest.mark.optional_release
def test_other_release():
    pytest.skip("no 1.11.11 build")

def test_offline():
    pass
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["no-xdist", "xdist"])
def test_the_plugin_records_live_outcomes_across_workers(pytester, workers):
    pytester.makepyfile(test_inner=INNER)
    observed = pytester.path / "out" / "observed.json"
    result = pytester.runpytest_subprocess(*workers, "-p", "no:cacheprovider", "--harness-observed", str(observed))
    result.assert_outcomes(passed=2, skipped=3)
    data = json.loads(observed.read_text())
    assert data == {"live": {
        "test_inner.py::test_live_ran": {"outcome": "ran", "reason": "", "only": "", "optional": ""},
        "test_inner.py::test_live_skipped": {"outcome": "skipped", "reason": "no OpenSIPS here",
                                             "only": "", "optional": ""},
        "test_inner.py::test_docker_only": {"outcome": "skipped", "reason": "no engine",
                                            "only": "docker", "optional": ""},
        "test_inner.py::test_other_release": {"outcome": "skipped", "reason": "no 1.11.11 build",
                                              "only": "", "optional": "release"},
    }, "origins": []}


def test_harness_run_without_opensips_fails_the_gate_in_one_line(tmp_path):
    # no OpenSIPS at all: no binary, no engine; 'auto' (an explicitly named backend that
    # cannot run is an error, not a skip)
    env = {**os.environ, "OPENSIPS_BIN": str(tmp_path / "no-opensips"),
           "DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "PATH": "/usr/bin:/bin"}
    base = [sys.executable, "-m", "harness.cli", "run", "--backend", "auto", "-n", "0",
            "--artifacts", str(tmp_path / "a")]
    select = ["--", "-q", "-k", "test_a_call_replicates and not ul_packet"]
    failed = subprocess.run([*base, *select], env=env, capture_output=True, text=True, timeout=300)
    gate_lines = [line for line in failed.stderr.splitlines() if line.startswith("harness:")]
    assert failed.returncode == EXIT_NOT_LIVE, failed.stdout[-2000:] + failed.stderr[-2000:]
    assert len(gate_lines) == 1
    assert gate_lines[0].startswith("harness: gate failed: no live test ran, nothing was checked "
                                    "against OpenSIPS: no OpenSIPS to test against")
    summary = (tmp_path / "a" / "summary.md").read_text()
    assert "Live checks: 0 of 1 ran" in summary
    assert "No OpenSIPS cluster was started." in summary
    assert "**Gate failed:** no live test ran" in summary

    allowed = subprocess.run([*base, "--allow-offline", *select], env=env, capture_output=True,
                             text=True, timeout=300)
    assert allowed.returncode == 0, allowed.stdout[-2000:] + allowed.stderr[-2000:]
    assert "gate failed" not in allowed.stderr
