"""The shipped CI workflow runs the failover test on a runner without host sipp.

(Issue 10, point 1.) The workflow installs no SIP or capture tool on the runner, runs
the gate on the Docker backend by name (so a missing engine or image is an error, not
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


CASE = '<testcase classname="tests.live.test_failover" name="test_backup_carries_every_call[{}]"{}>'


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
