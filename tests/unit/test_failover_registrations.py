"""The failover's registration phase, judged offline on fake SIPp runs."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from test_registrations import _cluster

from harness.experiments.failover.errors import FailoverError
from harness.experiments.failover.registrations import RegistrationPhase, RegistrationResult
from harness.instruments.sip import SipMessage
from harness.instruments.sipp import CallResult, SippSummary


def _msg(t: float, direction: str, first: str, call_id: str, cseq: str) -> SipMessage:
    return SipMessage(t, direction, f"{first}\r\nCall-ID: {call_id}\r\nCSeq: {cseq}\r\n\r\n")


def _caller_call(user: str, code: int | None) -> CallResult:
    cid = f"c-{user}"
    msgs = [_msg(1.0, "sent", f"INVITE sip:{user}@10.1.0.100:5060 SIP/2.0", cid, "1 INVITE")]
    if code is not None:
        msgs.append(_msg(1.1, "received", f"SIP/2.0 {code} X", cid, "1 INVITE"))
    return CallResult(cid, None, None, msgs)


def _callee_call(user: str, arrived_as: str) -> CallResult:
    cid = f"c-{user}"
    return CallResult(cid, None, None, [_msg(1.05, "received", f"INVITE sip:{arrived_as}@10.1.0.200:5080 SIP/2.0",
                                             cid, "1 INVITE")])


class _Run(SimpleNamespace):
    def wait(self, timeout: float) -> SippSummary:
        return self.summary

    def result(self) -> SippSummary:
        return self.summary

    def halt(self) -> None:
        self.halted = True


def _phase(tmp_path: Path, count: int) -> RegistrationPhase:
    cluster = _cluster()
    cluster.vip_owner = "backup"
    cluster.settings = SimpleNamespace(usrloc=SimpleNamespace(table="location"))
    return RegistrationPhase(cluster, count, workdir=tmp_path)  # type: ignore[arg-type]


def test_a_user_is_reached_only_at_its_own_contact(tmp_path: Path) -> None:
    phase = _phase(tmp_path, 4)
    a, b, c, d = phase.users.names
    caller = [_caller_call(a, 200), _caller_call(b, 404), _caller_call(c, 200)]  # d never called
    callee = [_callee_call(a, a), _callee_call(c, a)]  # c's INVITE went to a's contact
    runs: dict[str, Any] = {
        "answer": _Run(summary=SippSummary("uas", "basic", 0, 2, 0, callee)),
        "call": _Run(summary=SippSummary("uac", "call_user", 0, 2, 1, caller)),
    }
    phase.users.answer = lambda **kw: runs["answer"]  # type: ignore[method-assign]
    phase.users.call = lambda **kw: runs["call"]  # type: ignore[method-assign]
    phase.call()
    result = phase.result
    assert (result.calls, result.reached, result.lost) == (3, 1, 3)
    assert result.lost_users == {b: "INVITE got [404]", c: f"answered at {a!r}'s contact, not its own",
                                 d: "never called"}
    assert runs["answer"].halted
    assert json.loads(json.dumps(result.to_json()))["lost"] == 3
    assert result.lines()[2] == "registered users lost             3"


def test_calls_need_the_vip_on_the_backup(tmp_path: Path) -> None:
    phase = _phase(tmp_path, 1)
    phase.cluster.vip_owner = "primary"
    with pytest.raises(FailoverError, match="the VIP is on primary, not on backup"):
        phase.call()


def test_nothing_reached_is_everything_lost() -> None:
    result = RegistrationResult(1000, registered=1000, on_backup=1000, calls=1000)
    assert result.lost == 1000 and result.to_json()["lost"] == 1000


def test_the_command_registers_before_and_calls_after_the_failover(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--registrations N turns usrloc replication on, registers before run_failover and
    calls after it; its figures join the JSON, a lost user makes the exit status 1."""
    import contextlib

    from harness import cli
    from harness.cli import failover as cli_failover
    from harness.experiments.failover import FailoverResult

    order: list[str] = []
    overrides: list[object] = []

    class Phase:
        def __init__(self, cluster: object, count: int, **kwargs: object) -> None:
            self.result = RegistrationResult(count, registered=count, on_backup=count, calls=count,
                                             reached=count - 1, lost_users={"fo0002": "INVITE got [404]"})

        def register(self) -> None:
            order.append("register")

        def call(self) -> None:
            order.append("call")

    @contextlib.contextmanager
    def start(*args: object, **kwargs: object):
        yield SimpleNamespace(cluster=SimpleNamespace(), peer=None, links={})

    def run_failover(*args: object, **kwargs: object) -> FailoverResult:
        order.append("failover")
        return FailoverResult(10, 0, None, None, None, None, None, None, "local")

    def backend_for(args: object, *more: object) -> tuple[object, None]:
        overrides.extend(more)
        return SimpleNamespace(name="local"), None

    monkeypatch.setattr(cli_failover, "first_use", lambda args: None)
    monkeypatch.setattr(cli_failover, "backend_for", backend_for)
    monkeypatch.setattr(cli_failover.live, "start", start)
    monkeypatch.setattr(cli_failover, "run_failover", run_failover)
    monkeypatch.setattr(cli_failover, "RegistrationPhase", Phase)
    assert cli.main(["failover", "--calls", "10", "--registrations", "3", "--json",
                     "--workdir", str(tmp_path)]) == 1
    assert order == ["register", "failover", "call"]
    assert overrides == [{"usrloc": {"replicate": True}}]
    out = json.loads(capsys.readouterr().out)
    assert (out["lost"], out["registrations"]["lost"], out["registrations"]["lost_users"]) == (
        0, 1, {"fo0002": "INVITE got [404]"})
    assert cli.main(["failover", "--registrations", "-1"]) == 2
    assert "--registrations must be 0 or more" in capsys.readouterr().err
