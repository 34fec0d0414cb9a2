"""Every behaviour check on the releases the run names, judged against the baseline.

Without ``--opensips-version`` / ``--opensips-pair`` each check runs on the baseline
(1.10.5 primary and backup) and must show what 1.10.5's code does
(harness.experiments.matrix.expected). With them, each check also runs on each named pair and is
compared with the baseline pair's observation made in the same session: the test
passes when they are the same or every difference is a known one (its upstream
commit is in the report), and fails listing each unexplained difference as
observed vs baseline. `harness matrix` runs the same checks and writes the table.

A check with a reference release of its own (the usrloc checks: 1.11.11, since 1.10
replicates no registrations) is compared with that release's pair instead, and skipped
as one this pair cannot run where a node lacks the feature; without that release's
build the comparison cannot be made, and the test is skipped saying which build to give.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from harness.backends import BackendKind
from harness.backends.builds import BuildError
from harness.base.releases import BASELINE
from harness.base.settings import Settings
from harness.experiments.gate import CANNOT_RUN
from harness.experiments.matrix.expected import EXPECTED_OF, deviations
from harness.experiments.matrix.judge import judge
from harness.experiments.matrix.known import load
from harness.experiments.matrix.registry import CHECKS, select_checks
from harness.experiments.matrix.session import ERROR_KEY, NOT_RUN_KEY, Pair, observe

pytestmark = pytest.mark.live

#: the baseline pair's observation per check, once per worker process
_BASELINE: dict[str, dict[str, Any]] = {}


@pytest.mark.parametrize("check", select_checks(None))
def test_behaviour_is_the_baselines_or_a_known_difference(
        check: str, opensips_pair: Pair, opensips_backend: BackendKind,
        opensips_builds: Any, harness_settings: Settings, tmp_path: Path,
        record_property: Any) -> None:
    observed = observe(check, opensips_pair, opensips_backend, harness_settings, tmp_path / "pair")
    record_property("observed", observed)
    if NOT_RUN_KEY in observed:
        pytest.skip(CANNOT_RUN + str(observed[NOT_RUN_KEY]))
    assert ERROR_KEY not in observed, f"{check} on {opensips_pair.id}: {observed[ERROR_KEY]}"
    reference = CHECKS[check].baseline or BASELINE
    if (opensips_pair.primary.version, opensips_pair.backup.version) == (reference, reference):
        if check not in EXPECTED_OF.get(reference, {}):
            pytest.fail(f"{check} has no expected {reference} behaviour in harness.experiments.matrix.expected")
        wrong = deviations(check, observed, release=reference)
        assert not wrong, f"{check} on {reference}: " + "; ".join(wrong)
        return
    try:
        baseline_pair = Pair(opensips_builds.get(reference), opensips_builds.get(reference))
    except BuildError as err:
        pytest.skip(f"{CANNOT_RUN}{check} is compared with {reference}, whose build is not here: {err}")
    if check not in _BASELINE:
        _BASELINE[check] = observe(check, baseline_pair, opensips_backend, harness_settings,
                                   tmp_path / "baseline")
    result = judge(check, opensips_pair.primary.label, opensips_pair.backup.label, observed,
                   _BASELINE[check], load(), primary_version=opensips_pair.primary.version,
                   backup_version=opensips_pair.backup.version)
    for d in result.differences:
        record_property(f"differs:{d.key}", f"{d.observed!r} vs {d.baseline!r} ({d.explained_by})")
    assert result.outcome != "error", f"{check}: the {reference} run failed: {_BASELINE[check].get(ERROR_KEY)}"
    assert result.outcome != "not run", f"{check}: the baseline ran it, the pair did not"
    unexplained = result.unexplained
    assert not unexplained, (
        f"{check} on {opensips_pair.id} differs from {reference} where no known difference explains it: "
        + "; ".join(f"{d.key}: observed {d.observed!r}, baseline {d.baseline!r}" for d in unexplained))
