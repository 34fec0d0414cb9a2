"""The harness command's pieces that need no OpenSIPS: parsing and the gate's summary."""

from __future__ import annotations

import json

import pytest

from harness.backends import BACKEND_CHOICES
from harness.cli import build_parser, main
from harness.cli.failover import cmd_failover
from harness.cli.image import cmd_image_base, cmd_image_build
from harness.cli.record import cmd_record
from harness.cli.run import cmd_run
from harness.cli.up import cmd_up
from harness.experiments.gate import summary_table

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3">
<testcase classname="tests.live.test_x" name="test_ok" time="1.0"/>
<testcase classname="tests.live.test_x" name="test_bad" time="2.0"><failure message="AssertionError: 3 != 4 | oops&#10;more">trace</failure></testcase>
<testcase classname="tests.live.test_y" name="test_skip" time="0.0"><skipped message="no OpenSIPS to test against" /></testcase>
</testsuite></testsuites>
"""


def test_summary_table_lists_totals_tally_and_what_did_not_pass(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    warmup = tmp_path / "warmup.json"
    warmup.write_text(json.dumps({"probed": 10, "died": 6, "summary": "1.10.5 BIN recvfrom defect: 6 of 10"}))
    table = summary_table(junit, 42.4, warmup)
    assert "1 passed, 1 failed, 0 errors, 1 skipped in 42s" in table
    assert "1.10.5 BIN recvfrom defect: 6 of 10" in table
    assert "| failed | `tests.live.test_x::test_bad` | AssertionError: 3 != 4 / oops |" in table
    assert "| skipped | `tests.live.test_y::test_skip` | no OpenSIPS to test against |" in table
    assert "test_ok" not in table


def test_run_passes_everything_after_double_dash_to_pytest():
    args = build_parser().parse_args(["run", "--backend", "local", "--", "-k", "parity", "-x"])
    assert args.backend == "local" and args.pytest_args == ["--", "-k", "parity", "-x"]


def test_up_with_an_impossible_backend_is_one_line(capsys, monkeypatch):
    monkeypatch.setenv("OPENSIPS_BIN", "/nonexistent/opensips")
    code = main(["up", "--backend", "local"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("harness: no OpenSIPS to test against — local: ")
    assert err.count("\n") == 1


def test_unknown_subcommand_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fly"])
    assert info.value.code == 2


def test_every_subcommand_is_wired_with_the_shared_options():
    parser = build_parser()
    wired = {" ".join(argv): parser.parse_args(argv).func for argv in [
        ["up"], ["run"], ["failover"], ["record"], ["image", "build"], ["image", "base"]]}
    assert wired == {"up": cmd_up, "run": cmd_run, "failover": cmd_failover, "record": cmd_record,
                     "image build": cmd_image_build, "image base": cmd_image_base}
    for name in ("up", "run", "failover", "record"):
        args = parser.parse_args([name, "--backend", "local", "--settings", "s.yaml"])
        assert (args.backend, args.settings) == ("local", "s.yaml")
    assert BACKEND_CHOICES == ("auto", "docker", "local")


def test_failover_with_bad_numbers_is_one_line_exit_2(capsys):
    assert main(["failover", "--calls", "0"]) == 2
    assert capsys.readouterr().err == "harness: --calls must be at least 1, --rate, --release-rate and --setup-timeout positive\n"


def test_sigterm_stops_a_command_as_ctrl_c_does(monkeypatch):
    """A cancelled CI job's SIGTERM reaches the command as KeyboardInterrupt, so its
    `with` blocks tear its clusters down (before, the process died on the spot and left
    them for `harness clean`); exit 130, and the previous handler is back afterwards."""
    import os
    import signal

    import harness.cli.clean as clean_cli

    torn_down = []

    def cancelled(all_: bool, say: object, progress: object) -> int:
        try:
            # a signal a thread sends itself is handled before its next bytecode, so
            # the handler's KeyboardInterrupt is raised here, never after the return
            os.kill(os.getpid(), signal.SIGTERM)
            return 0
        finally:
            torn_down.append("cluster")

    monkeypatch.setattr(clean_cli, "clean_command", cancelled)
    before = signal.getsignal(signal.SIGTERM)
    assert main(["clean"]) == 130
    assert torn_down == ["cluster"]
    assert signal.getsignal(signal.SIGTERM) is before
