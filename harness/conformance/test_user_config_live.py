"""A user's own config (examples/user-config/opensips.cfg.j2) against real OpenSIPS 1.10.

The gate's promise for `--config`: a template that passes the up-front checks (its
rendered text and the real `opensips -c` of the chosen backend) runs a primary/backup
pair that fails over without losing a call — and the nodes really run the user's
script, not ours. Fails if the checks refuse the example, if `opensips -c` is not the
backend's (a wrong module path), or if any call is lost.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from harness.backends import BackendKind
from harness.base.settings import Settings
from harness.experiments.failover.run import run_failover
from harness.instruments.mi_replies import MIError
from harness.live import preflight

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "user-config" / "opensips.cfg.j2"
if not EXAMPLE.is_file():  # installed: the examples live in the repository, not the wheel
    pytest.skip("examples/ is part of the repository checkout, not of the installed harness",
                allow_module_level=True)

pytestmark = [pytest.mark.live, pytest.mark.failover]


def test_example_user_config_passes_the_checks_and_fails_over(
        opensips_cluster: Callable[..., Any], opensips_backend: BackendKind,
        harness_settings: Settings, tmp_path: Path) -> None:
    settings, note = preflight(harness_settings, str(EXAMPLE), ("primary", "backup"),
                               opensips_backend.name)
    where = opensips_backend.config_check(harness_settings).where
    assert note == f"config opensips.cfg.j2: renders, replicates and passes opensips -c ({where}) " \
                   "for primary, backup"

    lc = opensips_cluster(("primary", "backup"), settings=settings, peer="first")
    cluster = lc.cluster
    # the user's script runs: it defines the "caller" profile and not our "inbound"
    cluster.mi("primary").command("profile_get_size", "caller")
    with pytest.raises(MIError) as info:
        cluster.mi("primary").command("profile_get_size", "inbound")
    assert info.value.code is not None and info.value.code >= 400

    result = run_failover(cluster, 20, workdir=tmp_path / "failover", witness=lc.peer)
    assert (result.missing_on_backup, result.capture_drops, result.lost) == (0, 0, 0)
    assert set(result.final_codes.values()) == {(200, 200)} and len(result.final_codes) == 20
    before, after = result.backup_stats_before, result.backup_stats_after
    assert after["update_sent"] - before["update_sent"] == 20
    assert cluster.mi("backup").dlg_list() == []
