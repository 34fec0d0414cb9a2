"""`harness record`'s pieces that need no OpenSIPS: arguments, errors, and what goes into meta.json."""

from __future__ import annotations

import pytest

from harness.cli import build_parser, main
from harness.cluster.interfaces import Release, ReleaseUnknown, parse_release
from harness.experiments.record import DEFAULT_SUBNET, _delta, confirmed_calls
from harness.instruments.sip import SipMessage
from harness.instruments.sipp import SCENARIOS, CallResult, SippSummary


def test_record_is_a_harness_subcommand_with_every_scenario() -> None:
    args = build_parser().parse_args(["record", "--scenario", "cancel", "--scenario", "basic"])
    assert args.scenario == ["cancel", "basic"] and args.calls == 2 and args.subnet == DEFAULT_SUBNET
    with pytest.raises(SystemExit):
        build_parser().parse_args(["record", "--scenario", "nosuch"])
    for name in SCENARIOS:
        assert build_parser().parse_args(["record", "--scenario", name]).scenario == [name]


def test_bad_arguments_fail_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["record", "--calls", "0"]) == 2  # a usage error, like argparse's own
    err = capsys.readouterr().err
    assert err == "harness: --calls must be at least 1\n"


def _msg(t: float, direction: str, first: str, cseq: str) -> SipMessage:
    return SipMessage(t, direction, f"{first}\r\nCall-ID: c1\r\nCSeq: {cseq}\r\n\r\n")


def test_only_calls_whose_invite_got_200_count_as_confirmed() -> None:
    answered = CallResult("a", "t1", "t2", [_msg(1, "sent", "INVITE sip:x SIP/2.0", "1 INVITE"),
                                            _msg(2, "received", "SIP/2.0 200 OK", "1 INVITE")])
    cancelled = CallResult("b", "t3", None, [_msg(1, "sent", "INVITE sip:x SIP/2.0", "1 INVITE"),
                                             _msg(2, "received", "SIP/2.0 487 Terminated", "1 INVITE"),
                                             _msg(2, "received", "SIP/2.0 200 OK", "1 CANCEL")])
    summary = SippSummary("uac", "x", 0, 2, 0, [answered, cancelled])
    assert confirmed_calls(summary) == ["a"]


def test_stats_delta_keeps_replication_counters_only() -> None:
    before = {"create_sent": 1, "update_recv": 2, "active_dialogs": 1, "early_dialogs": 0}
    after = {"create_sent": 3, "update_recv": 2, "active_dialogs": 0, "early_dialogs": 5}
    assert _delta(before, after) == {"active_dialogs": -1, "create_sent": 2, "update_recv": 0}


def test_release_from_the_binarys_banner() -> None:
    out = "version: opensips 1.10.5-notls (x86_64/linux)\nflags: STATS: On, USE_IPV6\n"
    assert parse_release(out) == Release("1.10.5", "opensips 1.10.5-notls (x86_64/linux)")
    with pytest.raises(ReleaseUnknown, match="cannot tell the OpenSIPS release"):
        parse_release("something else")


def test_registrations_arguments_fail_in_one_line(capsys) -> None:
    from harness import cli

    assert cli.main(["record", "--registrations", "--users", "0"]) == 2
    assert capsys.readouterr().err == "harness: --users must be at least 1\n"
    assert cli.main(["record", "--registrations", "--scenario", "basic"]) == 2
    assert capsys.readouterr().err == ("harness: --scenario names dialog scenarios; --registrations "
                                       "records every REGISTER one\n")
