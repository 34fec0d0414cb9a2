"""A synthetic failover run's `Evidence`, built offline: SIP text and pybin-encoded BIN on
one clock, as `FailoverRun` would have collected them from a real cluster.

N calls set up 10 ms apart through the primary (each replicated 0.1 ms after its 200 OK),
a prober answered every 5 ms by the primary until 9.990 s and by the backup from 10.031 s,
SIGKILL sent at 9.985 s, the primary gone at 10.000 s (the kill instant), the VIP move
done at 10.036 s (the backup answers before failover() returns), then every call released 2 ms
apart: its re-INVITE answered after 2 to 8 ms, its BYE after 1 ms, and the backup
replicating updated and deleted for it. Every figure is therefore known in advance.
"""

from __future__ import annotations

from harness.experiments.failover.result import Evidence
from harness.instruments.sip import SipMessage
from harness.instruments.sipp import CallResult, SippSummary
from pybin import dialog
from pybin.pcap import CapturedDatagram

VIP = ("10.9.0.100", 5060)
PRIMARY_BIN = ("10.9.0.11", 5062)
BACKUP_BIN = ("10.9.0.12", 5062)
CALLER = ("10.9.0.201", 5070)
PROBER = ("10.9.0.1", 40000)
T0 = 1_800_000_000.0
KILL_SENT, KILL, VIP_MOVED, LAST_ANSWER, FIRST_ANSWER = 9.985, 10.000, 10.036, 9.990, 10.031


def sip(code_or_method: int | str, call_id: str, cseq: str) -> str:
    first = (f"SIP/2.0 {code_or_method} X" if isinstance(code_or_method, int)
             else f"{code_or_method} sip:service@10.9.0.202:5080 SIP/2.0")
    return (f"{first}\r\nVia: SIP/2.0/UDP 10.9.0.201:5070;branch=z9hG4bK1\r\n"
            f"From: <sip:caller@10.9.0.201>;tag=a\r\nTo: <sip:service@10.9.0.202>;tag=b\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n")


def _bin(command: int, call_id: str) -> bytes:
    return dialog.make(command, call_id=call_id.encode(), from_tag=b"a", to_tag=b"b").encode()


def _dg(t: float, src: tuple[str, int], dst: tuple[str, int], data: bytes) -> CapturedDatagram:
    return CapturedDatagram(T0 + t, src, dst, data, len(data))


def recovery_ms(i: int) -> float:
    return 2.0 + i % 7


def synthetic_evidence(n: int = 300) -> Evidence:
    datagrams: list[CapturedDatagram] = []
    calls: list[CallResult] = []
    release = KILL + 0.040
    for i in range(n):
        cid = f"call-{i}"
        setup = 0.010 * i
        datagrams += [_dg(setup + 0.002, VIP, CALLER, sip(200, cid, "1 INVITE").encode()),
                      _dg(setup + 0.0021, PRIMARY_BIN, BACKUP_BIN, _bin(1, cid))]
        sent = release + 0.002 * i
        answered = sent + recovery_ms(i) / 1000
        bye_answered = answered + 0.002
        datagrams += [_dg(answered - 0.0002, VIP, CALLER, sip(200, cid, "2 INVITE").encode()),
                      _dg(answered - 0.0001, BACKUP_BIN, PRIMARY_BIN, _bin(2, cid)),
                      _dg(bye_answered - 0.0002, VIP, CALLER, sip(200, cid, "3 BYE").encode()),
                      _dg(bye_answered - 0.0001, BACKUP_BIN, PRIMARY_BIN, _bin(3, cid))]
        msgs = [SipMessage(T0 + setup, "sent", sip("INVITE", cid, "1 INVITE")),
                SipMessage(T0 + setup + 0.0025, "received", sip(200, cid, "1 INVITE")),
                SipMessage(T0 + sent, "sent", sip("INVITE", cid, "2 INVITE")),
                SipMessage(T0 + answered, "received", sip(200, cid, "2 INVITE")),
                SipMessage(T0 + answered + 0.001, "sent", sip("BYE", cid, "3 BYE")),
                SipMessage(T0 + bye_answered, "received", sip(200, cid, "3 BYE"))]
        call = CallResult(cid, "a", "b", msgs)
        call.events["HELD"] = T0 + setup + 0.003
        call.events["END"] = T0 + bye_answered
        calls.append(call)
    probes = [round(9.0 + 0.005 * k, 3) for k in range(300)]
    for k, t in enumerate(probes):
        if t <= LAST_ANSWER or t >= FIRST_ANSWER:
            datagrams.append(_dg(t, VIP, PROBER, sip(483, "probe", f"{k} OPTIONS").encode()))
    datagrams.append(_dg(FIRST_ANSWER, VIP, PROBER, sip(483, "probe", "0 OPTIONS").encode()))
    datagrams.sort(key=lambda d: d.timestamp)
    return Evidence(backend="local", mode="kill", calls=n,
                    keys={(c.call_id, "a", "b") for c in calls},
                    summary=SippSummary("uac", "reinvite", 0, n, 0, calls), datagrams=datagrams,
                    kill_at=T0 + KILL, kill_started_at=T0 + KILL_SENT,
                    vip_moved_at=T0 + VIP_MOVED, proxy=VIP,
                    primary_bin=PRIMARY_BIN, backup_bin=BACKUP_BIN,
                    backup_stats_before={"update_sent": 0, "delete_sent": 0},
                    backup_stats_after={"update_sent": n, "delete_sent": n},
                    release_rate_asked=1000.0, deadline_s=120.0)
