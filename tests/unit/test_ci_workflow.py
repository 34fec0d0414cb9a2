"""The shipped CI workflow: the images must build, the gate must be live, and the
failover test must run on a runner without host sipp.

Issue 12, part 1: the build step fails the job when an image is missing after it, and
the gate is never --allow-offline. Issue 10, point 1: the workflow installs no SIP or
capture tool on the runner, runs the gate on the Docker backend by name (so a missing engine or image is an error, not
a skip), and has a step that fails the job unless every failover case ran. That step's
script is run here against JUnit reports with the failover cases passed, skipped and
absent.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / "ci" / "opensips-conformance.yml"


def _steps() -> list[dict[str, str]]:
    return yaml.safe_load(WORKFLOW.read_text())["jobs"]["conformance"]["steps"]


def _failover_check() -> str:
    (step,) = [s for s in _steps() if s.get("name") == "The failover test ran on this runner"]
    m = re.search(r"<<'EOF'\n(.*?)\nEOF", step["run"], re.S)
    assert m, step["run"]
    return m.group(1)


def test_runner_gets_no_host_sipp_and_the_gate_names_docker() -> None:
    runs = [s.get("run", "") for s in _steps()]
    assert not any(re.search(r"\b(sip-tester|sipp|tcpdump)\b", r) and "install" in r for r in runs)
    assert any(r.startswith("harness run --backend docker") for r in runs)


CASE = '<testcase classname="harness.conformance.test_failover" name="test_backup_carries_every_call[{}]"{}>'


def _junit(tmp_path: Path, cases: str) -> Path:
    path = tmp_path / "junit.xml"
    path.write_text(f'<?xml version="1.0"?><testsuites><testsuite name="pytest">{cases}'
                    '<testcase classname="tests.unit.test_wire" name="test_x"/></testsuite></testsuites>')
    return path


@pytest.mark.parametrize("cases, status", [
    (CASE.format("kill", "") + "</testcase>" + CASE.format("freeze", "") + "</testcase>", 0),
    # the fault the step exists for: failover skipped (e.g. the old host-sipp skipif)
    (CASE.format("kill", "") + '<skipped message="needs sipp"/></testcase>'
     + CASE.format("freeze", "") + "</testcase>", 1),
    ("", 1),  # not collected at all
])
def test_the_failover_step_fails_unless_every_case_ran(tmp_path: Path, cases: str, status: int) -> None:
    result = subprocess.run([sys.executable, "-", str(_junit(tmp_path, cases))], input=_failover_check(),
                            capture_output=True, text=True, check=False)
    assert result.returncode == status, result.stdout + result.stderr


def _steps_by_name() -> dict[str, dict[str, str]]:
    return {step.get("name", ""): step for step in _steps()}


def test_no_step_before_the_gate_may_fail_quietly():
    steps = _steps_by_name()
    for name in ("Build the OpenSIPS 1.10.5 and SIPp images", "Conformance gate"):
        assert "continue-on-error" not in steps[name]
        assert "if" not in steps[name]  # runs only when everything before it succeeded


def test_the_build_step_checks_both_images_exist():
    run = _steps_by_name()["Build the OpenSIPS 1.10.5 and SIPp images"]["run"]
    assert run.splitlines()[0] == "harness image build"
    assert "docker image inspect" in run
    assert "opensips-bin-harness/opensips:1.10.5 opensips-bin-harness/sipp:latest" in run


def test_the_gate_does_not_allow_offline():
    run = _steps_by_name()["Conformance gate"]["run"]
    assert run.startswith("harness run --backend docker")
    assert "--allow-offline" not in run
