"""``harness failover --link/--restart/--resync`` offline: what reaches the cluster and the
run, and the one-line refusals (the run itself faked by test_failover_run's fixture)."""

from __future__ import annotations

import pytest

from harness import cli
from harness.experiments.failover import FailoverError
from test_failover_run import failing_command  # noqa: F401  (a fixture)


def test_the_faults_reach_the_cluster_and_the_run(failing_command, tmp_path) -> None:  # noqa: F811 (the fixture)
    failing_command.append(FailoverError("boom"))
    for faults, link, run in ((["--link", "loss=0.2,seed=7"], "loss=0.2,seed=7", (False, False)),
                              (["--restart", "backup", "--resync"], None, (True, True))):
        assert cli.main(["failover", "--calls", "10", *faults, "--workdir", str(tmp_path)]) == 1
        started = failing_command.started[-1]["link"]
        assert (started and started["primary>backup"].describe()) == link
        assert (failing_command.run["restart"], failing_command.run["resync"]) == run


@pytest.mark.parametrize("argv, message", [
    (["--link", "loss=2"], "--link loss=2: loss=2: a probability is between 0 and 1"),
    (["--link", "lost=0.1"], "--link lost=0.1: unknown key 'lost'"), (["--resync"], "--resync needs --restart backup"),
    (["--link", "loss=0.1", "--restart", "backup"], "--link and --restart are separate runs")])
def test_bad_fault_options_are_one_line_and_exit_2(failing_command, capsys, argv, message) -> None:  # noqa: F811 (the fixture)
    assert cli.main(["failover", "--calls", "10", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and not failing_command.started
