"""The one SIP parser's rule for what is SIP on the wire (offline)."""

from __future__ import annotations

import pytest

from harness.instruments.sip import is_start_line, sip_datagram
from pybin.wire import PacketBuilder

OPTIONS = (b"OPTIONS sip:probe@10.9.0.100:5060 SIP/2.0\r\nCall-ID: p@10.9.0.1\r\n"
           b"CSeq: 7 OPTIONS\r\nf: <sip:probe@10.9.0.1>;tag=t1\r\nContent-Length: 0\r\n\r\n")


@pytest.mark.parametrize("line, sip", [
    ("SIP/2.0 483 Too Many Hops", True),
    ("SIP/2.0 200 OK\r", True),
    ("ACK sip:callee@10.178.0.202:5080;transport=UDP SIP/2.0", True),
    ("200 OK", False),                      # an mi_datagram reply
    (":dlg_list:", False),                  # an mi_datagram request
    ("q", False),                           # a SIPp remote-control key
    ("INVITE sip:x SIP/2.0 trailing", False),
])
def test_start_line_rule(line: str, sip: bool) -> None:
    assert is_start_line(line) is sip


def test_a_datagram_is_parsed_or_refused() -> None:
    msg = sip_datagram(OPTIONS, 12.5)
    assert msg is not None
    assert (msg.t, msg.direction, msg.method, msg.cseq, msg.call_id, msg.from_tag) == (
        12.5, "wire", "OPTIONS", (7, "OPTIONS"), "p@10.9.0.1", "t1")
    assert sip_datagram(PacketBuilder("dialog", 1).finish(), 1.0) is None
    assert sip_datagram(b"200 OK\n\tdlg_counter:: 0\n\n", 1.0) is None
