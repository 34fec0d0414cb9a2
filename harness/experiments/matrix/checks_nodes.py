"""Node behaviour checks: dialog flags, expiry, parity, injection, robustness, the
recvfrom defect and failover, on a primary of release X and a backup of release Y.

Same rules as `harness.experiments.matrix.checks`: each check returns a flat observation, asserts
nothing, and keeps its values stable from run to run of one release. Where two
nodes' timers or receivers would race (both copies of a dialog expiring in the same
second), the check removes the race instead of folding it: see `expiry`.

Some checks signal node processes (SIGSTOP/SIGCONT of a BIN receiver) or set the
personality of the processes they start (no ASLR): those need the local backend,
where MI's pids are the host's, and report ``"n/a: ..."`` elsewhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import re
import signal
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from harness.base.resources import package_path
from harness.base.wait import WaitTimeout, wait_until
from harness.cluster import Cluster
from harness.cluster.interfaces import NodeDied
from harness.cluster.warmup import DEFECT_SIGNATURE, sentinel_packet
from harness.experiments.compare import diff_entries, diff_message_entry
from harness.experiments.failover.errors import FailoverError
from harness.experiments.failover.run import FailoverRun
from harness.experiments.matrix.checks import (
    SETTLE,
    Observation,
    alive,
    backup_applied,
    by_call,
    check,
    statistics,
    wait_quiet,
)
from harness.experiments.matrix.context import CheckContext
from harness.instruments import node_log
from harness.instruments.mi_replies import MIError
from harness.live import LiveCluster
from pybin.dialog import (
    Command,
    DialogCreated,
    DialogDeleted,
    DialogMessage,
    DialogUpdated,
    DlgFlag,
    DlgState,
    make,
)
from pybin.replica import Replica
from pybin.wire import checksum

CONFORMANCE = package_path("conformance")
SENTINEL_LINE = "Invalid dialog binary packet command: 424242"
#: personality(2) flag: no address space randomisation for the processes started after it
ADDR_NO_RANDOMIZE = 0x0040000
#: fresh nodes started per recvfrom_defect run
FRESH_NODES = 3
#: fresh nodes started with ASLR per recvfrom_defect run
ASLR_NODES = 8


# -- pure helpers (unit-tested offline) ------------------------------------------------------

def flag_names(flags: int) -> str:
    """``BYEONTIMEOUT|ISINIT``: the DLG_FLAG_* names set in a packet's flags field."""
    names = [f.name for f in DlgFlag if f.value & flags and f.name]
    rest = flags & ~sum(f.value for f in DlgFlag)
    if rest:
        names.append(hex(rest))
    return "|".join(sorted(names)) or "none"


def wire_flags(msgs: Iterable[DialogMessage]) -> list[str]:
    """Distinct flag sets (``BYEONTIMEOUT|ISINIT``) of created and updated packets.

    Not per command: 1.10.3+ skips created when the ACK was handled first, and the
    observation must not depend on that race (created and updated carry the same
    dlg->flags)."""
    return sorted({flag_names(m.flags) for m in msgs if isinstance(m, (DialogCreated, DialogUpdated))})


_NUMBER = re.compile(r"0x[0-9a-fA-F]+|\d+")
_FIRST_BYTES = re.compile(r"(First 10 bytes: ).*$", re.S)


def log_records(text: str) -> list[str]:
    """OpenSIPS log records of ``text`` without their date and pid, in order
    (`harness.instruments.node_log`: several records may share a line)."""
    return [m.strip() for m in node_log.messages(node_log.iter_records(text))]


def log_category(record: str) -> str:
    """A record as a stable category: numbers and a bad header's bytes replaced."""
    return _NUMBER.sub("N", _FIRST_BYTES.sub(r"\1…", record))


def log_categories(text: str, until: str | None = None) -> list[str]:
    """Sorted distinct categories of the records in ``text``; with ``until``, only those
    before the last record containing it (a sentinel's own lines are not the datagram's)."""
    records = log_records(text)
    if until is not None:
        last = max((i for i, r in enumerate(records) if until in r), default=len(records))
        records = records[:last]
    return sorted({log_category(r) for r in records})


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
                           method: str) -> dict[str, list[str]]:
    """{node: sorted clients} that node sent ``method`` requests to.

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
    out: dict[str, set[str]] = {name: set() for name in nodes}
    head = f"{method} sip:".encode()
    for mac, _src, dst, data in rows:
        if data.startswith(head) and mac in mac_of:
            label = next((lb for lb, ip in clients.items() if ip == dst), dst)
            out[mac_of[mac]].add(label)
    return {name: sorted(v) for name, v in out.items()}


# -- shared pieces -------------------------------------------------------------------------

def _held(ctx: CheckContext, lc: LiveCluster, calls: int, **options: Any) -> tuple[Any, list[str]]:
    cluster = lc.cluster
    pair = ctx.calls(cluster, "basic", calls=calls, rate=50, hold=True, **options)
    return pair, pair.uac.wait_held(timeout=30)


def _confirmed_on_backup(lc: LiveCluster, held: list[str]) -> list[Any]:
    cluster = lc.cluster
    primary_bin = cluster.addresses["primary"].bin_addr
    wait_quiet(lc.peer, primary_bin, held,
               lambda msgs: any(isinstance(m, DialogUpdated) and int(m.state) == 4 for m in msgs))
    return backup_applied(cluster, held, {4})


def _clients(pair: Any) -> dict[str, str]:
    return {"caller": pair.caller_host.ip, "callee": pair.callee_host.ip}


def _node_ips(cluster: Cluster) -> dict[str, str]:
    return {name: cluster.addresses[name].ip for name in cluster.nodes}


def _bin_pids(cluster: Cluster, node: str) -> list[int]:
    return [p.pid for p in cluster.mi(node).ps() if p.type.startswith("BIN receiver")]


def _sentinel_fence(cluster: Cluster, node: str, timeout: float = SETTLE) -> bool:
    """Send the sentinel to ``node``'s BIN socket; True once its receiver logged it (all
    earlier datagrams handled: one receiver, in order), False if it died or the deadline."""
    seen = cluster.nodes[node].logs().count(SENTINEL_LINE)
    cluster.send_bin(sentinel_packet(), cluster.addresses[node].bin_addr)
    try:
        wait_until(lambda: cluster.nodes[node].logs().count(SENTINEL_LINE) > seen
                   or not cluster.nodes[node].is_running(),
                   timeout=timeout, what=f"the sentinel on {node}", interval=0.05)
    except WaitTimeout:
        return False
    return cluster.nodes[node].is_running()


def _release(pair: Any, held: list[str], timeout: float = 30) -> int | str:
    """Release the held calls; SIPp's successful count, or why there is none."""
    try:
        pair.uac.release(held)
        return pair.wait(timeout).successful
    except Exception as err:  # SIPp gone, timeout: the observation says so
        return f"no result: {type(err).__name__}"


# -- flags ---------------------------------------------------------------------------------

def _flags_check(ctx: CheckContext, flags: str, ping_interval: int | None) -> Observation:
    settings: dict[str, Any] = {"create_flags": flags}
    if ping_interval is not None:
        settings["ping_interval"] = ping_interval
    lc = ctx.cluster(settings={"dialog": settings}, capture=ping_interval is not None)
    cluster = lc.cluster
    primary_bin = cluster.addresses["primary"].bin_addr
    pair, held = _held(ctx, lc, 2)
    obs: Observation = {}
    primary_bin_seen = wait_quiet(lc.peer, primary_bin, held,
                                  lambda msgs: any(isinstance(m, DialogUpdated) for m in msgs))
    grouped = by_call(lc.peer, primary_bin)
    obs["primary.wire_flags"] = wire_flags(m for cid in held for m in grouped.get(cid, []))
    obs["primary.updated_seen"] = primary_bin_seen
    try:
        entries = backup_applied(cluster, held, {4})
        obs["backup.dialogs"] = sorted({f"state {d.state} user_flags {d.user_flags}" for d in entries}) or ["none"]
        obs["backup.mi"] = "answers"
    except (MIError, NodeDied, OSError) as err:
        obs["backup.dialogs"] = ["unknown"]
        obs["backup.mi"] = f"no answer ({type(err).__name__})"
    if ping_interval is not None:
        assert lc.capture is not None
        pcap = lc.capture.path
        nodes, clients = _node_ips(cluster), _clients(pair)

        def pinged() -> dict[str, list[str]] | None:
            seen = sip_requests_by_sender(pcap, nodes, clients, "OPTIONS")
            return seen if seen["primary"] == ["callee", "caller"] else None
        # the primary pings each party every interval; two intervals after it pinged
        # both, a backup that pings would have too (its timer started with the copy)
        try:
            wait_until(pinged, timeout=3 * ping_interval + SETTLE, what="OPTIONS pings", interval=0.2)
            first = time.monotonic()
            wait_until(lambda: time.monotonic() - first > 2 * ping_interval, timeout=3 * ping_interval,
                       what="two ping intervals", interval=0.2)
        except WaitTimeout:
            pass
        seen = sip_requests_by_sender(pcap, nodes, clients, "OPTIONS")
        obs["primary.options_to"] = seen["primary"]
        obs["backup.options_to"] = seen["backup"]
    obs["calls.successful"] = _release(pair, held)
    obs["backup.stats"] = statistics(cluster, "backup", ("create_recv", "update_recv", "active_dialogs"))
    obs["nodes.alive"] = alive(cluster)
    return obs


@check("flags.bye_on_timeout", "a held call whose dialog is created with B (bye on timeout): "
       "the flags on the wire and on the backup")
def bye_on_timeout(ctx: CheckContext) -> Observation:
    return _flags_check(ctx, "B", None)


@check("flags.pinging", "a held call whose dialog is created with Pp (OPTIONS-ping both parties): "
       "flags on the wire, the backup's copy, who pings whom")
def pinging(ctx: CheckContext) -> Observation:
    return _flags_check(ctx, "BPp", 2)


# -- expiry --------------------------------------------------------------------------------

EXPIRY_S = 3


@check("expiry", "a held bye-on-timeout call outlives its 3 s lifetime: what each node does "
       "with its own copy (packets, BYEs, statistics) and with the other's deleted")
def expiry(ctx: CheckContext) -> Observation:
    """Both nodes' timers fire in the same second, and whichever of the primary's expiry
    and its deleted reaches the backup first decides whether the backup expires its copy
    itself: a race. The check removes it: once the backup holds the confirmed copy, both
    nodes' BIN receivers are stopped (SIGSTOP), each node expires its own copy alone,
    then the receivers resume and handle the other's deleted (a sentinel fences it).
    Local backend only (host pids)."""
    lc = ctx.cluster(settings={"dialog": {"timeout": EXPIRY_S, "create_flags": "B"}}, capture=True)
    cluster = lc.cluster
    if not lc.kind.host_pids:
        return {"nodes.expiry": "n/a: needs a backend whose nodes are host processes (stops BIN receivers by pid)"}
    primary_bin = cluster.addresses["primary"].bin_addr
    backup_bin = cluster.addresses["backup"].bin_addr
    pair, held = _held(ctx, lc, 1)
    obs: Observation = {}
    copies = _confirmed_on_backup(lc, held)
    obs["backup.copy_before"] = sorted({f"state {d.state}" for d in copies}) or ["none"]
    stopped = {n: _bin_pids(cluster, n) for n in ("primary", "backup")}
    expiry_marks = {n: len(cluster.nodes[n].logs()) for n in ("primary", "backup")}
    for pids in stopped.values():
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)

    def gone(node: str) -> bool:
        return all(d.state >= 5 for d in cluster.mi(node).dlg_list(context=False) if d.callid in held)
    try:
        for node in ("primary", "backup"):
            try:
                wait_until(lambda n=node: gone(n), timeout=EXPIRY_S + SETTLE, what=f"expiry on {node}",
                           interval=0.2)
                obs[f"{node}.own_copy"] = "expired"
            except WaitTimeout:
                obs[f"{node}.own_copy"] = "kept"
            except (MIError, NodeDied):
                obs[f"{node}.own_copy"] = "node gone"
        # what each sent when it expired (the peer is a destination of both)
        wait_quiet(lc.peer, primary_bin, held, lambda msgs: any(isinstance(m, DialogDeleted) for m in msgs),
                   timeout=2)
        wait_quiet(lc.peer, backup_bin, held, lambda msgs: any(isinstance(m, DialogDeleted) for m in msgs),
                   timeout=2)
    finally:
        for pids in stopped.values():
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
    marks = {n: len(cluster.nodes[n].logs()) for n in ("primary", "backup")}
    for node in ("primary", "backup"):
        obs[f"{node}.expiry_logs"] = log_categories(cluster.nodes[node].logs()[expiry_marks[node]:marks[node]])
    for node in ("primary", "backup"):
        _sentinel_fence(cluster, node)
    for node, addr in (("primary", primary_bin), ("backup", backup_bin)):
        grouped = by_call(lc.peer, addr)
        # created left out: 1.10.3+ skips it when the ACK wins the race (sip.* checks
        # observe where created sits)
        obs[f"{node}.packets"] = sorted({" ".join(
            "updated" if isinstance(m, DialogUpdated) else "deleted"
            for m in grouped.get(cid, []) if not isinstance(m, DialogCreated)) or "(none)"
            for cid in held})
    lc.capture.stop()
    byes = sip_requests_by_sender(lc.capture.path, _node_ips(cluster), _clients(pair), "BYE")
    for node in ("primary", "backup"):
        obs[f"{node}.bye_to"] = byes[node]
        obs[f"{node}.on_other_deleted"] = log_categories(cluster.nodes[node].logs()[marks[node]:],
                                                         until=SENTINEL_LINE)
        obs[f"{node}.stats"] = statistics(cluster, node, ("expired_dialogs", "delete_sent", "delete_recv",
                                                          "active_dialogs"))
    obs["nodes.alive"] = alive(cluster)
    pair.stop()
    return obs


# -- parity --------------------------------------------------------------------------------

PARITY_CALLS = 3
#: ReplicaDialog attribute → DialogEntry attribute (and how to read it)
_REPLICA_FIELDS = ("h_id", "state", "user_flags", "timestart", "timeout", "from_uri", "to_uri",
                   "caller_tag", "to_tag", "vars", "profiles")


def _replica_view(d: Any) -> dict[str, Any]:
    return {"h_id": d.h_id, "state": int(d.state), "user_flags": d.user_flags, "timestart": d.start_ts,
            "timeout": d.expires_at or 0, "from_uri": d.from_uri.decode(), "to_uri": d.to_uri.decode(),
            "caller_tag": d.from_tag.decode(), "to_tag": d.to_tag.decode(),
            "vars": {k.decode(): v.decode() for k, v in d.vars},
            "profiles": tuple(sorted((k.decode(), v.decode()) for k, v in d.profiles))}


def _entry_view(e: Any) -> dict[str, Any]:
    return {"h_id": e.h_id, "state": e.state, "user_flags": e.user_flags, "timestart": e.timestart,
            "timeout": e.timeout, "from_uri": e.from_uri, "to_uri": e.to_uri, "caller_tag": e.from_tag,
            "to_tag": e.to_tag, "vars": e.vars or {}, "profiles": tuple(sorted(e.profiles or ()))}


def replica_differences(replica: dict[str, Any], entry: dict[str, Any], slack: int = 2) -> list[str]:
    """Names of the fields where pybin's replica and a node's dlg_list entry disagree
    (timeouts within ``slack`` seconds are equal: MI prints two clocks)."""
    out = []
    for name in _REPLICA_FIELDS:
        a, b = replica.get(name), entry.get(name)
        if name == "timeout" and isinstance(a, int) and isinstance(b, int):
            if abs(a - b) > slack:
                out.append(name)
        elif a != b:
            out.append(name)
    return out


@check("parity", "a few held calls: the backup's dlg_list against the primary's field by field, "
       "and pybin's Replica fed the same packets against the backup")
def parity(ctx: CheckContext) -> Observation:
    lc = ctx.cluster()
    cluster = lc.cluster
    pair, held = _held(ctx, lc, PARITY_CALLS)
    entries = _confirmed_on_backup(lc, held)
    theirs = {d.callid: d for d in cluster.mi("primary").dlg_list() if d.callid in held}
    obs: Observation = {"backup.dialogs": sorted({f"state {d.state}" for d in entries}) or ["none"]}
    same = [d.h_id == theirs[d.callid].h_id for d in entries if d.callid in theirs]
    obs["backup.h_id"] = ("none to compare" if not same else "primary's" if all(same)
                          else "its own" if not any(same) else "mixed")
    fields: set[str] = set()
    for d in entries:
        if d.callid in theirs:
            fields.update(x.split(":", 1)[0] for x in
                          diff_entries(d, theirs[d.callid], ignore=("h_id",), profiles="any"))
    obs["backup.fields_unlike_primary"] = sorted(fields)
    sock = f"udp:{cluster.sip_addr[0]}:{cluster.sip_addr[1]}"
    replica = Replica([sock], hash_size=cluster.settings.dialog.hash_size)
    primary_bin = cluster.addresses["primary"].bin_addr
    for p in list(lc.peer.received):
        if p.source == primary_bin:
            replica.apply(p.dialog(), now=int(time.time()))
    rfields: set[str] = set()
    for d in entries:
        mine = [r for r in replica if r.call_id.decode() == d.callid]
        if len(mine) != 1:
            rfields.add("missing in pybin")
            continue
        rfields.update(replica_differences(_replica_view(mine[0]), _entry_view(d)))
    obs["pybin.fields_unlike_backup"] = sorted(rfields)
    obs["calls.successful"] = _release(pair, held)
    obs["nodes.alive"] = alive(cluster)
    return obs


# -- injection -----------------------------------------------------------------------------

RECV_STATS = ("create_recv", "update_recv", "delete_recv", "active_dialogs", "processed_dialogs")


def _moved(before: dict[str, Any] | str, after: dict[str, Any] | str) -> dict[str, Any] | str:
    if isinstance(before, str) or isinstance(after, str):
        return after if isinstance(after, str) else str(before)
    return {k: after[k] - before[k] for k in after if after[k] is not None and before.get(k) is not None
            and after[k] != before[k]}


@check("inject", "pybin sends created, updated (new timeout, cseq, state), deleted, and an "
       "update and a delete for unknown dialogs to the backup: what it takes and counts")
def inject(ctx: CheckContext) -> Observation:
    lc = ctx.cluster()
    cluster = lc.cluster
    peer, mi = lc.peer, cluster.mi("backup")
    target = cluster.addresses["backup"].bin_addr
    sock = f"udp:{cluster.sip_addr[0]}:{cluster.sip_addr[1]}".encode()
    now = int(time.time())

    def fields(n: int, **over: Any) -> dict[str, Any]:
        f: dict[str, Any] = dict(
            call_id=f"inject-{n}-{now}@harness".encode(), from_tag=f"ft{n}".encode(), to_tag=f"tt{n}".encode(),
            from_uri=f"sip:alice{n}@example.com".encode(), to_uri=b"sip:bob@example.com",
            h_id=1000 + n, start_ts=now, state=DlgState.CONFIRMED_NA, caller_sock=sock, callee_sock=sock,
            caller_cseq=b"0", callee_cseq=b"1", caller_route_set=b"<sip:up1.example.com;lr>",
            callee_route_set=b"<sip:down1.example.com;lr>", caller_contact=f"sip:alice{n}@192.0.2.1".encode(),
            callee_contact=b"sip:bob@192.0.2.2", vars=((b"acct", b"x"),), profiles=((b"inbound", b""),),
            user_flags=1 << 5, flags=int(DlgFlag.ISINIT | DlgFlag.BYEONTIMEOUT), timeout=now + 3600)
        f.update(over)
        return f

    obs: Observation = {}

    def step(label: str, msg: DialogMessage) -> None:
        before = statistics(cluster, "backup", RECV_STATS)
        mark = len(cluster.nodes["backup"].logs())
        peer.send(msg, target)
        fenced = _sentinel_fence(cluster, "backup")
        obs[f"backup.{label}.logs"] = log_categories(cluster.nodes["backup"].logs()[mark:], until=SENTINEL_LINE)
        obs[f"backup.{label}.stats_moved"] = _moved(before, statistics(cluster, "backup", RECV_STATS))
        if not fenced:
            obs[f"backup.{label}"] = "no sentinel: receiver stuck or node gone"
            return
        entry = mi.dialog(msg.call_id.decode())
        if isinstance(msg, DialogDeleted):
            # an ended dialog lingers in state 5 until its last reference goes: one outcome
            obs[f"backup.{label}"] = ("ended" if entry is None or entry.state == 5
                                      else f"state {entry.state}")
        elif entry is None:
            obs[f"backup.{label}"] = "no dialog"
        else:
            diffs = diff_message_entry(msg, entry, check_h_id=False, profiles="any")
            obs[f"backup.{label}"] = {"state": entry.state,
                                      "fields_unlike_packet": sorted({x.split(":", 1)[0] for x in diffs}),
                                      "h_id": "packet's" if entry.h_id == msg.h_id else "its own"}

    one = make(Command.CREATED, **fields(1))
    step("created", one)
    made = mi.dialog(one.call_id.decode())
    created_timeout = made.timeout if made is not None else one.timeout
    upd = make(Command.UPDATED, **fields(1, state=DlgState.CONFIRMED, callee_cseq=b"2", caller_cseq=b"7",
                                         timeout=now + 1800))
    step("updated", upd)
    after = mi.dialog(one.call_id.decode())
    if after is not None:
        obs["backup.updated.timeout"] = ("packet's" if abs(after.timeout - upd.timeout) <= 2 else
                                         "created's" if abs(after.timeout - created_timeout) <= 2 else
                                         "other")
    step("update_unknown", make(Command.UPDATED, **fields(2, state=DlgState.CONFIRMED)))
    step("deleted", make(Command.DELETED, call_id=one.call_id, from_tag=one.from_tag, to_tag=one.to_tag))
    step("delete_unknown", make(Command.DELETED, call_id=b"inject-nobody@harness", from_tag=b"x", to_tag=b"y"))
    obs["nodes.alive"] = alive(cluster)
    return obs


# -- robustness ----------------------------------------------------------------------------

def _catalogue(sock: str) -> list[Any]:
    """test_robustness.py's catalogue (it imports its conformance neighbours by bare name)."""
    if str(CONFORMANCE) not in sys.path:
        sys.path.insert(0, str(CONFORMANCE))
    mod = importlib.import_module("test_robustness")
    return [h for h in mod.catalogue(sock) if h.to_opensips]


@check("robustness", "the hostile datagram catalogue plus 18/19-byte packets with a valid marker "
       "(good and bad CRC), one by one to the backup: survival and what it logs per datagram")
def robustness(ctx: CheckContext) -> Observation:
    lc = ctx.cluster(peer=False)
    cluster = lc.cluster
    sock = f"udp:{cluster.sip_addr[0]}:{cluster.sip_addr[1]}"
    cases = [(h.name, h.data) for h in _catalogue(sock)]
    cases += [("18 bytes, valid", short_packet(b"dl")), ("19 bytes, valid", short_packet(b"dlg")),
              ("18 bytes, bad CRC", short_packet(b"dl", good_crc=False)),
              ("19 bytes, bad CRC", short_packet(b"dlg", good_crc=False))]
    node = cluster.nodes["backup"]
    target = cluster.addresses["backup"].bin_addr
    obs: Observation = {}
    dead = False
    for name, data in cases:
        if dead:
            obs[f"backup.{name}"] = "not sent (node gone)"
            continue
        mark = len(node.logs())
        cluster.send_bin(data, target)
        if not _sentinel_fence(cluster, "backup"):
            dead = not node.is_running()
            obs[f"backup.{name}"] = "died" if dead else "receiver stuck"
            continue
        obs[f"backup.{name}"] = log_categories(node.logs()[mark:], until=SENTINEL_LINE)
    obs["nodes.alive"] = alive(cluster)
    return obs


# -- recvfrom defect -------------------------------------------------------------------------

@contextlib.contextmanager
def no_aslr() -> Iterator[bool]:
    """Processes this thread starts inside run without address randomisation
    (personality ADDR_NO_RANDOMIZE, inherited over fork and exec); yields False when
    the personality cannot be set."""
    libc = ctypes.CDLL(None, use_errno=True)
    old = libc.personality(0xFFFFFFFF)
    if old < 0 or libc.personality(old | ADDR_NO_RANDOMIZE) < 0:
        yield False
        return
    try:
        yield True
    finally:
        libc.personality(old)


def _first_packet(ctx: CheckContext, nodes: int, aslr: bool) -> list[str] | str:
    """Start ``nodes`` fresh backups (no warm-up), send each one BIN packet: the sorted
    set of their fates ("survives", "dies", "dies (other cause)")."""
    names = [f"fresh{i}" for i in range(nodes)]
    with contextlib.ExitStack() as stack:
        if not aslr and not stack.enter_context(no_aslr()):
            return "n/a: cannot disable ASLR"
        lc = ctx.cluster({n: "backup" for n in names}, replicate={n: [] for n in names},
                              warmup=False, peer=False)
        cluster = lc.cluster
    if not lc.kind.host_pids:
        return "n/a: needs a backend whose nodes are host processes"
    for n in names:
        cluster.send_bin(sentinel_packet(), cluster.addresses[n].bin_addr)

    def settled() -> dict[str, str] | None:
        out = {}
        for n in names:
            node = cluster.nodes[n]
            if SENTINEL_LINE in node.logs():
                out[n] = "survives"
            elif not node.is_running():
                out[n] = "dies" + ("" if DEFECT_SIGNATURE in node.logs() else " (other cause)")
            else:
                return None
        return out
    try:
        fate = wait_until(settled, timeout=30, what="each fresh node's first BIN packet", interval=0.1)
    except WaitTimeout:
        return ["no answer"]
    return sorted(set(fate.values()))


def defect_verdict(fates: list[str] | str) -> str:
    """Fates of fresh nodes as one stable word: ``dies`` when any node died of the
    defect (with ASLR each fresh 1.10.5 receiver dies with p ~ 0.6, so "some" and
    "all" are one behaviour), ``survives`` when every node did."""
    if isinstance(fates, str):
        return fates
    if "dies" in fates:
        return "dies"
    return "survives" if fates == ["survives"] else "/".join(fates)


@check("recvfrom_defect", "fresh backups each get one BIN packet: does the uninitialised "
       "recvfrom address length kill them (with and without ASLR)")
def recvfrom_defect(ctx: CheckContext) -> Observation:
    """bin_receive_loop passes an uninitialised from_len to recvfrom (fixed in 1.11.7,
    493f1bfd). Whether it is negative is stack garbage.

    Without ASLR (personality ADDR_NO_RANDOMIZE for the nodes) the garbage is the same on
    every start of one build, so FRESH_NODES fresh nodes give one answer; on this
    machine a 1.10.5 node then *survives* every time (the garbage is positive), so that
    key alone cannot show the defect. With ASLR, ASLR_NODES fresh nodes: a defective
    build loses at least one with p ~ 1 - 0.4^8 (0.9993 at 1.10.5's measured ~60%),
    a fixed one never does; that key is the defect's observation, stable up to that
    probability. Local backend only."""
    return {"backup.first_packet_no_aslr": defect_verdict(_first_packet(ctx, FRESH_NODES, aslr=False)),
            "backup.first_packet_aslr": defect_verdict(_first_packet(ctx, ASLR_NODES, aslr=True))}


# -- failover ------------------------------------------------------------------------------

FAILOVER_CALLS = 10


@check("failover", "10 held calls through the primary, the primary killed and the VIP moved: "
       "the backup carries them (re-INVITE and BYE through it)")
def failover(ctx: CheckContext) -> Observation:
    lc = ctx.cluster(peer=False)
    cluster = lc.cluster
    try:
        run = FailoverRun(cluster, FAILOVER_CALLS, workdir=ctx._dir("failover"), rate=50,
                          release_rate=20, probe_interval=None, sync_timeout=15,
                          finish_timeout=20, drain_timeout=10)
        result = run.run()
    except FailoverError as err:
        return {"nodes.failover": f"not run: {str(err)[:120]}"}
    obs: Observation = {
        "backup.missing_before_kill": result.missing_on_backup,
        "calls.lost": result.lost,
        "calls.completed": run.summary.successful if run.summary else None,
        "backup.failed_requests": result.failed_requests,
        "backup.dialogs_left": result.backup_dialogs_left,
        "backup.alive": result.backup_alive,
        "backup.errors": log_categories("\n".join(result.backup_errors)),
        "nodes.timed_out": sorted(result.timed_out),
    }
    return obs
