"""BIN packets out of packet captures (pcap and pcapng, IPv4 and IPv6), via dpkt.

Only UDP payloads that start with the ``P4CK`` marker are BIN packets; everything else
in a capture (SIP, ARP, other ports) is passed over silently. Checksums are not
checked here: a capture may hold damaged packets on purpose, and the caller decides.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import dpkt

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
    import ipaddress

    return str(ipaddress.ip_address(raw))


def _ip_of(link: bytes, datalink: int) -> dpkt.ip.IP | dpkt.ip6.IP6 | None:
    """The IP layer of one frame, whatever the link type."""
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

    def feed(self, ip: dpkt.ip.IP | dpkt.ip6.IP6) -> tuple[dpkt.ip.IP | dpkt.ip6.IP6, bytes] | None:
        """(ip, transport bytes) once a datagram is whole; None while pieces are missing."""
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


def read_datagrams(source: str | Path | BinaryIO) -> Iterator[CapturedDatagram]:
    """Yield every UDP datagram whose payload starts with the BIN marker.

    Raises CaptureError (after yielding everything before it) when the file is not a
    pcap/pcapng capture or is cut short in the middle of a record.
    """
    for number, item in enumerate(read_udp(source), 1):
        if not item.data.startswith(MARKER):
            continue
        if len(item.data) < item.wire_length:
            raise CaptureError(
                f"UDP datagram {number} is cut short: its header says {item.wire_length} "
                f"bytes of payload, the capture holds {len(item.data)}"
            )
        yield item


def read_udp(source: str | Path | BinaryIO) -> Iterator[CapturedDatagram]:
    """Every UDP datagram in a capture (SIP and BIN alike), for ladders and corpora."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            yield from read_udp(handle)
        return
    head = source.read(4)
    stream = io.BufferedReader(_Prepend(head, source))  # type: ignore[arg-type]
    if head in PCAP_MAGICS:
        reader_cls = dpkt.pcap.Reader
    elif head == PCAPNG_MAGIC:
        reader_cls = dpkt.pcapng.Reader
    else:
        raise CaptureError(
            "not a pcap or pcapng capture (starts with " + (head.hex() or "nothing") + ")"
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
            raise CaptureError(f"capture is truncated or damaged: {err or type(err).__name__}") from None
        ip = _ip_of(frame, datalink)
        if ip is None:
            continue
        whole = fragments.feed(ip)
        if whole is None:
            continue
        ip, transport = whole
        try:
            udp = dpkt.udp.UDP(transport)
        except (dpkt.UnpackError, struct.error):
            continue
        payload = bytes(udp.data)
        yield CapturedDatagram(
            float(timestamp),
            (_ip_text(ip.src), udp.sport),  # type: ignore[attr-defined]
            (_ip_text(ip.dst), udp.dport),  # type: ignore[attr-defined]
            payload,
            udp.ulen - 8,
        )


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
    import ipaddress

    with open(path, "wb") as handle:
        writer = dpkt.pcap.Writer(handle, linktype=dpkt.pcap.DLT_EN10MB)
        for item in datagrams:
            src_ip = ipaddress.ip_address(item.src[0])
            dst_ip = ipaddress.ip_address(item.dst[0])
            udp = dpkt.udp.UDP(sport=item.src[1], dport=item.dst[1], data=item.data)
            udp.ulen = len(udp)
            if src_ip.version == 4:
                ip: dpkt.Packet = dpkt.ip.IP(
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
