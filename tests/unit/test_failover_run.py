"""FailoverRun's steps offline: the setup wait (progress, stall, SIPp or a node dying),
the release drain, the bounded judging, and what a failed run reports — on fake SIPp,
fake nodes and a fake clock (every wait goes through harness.base.wait with it: no real
sleep, no OpenSIPS)."""

from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

import harness.cli as cli
import harness.cli.failover as cli_failover
import harness.experiments.failover.judging as judging
import harness.experiments.failover.run as failover
from harness.cluster.interfaces import NodeDied
from harness.experiments.failover.deadlines import STALL_S, STOP_ALLOWANCE, deadlines
from harness.experiments.failover.errors import (
    FAILURE_KEYS,
    FailoverError,
    failure_json,
)
from harness.experiments.failover.run import FailoverRun


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.now += seconds


class FakeUAC:
    """SIPp's caller: ``held(poll)`` says how many calls are held at each poll."""

    def __init__(self, held=lambda poll: 0, running=lambda poll: True) -> None:
        self._held, self._running, self.polls = held, running, 0
        self.ended = 0

    def count_events(self, kind: str) -> int:
        if kind == "HELD":
            self.polls += 1
            return self._held(self.polls)
        return self.ended

    def running(self) -> bool:
        return self._running(self.polls)

    def stderr_tail(self, lines: int = 20) -> str:
        return "sipp: last words"

    def result(self) -> SimpleNamespace:
        return SimpleNamespace(calls=[])

    def release(self, rate=None, deadline=None, progress=None) -> list[str]:
        return []


class FakePair:
    uac = FakeUAC()

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.uac = FakePair.uac
        self.stopped = 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.stopped += 1


class FakeCapture:
    def __init__(self, *args: object, **kwargs: object) -> None:
        self.path, self.dropped = Path("/nonexistent.pcap"), 0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class FakeNode:
    def __init__(self, log: str = "") -> None:
        self.log = log

    def current_logs(self) -> str:
        return self.log

    def is_running(self) -> bool:
        return True


class FakeMI:
    def get_statistics(self, group: str = "") -> dict[str, int]:
        return {"real_used_size": 1 << 20} if group else {}


class FakeBackend:
    name = "local"

    def capture_host(self) -> None:
        return None


class FakeCluster:
    def __init__(self, dead: NodeDied | None = None) -> None:
        self.roles = {"primary": "primary", "backup": "backup"}
        self.vip_owner, self.sip_addr = "primary", ("10.9.0.100", 5060)
        self.backend = FakeBackend()
        self.nodes = {"primary": FakeNode("[1] ERROR:tm:t_forward: no socket\n"), "backup": FakeNode()}
        self.dead = dead

    def mi(self, name: str) -> FakeMI:
        return FakeMI()

    def check(self) -> None:
        if self.dead is not None:
            raise self.dead


@pytest.fixture
def make_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(failover, "CallPair", FakePair)
    monkeypatch.setattr(failover, "Capture", FakeCapture)

    def make(uac: FakeUAC, calls: int = 100, cluster: FakeCluster | None = None,
             **kwargs: object) -> tuple[FailoverRun, list[str]]:
        FakePair.uac = uac
        lines: list[str] = []
        clock = FakeClock()
        run = FailoverRun(cluster or FakeCluster(), calls, workdir=tmp_path, rate=10.0,
                          progress=lines.append, clock=clock, sleep=clock.sleep, **kwargs)
        return run, lines

    return make


# -- the setup wait ------------------------------------------------------------------------

def test_setup_waits_for_every_call_with_progress_on_the_fake_clock(make_run) -> None:
    run, lines = make_run(FakeUAC(held=lambda poll: min(poll, 100)))
    run.set_up_calls()
    assert run.held == 100
    # polls every 0.2 s, one call each: 100 calls in ~20 s, a progress line per 2 s
    progress = [ln for ln in lines if ln.endswith("/s)")]
    assert progress[0] == "  11/100 calls held (5/s)" and len(progress) == 9
    assert lines[-1] == "  100 calls held in 19.8s"


def test_a_setup_that_stops_moving_fails_after_the_stall_not_the_deadline(make_run) -> None:
    run, lines = make_run(FakeUAC(held=lambda poll: min(poll, 40)), calls=10_000)
    assert run.setup_timeout > 1000  # the derived deadline is far away
    with pytest.raises(FailoverError) as info:
        run.set_up_calls()
    msg = str(info.value)
    assert msg.startswith("only 40 of 10000 calls were set up through the primary within 28s")
    assert f"no call set up for {STALL_S:g}s" in msg and "\n" not in msg
    assert "ERROR:tm:t_forward: no socket" in msg  # the primary's error lines


def test_a_tiny_setup_deadline_ends_the_setup_at_that_deadline(make_run) -> None:
    run, _ = make_run(FakeUAC(held=lambda poll: poll), calls=1000, setup_timeout=3.0)
    with pytest.raises(FailoverError, match=r"only 16 of 1000 calls .* deadline 3s passed"):
        run.set_up_calls()


def test_sipp_exiting_ends_the_setup_at_once(make_run) -> None:
    run, _ = make_run(FakeUAC(held=lambda poll: 5, running=lambda poll: poll < 3))
    with pytest.raises(FailoverError, match=r"only 5 of 100 calls .*: SIPp's caller exited; "
                                            r"SIPp: \['sipp: last words'\]"):
        run.set_up_calls()
    assert run.clock() - 1000.0 < 1.0


def test_a_node_dying_during_setup_is_the_diagnosis(make_run) -> None:
    cluster = FakeCluster(dead=NodeDied("node primary died at 12:00:00.000 (exit code 255)"))
    run, _ = make_run(FakeUAC(held=lambda poll: 5), cluster=cluster)
    with pytest.raises(NodeDied, match="node primary died"):
        run.set_up_calls()


# -- a failed run reports what it saw -------------------------------------------------------

def test_a_failed_run_carries_what_was_seen(make_run) -> None:
    run, _ = make_run(FakeUAC(held=lambda poll: min(poll, 40), running=lambda poll: poll < 50))
    with pytest.raises(FailoverError) as info:
        run.run()
    seen = info.value.seen
    assert list(seen) == list(FAILURE_KEYS)
    assert seen["step"] == "setup" and seen["calls"] == 100 and seen["calls_held"] == 40
    assert seen["error"] == str(info.value) and "SIPp's caller exited" in seen["error"]
    assert seen["setup_rate"] == pytest.approx(40 / 9.8, abs=0.1)
    assert seen["backup_shm_used_idle"] == 1 << 20 and seen["backend"] == "local"
    assert seen["primary_errors"] == ["[1] ERROR:tm:t_forward: no socket"]
    assert seen["missing_on_backup"] is None  # replication never ran
    assert json.loads(json.dumps(seen)) == seen


def test_failure_json_is_one_line_with_the_rest_as_detail() -> None:
    died = NodeDied("node backup died at 12:00:00.000 (exit code 255)\nlast log lines:\nboom")
    out = failure_json(died, step="release", calls=3, bogus="ignored")
    assert list(out) == list(FAILURE_KEYS)
    assert out["error"] == "node backup died at 12:00:00.000 (exit code 255)"
    assert out["error_detail"] == ["last log lines:", "boom"]
    assert (out["step"], out["calls"], out["calls_held"], out["timed_out"]) == ("release", 3, None, [])
    assert failure_json(KeyError("x"))["error"] == "KeyError: 'x'"  # unexplained: the class says where


# -- the release drain ----------------------------------------------------------------------

def test_the_release_drain_reports_progress_and_times_out_on_the_fake_clock(make_run) -> None:
    run, lines = make_run(FakeUAC(running=lambda poll: True))
    run.release_calls()
    assert run.timed_out == ["release"] and run.released
    assert run.clock() - 1000.0 == pytest.approx(run.finish_timeout)
    ended = [ln for ln in lines if ln == "  0/100 calls ended"]
    assert len(ended) == int(run.finish_timeout // 2)
    assert any(ln.startswith("warning: 100 calls still open") for ln in lines)


def test_the_release_drain_ends_when_sipp_does(make_run) -> None:
    uac = FakeUAC(running=lambda poll: False)
    run, _ = make_run(uac)
    run.release_calls()
    assert run.timed_out == [] and run.clock() - 1000.0 == 0.0


# -- judging the evidence -------------------------------------------------------------------

def test_the_judging_is_part_of_the_deadline() -> None:
    d = deadlines(10_000, 200, 1000)
    assert d["judge"] == 30 + 100 and deadlines(300, 200, 1000)["judge"] == 33.0


def test_judging_is_bounded_and_reports_progress(make_run, monkeypatch: pytest.MonkeyPatch) -> None:
    run, lines = make_run(FakeUAC(), calls=300)
    assert run.deadline_s == pytest.approx(sum(deadlines(300, 10.0, 1000).values())
                                           + run.drain_timeout + STOP_ALLOWANCE)
    go_on = threading.Event()

    def slow_evidence():
        run.judging = "parsing SIPp's caller trace"
        go_on.wait(10)
        raise AssertionError("abandoned")

    monkeypatch.setattr(run, "evidence", slow_evidence)
    try:
        with pytest.raises(FailoverError, match=r"judging the evidence did not finish within its "
                                                r"33s deadline \(was parsing SIPp's caller trace\)"):
            run.judge()
    finally:
        go_on.set()
    judging = [ln for ln in lines if ln.startswith("  judging:")]
    assert judging[0] == "  judging: parsing SIPp's caller trace (2s)" and len(judging) == 16


def test_judging_returns_the_result_and_passes_on_its_errors(make_run, monkeypatch) -> None:
    run, lines = make_run(FakeUAC())
    monkeypatch.setattr(run, "evidence", lambda: "the evidence")
    monkeypatch.setattr(judging, "result_from", lambda ev: f"judged {ev}")
    assert run.judge() == "judged the evidence" and lines[-1].startswith("  judged in ")
    monkeypatch.setattr(run, "evidence", lambda: (_ for _ in ()).throw(OSError("capture gone")))
    with pytest.raises(OSError, match="capture gone"):
        run.judge()


# -- the command ----------------------------------------------------------------------------

@pytest.fixture
def failing_command(monkeypatch: pytest.MonkeyPatch):
    """cmd_failover with its backend and cluster faked; ``fail`` is what run_failover raises."""
    class Peer:
        address = ("10.0.0.1", 40000)
        closed = 0

        def close(self) -> None:
            Peer.closed += 1

    started: list[dict[str, object]] = []
    witnesses: list[object] = []

    @contextlib.contextmanager
    def start(kind: object, settings: object, roles: object, **kwargs: object):
        started.append({"roles": roles, **kwargs})
        peer = Peer()
        try:
            yield SimpleNamespace(cluster=SimpleNamespace(), peer=peer, links={})
        finally:
            peer.close()

    monkeypatch.setattr(cli_failover, "first_use", lambda args: None)
    monkeypatch.setattr(cli_failover, "backend_for", lambda args: (SimpleNamespace(name="local"), None))
    monkeypatch.setattr(cli_failover.live, "start", start)

    class Failures(list):  # what run_failover raises; the fakes, for assertions
        peer = Peer

    fail = Failures()
    fail.started, fail.witnesses = started, witnesses

    def run_failover(*args: object, **kwargs: object):
        witnesses.append(kwargs.get("witness"))
        fail.run = kwargs
        raise fail[0]

    monkeypatch.setattr(cli_failover, "run_failover", run_failover)
    return fail


def test_the_command_replicates_to_a_live_witness_and_closes_it(failing_command, capsys, tmp_path) -> None:
    """Both nodes replicate to the pybin witness too (the proof of recovery must not hang
    on packets to the dead primary); the witness is closed whatever the run did."""
    failing_command.append(FailoverError("boom"))
    assert cli.main(["failover", "--calls", "10", "--json", "--workdir", str(tmp_path)]) == 1
    # the witness first: 1.10 sends to the last configured destination first, so the
    # other node is sent to before it (the replication lag does not include it)
    assert failing_command.started[-1]["peer"] == "first"
    assert failing_command.started[-1]["roles"] == ("primary", "backup")
    assert isinstance(failing_command.witnesses[-1], failing_command.peer)
    assert failing_command.peer.closed == 1


def test_a_failed_setup_prints_one_json_object_and_exits_1(failing_command, capsys, tmp_path) -> None:
    failing_command.append(FailoverError("only 40 of 100 calls were set up", failure_json(
        "only 40 of 100 calls were set up", step="setup", calls=100, calls_held=40, backend="local")))
    assert cli.main(["failover", "--calls", "100", "--json", "--workdir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    obj = json.loads(out)  # one object, nothing else on stdout
    assert list(obj) == list(FAILURE_KEYS)
    assert (obj["error"], obj["step"], obj["calls_held"]) == ("only 40 of 100 calls were set up", "setup", 40)
    assert "Traceback" not in err


def test_a_node_dying_at_start_is_json_too_and_one_line_without(failing_command, capsys, tmp_path) -> None:
    failing_command.append(NodeDied("node backup died at 12:00:00.000 (exit code 255)\nlog tail"))
    assert cli.main(["failover", "--calls", "5", "--json", "--workdir", str(tmp_path)]) == 1
    obj = json.loads(capsys.readouterr().out)
    assert obj["error"] == "node backup died at 12:00:00.000 (exit code 255)"
    assert obj["error_detail"] == ["log tail"] and obj["backend"] == "local" and obj["calls"] == 5
    assert cli.main(["failover", "--calls", "5", "--workdir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines()[-1] == ("harness: failover failed (start): "
                                    "node backup died at 12:00:00.000 (exit code 255)")
    assert "Traceback" not in err and "log tail" not in err


def test_a_node_dying_mid_run_keeps_its_log_as_detail(make_run, failing_command, capsys, tmp_path) -> None:
    cluster = FakeCluster(dead=NodeDied("node primary died at 12:00:00.000 (exit code 255)\nlast: boom"))
    run, _ = make_run(FakeUAC(held=lambda poll: 5), cluster=cluster)
    with pytest.raises(FailoverError) as info:
        run.run()
    assert str(info.value) == "node primary died at 12:00:00.000 (exit code 255)"
    assert info.value.seen["error_detail"] == ["last: boom"] and info.value.seen["step"] == "setup"
    failing_command.append(info.value)
    assert cli.main(["failover", "--calls", "100", "--json", "--workdir", str(tmp_path)]) == 1
    obj = json.loads(capsys.readouterr().out)
    assert obj["error_detail"] == ["last: boom"] and obj["calls_held"] == 5 and obj["step"] == "setup"


def test_witnessed_turns_the_peers_packets_into_capture_like_records() -> None:
    """What the live witness received is evidence beside the capture: decoded dialog
    packets with their arrival time and sender; what is no dialog packet is skipped."""
    from harness.experiments.failover.metrics import WireBin
    from harness.instruments.peer import PeerPacket
    from pybin import dialog
    from pybin.wire import parse_header

    good = parse_header(dialog.make(3, call_id=b"c-1", from_tag=b"a", to_tag=b"b").encode())
    other = parse_header(dialog.make(2, call_id=b"c-2", from_tag=b"a", to_tag=b"b").encode())
    peer = SimpleNamespace(address=("10.9.0.1", 40001), received=[
        PeerPacket(5.0, ("10.9.0.12", 5062), good), PeerPacket(6.0, ("10.9.0.11", 5062), other)])
    assert judging.witnessed(peer) == [  # type: ignore[arg-type]
        WireBin(5.0, ("10.9.0.12", 5062), ("10.9.0.1", 40001), 3, "c-1"),
        WireBin(6.0, ("10.9.0.11", 5062), ("10.9.0.1", 40001), 2, "c-2")]
