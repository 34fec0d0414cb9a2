"""The live examples run against real OpenSIPS and pass (examples/)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.backends import BackendKind

pytest_plugins = ["pytester"]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
if not EXAMPLES.is_dir():  # installed: the examples live in the repository, not the wheel
    pytest.skip("examples/ is part of the repository checkout, not of the installed harness",
                allow_module_level=True)
pytestmark = pytest.mark.live


def test_fixture_example_passes(pytester: pytest.Pytester, opensips_backend: BackendKind) -> None:
    result = pytester.runpytest_subprocess(str(EXAMPLES / "test_fixture_example.py"),
                                           "--opensips-backend", opensips_backend.name,
                                           "-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)


def test_custom_scenario_example_runs_through_a_cluster(opensips_backend: BackendKind) -> None:
    proc = subprocess.run([sys.executable, str(EXAMPLES / "custom_scenario" / "run_info_call.py"),
                           "--backend", opensips_backend.name, "--calls", "2"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(proc.stdout.splitlines()[-1])
    assert report["backend"] == opensips_backend.name
    assert (report["completed"], report["info_codes"]) == (2, [200])
    backup = report["backup"]
    assert (backup["delete_recv"], backup["active_dialogs"]) == (2, 0)
    assert backup["create_recv"] + backup["update_recv"] >= 2  # each dialog reached the backup
