"""Offline checks of harness.instruments.sipp: parsers on logs captured from real SIPp 3.6.1 runs.

The files under data/sipp were written by Debian's sip-tester 3.6.1 running the kept
scenarios (run with TZ=UTC, as the harness does): through an OpenSIPS 1.10.5
record-routing proxy (``uac_basic_proxy``, ``uac_reinvite_hold``) or directly against
a SIPp UAS on loopback. They pin the log formats the parsers rely on.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.instruments.sipp.scenarios import ANSWER_RETRANS
from harness.instruments import sipp
from harness.instruments.sip import SipMessage
from harness.instruments.sipp import (
    HOLDABLE,
    SCENARIOS,
    SippSummary,
    SippUAC,
    SippUAS,
    parse_error_log,
    parse_event_log,
    parse_message_log,
    parse_stat_csv,
    render_scenario,
    start_errors,
    summarize,
)

DATA = Path(__file__).parent / "data" / "sipp"


def load(name: str, role: str) -> SippSummary:
    def read(suffix: str) -> str:
        p = DATA / f"{name}{suffix}"
        return p.read_text() if p.exists() else ""

    return summarize(role, name, None, message_log=read("_messages.log"), event_log=read("_events.log"),
                     stat_csv=read("_stat.csv"), error_log=read("_errors.log"))


def test_message_log_entries_time_direction_and_headers() -> None:
    msgs = parse_message_log((DATA / "uac_basic_proxy_messages.log").read_text())
    assert [(m.direction, m.first_line.split(" SIP/2.0")[0] if not m.is_response else m.code) for m in msgs] == [
        ("sent", "INVITE sip:service@127.0.0.2:5070"),
        ("received", 100),
        ("received", 180),
        ("received", 200),
        ("sent", "ACK sip:callee@127.0.0.2:5070;transport=UDP"),
        ("sent", "BYE sip:callee@127.0.0.2:5070;transport=UDP"),
        ("received", 200),
    ]
    # "2026-11-26 11:46:20.733272" read as UTC
    assert msgs[0].t == pytest.approx(1795693580.733272, abs=1e-6)
    ok = msgs[3]
    assert ok.header("Record-Route") == "<sip:127.0.0.1;lr;ftag=12169SIPpTag001;did=d65.db60d151>"
    assert ok.cseq == (1, "INVITE") and ok.method == "INVITE"
    # the body is cut at Content-Length and lines are CRLF again
    assert ok.text.endswith("a=rtpmap:0 PCMU/8000\r\n")
    assert msgs[4].header("Route") == "<sip:127.0.0.1;lr;ftag=12169SIPpTag001;did=d65.db60d151>"


def test_uac_basic_through_proxy() -> None:
    s = load("uac_basic_proxy", "uac")
    assert (s.successful, s.failed, s.errors) == (1, 0, [])
    (c,) = s.calls
    assert (c.call_id, c.from_tag, c.to_tag, c.completed) == (
        "1-12169@127.0.0.1", "12169SIPpTag001", "12167SIPpTag011", True)
    assert [(r.method, r.code, r.cseq) for r in c.responses] == [
        ("INVITE", 100, 1), ("INVITE", 180, 1), ("INVITE", 200, 1), ("BYE", 200, 2)]
    assert [(r.method, r.cseq, r.retransmission) for r in c.requests] == [
        ("INVITE", 1, False), ("ACK", 1, False), ("BYE", 2, False)]
    assert c.final_response("INVITE").t == pytest.approx(1795693580.736188, abs=1e-6)  # type: ignore[union-attr]
    assert c.events["END"] == pytest.approx(1795693580.841908, abs=1e-6)


def test_uas_sees_same_call_and_tags() -> None:
    s = load("uas_basic", "uas")
    (c,) = s.calls
    assert (c.call_id, c.from_tag, c.to_tag) == ("1-12169@127.0.0.1", "12169SIPpTag001", "12167SIPpTag011")
    assert [(r.method, r.cseq) for r in c.received_requests] == [("INVITE", 1), ("ACK", 1), ("BYE", 2)]
    assert c.responses == [] and c.completed


def test_callee_bye_keeps_dialog_orientation() -> None:
    """The UAS's own BYE has From/To swapped; the call's tags stay caller/callee."""
    (c,) = load("uas_callee_bye", "uas").calls
    assert (c.from_tag, c.to_tag) == ("12270SIPpTag001", "12269SIPpTag011")
    bye = next(m for m in c.messages if m.direction == "sent" and m.method == "BYE")
    assert (bye.from_tag, bye.to_tag) == ("12269SIPpTag011", "12270SIPpTag001")
    assert c.codes("BYE") == [200]


def test_retransmissions_and_failed_call() -> None:
    s = load("uac_noanswer", "uac")
    assert (s.successful, s.failed) == (0, 1)
    (c,) = s.calls
    assert not c.completed and c.to_tag is None and c.responses == []
    reqs = c.requests
    assert [r.retransmission for r in reqs] == [False, True, True]
    gaps = [round(b.t - a.t, 1) for a, b in zip(reqs, reqs[1:])]
    assert gaps == [0.5, 1.0]  # SIPp's timer A doubling from retrans="500"
    assert c.retransmissions("INVITE") == 2 and c.first_sent("INVITE") == reqs[0].t
    assert s.errors == ["1795693588.795943: Aborting call on UDP retransmission timeout "
                        "for Call-ID '1-12350@127.0.0.1'"]


def test_hold_release_events_and_reinvite() -> None:
    s = load("uac_reinvite_hold", "uac")
    assert (s.successful, s.failed) == (2, 0)
    assert [c.call_id for c in s.calls] == ["1-13064@127.0.0.1", "2-13064@127.0.0.1"]
    for c in s.calls:
        assert list(c.events) == ["HELD", "RELEASED", "END"]
        assert c.events["HELD"] < c.events["RELEASED"] < c.events["END"]
        assert c.codes("INVITE", cseq=2) == [100, 200]
        # the re-INVITE went out right after the release
        assert 0 <= c.first_sent("INVITE", 2) - c.events["RELEASED"] < 0.05  # type: ignore[operator]
    c1 = s.call("1-13064@127.0.0.1")
    assert c1.final_response("INVITE", 2) == ("INVITE", 200, pytest.approx(1795693598.650374, abs=1e-6), 2)


def test_long_call_id_maps_to_sipp_short_id() -> None:
    s = load("uac_long_headers", "uac")
    (c,) = s.calls
    assert len(c.call_id) == 1220 and c.call_id.endswith("///1-13147@127.0.0.1")
    assert c.call_id.startswith("cid0000.cid0001.")
    assert c.completed  # the END marker carries the short id after '///'
    assert s.call("1-13147@127.0.0.1") is c
    invite = c.messages[0]
    assert len(invite.header("From") or "") > 600
    assert [len(invite.header(f"X-Harness-Pad-{k}") or "") for k in range(1, 5)] == [1000] * 4


def test_error_log_entries_are_split_on_timestamps() -> None:
    s = load("uac_unexpected", "uac")
    assert s.errors == [
        "1795693603.180975: Aborting call on an unexpected BYE for call: 1-13198@127.0.0.1",
        "1795693603.189712: Aborting call on an unexpected BYE for call: 2-13198@127.0.0.1",
    ]
    assert (s.successful, s.failed, len(s.incomplete)) == (0, 2, 2)


def test_small_parsers() -> None:
    assert parse_event_log("2026-11-26\t11:43:17.033701\t1795693397.033701 END 1-548@127.0.0.1\njunk\n") == [
        sipp.CallEvent(1795693397.033701, "END", "1-548@127.0.0.1")]
    assert parse_stat_csv("A;B(C);\n1;2;\n3;4;\n") == {"A": "3", "B(C)": "4"}
    assert parse_stat_csv("") == {}
    assert parse_error_log("The following events occurred:\n") == []
    # unexpected-message notes without a timestamp do not become messages
    text = ("-----------------------------------------------\nUnexpected UDP message received:\n\n"
            "SIP/2.0 487 Request Terminated\nCall-ID: x\nCSeq: 1 INVITE\n\n")
    assert parse_message_log(text) == []


def test_compact_headers_and_tags() -> None:
    m = SipMessage(0.0, "received", "SIP/2.0 200 OK\r\ni: abc\r\nf: <sip:a@b>;tag=x1\r\n"
                        "t: \"A;tag=no\" <sip:c@d;tag=no>;tag=y2\r\nCSeq: 7 BYE\r\n\r\n")
    assert (m.call_id, m.from_tag, m.to_tag, m.cseq, m.code, m.method) == ("abc", "x1", "y2", (7, "BYE"), 200, "BYE")


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_files_are_well_formed(name: str) -> None:
    for role in ("uac", "uas"):
        text = sipp.scenario_path(name, role).read_text(encoding="latin-1")
        assert (sipp.HOLD_MARKER in text) == (role == "uac" and name in HOLDABLE)
        ET.fromstring(render_scenario(text, hold=False))
        if role == "uac" and name in HOLDABLE:
            root = ET.fromstring(render_scenario(text, hold=True))
            assert len(root.findall("recvCmd")) == 1
        root = ET.fromstring(text)
        logs = [e.get("message") for e in root.iter("log")]
        assert "[timestamp] END [call_id]" in logs


def test_hold_needs_marker() -> None:
    with pytest.raises(ValueError):
        render_scenario("<scenario/>", hold=True)


@pytest.mark.parametrize("name", ["basic", "reinvite", "callee_bye"])
def test_a_callee_beside_a_delayed_ack_retransmits_its_answers_late(name: str) -> None:
    """Every final answer of the callee waits answer_retrans_ms before its first
    retransmission (the reinvite callee has two 200 OKs); the caller's delay is a pause
    just before its ACK."""
    uas = sipp.scenario_path(name, "uas").read_text(encoding="latin-1")
    late = ET.fromstring(render_scenario(uas, hold=False, answer_retrans_ms=4000))
    sends = [e.get("retrans") for e in late.iter("send") if e.get("retrans")]
    assert sends and set(sends) == {"4000"}
    assert len(sends) == uas.count(ANSWER_RETRANS)
    uac = ET.fromstring(render_scenario(sipp.scenario_path(name, "uac").read_text(encoding="latin-1"),
                                        hold=False, ack_delay_ms=200))
    children = list(uac)
    ack = next(i for i, e in enumerate(children) if e.tag == "send" and "ACK" in (e.text or ""))
    assert children[ack - 1].tag == "pause" and children[ack - 1].get("milliseconds") == "200"
    with pytest.raises(ValueError, match="answers say"):
        render_scenario("<scenario/>", hold=False, answer_retrans_ms=4000)


def test_command_lines(tmp_path: Path) -> None:
    uas = SippUAS("reinvite", "10.0.0.5", 5070, workdir=tmp_path, netns="ns1")
    cmd = uas.command()
    assert cmd[:7] == ["ip", "netns", "exec", "ns1", "env", "TZ=UTC", "sipp"]
    assert cmd[cmd.index("-cp") + 1] == "5071" and "-m" not in cmd
    uac = SippUAC("reinvite", "10.0.0.5:5070", "10.0.0.9", 5061, workdir=tmp_path, calls=200, rate=50,
                  outbound_proxy="10.0.0.100:5060", hold=True, command_prefix=["docker", "exec", "c1"],
                  remote_workdir="/w", extra_vars={"k": "v"})
    cmd = uac.command()
    assert cmd[:6] == ["docker", "exec", "c1", "env", "TZ=UTC", "sipp"] and cmd[6] == "10.0.0.5:5070"
    assert cmd[cmd.index("-sf") + 1] == "/w/uac-reinvite-5061.xml"
    assert cmd[cmd.index("-rsa") + 1] == "10.0.0.100:5060"
    assert cmd[cmd.index("-3pcc") + 1] == "10.0.0.9:5062"
    assert cmd[cmd.index("-m") + 1] == "200" and cmd[cmd.index("-key") + 1:cmd.index("-key") + 3] == ["k", "v"]
    with pytest.raises(ValueError):
        SippUAC("basic", "h:1", "10.0.0.9", None, workdir=tmp_path, netns="ns1")
    with pytest.raises(ValueError):
        SippUAS("nope", "10.0.0.5", 5070, workdir=tmp_path)


def test_markers_are_counted_incrementally_whole_lines_only(tmp_path: Path) -> None:
    uac = SippUAC("reinvite", "10.0.0.5:5070", "10.0.0.9", 5061, workdir=tmp_path, hold=True,
                  netns="ns1")
    log = uac.event_log
    log.write_text("2026-11-30 13:00:00.000000 1800000000.000000 HELD 1-1@x\n")
    assert uac.count_events("HELD") == 1
    with open(log, "a") as f:  # one more whole line and half of the next
        f.write("2026-11-30 13:00:00.100000 1800000000.100000 HELD 2-1@x\n2026-11-30 13:00")
    assert uac.count_events("HELD") == 2
    with open(log, "a") as f:
        f.write(":00.200000 1800000000.200000 RELEASED 1-1@x\n")
    assert (uac.count_events("HELD"), uac.count_events("RELEASED")) == (2, 1)


def test_release_is_paced_and_stops_at_its_deadline(tmp_path: Path) -> None:
    import socket
    import time

    uac = SippUAC("reinvite", "10.0.0.5:5070", "10.0.0.9", 5061, workdir=tmp_path, hold=True,
                  netns="ns1")
    uac.event_log.write_text("".join(
        f"2026-11-30 13:00:00.000000 1800000000.000000 HELD {i}-1@x\n" for i in range(10)))
    ours, theirs = socket.socketpair()
    uac._twin = ours
    try:
        t0 = time.monotonic()
        assert len(uac.release(rate=50)) == 10  # 10 calls at 50/s: 9 intervals of 20 ms
        assert time.monotonic() - t0 >= 0.17
        assert theirs.recv(4096).count(b"\x1b") >= 1
    finally:
        ours.close()
        theirs.close()
    uac2 = SippUAC("reinvite", "10.0.0.5:5070", "10.0.0.9", 5063, workdir=tmp_path, hold=True,
                   netns="ns1")
    uac2.event_log.write_text(uac.event_log.read_text())
    a, b = socket.socketpair()
    uac2._twin = a
    try:
        assert uac2.release(rate=1, deadline=time.monotonic() + 0.5) == ["0-1@x"]
    finally:
        a.close()
        b.close()


def test_a_ringing_callee_pauses_between_its_180_and_its_200():
    """ring_ms puts a pause right after the 180 and before the 200 OK; a scenario
    without the RING marker is refused rather than silently not ringing."""
    uas = sipp.scenario_path("basic", "uas").read_text(encoding="latin-1")
    children = list(ET.fromstring(render_scenario(uas, hold=False, ring_ms=1500)))
    sends = [(i, e.text or "") for i, e in enumerate(children) if e.tag == "send"]
    ringing = next(i for i, text in sends if "180 Ringing" in text)
    answer = next(i for i, text in sends if "200 OK" in text)
    assert answer == ringing + 2
    assert children[ringing + 1].tag == "pause" and children[ringing + 1].get("milliseconds") == "1500"
    assert not [e for e in ET.fromstring(render_scenario(uas, hold=False)).iter("pause")]
    with pytest.raises(ValueError, match="RING"):
        render_scenario(sipp.scenario_path("cancel", "uas").read_text(encoding="latin-1"),
                        hold=False, ring_ms=1500)


def test_start_errors_leave_out_what_sipp_logs_about_one_call() -> None:
    """A 1.10.2 primary pinged a call 44 ms after its INVITE, before SIPp's first
    statistics row; SIPp answered and logged it, and its start was taken for a failure
    (the error log of that run, 2026-12-06, and a bind failure for contrast)."""
    text = ("The following events occurred:\n"
            "2026-12-06\t23:24:47.233402\t1796599487.233402: Automatic response mode for an "
            "unexpected INFO, NOTIFY, OPTIONS or UPDATE for call: flags.pinging-basic-1796599487-2@10.160.171.200"
            "2026-12-06\t23:24:47.233822\t1796599487.233822: Aborting call on unexpected message "
            "for Call-Id '1-548@127.0.0.1': while expecting '200' (index 2), received 'BYE'")
    assert len(parse_error_log(text)) == 2
    assert start_errors(parse_error_log(text)) == []
    bind = "2026-12-06\t23:24:47.233402\t1796599487.233402: Unable to bind UDP socket: Address already in use"
    assert start_errors(parse_error_log(text + bind)) == [
        "1796599487.233402: Unable to bind UDP socket: Address already in use"]


def test_the_answering_callees_can_ring_between_180_and_200() -> None:
    """Every callee that answers 180 then 200 OK can ring in between (ring_ms): the
    byte-exact test needs it to keep a primary from replicating created twice."""
    for name in ("basic", "reinvite", "callee_bye", "long_headers", "record_route"):
        text = render_scenario(sipp.scenario_path(name, "uas").read_text(encoding="latin-1"), hold=False,
                               ring_ms=200)
        ring = text.index('<pause milliseconds="200"/>')
        assert text.index("SIP/2.0 180 Ringing") < ring < text.index("SIP/2.0 200 OK"), name
