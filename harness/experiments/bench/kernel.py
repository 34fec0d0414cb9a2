"""The kernel's own count of UDP datagrams a node could not take.

OpenSIPS 1.10 cannot tell that its BIN socket overflowed: a datagram the kernel
drops for a full receive buffer never reaches `bin_receive_loop`, so no `*_recv`
statistic moves and nothing is logged. The kernel counts it, per network namespace
(``/proc/net/snmp``: ``Udp: InErrors``, ``RcvbufErrors``) and per socket
(``/proc/net/udp``: ``rx_queue``, ``drops``), so the bench reads both through
``Node.read_proc_net`` (the node's namespace or container). Parsing is pure, so it is unit-tested with real text.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.base.errors import HarnessError

if TYPE_CHECKING:
    from harness.cluster.interfaces import Node


class KernelReadError(HarnessError, RuntimeError):
    """The node's /proc could not be read (the node is gone, or the backend cannot see it)."""


def parse_snmp_udp(text: str) -> dict[str, int]:
    """The ``Udp:`` counters of /proc/net/snmp, by name (header line, then values)."""
    rows = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
    if len(rows) != 2 or len(rows[0]) != len(rows[1]):
        raise KernelReadError("no Udp: header and value lines in /proc/net/snmp")
    return {name: int(value) for name, value in zip(rows[0][1:], rows[1][1:])}


@dataclass(frozen=True)
class UdpSocket:
    """One row of /proc/net/udp: where it is bound, what waits in it, what it dropped."""

    ip: str
    port: int
    rx_queue: int
    drops: int


def parse_proc_net_udp(text: str) -> list[UdpSocket]:
    """Rows of /proc/net/udp (IPv4, addresses in the kernel's host byte order)."""
    out = []
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) < 13:
            continue
        hex_ip, hex_port = cols[1].split(":")
        ip = socket.inet_ntoa(struct.pack("<I", int(hex_ip, 16)))
        rx_queue = int(cols[4].split(":")[1], 16)
        out.append(UdpSocket(ip, int(hex_port, 16), rx_queue, int(cols[12])))
    return out


@dataclass(frozen=True)
class KernelCounters:
    """What the kernel counted in a node's namespace at one moment."""

    in_errors: int
    rcvbuf_errors: int
    #: the BIN socket's own drops and queued bytes (None: no socket on that port)
    socket_drops: int | None
    rx_queue: int | None

    def minus(self, before: KernelCounters) -> KernelCounters:
        def diff(a: int | None, b: int | None) -> int | None:
            return None if a is None or b is None else a - b
        return KernelCounters(self.in_errors - before.in_errors,
                              self.rcvbuf_errors - before.rcvbuf_errors,
                              diff(self.socket_drops, before.socket_drops), self.rx_queue)


def counters(snmp: str, udp: str, port: int) -> KernelCounters:
    """Namespace counters plus the summed row(s) bound to ``port`` (one per BIN socket)."""
    u = parse_snmp_udp(snmp)
    rows = [s for s in parse_proc_net_udp(udp) if s.port == port]
    return KernelCounters(u["InErrors"], u["RcvbufErrors"],
                          sum(s.drops for s in rows) if rows else None,
                          sum(s.rx_queue for s in rows) if rows else None)


def read_counters(node: Node, port: int) -> KernelCounters:
    """The node's namespace counters and its socket on ``port``, read through the node."""
    return counters(node.read_proc_net("snmp"), node.read_proc_net("udp"), port)
