"""The replication bench's offline parts: the rate search, /proc parsing, the load, the verdicts.

The bench's figures are measurements and are printed, not asserted; what is tested
here is how it steps, how it reads the kernel and OpenSIPS, and how it judges a step.
"""

from __future__ import annotations

import pytest

from harness.cli import main
from harness.experiments.bench.flood import dialog_packets, interleave
from harness.experiments.bench.kernel import (
    KernelCounters,
    KernelReadError,
    counters,
    parse_proc_net_udp,
    parse_snmp_udp,
    read_counters,
)
from harness.experiments.bench.probe import Step, failure_lines, recv_total
from harness.experiments.bench.report import Config, Memory, Report, rcvbuf_from_log
from harness.experiments.bench.stepping import step_rates
from harness.instruments.mi_replies import parse_reply, parse_statistics
from pybin.dialog import Command, DialogCreated, DialogDeleted, DialogUpdated, decode

# /proc/net/snmp of this machine (the UdpLite lines must not be mistaken for Udp)
SNMP = (
    "Ip: Forwarding DefaultTTL InReceives\n"
    "Ip: 1 64 1601006\n"
    "Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n"
    "Udp: 1601006 143 36812 1670328 36812 0 0 0 0\n"
    "UdpLite: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\n"
    "UdpLite: 0 0 0 0 0 0 0 0 0\n"
)
# /proc/net/udp: a BIN socket on 10.160.3.11:5062 with 2304 bytes queued and 103 drops
UDP = (
    "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops            \n"
    " 1339: 0100007F:8942 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1038739 2 00000000ee6ec57c 0       \n"
    " 2211: 0B03A00A:13C6 00000000:0000 07 00000000:00000900 00:00000000 00000000     0        0 1038740 2 00000000ee6ec57d 103     \n"
)


def test_snmp_udp_counters_by_name() -> None:
    udp = parse_snmp_udp(SNMP)
    assert (udp["InDatagrams"], udp["InErrors"], udp["RcvbufErrors"], udp["MemErrors"]) == (1601006, 36812, 36812, 0)


def test_snmp_without_udp_is_an_error() -> None:
    with pytest.raises(KernelReadError, match="no Udp"):
        parse_snmp_udp("Ip: Forwarding\nIp: 1\n")


def test_proc_net_udp_rows() -> None:
    rows = parse_proc_net_udp(UDP)
    assert [(r.ip, r.port, r.rx_queue, r.drops) for r in rows] == [
        ("127.0.0.1", 35138, 0, 0), ("10.160.3.11", 5062, 2304, 103)]


def test_counters_pick_the_bin_port_and_subtract() -> None:
    now = counters(SNMP, UDP, 5062)
    assert now == KernelCounters(36812, 36812, 103, 2304)
    before = KernelCounters(36800, 36790, 3, 0)
    assert now.minus(before) == KernelCounters(12, 22, 100, 2304)
    assert counters(SNMP, UDP, 9999).socket_drops is None


def test_counters_are_read_through_the_node_protocol() -> None:
    """No backend check: whatever node it is answers read_proc_net for its namespace."""
    class FakeNode:
        def read_proc_net(self, name: str) -> str:
            return {"snmp": SNMP, "udp": UDP}[name]
    assert read_counters(FakeNode(), 5062) == KernelCounters(36812, 36812, 103, 2304)  # type: ignore[arg-type]


def _fake_node(capacity: float) -> tuple[list[float], object]:
    asked: list[float] = []

    def probe(rate: float) -> tuple[bool, str]:
        asked.append(rate)
        return rate <= capacity, f"at {rate:g}"

    return asked, probe


def test_doubles_until_a_loss_then_bisects() -> None:
    asked, probe = _fake_node(48_000)
    search = step_rates(probe, start=2000, ceiling=64_000, refine=2)  # type: ignore[arg-type]
    assert asked == [2000, 4000, 8000, 16000, 32000, 64000, 48000, 56000]
    assert (search.capacity, search.first_loss) == (48000, 56000)
    assert search.steps[-1] == (56000, False, "at 56000")


def test_clean_ceiling_ends_the_search() -> None:
    asked, probe = _fake_node(10**9)
    search = step_rates(probe, start=1000, ceiling=5000)  # type: ignore[arg-type]
    assert asked == [1000, 2000, 4000, 5000]
    assert (search.capacity, search.first_loss) == (5000, None)


def test_a_lossy_start_halves() -> None:
    asked, probe = _fake_node(600)
    search = step_rates(probe, start=2000, ceiling=8000, refine=3)  # type: ignore[arg-type]
    assert asked == [2000, 1000, 500, 750]
    assert (search.capacity, search.first_loss) == (500, 750)


def test_stop_ends_at_once() -> None:
    asked, probe = _fake_node(10**9)
    search = step_rates(probe, start=1000, ceiling=64000, stop=lambda r: r == "at 4000")  # type: ignore[arg-type]
    assert asked == [1000, 2000, 4000]
    assert search.capacity == 4000


def test_bad_bounds() -> None:
    with pytest.raises(ValueError, match="start"):
        step_rates(lambda r: (True, r), start=0, ceiling=10)


def test_interleave_lags_updated_and_deleted() -> None:
    assert list(interleave(3, lag=1)) == [
        (Command.CREATED, 0), (Command.CREATED, 1), (Command.UPDATED, 0),
        (Command.CREATED, 2), (Command.UPDATED, 1), (Command.DELETED, 0),
        (Command.UPDATED, 2), (Command.DELETED, 1), (Command.DELETED, 2)]


def test_dialog_packets_decode_as_sent() -> None:
    packets = dialog_packets("t", 2, "udp:10.0.0.100:5060", now=1_800_000_000, lag=1)
    msgs = [decode(p) for p in packets]
    assert [type(m) for m in msgs] == [DialogCreated, DialogCreated, DialogUpdated,
                                       DialogUpdated, DialogDeleted, DialogDeleted]
    assert (msgs[0].call_id, msgs[0].caller_sock, msgs[0].timeout, msgs[0].flags) == (
        b"bench-t-0@harness", b"udp:10.0.0.100:5060", 1_800_003_600, 16)  # ISINIT, no BYEONTIMEOUT
    only = dialog_packets("t", 3, "udp:10.0.0.100:5060", commands=(Command.DELETED,))
    assert [decode(p).call_id for p in only] == [b"bench-t-0@harness", b"bench-t-1@harness",
                                                 b"bench-t-2@harness"]


# get_statistics shmem: as mi_datagram writes it
SHMEM = ("200 OK\nshmem:total_size = 67108864\nshmem:used_size = 4306024\n"
         "shmem:real_used_size = 4512000\nshmem:max_used_size = 4600000\n"
         "shmem:free_size = 62595384\nshmem:fragments = 12\n\n")


def test_shmem_statistics_and_bytes_per_dialog() -> None:
    stats = parse_statistics(parse_reply(SHMEM))
    assert (stats["used_size"], stats["free_size"], stats["fragments"]) == (4306024, 62595384, 12)
    mem = Memory(500, 2779640, stats["used_size"], stats["free_size"], 0.6)
    assert round(mem.per_dialog) == 3053
    assert mem.as_dict()["bytes_per_dialog"] == 3053


def test_recv_total_and_failure_lines() -> None:
    assert recv_total({"create_recv": 3, "update_recv": 4, "delete_recv": 5, "create_sent": 9}) == 12
    log = ("Mar  1 09:00:01 [7] INFO:core:main: using rcv buffer of 512 kb\n"
           "Mar  1 09:00:02 [8] ERROR:dialog:dlg_replicated_create: Failed to create replicated dialog!\n"
           "Mar 11 09:00:02 [8] WARNING:core:fm_malloc: not enough free shm memory (8 bytes left)\n"
           "Mar 11 09:00:03 [8] INFO:core:x: an ERROR: in the text is no error\n")
    assert failure_lines(log) == log.splitlines()[1:3]
    assert rcvbuf_from_log(log) == 512 * 1024
    assert rcvbuf_from_log("nothing") is None


def _step(**kw: object) -> Step:
    base: dict[str, object] = dict(asked=4000, offered=4001, sent=8000, received=8000, lost=0, left=0,
                                   kernel=KernelCounters(0, 0, 0, 0), alive=True, load=0.5)
    base.update(kw)
    return Step(**base)  # type: ignore[arg-type]


def test_a_step_is_clean_only_when_every_witness_agrees() -> None:
    assert _step().clean
    assert not _step(received=7999, lost=1).clean
    assert not _step(left=3).clean
    assert not _step(kernel=KernelCounters(0, 5, 5, 0)).clean
    assert not _step(alive=False).clean


def test_table_names_the_failure() -> None:
    c = Config("local", 1, "pybin", steps=[_step(asked=64000, lost=103, received=7897,
                                                  errors=["ERROR: out of shm"])],
               capacity=48000, first_loss=56000, rcvbuf=524288)
    text = Report([c], 0.5, 0.7).table()
    assert "48,000" in text and "56,000" in text and "512" in text
    assert "64,000/s: ERROR: out of shm" in text
    assert text.endswith("load average 0.5 at start, 0.7 at end")


@pytest.mark.parametrize("argv, message", [
    (["--backends", "foo"], "unknown backend 'foo' (docker or local)"),
    (["--bin-children", "1,x"], "--bin-children must be comma-separated integers"),
    (["--start", "10", "--ceiling", "5"], "--ceiling at least --start"),
])
def test_bad_bench_arguments_are_one_line(argv: list[str], message: str,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "replication", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
