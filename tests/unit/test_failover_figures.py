"""Failover figures computed offline: percentiles, service gap, replication lag, the
"matched by the backup" proof and the loss verdict, from synthetic ladders written as a
real pcap (SIP text and pybin-encoded BIN) and from the real 1.10.5 capture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.experiments.failover.metrics import (
    JSON_KEYS,
    LOST_LISTED,
    Gap,
    WireBin,
    backup_commands,
    failed_requests,
    judge_calls,
    percentile,
    recovery_times,
    release_rate,
    replication_lags,
    retransmitted,
    service_gap,
    setup_rate,
    split_capture,
)
from harness.experiments.failover.result import Evidence, FailoverResult, result_from
from harness.instruments.sip import SipMessage
from harness.instruments.sipp import CallResult, SippSummary
from pybin import dialog
from pybin.pcap import CapturedDatagram, read_udp, write_pcap

VIP = ("10.9.0.100", 5060)
PRIMARY_BIN = ("10.9.0.11", 5062)
BACKUP_BIN = ("10.9.0.12", 5062)
CALLER = ("10.9.0.201", 5070)
CALLEE = ("10.9.0.202", 5080)
PROBER = ("10.9.0.1", 40000)
T0 = 1_800_000_000.0


def sip(code_or_method: int | str, call_id: str, cseq: str) -> bytes:
    first = (f"SIP/2.0 {code_or_method} X" if isinstance(code_or_method, int)
             else f"{code_or_method} sip:service@10.9.0.202:5080 SIP/2.0")
    return (f"{first}\r\nVia: SIP/2.0/UDP 10.9.0.201:5070;branch=z9hG4bK1\r\n"
            f"From: <sip:caller@10.9.0.201>;tag=a\r\nTo: <sip:service@10.9.0.202>;tag=b\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n").encode()


def bin_packet(command: int, call_id: str) -> bytes:
    return dialog.make(command, call_id=call_id.encode(), from_tag=b"a", to_tag=b"b").encode()


def dg(t: float, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> CapturedDatagram:
    return CapturedDatagram(T0 + t, src, dst, data, len(data))


def ladder() -> list[CapturedDatagram]:
    """Two calls set up through the primary, a kill at t=10, the backup takes over.

    call-1: 200 OK out of the VIP at 1.000, created 0.2 ms later.
    call-2: 200 OK out at 2.000; 1.10.5's created lost the race with the ACK, so the
            first BIN packet is the ACK's updated at 2.003.
    Probes answered by the primary up to 9.990, by the backup from 10.040 on.
    call-1's re-INVITE and BYE are matched by the backup (updated, deleted); call-2's
    are relayed (200s) but the backup replicates nothing: it had no dialog.
    """
    return [
        dg(0.990, CALLEE, VIP, sip(200, "call-1", "1 INVITE")),  # into the proxy: not an answer
        dg(1.000, VIP, CALLER, sip(200, "call-1", "1 INVITE")),
        dg(1.0002, PRIMARY_BIN, BACKUP_BIN, bin_packet(1, "call-1")),
        dg(1.001, CALLER, VIP, sip("ACK", "call-1", "1 ACK")),
        dg(1.0015, PRIMARY_BIN, BACKUP_BIN, bin_packet(2, "call-1")),
        dg(2.000, VIP, CALLER, sip(200, "call-2", "1 INVITE")),
        dg(2.003, PRIMARY_BIN, BACKUP_BIN, bin_packet(2, "call-2")),
        dg(2.500, VIP, CALLER, sip(200, "call-2", "1 INVITE")),  # a retransmission
        dg(9.985, PROBER, VIP, sip("OPTIONS", "probe", "7 OPTIONS")),
        dg(9.990, VIP, PROBER, sip(483, "probe", "7 OPTIONS")),
        dg(9.995, PROBER, VIP, sip("OPTIONS", "probe", "8 OPTIONS")),  # unanswered: dead
        dg(10.040, VIP, PROBER, sip(483, "probe", "9 OPTIONS")),
        dg(10.050, CALLER, VIP, sip("INVITE", "call-1", "2 INVITE")),
        dg(10.051, VIP, CALLER, sip(100, "call-1", "2 INVITE")),
        dg(10.060, BACKUP_BIN, PRIMARY_BIN, bin_packet(2, "call-1")),
        dg(10.070, VIP, CALLER, sip(200, "call-2", "2 INVITE")),
        dg(10.200, BACKUP_BIN, PRIMARY_BIN, bin_packet(3, "call-1")),
        dg(10.300, ("10.9.0.1", 9), BACKUP_BIN, b"P4CK garbage that is no dialog packet"),
    ]


@pytest.fixture
def captured(tmp_path: Path) -> tuple[list, list]:
    """The ladder written as a pcap and read back, as run_failover reads its capture."""
    path = tmp_path / "ladder.pcap"
    write_pcap(path, ladder())
    return split_capture(read_udp(path))


# -- percentiles -------------------------------------------------------------------------

def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 201)]  # 1..200, shuffled order must not matter
    values.reverse()
    assert percentile(values, 50) == 100.0
    assert percentile(values, 95) == 190.0
    assert percentile(values, 99) == 198.0  # an observed value, not an interpolation
    assert percentile(values, 100) == 200.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([3.0, 1.0, 2.0, 4.0], 50) == 2.0
    assert percentile([], 50) is None


@pytest.mark.parametrize("q", [0, -1, 100.1])
def test_percentile_rejects_out_of_range(q: float) -> None:
    with pytest.raises(ValueError):
        percentile([1.0], q)


# -- the capture -------------------------------------------------------------------------

def test_split_capture_keeps_sip_and_dialog_packets(captured: tuple[list, list]) -> None:
    sip_msgs, bins = captured
    assert len(sip_msgs) == 12
    assert [(b.src, b.command, b.call_id) for b in bins] == [
        (PRIMARY_BIN, 1, "call-1"), (PRIMARY_BIN, 2, "call-1"), (PRIMARY_BIN, 2, "call-2"),
        (BACKUP_BIN, 2, "call-1"), (BACKUP_BIN, 3, "call-1")]  # the garbage is not evidence


def test_service_gap_spans_the_takeover(captured: tuple[list, list]) -> None:
    sip_msgs, _ = captured
    gap = service_gap(sip_msgs, VIP, kill_at=T0 + 10.0)
    assert gap == Gap(T0 + 9.990, T0 + 10.040)
    assert gap.ms == pytest.approx(50.0, abs=1e-3)
    # responses *into* the VIP (the callee's 200s) are not the proxy's answers
    assert service_gap(sip_msgs, CALLEE, kill_at=T0 + 10.0) is None
    assert service_gap(sip_msgs, VIP, kill_at=T0 + 99.0) is None  # nothing after


def test_replication_lag_from_200_ok_to_first_bin_packet(captured: tuple[list, list]) -> None:
    sip_msgs, bins = captured
    lags = replication_lags(sip_msgs, bins, VIP, PRIMARY_BIN, BACKUP_BIN, until=T0 + 10.0)
    assert lags.keys() == {"call-1", "call-2"}
    assert lags["call-1"] == pytest.approx(0.0002, abs=2e-6)  # created
    assert lags["call-2"] == pytest.approx(0.003, abs=2e-6)  # updated (no created), not the retransmission
    # only what happened before the kill counts: the backup's own packets after it do not
    assert replication_lags(sip_msgs, bins, VIP, BACKUP_BIN, PRIMARY_BIN, until=T0 + 10.0) == {}


def test_backup_commands_prove_the_dialog_was_matched(captured: tuple[list, list]) -> None:
    _, bins = captured
    assert backup_commands(bins, BACKUP_BIN, after=T0 + 10.0) == {"call-1": {2, 3}}
    assert backup_commands(bins, BACKUP_BIN, after=T0 + 10.1) == {"call-1": {3}}


def test_real_capture_backup_deleted_after_failover(basic_calls_path: Path) -> None:
    """The shipped 1.10.5 capture: one call's BYE was handled by the backup after the kill."""
    sip_msgs, bins = split_capture(read_udp(basic_calls_path))
    assert sip_msgs == [] and len(bins) == 21
    last_primary = max(b.t for b in bins if b.src == ("10.77.0.11", 5062))
    assert backup_commands(bins, ("10.77.0.12", 5062), last_primary) == {"1-27152@10.77.0.20": {3}}


# -- SIPp's view: recovery and the verdict -----------------------------------------------

def call(call_id: str, *events: tuple[float, str, bytes]) -> CallResult:
    msgs = [SipMessage(T0 + t, direction, data.decode()) for t, direction, data in events]
    return CallResult(call_id, "a", "b", msgs)


def recovered_call() -> CallResult:
    return call("call-1",
                (10.050, "sent", sip("INVITE", "call-1", "2 INVITE")),
                (10.550, "sent", sip("INVITE", "call-1", "2 INVITE")),  # retransmitted
                (10.551, "received", sip(100, "call-1", "2 INVITE")),
                (10.580, "received", sip(200, "call-1", "2 INVITE")),
                (10.700, "sent", sip("BYE", "call-1", "3 BYE")),
                (10.710, "received", sip(200, "call-1", "3 BYE")))


def test_recovery_time_from_first_send_to_200() -> None:
    unanswered = call("call-3", (10.0, "sent", sip("INVITE", "call-3", "2 INVITE")))
    rejected = call("call-4", (10.0, "sent", sip("INVITE", "call-4", "2 INVITE")),
                    (10.1, "received", sip(481, "call-4", "2 INVITE")))
    times = recovery_times([recovered_call(), unanswered, rejected])
    assert times.keys() == {"call-1"}
    assert times["call-1"] == pytest.approx(0.530, abs=1e-6)


def test_a_200_without_the_backups_proof_is_a_lost_dialog(captured: tuple[list, list]) -> None:
    _, bins = captured
    matched = backup_commands(bins, BACKUP_BIN, after=T0 + 10.0)
    relayed = call("call-2",
                   (10.060, "sent", sip("INVITE", "call-2", "2 INVITE")),
                   (10.070, "received", sip(200, "call-2", "2 INVITE")),
                   (10.100, "sent", sip("BYE", "call-2", "3 BYE")),
                   (10.110, "received", sip(200, "call-2", "3 BYE")))
    silent = call("call-3", (10.0, "sent", sip("INVITE", "call-3", "2 INVITE")),
                  (10.1, "received", sip(481, "call-3", "2 INVITE")))
    lost = judge_calls([recovered_call(), relayed, silent], matched)
    assert set(lost) == {"call-2", "call-3"}
    assert lost["call-2"] == ("backup sent no BIN updated (re-INVITE not matched to a dialog); "
                              "backup sent no BIN deleted (BYE not matched to a dialog)")
    assert lost["call-3"].startswith("re-INVITE got 481; BYE unanswered")


def test_the_result_is_built_from_the_evidence_alone() -> None:
    relayed = call("call-2",
                   (10.060, "sent", sip("INVITE", "call-2", "2 INVITE")),
                   (10.070, "received", sip(200, "call-2", "2 INVITE")),
                   (10.100, "sent", sip("BYE", "call-2", "3 BYE")),
                   (10.110, "received", sip(200, "call-2", "3 BYE")))
    ev = Evidence(backend="local", mode="kill", calls=3,
                  keys={("call-1", "a", "b"), ("call-2", "a", "b"), ("call-9", "a", "b")},
                  summary=SippSummary("uac", "reinvite", 0, 2, 0, [recovered_call(), relayed]),
                  datagrams=ladder(), kill_at=T0 + 10.0, proxy=VIP, primary_bin=PRIMARY_BIN,
                  backup_bin=BACKUP_BIN, backup_stats_before={"update_sent": 0},
                  backup_stats_after={"update_sent": 1})
    r = result_from(ev)
    assert (r.calls, r.lost, r.backend, r.mode) == (3, 2, "local", "kill")
    assert r.lost_calls["call-9"] == "no SIPp record of the call"
    assert r.lost_calls["call-2"].startswith("backup sent no BIN updated")
    assert r.final_codes == {"call-1": (200, 200), "call-2": (200, 200)}
    assert r.service_gap_ms == 50.0 and r.gap == Gap(T0 + 9.990, T0 + 10.040)
    # every re-INVITE answered 200 has a recovery time, lost or not (nearest rank of 10, 530)
    assert (r.recovery_ms_p50, r.recovery_ms_p95, r.recovery_ms_p99) == (10.0, 530.0, 530.0)
    assert (r.replication_lag_ms_p50, r.replication_lag_ms_p99) == (0.2, 3.0)
    assert r.release_spread_ms == 10.0
    assert "backup update_sent / delete_sent  +1 / +0" in r.table().splitlines()


def witnessed_evidence(witnessed: list[WireBin] | None, datagrams: list | None = None) -> Evidence:
    """call-2 of the ladder, relayed with 200s; the capture lacks the backup's proof."""
    relayed = call("call-2",
                   (10.060, "sent", sip("INVITE", "call-2", "2 INVITE")),
                   (10.070, "received", sip(200, "call-2", "2 INVITE")),
                   (10.100, "sent", sip("BYE", "call-2", "3 BYE")),
                   (10.110, "received", sip(200, "call-2", "3 BYE")))
    return Evidence(backend="docker", mode="kill", calls=1, keys={("call-2", "a", "b")},
                    summary=SippSummary("uac", "reinvite", 0, 1, 0, [relayed]),
                    datagrams=ladder() if datagrams is None else datagrams, kill_at=T0 + 10.0,
                    proxy=VIP, primary_bin=PRIMARY_BIN, backup_bin=BACKUP_BIN,
                    witnessed=witnessed)


def test_the_live_witness_proves_what_never_reached_the_capture() -> None:
    """The backup's updated/deleted to the dead primary may never reach the wire (the dead
    host's neighbour entry failed): received by the live witness, they prove the call."""
    witness = ("10.9.0.1", 40001)
    seen = [WireBin(T0 + 10.065, BACKUP_BIN, witness, 2, "call-2"),
            WireBin(T0 + 10.105, BACKUP_BIN, witness, 3, "call-2")]
    assert result_from(witnessed_evidence(None)).lost == 1  # capture alone: no proof
    r = result_from(witnessed_evidence(seen))
    assert (r.lost, r.lost_calls) == (0, {})
    # the ladder's capture holds two backup packets after the kill (call-1's)
    assert (r.backup_bin_captured, r.backup_bin_witnessed) == (2, 2)
    assert r.to_json()["backup_bin_witnessed"] == 2
    assert result_from(witnessed_evidence(None)).backup_bin_witnessed is None


def test_the_witness_proves_only_the_backups_own_packets_after_the_kill() -> None:
    """Same rule as the capture: the primary's packets, or the backup's before the kill,
    prove nothing; one of updated/deleted is not enough."""
    witness = ("10.9.0.1", 40001)
    for seen in ([WireBin(T0 + 10.065, PRIMARY_BIN, witness, 2, "call-2"),
                  WireBin(T0 + 10.105, PRIMARY_BIN, witness, 3, "call-2")],
                 [WireBin(T0 + 9.0, BACKUP_BIN, witness, 2, "call-2"),
                  WireBin(T0 + 9.5, BACKUP_BIN, witness, 3, "call-2")],
                 [WireBin(T0 + 10.065, BACKUP_BIN, witness, 2, "call-2")]):
        r = result_from(witnessed_evidence(seen))
        assert r.lost == 1 and "backup sent no BIN" in r.lost_calls["call-2"]


def test_the_capture_alone_still_proves_a_call_the_witness_missed() -> None:
    """Either source suffices: the witness's socket may lose a packet too."""
    cap = ladder() + [dg(10.065, BACKUP_BIN, PRIMARY_BIN, bin_packet(2, "call-2")),
                      dg(10.105, BACKUP_BIN, PRIMARY_BIN, bin_packet(3, "call-2"))]
    r = result_from(witnessed_evidence([], datagrams=cap))
    assert r.lost == 0 and (r.backup_bin_captured, r.backup_bin_witnessed) == (4, 0)


# -- the published form ------------------------------------------------------------------

def test_to_json_has_exactly_the_published_keys() -> None:
    r = FailoverResult(200, 0, 24.2, 39.3, 46.1, 46.2, 0.037, 0.2, "local",
                       lost_calls={}, recovery_s={"x": 0.04})
    obj = r.to_json()
    # today's keys first and unchanged; issue 11's after them
    assert list(obj) == list(JSON_KEYS)
    assert list(obj)[:9] == [
        "calls", "lost", "service_gap_ms", "recovery_ms_p50", "recovery_ms_p95",
        "recovery_ms_p99", "replication_lag_ms_p50", "replication_lag_ms_p99", "backend"]
    assert {"setup_rate", "release_rate", "retransmissions", "backup_shm_used_before",
            "backup_shm_used_after", "backup_errors", "timed_out", "lost_calls"} <= set(obj)
    assert json.loads(json.dumps(obj)) == obj
    assert "lost" in r.table() and "24.200 ms" in r.table()


def test_cli_arguments() -> None:
    from harness.cli import build_parser

    args = build_parser().parse_args(["failover", "--calls", "20", "--json", "--backend", "local", "--freeze"])
    assert (args.calls, args.json, args.backend, args.freeze, args.rate) == (20, True, "local", True, 200.0)
    assert build_parser().parse_args(["failover"]).calls == 200


def test_harness_cli_has_the_failover_subcommand() -> None:
    from harness.cli import build_parser

    args = build_parser().parse_args(["failover", "--calls", "5", "--json"])
    assert args.calls == 5 and args.json and callable(args.func)


# -- at scale (issue 11) -------------------------------------------------------------------

def test_retransmitted_and_failed_requests_are_counted_per_request() -> None:
    """A re-INVITE sent twice counts once; a BYE never answered is failed, not retransmitted."""
    twice_bye = call("call-5", (10.0, "sent", sip("INVITE", "call-5", "2 INVITE")),
                     (10.1, "received", sip(200, "call-5", "2 INVITE")),
                     (10.2, "sent", sip("BYE", "call-5", "3 BYE")),
                     (10.7, "sent", sip("BYE", "call-5", "3 BYE")),
                     (11.7, "sent", sip("BYE", "call-5", "3 BYE")))
    calls = [recovered_call(), twice_bye]
    assert retransmitted(calls) == 2  # call-1's re-INVITE, call-5's BYE
    assert failed_requests(calls) == 1  # call-5's BYE got nothing


def test_setup_and_release_rates_are_what_sipp_achieved() -> None:
    a = call("a", (0.0, "sent", sip("INVITE", "a", "1 INVITE")),
             (10.0, "sent", sip("INVITE", "a", "2 INVITE")), (10.5, "sent", sip("BYE", "a", "3 BYE")))
    b = call("b", (0.5, "sent", sip("INVITE", "b", "1 INVITE")),
             (11.0, "sent", sip("INVITE", "b", "2 INVITE")), (11.5, "sent", sip("BYE", "b", "3 BYE")))
    a.events["HELD"], b.events["HELD"] = T0 + 0.4, T0 + 1.0
    assert setup_rate([a, b]) == 2.0  # 2 calls held within 1 s of the first INVITE
    assert release_rate([a, b]) == 2.0  # 4 first sends over 1.5 s: 3 intervals
    assert release_rate([a]) == 2.0 and release_rate([]) is None


def test_json_lists_a_bounded_number_of_lost_calls() -> None:
    lost = {f"c{i}": "BYE unanswered" for i in range(LOST_LISTED + 10)}
    r = FailoverResult(len(lost), len(lost), None, None, None, None, None, None, "local",
                       lost_calls=lost, backup_errors=["ERROR:core:x"], timed_out=["release"])
    obj = r.to_json()
    assert obj["lost"] == LOST_LISTED + 10 and len(obj["lost_calls"]) == LOST_LISTED
    assert "  backup: ERROR:core:x" in r.table().splitlines()
    assert any(line.endswith("release") for line in r.table().splitlines())


def test_deadlines_grow_with_the_size_and_the_rates() -> None:
    from harness.experiments.failover.deadlines import SIP_TRANSACTION_S, deadlines
    from harness.experiments.failover.errors import error_lines
    small, big = deadlines(200, 200, 1000), deadlines(10_000, 200, 1000)
    assert big["setup"] == 30 + 100 and big["setup"] > small["setup"]
    # asked 1,000/s: the deadline still lets a setup at 100/s finish (the 50 s cut)
    assert deadlines(10_000, 1000, 1000)["setup"] == 30 + 100
    assert big["release"] == 20 + SIP_TRANSACTION_S + 15 and big["sync"] > small["sync"]
    assert deadlines(10_000, 200, 100)["release"] > big["release"]
    log = "Nov 30 13:00:00 [1] INFO:core:x\n[2] ERROR:dialog:dlg_replicated_create: no shm\n"
    assert error_lines(log) == ["[2] ERROR:dialog:dlg_replicated_create: no shm"]
