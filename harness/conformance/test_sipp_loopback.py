"""Every kept SIPp scenario, UAC against UAS on loopback, checked through parsed results.

Needs only SIPp (Debian's sip-tester); no OpenSIPS. Ports are picked free per test so
the module runs under ``pytest -n auto``.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.instruments.sipp import (
    SippError,
    SippSummary,
    SippUAC,
    SippUAS,
    sipp_version,
)

VERSION = sipp_version()
pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(VERSION is None, reason="sipp not found on PATH (Debian package sip-tester)"),
]

UAS_IP, UAC_IP = "127.0.0.2", "127.0.0.1"
CALLS = 3
TAG = re.compile(r"^\d+SIPpTag0[01]\d+$")


def run_pair(tmp_path: Path, scenario: str, calls: int = CALLS) -> tuple[SippSummary, SippSummary]:
    with SippUAS(scenario, UAS_IP, None, workdir=tmp_path, pause_ms=50) as uas:
        uac = SippUAC(scenario, uas.address, UAC_IP, None, workdir=tmp_path, calls=calls, rate=50,
                      pause_ms=50).start()
        a = uac.wait(30)
    b = uas.result()
    assert (a.exit_code, a.successful, a.failed) == (0, calls, 0), a.errors
    assert (b.successful, b.failed) == (calls, 0), b.errors
    assert len(a.calls) == len(b.calls) == calls
    assert all(c.completed for c in a.calls + b.calls)
    # both sides saw the same dialogs: same Call-IDs, same tags
    assert {(c.call_id, c.from_tag, c.to_tag) for c in a.calls} == {(c.call_id, c.from_tag, c.to_tag) for c in b.calls}
    for c in a.calls:
        assert c.from_tag and TAG.match(c.from_tag) and c.to_tag and TAG.match(c.to_tag)
    return a, b


def seq(summary: SippSummary) -> set[tuple[tuple[str, int, int], ...]]:
    return {tuple((r.method, r.cseq, r.code) for r in c.responses) for c in summary.calls}


def test_basic(tmp_path: Path) -> None:
    a, b = run_pair(tmp_path, "basic")
    assert seq(a) == {(("INVITE", 1, 100), ("INVITE", 1, 180), ("INVITE", 1, 200), ("BYE", 2, 200))}
    assert {tuple((r.method, r.cseq) for r in c.received_requests) for c in b.calls} == {
        (("INVITE", 1), ("ACK", 1), ("BYE", 2))}
    for c in a.calls:  # the BYE came after the pause (-d 50 ms)
        assert c.first_sent("BYE") - c.first_sent("ACK") >= 0.045  # type: ignore[operator]


def test_reinvite(tmp_path: Path) -> None:
    a, b = run_pair(tmp_path, "reinvite")
    assert seq(a) == {(("INVITE", 1, 100), ("INVITE", 1, 180), ("INVITE", 1, 200), ("INVITE", 2, 200),
                       ("BYE", 3, 200))}
    assert {tuple((r.method, r.cseq) for r in c.received_requests) for c in b.calls} == {
        (("INVITE", 1), ("ACK", 1), ("INVITE", 2), ("ACK", 2), ("BYE", 3))}


def test_callee_bye(tmp_path: Path) -> None:
    a, b = run_pair(tmp_path, "callee_bye")
    assert seq(a) == {(("INVITE", 1, 100), ("INVITE", 1, 180), ("INVITE", 1, 200))}
    assert {tuple((r.method, r.cseq) for r in c.received_requests) for c in a.calls} == {(("BYE", 1),)}
    assert seq(b) == {(("BYE", 1, 200),)}
    for c in b.calls:  # the callee's BYE: From = callee tag, To = caller tag
        bye = next(m for m in c.messages if m.direction == "sent" and m.method == "BYE")
        assert (bye.from_tag, bye.to_tag) == (c.to_tag, c.from_tag)
        assert bye.first_line.startswith(f"BYE sip:caller@{UAC_IP}:")


def test_cancel(tmp_path: Path) -> None:
    a, b = run_pair(tmp_path, "cancel")
    assert seq(a) == {(("INVITE", 1, 100), ("INVITE", 1, 180), ("CANCEL", 1, 200), ("INVITE", 1, 487))}
    for c in a.calls:
        assert [(r.method, r.cseq) for r in c.requests] == [("INVITE", 1), ("CANCEL", 1), ("ACK", 1)]
        assert c.final_response("INVITE", 1).code == 487  # type: ignore[union-attr]
        # CANCEL and the ACK of the 487 reuse the INVITE's branch (RFC 3261 9.1, 17.1.1.3)
        vias = {m.header("Via") for m in c.messages if m.direction == "sent"}
        assert len(vias) == 1
    assert {tuple((r.method, r.cseq) for r in c.received_requests) for c in b.calls} == {
        (("INVITE", 1), ("CANCEL", 1), ("ACK", 1))}


def test_long_headers(tmp_path: Path) -> None:
    a, b = run_pair(tmp_path, "long_headers")
    for c in a.calls:
        assert len(c.call_id) > 1200 and "///" in c.call_id
        invite = c.messages[0]
        assert len(invite.text.encode()) > 6000
        assert len(invite.header("From") or "") > 600
        assert [r.code for r in c.responses] == [100, 180, 200, 200]
    for c in b.calls:  # the callee got the same bytes' worth and echoed the long Call-ID
        assert c.messages[0].method == "INVITE" and len(c.messages[0].text.encode()) > 6000
        assert all(m.call_id == c.call_id for m in c.messages)


def test_record_route(tmp_path: Path) -> None:
    a, b = run_pair(tmp_path, "record_route")
    for c in a.calls:
        ok = c.messages[3]
        assert ok.code == 200
        assert ok.headers("Record-Route") == [f"<sip:hop2@{UAS_IP}:{_port(b)};lr>", f"<sip:hop1@{UAS_IP}:{_port(b)};lr>"]
        for m in c.messages:
            if m.direction == "sent" and m.method in ("ACK", "BYE"):
                assert m.header("Route") == f"<sip:hop1@{UAS_IP}:{_port(b)};lr>, <sip:hop2@{UAS_IP}:{_port(b)};lr>"
    for c in b.calls:
        bye = [m for m in c.messages if m.direction == "received" and m.method == "BYE"]
        assert len(bye) == 1 and "hop1" in (bye[0].header("Route") or "")


def _port(uas_summary: SippSummary) -> int:
    invite = uas_summary.calls[0].messages[0]
    m = re.match(r"INVITE sip:service@[\d.]+:(\d+) ", invite.first_line)
    assert m
    return int(m.group(1))


def test_hold_then_release_in_two_batches(tmp_path: Path) -> None:
    n = 20
    with SippUAS("reinvite", UAS_IP, None, workdir=tmp_path) as uas:
        with SippUAC("reinvite", uas.address, UAC_IP, None, workdir=tmp_path, calls=n, rate=100, hold=True,
                     pause_ms=0) as uac:
            held = uac.wait_held(timeout=20)
            assert len(held) == n and len(set(held)) == n
            # nobody moved past the hold point: no re-INVITE on the wire yet
            assert all(c.first_sent("INVITE", 2) is None for c in uac.result().calls)
            first = uac.release(held[: n // 2])
            assert first == held[: n // 2]
            uac.wait_events("END", n // 2, timeout=20)
            assert sorted(uac.held()) == sorted(held[n // 2:])
            assert uac.release() == held[n // 2:]
            a = uac.wait(20)
    assert (a.exit_code, a.successful, a.failed) == (0, n, 0)
    for c in a.calls:
        sent = c.first_sent("INVITE", 2)
        assert sent is not None and sent >= uac.released[c.call_id] - 0.001
        assert c.codes("INVITE", cseq=2) == [200] and c.codes("BYE") == [200]
        assert c.events["HELD"] <= c.events["RELEASED"] <= c.events["END"]
    assert (uas.result().successful, uas.result().failed) == (n, 0)


def test_stop_aborts_held_calls(tmp_path: Path) -> None:
    with SippUAS("basic", UAS_IP, None, workdir=tmp_path) as uas:
        uac = SippUAC("basic", uas.address, UAC_IP, None, workdir=tmp_path, calls=4, rate=100, hold=True).start()
        uac.wait_held(timeout=20)
        a = uac.stop(grace=4)
    # 'q' left the held calls waiting; 'Q' aborted them and SIPp exited
    assert a.exit_code is not None and not uac.running()
    assert a.successful == 0 and len(a.calls) == 4 and len(a.incomplete) == 4
    assert all(list(c.events) == ["HELD"] for c in a.calls)
    assert uas.exit_code is not None


def test_fatal_start_error_has_stderr_tail(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is not a local address: SIPp cannot bind and exits
    uas = SippUAS("basic", "192.0.2.1", 5070, workdir=tmp_path, control_port=15071)
    with pytest.raises(SippError) as e:
        uas.start(timeout=10)
    assert "failed at start" in str(e.value) or "exited before ready" in str(e.value)
    assert "bind" in str(e.value).lower()
    assert uas.exit_code in (254, 255)
