"""The block reader for plain Ethernet/IPv4/UDP pcaps gives exactly what dpkt gives.

``pybin.pcap`` reads the common frames itself and hands every other one to dpkt; each
capture here is read both ways — the normal reader, and dpkt for every frame — and
the datagrams (or the error, and everything before it) must be the same.
"""

from __future__ import annotations

import io
import struct

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybin import pcap
from pybin.dialog import make
from pybin.pcap import CaptureError, bin_rows, read_datagrams, udp_rows

CREATED = make(1, call_id=b"c-1", from_tag=b"f", to_tag=b"t", vars=((b"a", b"b|c"),)).encode()
DELETED = make(3, call_id=b"c-1", from_tag=b"f", to_tag=b"t").encode()
BIG = make(1, call_id=b"c" * 3000, caller_contact=b"sip:x@" + b"y" * 2000).encode()
SIP = b"OPTIONS sip:x SIP/2.0\r\nCall-ID: 1\r\n\r\n"
MACS = b"\x02\0\0\0\0\x02" + b"\x02\0\0\0\0\x01"


def udp(payload: bytes, sport: int = 5062, dport: int = 5062, ulen: int | None = None) -> bytes:
    return struct.pack(">HHHH", sport, dport, 8 + len(payload) if ulen is None else ulen, 0) + payload


def ipv4(transport: bytes, *, src: bytes = b"\x0a\0\0\x0b", dst: bytes = b"\x0a\0\0\x0c", proto: int = 17,
         total: int | None = None, flags_offset: int = 0x4000, ident: int = 1, options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    length = 4 * ihl + len(transport) if total is None else total
    head = struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, length, ident, flags_offset, 64, proto, 0, src, dst)
    return head + options + transport


def ipv6(transport: bytes) -> bytes:
    head = struct.pack(">IHBB", 6 << 28, len(transport), 17, 64)
    return head + b"\xfd" + b"\0" * 14 + b"\x01" + b"\xfd" + b"\0" * 14 + b"\x02" + transport


def eth(ip: bytes, etype: int = 0x0800, vlan: int | None = None) -> bytes:
    if vlan is not None:
        return MACS + struct.pack(">HHH", 0x8100, vlan, etype) + ip
    return MACS + struct.pack(">H", etype) + ip


def fragments(transport: bytes, size: int = 1480, ident: int = 77) -> list[bytes]:
    out = []
    for start in range(0, len(transport), size):
        more = start + size < len(transport)
        out.append(eth(ipv4(transport[start : start + size], ident=ident,
                            flags_offset=(0x2000 if more else 0) | start // 8)))
    return out


def capture(frames: list[bytes], *, order: str = "<", cut: int = 0, caplens: dict[int, int] | None = None) -> bytes:
    """A classic microsecond pcap; ``caplens`` cuts chosen frames, ``cut`` the file's tail."""
    out = [struct.pack(order + "IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, frame in enumerate(frames):
        kept = frame[: (caplens or {}).get(i, len(frame))]
        out.append(struct.pack(order + "IIII", 1_700_000_000 + i, (i * 123_457) % 1_000_000, len(kept), len(frame)))
        out.append(kept)
    data = b"".join(out)
    return data[: len(data) - cut] if cut else data


def outcome(rows_of, data: bytes) -> tuple[list[tuple], str | None]:
    rows: list[tuple] = []
    try:
        for row in rows_of(data):
            rows.append(row)
    except CaptureError as err:
        return rows, str(err)
    return rows, None


def fast(data: bytes):
    return udp_rows(io.BytesIO(data))


def through_dpkt(data: bytes):
    return pcap._dpkt_rows(data[:4], io.BytesIO(data[4:]))


def assert_same(data: bytes) -> tuple[list[tuple], str | None]:
    got = outcome(fast, data)
    assert got == outcome(through_dpkt, data)
    return got


def test_plain_frames_are_read_without_dpkt_and_match_it(monkeypatch):
    frames = [eth(ipv4(udp(CREATED))), eth(ipv4(udp(SIP, 5060, 5060))), eth(ipv4(udp(DELETED)))]
    data = capture(frames)
    expected = assert_same(data)
    monkeypatch.setattr(pcap, "_dpkt_row", None)  # any frame sent to dpkt would now fail
    rows, error = outcome(fast, data)
    assert (rows, error) == expected and error is None
    assert rows[0] == (1_700_000_000.0, "10.0.0.11", 5062, "10.0.0.12", 5062, CREATED, len(CREATED))
    assert rows[1][5] == SIP and rows[1][0] == 1_700_000_001.123457


def test_a_mixed_capture_matches_dpkt():
    frames = [
        eth(ipv4(udp(CREATED))),
        eth(ipv4(udp(CREATED)), vlan=7),
        eth(ipv6(udp(DELETED)), etype=0x86DD),
        *fragments(udp(BIG))[::-1],
        eth(ipv4(udp(DELETED), options=b"\x01\x01\x01\x00")),  # IP options
        eth(ipv4(udp(b"P4CK"), total=0)),  # length 0: segmentation offload
        eth(ipv4(udp(DELETED) + b"\0" * 10, total=20 + 8 + len(DELETED))),  # link padding
        eth(ipv4(udp(DELETED), total=24)),  # IP length shorter than a UDP header
        eth(ipv4(udp(DELETED), proto=6)),  # TCP
        eth(b"\0\1\x08\0\6\4\0\1" + b"\0" * 20, etype=0x0806),  # ARP
        eth(ipv4(udp(DELETED), flags_offset=0x8000)),  # reserved flag
        eth(ipv4(udp(SIP, 5060, 5060, ulen=4))),  # UDP length below its header
        eth(b"\x45\0"),  # IPv4 cut inside its header
        MACS[:10],  # not even an Ethernet header
        eth(ipv4(udp(DELETED))),
    ]
    rows, error = assert_same(capture(frames))
    assert error is None
    payloads = [r[5] for r in rows]
    assert payloads.count(DELETED) == 5 and payloads.count(CREATED) == 2 and BIG in payloads
    assert (rows[2][1], rows[2][3]) == ("fd00::1", "fd00::2")


def test_big_endian_captures_match():
    rows, error = assert_same(capture([eth(ipv4(udp(CREATED))), eth(ipv6(udp(CREATED)), etype=0x86DD)], order=">"))
    assert error is None and [r[5] for r in rows] == [CREATED, CREATED]


@pytest.mark.parametrize("cut", [1, 8, 15, 16, 17, 40, len(CREATED) // 2])
def test_a_capture_cut_short_matches(cut):
    frames = [eth(ipv4(udp(DELETED))), eth(ipv4(udp(CREATED)))]
    rows, error = assert_same(capture(frames, cut=cut))
    assert rows[0][5] == DELETED


def test_a_cut_record_header_is_the_same_error():
    rows, error = assert_same(capture([eth(ipv4(udp(DELETED)))]) + b"\0" * 5)
    assert len(rows) == 1 and error == "capture is truncated or damaged: got 5, 16 needed at least"


def test_a_frame_cut_by_the_snap_length_is_reported_the_same():
    frames = [eth(ipv4(udp(DELETED))), eth(ipv4(udp(CREATED))), eth(ipv4(udp(SIP, 5060, 5060)))]
    data = capture(frames, caplens={1: 60, 2: 50})
    assert assert_same(data)[0][1][5] == CREATED[:18]
    got, message = outcome(lambda d: bin_rows(io.BytesIO(d)), data)
    assert [r[5] for r in got] == [DELETED]
    assert message == (f"UDP datagram 2 is cut short: its header says {len(CREATED)} bytes of payload, "
                       f"the capture holds 18")


_PLAIN = eth(ipv4(udp(DELETED)))


@settings(max_examples=300)
@given(
    edits=st.lists(st.tuples(st.integers(12, 45), st.integers(0, 255)), max_size=6),
    keep=st.integers(0, len(_PLAIN)),
)
def test_any_damage_to_the_headers_is_read_like_dpkt(edits, keep):
    frame = bytearray(_PLAIN)
    for at, value in edits:
        frame[at] = value
    assert_same(capture([bytes(frame[:keep]), _PLAIN, bytes(frame)]))


def _other_format(kind: str) -> bytes:
    out = io.BytesIO()
    if kind == "pcapng":
        writer = dpkt.pcapng.Writer(out, linktype=dpkt.pcap.DLT_EN10MB)
        writer.writepkt(eth(ipv4(udp(CREATED))), ts=5)
    elif kind == "nanosecond":
        writer = dpkt.pcap.Writer(out, linktype=dpkt.pcap.DLT_EN10MB, nano=True)
        writer.writepkt(eth(ipv4(udp(CREATED))), ts=5)
    elif kind == "linux-cooked":
        writer = dpkt.pcap.Writer(out, linktype=dpkt.pcap.DLT_LINUX_SLL)
        writer.writepkt(struct.pack(">HHH8sH", 0, 1, 6, MACS[:8], 0x0800) + ipv4(udp(CREATED)), ts=5)
    else:
        writer = dpkt.pcap.Writer(out, linktype=dpkt.pcap.DLT_RAW)
        writer.writepkt(ipv4(udp(CREATED)), ts=5)
    return out.getvalue()


@pytest.mark.parametrize("kind", ["pcapng", "nanosecond", "linux-cooked", "raw-ip"])
def test_other_formats_and_link_types_go_through_dpkt(kind):
    got = list(read_datagrams(io.BytesIO(_other_format(kind))))
    assert [(d.timestamp, d.src, d.data) for d in got] == [(5.0, ("10.0.0.11", 5062), CREATED)]


def test_a_capture_is_read_in_blocks_not_whole(monkeypatch, tmp_path):
    monkeypatch.setattr(pcap, "_CHUNK", 100)  # smaller than one frame
    sizes = []

    class Counting(io.BytesIO):
        def read(self, n=-1):
            sizes.append(n)
            return super().read(n)

    frames = [eth(ipv4(udp(CREATED)))] * 5
    rows = list(udp_rows(Counting(capture(frames))))
    assert [r[5] for r in rows] == [CREATED] * 5
    assert -1 not in sizes and max(sizes) < 2 * len(frames[0])
