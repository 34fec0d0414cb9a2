"""Capture input: formats, link layers, IPv4/IPv6, fragments, and what is not BIN."""

from __future__ import annotations

import io
import ipaddress
import struct

import dpkt
import pytest

from pybin.dialog import decode, make
from pybin.pcap import (
    CapturedDatagram,
    CaptureError,
    read_datagrams,
    read_udp,
    write_pcap,
)

BIG = make(1, call_id=b"c" * 3000, caller_contact=b"sip:x@" + b"y" * 2000).encode()


def _udp(sport: int, dport: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload


def _ipv4_fragments(src: str, dst: str, transport: bytes, size: int = 1480, ident: int = 77) -> list[bytes]:
    frames = []
    for start in range(0, len(transport), size):
        chunk = transport[start : start + size]
        ip = dpkt.ip.IP(src=ipaddress.ip_address(src).packed, dst=ipaddress.ip_address(dst).packed,
                        p=dpkt.ip.IP_PROTO_UDP, id=ident, mf=int(start + size < len(transport)),
                        offset=start // 8, data=chunk)
        ip.len = 20 + len(chunk)
        frames.append(bytes(dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6,
                                                   type=dpkt.ethernet.ETH_TYPE_IP, data=ip)))
    return frames


def _ipv6_fragments(src: str, dst: str, transport: bytes, size: int = 1448, ident: int = 9) -> list[bytes]:
    frames = []
    for start in range(0, len(transport), size):
        chunk = transport[start : start + size]
        more = int(start + size < len(transport))
        frag = struct.pack(">BBHI", 17, 0, (start // 8) << 3 | more, ident)
        header = struct.pack(">IHBB", 6 << 28, len(frag) + len(chunk), 44, 64)
        header += ipaddress.ip_address(src).packed + ipaddress.ip_address(dst).packed
        frames.append(b"\x04" * 6 + b"\x02" * 6 + b"\x86\xdd" + header + frag + chunk)
    return frames


def _pcap(frames: list[bytes]) -> io.BytesIO:
    out = io.BytesIO()
    writer = dpkt.pcap.Writer(out, linktype=dpkt.pcap.DLT_EN10MB)
    for i, frame in enumerate(frames):
        writer.writepkt(frame, ts=1000 + i)
    out.seek(0)
    return out


def test_ipv4_fragments_are_reassembled_in_any_order():
    frames = _ipv4_fragments("10.0.0.1", "10.0.0.2", _udp(5062, 5062, BIG))
    assert len(frames) == 4
    got = list(read_datagrams(_pcap([frames[2], frames[0], frames[3], frames[1]])))
    assert len(got) == 1
    assert got[0].data == BIG and got[0].src == ("10.0.0.1", 5062)
    assert decode(got[0].data).call_id == b"c" * 3000


def test_ipv6_fragments_are_reassembled():
    frames = _ipv6_fragments("fd00::1", "fd00::2", _udp(5062, 5063, BIG))
    got = list(read_datagrams(_pcap(frames)))
    assert [(d.src, d.dst) for d in got] == [(("fd00::1", 5062), ("fd00::2", 5063))]
    assert got[0].data == BIG


def test_a_missing_fragment_yields_nothing_for_that_datagram():
    frames = _ipv4_fragments("10.0.0.1", "10.0.0.2", _udp(5062, 5062, BIG))
    small = make(3, call_id=b"ok").encode()
    whole = _ipv4_fragments("10.0.0.1", "10.0.0.2", _udp(5062, 5062, small), ident=78)
    got = list(read_datagrams(_pcap([frames[0], frames[1], frames[3], *whole])))
    assert [d.data for d in got] == [small]


def test_only_bin_datagrams_are_reported_but_read_udp_sees_all(tmp_path):
    sip = b"OPTIONS sip:x SIP/2.0\r\n\r\n"
    items = [
        CapturedDatagram(1.0, ("10.0.0.1", 5060), ("10.0.0.2", 5060), sip),
        CapturedDatagram(2.0, ("fd00::1", 5062), ("fd00::2", 5062), make(3, call_id=b"v6").encode()),
        CapturedDatagram(3.0, ("10.0.0.1", 5062), ("10.0.0.2", 5062), make(3, call_id=b"v4").encode()),
    ]
    path = tmp_path / "mixed.pcap"
    write_pcap(path, items)
    assert [decode(d.data).call_id for d in read_datagrams(path)] == [b"v6", b"v4"]
    assert [d.data for d in read_udp(path)][0] == sip


def test_pcapng_is_read(basic_calls):
    out = io.BytesIO()
    writer = dpkt.pcapng.Writer(out, linktype=dpkt.pcap.DLT_EN10MB)
    frames = _ipv4_fragments("10.0.0.1", "10.0.0.2", _udp(5062, 5062, basic_calls[0].data))
    writer.writepkt(frames[0], ts=5)
    out.seek(0)
    assert [d.data for d in read_datagrams(out)] == [basic_calls[0].data]


def test_not_a_capture():
    with pytest.raises(CaptureError, match="not a pcap or pcapng capture"):
        list(read_datagrams(io.BytesIO(b"GIF89a...")))
