"""BIN packets out of packet captures (pcap and pcapng, IPv4 and IPv6), as a stream.

Replication captures run to millions of packets, nearly all plain Ethernet/IPv4/UDP
in a classic pcap: those frames are read here in blocks with ``struct``, with no
object per frame. Everything else — pcapng, nanosecond pcaps, VLAN tags, IPv6, IP
options, fragments, Linux cooked and other link types — goes through dpkt, and both
ways give the same datagrams (tests/unit/test_pcap_paths.py). Only UDP payloads that start with the ``P4CK`` marker are BIN packets; everything else
in a capture (SIP, ARP, other ports) is passed over silently. Checksums are not
checked here: a capture may hold damaged packets on purpose, and the caller decides.
"""

from __future__ import annotations

import io
import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from .errors import PybinError
from .wire import MARKER

PCAP_MAGICS = {b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"}
PCAPNG_MAGIC = b"\x0a\x0d\x0d\x0a"


class CaptureError(PybinError):
    """The file is not a capture we can read, or it ends in the middle of a record."""


@dataclass(frozen=True, slots=True)
class CapturedDatagram:
    """One UDP datagram carrying a BIN packet, with where and when it was seen."""

    timestamp: float
    src: tuple[str, int]
    dst: tuple[str, int]
    data: bytes
    #: payload length the UDP header announces; more than len(data) when cut short
    wire_length: int = -1


def _ip_text(raw: bytes) -> str:
    """An address as ``ipaddress`` writes it, remembered: captures repeat few addresses."""
    text = _IP_TEXT.get(raw)
    if text is None:
        if len(_IP_TEXT) >= _IP_TEXT_MAX:
            _IP_TEXT.clear()
        text = _IP_TEXT[raw] = str(ipaddress.ip_address(raw))
    return text


_IP_TEXT: dict[bytes, str] = {}
_IP_TEXT_MAX = 65536


def _ip_of(link: bytes, datalink: int) -> Any:
    """The IP layer of one frame (a dpkt IP or IP6), whatever the link type; else None."""
    import dpkt

    try:
        if datalink == dpkt.pcap.DLT_EN10MB:
            ip = dpkt.ethernet.Ethernet(link).data
        elif datalink == dpkt.pcap.DLT_LINUX_SLL:
            ip = dpkt.sll.SLL(link).data
        elif datalink in (dpkt.pcap.DLT_RAW, 101, 12, 228, 229):
            ip = dpkt.ip.IP(link) if link[:1] and link[0] >> 4 == 4 else dpkt.ip6.IP6(link)
        elif datalink == dpkt.pcap.DLT_NULL or datalink == dpkt.pcap.DLT_LOOP:
            ip = dpkt.loopback.Loopback(link).data
        elif datalink == 276:  # LINUX_SLL2
            ip = dpkt.ip.IP(link[20:]) if link[20] >> 4 == 4 else dpkt.ip6.IP6(link[20:])
        else:
            return None
    except (dpkt.UnpackError, IndexError, struct.error):
        return None
    return ip if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) else None


_FRAG_V6 = 44
#: incomplete datagrams kept at once; a capture with more is mostly lost fragments
_MAX_PENDING = 1024


class _Reassembler:
    """Put fragmented IP datagrams back together (BIN packets reach 65535 bytes, and
    anything over the link MTU, e.g. a dialog with long headers, travels in pieces)."""

    def __init__(self) -> None:
        self._pending: dict[tuple[object, ...], dict[str, object]] = {}

    def feed(self, ip: Any) -> tuple[Any, bytes] | None:
        """(dpkt ip, transport bytes) once a datagram is whole; None while pieces are missing."""
        import dpkt

        if isinstance(ip, dpkt.ip.IP):
            if not ip.mf and not ip.offset:
                return (ip, bytes(ip.data)) if ip.p == dpkt.ip.IP_PROTO_UDP else None
            key: tuple[object, ...] = (4, ip.src, ip.dst, ip.id, ip.p)
            offset, more, proto = ip.offset * 8, bool(ip.mf), ip.p  # offset: 8-byte units
        else:
            frag = getattr(ip, "extension_hdrs", {}).get(_FRAG_V6)
            if frag is None:
                return (ip, bytes(ip.data)) if ip.p == dpkt.ip.IP_PROTO_UDP else None
            key = (6, ip.src, ip.dst, frag.id)
            offset, more, proto = frag.frag_off * 8, bool(frag.m_flag), frag.nxt
        entry = self._pending.setdefault(key, {"parts": {}, "total": None, "proto": None})
        parts: dict[int, bytes] = entry["parts"]  # type: ignore[assignment]
        parts[offset] = bytes(ip.data)
        if offset == 0:
            entry["proto"] = proto
        if not more:
            entry["total"] = offset + len(parts[offset])
        if len(self._pending) > _MAX_PENDING:
            self._pending.pop(next(iter(self._pending)))
        total = entry["total"]
        if total is None:
            return None
        whole = bytearray()
        for start in sorted(parts):
            if start != len(whole):
                return None  # a gap: wait for the missing piece
            whole += parts[start]
        del self._pending[key]
        if entry["proto"] != dpkt.ip.IP_PROTO_UDP or len(whole) != total:
            return None
        return ip, bytes(whole)


#: (timestamp, source IP, source port, destination IP, destination port, UDP payload,
#: payload length the UDP header announces) — a CapturedDatagram without the object
UdpRow = tuple[float, str, int, str, int, bytes, int]


def _datagram(row: UdpRow) -> CapturedDatagram:
    ts, src, sport, dst, dport, payload, wire_length = row
    return CapturedDatagram(ts, (src, sport), (dst, dport), payload, wire_length)


def read_datagrams(source: str | Path | BinaryIO) -> Iterator[CapturedDatagram]:
    """Yield every UDP datagram whose payload starts with the BIN marker.

    Raises CaptureError (after yielding everything before it) when the file is not a
    pcap/pcapng capture or is cut short in the middle of a record.
    """
    return map(_datagram, bin_rows(source))


def read_udp(source: str | Path | BinaryIO) -> Iterator[CapturedDatagram]:
    """Every UDP datagram in a capture (SIP and BIN alike), for ladders and corpora."""
    return map(_datagram, udp_rows(source))


@dataclass(slots=True)
class ReadCounts:
    """What ``bin_rows`` has seen so far: UDP datagrams, and those of them that are BIN."""

    udp: int = 0
    bin: int = 0


def bin_rows(source: str | Path | BinaryIO, counts: ReadCounts | None = None) -> Iterator[UdpRow]:
    """``read_datagrams`` as plain tuples, for callers that handle millions of packets."""
    counts = ReadCounts() if counts is None else counts
    for row in udp_rows(source):
        counts.udp += 1
        payload = row[5]
        if payload[:4] != MARKER:
            continue
        if len(payload) < row[6]:
            raise CaptureError(
                f"UDP datagram {counts.udp} is cut short: its header says {row[6]} "
                f"bytes of payload, the capture holds {len(payload)}"
            )
        counts.bin += 1
        yield row


def udp_rows(source: str | Path | BinaryIO) -> Iterator[UdpRow]:
    """``read_udp`` as plain tuples; the file is read as a stream, never whole."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            yield from udp_rows(handle)
        return
    head = source.read(4)
    if head in _FAST_MAGICS:
        rest = source.read(_FILE_HEADER_SIZE - 4)
        head += rest
        linktype = struct.unpack_from(_FAST_MAGICS[head[:4]] + "I", head, 20)[0] if len(head) == 24 else -1
        if linktype == _DLT_EN10MB:
            yield from _classic_rows(source, _FAST_MAGICS[head[:4]])
            return
    yield from _dpkt_rows(head, source)


def _dpkt_rows(head: bytes, source: BinaryIO) -> Iterator[UdpRow]:
    """Any capture dpkt reads: pcapng, nanosecond pcaps, every link type it knows."""
    import dpkt

    stream = io.BufferedReader(_Prepend(head, source))  # type: ignore[arg-type]
    if head[:4] in PCAP_MAGICS:
        reader_cls = dpkt.pcap.Reader
    elif head[:4] == PCAPNG_MAGIC:
        reader_cls = dpkt.pcapng.Reader
    else:
        raise CaptureError(
            "not a pcap or pcapng capture (starts with " + (head[:4].hex() or "nothing") + ")"
        )
    try:
        reader = reader_cls(stream)
    except (ValueError, dpkt.UnpackError, struct.error) as err:
        raise CaptureError(f"unreadable capture header: {err}") from None
    datalink = reader.datalink()
    frames = iter(reader)
    fragments = _Reassembler()
    while True:
        try:
            timestamp, frame = next(frames)
        except StopIteration:
            return
        except (ValueError, dpkt.UnpackError, dpkt.NeedData, struct.error) as err:
            raise _damaged(err) from None
        row = _dpkt_row(float(timestamp), frame, datalink, fragments)
        if row is not None:
            yield row


def _damaged(err: Exception) -> CaptureError:
    return CaptureError(f"capture is truncated or damaged: {err or type(err).__name__}")


def _dpkt_row(timestamp: float, frame: bytes, datalink: int, fragments: _Reassembler) -> UdpRow | None:
    """One frame through dpkt: any link layer, IPv6, fragments. None when it is no UDP."""
    import dpkt

    ip = _ip_of(frame, datalink)
    if ip is None:
        return None
    whole = fragments.feed(ip)
    if whole is None:
        return None
    ip, transport = whole
    try:
        udp = dpkt.udp.UDP(transport)
    except (dpkt.UnpackError, struct.error):
        return None
    return (
        timestamp,
        _ip_text(ip.src),
        udp.sport,
        _ip_text(ip.dst),
        udp.dport,
        bytes(udp.data),
        udp.ulen - 8,
    )


# -- the common case without dpkt ---------------------------------------------------------

_FILE_HEADER_SIZE = 24
_DLT_EN10MB = 1
#: classic pcap with microsecond timestamps, by byte order (nanosecond ones go to dpkt)
_FAST_MAGICS = {b"\xd4\xc3\xb2\xa1": "<", b"\xa1\xb2\xc3\xd4": ">"}
#: Ethernet type, then IPv4 up to its addresses, then the UDP header (offset 12 to 42)
_ETH_IP4_UDP = struct.Struct(">HBxH2xHxB2x4s4sHHH2x")
_UDP_START = 42
#: read this much of the file at a time
_CHUNK = 1 << 20


def _classic_rows(stream: BinaryIO, order: str) -> Iterator[UdpRow]:
    """Frames of a classic Ethernet pcap, read in blocks; every frame that is not plain
    unfragmented IPv4/UDP (VLAN, IPv6, ARP, fragments, IP options, cut short, ...)
    is handed to dpkt, so the rows are exactly what the dpkt reader gives."""
    record = struct.Struct(order + "IIII")
    unpack_record = record.unpack_from
    unpack_frame = _ETH_IP4_UDP.unpack_from
    ip_text = _ip_text
    fragments = _Reassembler()
    buf = b""
    pos = 0
    while True:
        if len(buf) - pos < 16:
            buf = _refill(stream, buf, pos, 16)
            pos = 0
            if len(buf) < 16:
                if buf:  # what dpkt says of a record header cut short
                    raise _short_record_header(buf, order)
                return
        sec, usec, caplen, _ = unpack_record(buf, pos)
        start = pos + 16
        end = start + caplen
        if end > len(buf):
            buf = _refill(stream, buf, pos, 16 + caplen)
            pos = 0
            start = 16
            end = min(start + caplen, len(buf))  # a last record cut short: dpkt gives what is there
        pos = end
        timestamp = sec + usec / 1e6
        if end - start >= _UDP_START:
            etype, vihl, ip_len, frag, proto, src, dst, sport, dport, ulen = unpack_frame(buf, start + 12)
            if etype == 0x0800 and vihl == 0x45 and proto == 17 and not frag & 0x3FFF:
                ip_end = start + 14 + ip_len if ip_len else end
                if ip_end > end:
                    ip_end = end
                if ip_end - start >= _UDP_START:  # dpkt passes over a UDP header cut short
                    yield (timestamp, ip_text(src), sport, ip_text(dst), dport, buf[start + _UDP_START : ip_end], ulen - 8)
                continue
        row = _dpkt_row(timestamp, buf[start:end], _DLT_EN10MB, fragments)
        if row is not None:
            yield row


def _refill(stream: BinaryIO, buf: bytes, pos: int, wanted: int) -> bytes:
    """What is left of ``buf`` from ``pos``, plus at least ``wanted`` bytes in all unless the file ends."""
    parts = [buf[pos:]]
    have = len(buf) - pos
    while have < wanted:
        more = stream.read(max(_CHUNK, wanted - have))
        if not more:
            break
        parts.append(more)
        have += len(more)
    return b"".join(parts)


def _short_record_header(buf: bytes, order: str) -> CaptureError:
    import dpkt

    header = dpkt.pcap.LEPktHdr if order == "<" else dpkt.pcap.PktHdr
    try:
        header(buf)
    except (dpkt.UnpackError, struct.error) as err:
        return _damaged(err)
    return _damaged(ValueError(f"record header of {len(buf)} bytes"))  # pragma: no cover - dpkt always refuses


class _Prepend(io.RawIOBase):
    """Give back the magic bytes we peeked at, then the rest of the stream."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = head
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def write_pcap(path: str | Path, datagrams: list[CapturedDatagram]) -> None:
    """Write datagrams as an Ethernet/IPv4-or-IPv6/UDP capture (for corpora and tests)."""
    import dpkt

    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle, linktype=dpkt.pcap.DLT_EN10MB)
        for item in datagrams:
            src_ip = ipaddress.ip_address(item.src[0])
            dst_ip = ipaddress.ip_address(item.dst[0])
            udp = dpkt.udp.UDP(sport=item.src[1], dport=item.dst[1], data=item.data)
            udp.ulen = len(udp)
            if src_ip.version == 4:
                ip: Any = dpkt.ip.IP(
                    src=src_ip.packed, dst=dst_ip.packed, p=dpkt.ip.IP_PROTO_UDP, data=udp
                )
                ip.len = len(ip)
                eth_type = dpkt.ethernet.ETH_TYPE_IP
            else:
                ip = dpkt.ip6.IP6(
                    src=src_ip.packed, dst=dst_ip.packed, nxt=dpkt.ip.IP_PROTO_UDP, hlim=64, data=udp
                )
                ip.plen = len(udp)
                eth_type = dpkt.ethernet.ETH_TYPE_IP6
            frame = dpkt.ethernet.Ethernet(
                src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02", type=eth_type, data=ip
            )
            writer.writepkt(bytes(frame), ts=item.timestamp)
