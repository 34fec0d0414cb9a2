"""Reading what a check saw: the peer's packets per call, the capture, node logs, MI.

Pure functions and thin MI reads, shared by the checks; none of them waits (waiting
until the behaviour is over is `harness.experiments.matrix.complete`'s job).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.cluster import Cluster
from harness.cluster.interfaces import NodeDied
from harness.instruments import node_log
from harness.instruments.capture import LadderLine, classify
from harness.instruments.mi_replies import MIError
from harness.instruments.peer import BinPeer
from pybin.dialog import DialogCreated, DialogMessage, DialogUpdated, DlgFlag
from pybin.errors import PybinError
from pybin.pcap import read_udp
from pybin.wire import checksum


def cid(call_id: str | bytes) -> str:
    """A call's id as SIPp names it: long_headers prefixes the Call-ID with 1.2 KB and
    ``///``, SIPp's hold/release markers carry only what follows."""
    text = call_id.decode("utf-8", "replace") if isinstance(call_id, bytes) else call_id
    return text.rsplit("///", 1)[-1]


def packet_name(msg: DialogMessage) -> str:
    """``created(3)``, ``updated(4)`` or ``deleted``: command and the state it carries."""
    if isinstance(msg, DialogCreated):
        return f"created({int(msg.state)})"
    if isinstance(msg, DialogUpdated):
        return f"updated({int(msg.state)})"
    return "deleted"


def by_call(peer: BinPeer, source: tuple[str, int] | None = None) -> dict[str, list[DialogMessage]]:
    """The peer's decoded dialog packets per Call-ID, in arrival order (from ``source`` only)."""
    out: dict[str, list[DialogMessage]] = {}
    for p in list(peer.received):
        if source is not None and p.source != source:
            continue
        if p.packet.module != b"dialog":
            continue
        msg = p.dialog()
        out.setdefault(cid(msg.call_id), []).append(msg)
    return out


Counted = list[list[Any]]


def counted(values: Iterable[str]) -> Counted:
    """``[[value, how many], ...]`` sorted by value: a distribution as one JSON value (a
    list, so judging compares it whole and a table entry pins it whole)."""
    out: dict[str, int] = {}
    for v in values:
        out[v] = out.get(v, 0) + 1
    return [[v, n] for v, n in sorted(out.items())]


def sequences(grouped: dict[str, list[DialogMessage]], call_ids: Iterable[str]) -> Counted:
    """Per-call packet sequences (``created(3) updated(4) deleted``), counted. Counts,
    not a set: a release whose calls differ among themselves shows it, and a call
    without created is visible."""
    return counted(" ".join(packet_name(m) for m in grouped.get(call, [])) or "(none)"
                   for call in call_ids)


def capture_lines(pcap: Path) -> list[LadderLine]:
    """The capture's datagrams as ladder lines, while tcpdump may still be writing it
    (``-U``: its last record can be half-written; what is complete is read)."""
    out: list[LadderLine] = []
    try:
        for item in read_udp(pcap):
            out.append(classify(item))
    except PybinError:
        pass
    return out


def created_timing(pcap: Path, primary_ips: set[str], call_ids: list[str]) -> Counted:
    """Per call, where the primary's created sat against its relayed 200 OK: ``before 200
    OK``, ``after 200 OK`` or ``not sent``, counted.

    Read from one capture on the cluster's bridge: both leave the primary through the
    same interface, so their order there is the order the primary sent them (SIP from
    the VIP, BIN from the node's own address: ``primary_ips`` holds both).
    """
    first_ok: dict[str, int] = {}
    first_created: dict[str, int] = {}
    for i, line in enumerate(capture_lines(pcap)):
        if line.src[0] not in primary_ips or line.call_id is None or cid(line.call_id) not in call_ids:
            continue
        call = cid(line.call_id)
        if line.kind == "SIP" and line.summary.startswith("SIP/2.0 200") and "INVITE]" in line.summary:
            first_ok.setdefault(call, i)
        elif line.kind == "BIN" and " created " in f" {line.summary} ":
            first_created.setdefault(call, i)
    def where(call: str) -> str:
        if call not in first_created:
            return "not sent"
        if call not in first_ok:
            return "no 200 OK seen"
        return "before 200 OK" if first_created[call] < first_ok[call] else "after 200 OK"
    return counted(where(call) for call in call_ids)


def statistics(cluster: Cluster, node: str, names: tuple[str, ...]) -> dict[str, Any] | str:
    """Chosen dialog statistics of ``node``; a string saying why when it has none."""
    try:
        stats = cluster.mi(node).get_statistics()
    except (MIError, NodeDied) as err:
        return f"unavailable: {type(err).__name__}"
    if not stats:
        return "unavailable: get_statistics returned no dialog statistics"
    return {n: stats.get(n) for n in names}


def moved(before: dict[str, Any] | str, after: dict[str, Any] | str) -> dict[str, Any] | str:
    """``after - before`` per statistic that moved; the reason when either is unavailable."""
    if isinstance(before, str) or isinstance(after, str):
        return after if isinstance(after, str) else before
    return {k: after[k] - before[k] for k in after if after[k] is not None and before.get(k) is not None
            and after[k] != before[k]}


def alive(cluster: Cluster) -> dict[str, bool | str]:
    """Which nodes still run, each asked over MI: ``True`` answers, ``False`` is gone,
    and a process that runs but leaves MI unanswered (a deadlock) is named so, not
    counted as either."""
    out: dict[str, bool | str] = {}
    for name, node in cluster.nodes.items():
        try:
            cluster.mi(name).ps()
            out[name] = node.is_running()
        except NodeDied:
            out[name] = False
        except MIError:
            out[name] = HUNG if node.is_running() else False
    return out


#: what `alive` reports for a node whose process runs but whose MI does not answer
HUNG = "running, MI unanswered"


def bin_pids(cluster: Cluster, node: str) -> list[int]:
    """``node``'s BIN receivers' pids, every one real (never 0: see
    `Cluster.bin_receiver_pids`)."""
    return cluster.bin_receiver_pids(node)


# -- flags ------------------------------------------------------------------------------

def flag_names(flags: int) -> str:
    """``BYEONTIMEOUT|ISINIT``: the DLG_FLAG_* names set in a packet's flags field."""
    names = [f.name for f in DlgFlag if f.value & flags and f.name]
    rest = flags & ~sum(f.value for f in DlgFlag)
    if rest:
        names.append(hex(rest))
    return "|".join(sorted(names)) or "none"


def wire_flags(msgs: Iterable[DialogMessage]) -> list[str]:
    """Distinct flag sets of created and updated packets (they carry the same dlg->flags)."""
    return sorted({flag_names(m.flags) for m in msgs if isinstance(m, (DialogCreated, DialogUpdated))})


# -- logs -------------------------------------------------------------------------------

_NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d+")
_FIRST_BYTES = re.compile(r"(First 10 bytes: ).*$", re.S)


def log_records(text: str) -> list[str]:
    """OpenSIPS log records of ``text`` without their date and pid, in order
    (`harness.instruments.node_log`: several records may share a line)."""
    return [m.strip() for m in node_log.messages(node_log.iter_records(text))]


def log_category(record: str) -> str:
    """A record as a stable category: numbers and a bad header's bytes replaced."""
    return _NUMBER.sub("N", _FIRST_BYTES.sub(r"\1…", record))


#: records about the machine, not the release's behaviour: 2.1's timer warns when a job
#: starts late ("timer job <dlg-timer> has a N us delay in execution"), which a loaded
#: machine decides (one expiry cell of the first full run, 1.10.5>2.1.0, while 2.1.0's
#: spinning BIN receivers shared the two cores)
MACHINE_TIMING = re.compile(r"handle_timer_job: u?timer job <[^>]*> has a \d+ us delay in execution")


def log_categories(text: str, until: str | None = None) -> list[str]:
    """Sorted distinct categories of the records in ``text``, leaving out what only the
    machine's load decides (`MACHINE_TIMING`); with ``until``, only those before the
    last record containing it (a sentinel's own lines are not the datagram's)."""
    records = log_records(text)
    if until is not None:
        last = max((i for i, r in enumerate(records) if until in r), default=len(records))
        records = records[:last]
    return sorted({log_category(r) for r in records if not MACHINE_TIMING.search(r)})


# -- packets on the wire --------------------------------------------------------------------

def resealed(data: bytes) -> bytes:
    """``data`` with the right BIN checksum over its body (marker and CRC: 8 bytes)."""
    return data[:4] + checksum(data[8:]).to_bytes(4, "little") + data[8:]


def short_packet(name: bytes, *, good_crc: bool = True) -> bytes:
    """A complete BIN packet (marker, CRC, name, command) for module ``name``: 16 + len(name)
    bytes, so names of 2 and 3 bytes give the 18- and 19-byte datagrams the minimum
    length checks disagree on (≤1.10.3: < 20 dropped; 1.10.4+: < 18)."""
    body = len(name).to_bytes(4, "little") + name + (1).to_bytes(4, "little")
    data = resealed(b"P4CK\0\0\0\0" + body)
    if not good_crc:
        data = data[:4] + bytes([data[4] ^ 0xFF]) + data[5:]
    return data


def frames_by_mac(pcap: Path) -> Iterator[tuple[bytes, str, str, bytes]]:
    """(source MAC, source IP, destination IP, UDP payload) of each IPv4/UDP frame."""
    import dpkt
    with open(pcap, "rb") as f:
        try:
            for _ts, frame in dpkt.pcap.Reader(f):
                eth = dpkt.ethernet.Ethernet(frame)
                ip = eth.data
                if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.udp.UDP):
                    continue
                yield (bytes(eth.src), ".".join(str(b) for b in ip.src),
                       ".".join(str(b) for b in ip.dst), bytes(ip.data.data))
        except (dpkt.NeedData, dpkt.UnpackError, ValueError):
            return  # a capture still being written ends in a partial record


def sip_requests_by_sender(pcap: Path, nodes: dict[str, str], clients: dict[str, str],
                           method: str) -> dict[str, dict[str, int]]:
    """{node: {client: how many ``method`` requests that node sent it}}.

    Both nodes send SIP from the shared VIP, so the sender is told by its MAC address,
    learnt from the frames each node sends from its own address (``nodes``: {name: own
    IP}); ``clients``: {label: IP}.
    """
    rows = list(frames_by_mac(pcap))
    mac_of = {}
    for mac, src, _dst, _data in rows:
        for name, ip in nodes.items():
            if src == ip:
                mac_of[mac] = name
    out: dict[str, dict[str, int]] = {name: {} for name in nodes}
    head = f"{method} sip:".encode()
    for mac, _src, dst, data in rows:
        if data.startswith(head) and mac in mac_of:
            label = next((lb for lb, ip in clients.items() if ip == dst), dst)
            out[mac_of[mac]][label] = out[mac_of[mac]].get(label, 0) + 1
    return {name: dict(sorted(v.items())) for name, v in out.items()}
