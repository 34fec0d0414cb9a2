"""Warm-up probe packets and the 1.10.5 defect signature (offline)."""

import itertools
import struct
import zlib

import pytest

from harness.base.settings import load_settings
from harness.cluster.warmup import (
    SENTINEL_CMD,
    WarmupError,
    WarmupStats,
    bin_packet,
    died_of_defect,
    probe_packet,
    sentinel_packet,
    sentinel_pids,
    warm_up,
)

# excerpt of a real 1.10.5 node's stderr, killed by its first BIN packet
DIED = """\
Nov 26 11:43:03 [31920] INFO:mi_datagram:datagram_process: a new child 0/31920
Nov 26 11:43:03 [31921] ERROR:core:bin_receive_loop: recvfrom: [22] Invalid argument
Nov 26 11:43:03 [31917] INFO:core:handle_sigs: child process 31921 exited normally, status=255
Nov 26 11:43:03 [31917] INFO:core:handle_sigs: terminating due to SIGCHLD
Nov 26 11:43:03 [31917] INFO:core:cleanup: cleanup
"""
# and of one that survived: the sentinel answered by receiver 31933
SURVIVED = """\
Nov 26 11:43:03 [31932] INFO:mi_datagram:datagram_process: a new child 0/31932
Nov 26 11:43:03 [31933] ERROR:dialog:receive_binary_packet: Invalid dialog binary packet command: 424242
Nov 26 11:43:03 [31933] ERROR:dialog:receive_binary_packet: Failed to process a binary packet!
"""


def test_packet_layout_and_checksum():
    pkt = bin_packet("harness-warmup", 1)
    assert pkt[:4] == b"P4CK"
    body = pkt[8:]
    assert struct.unpack("<I", pkt[4:8])[0] == ~zlib.crc32(body) & 0xFFFFFFFF
    assert body == struct.pack("<i", 14) + b"harness-warmup" + struct.pack("<i", 1)
    assert probe_packet() == pkt
    assert len(pkt) >= 18  # receivers drop shorter datagrams


def test_sentinel_targets_dialog_with_unknown_command():
    pkt = sentinel_packet()
    assert pkt[12:18] == b"dialog"
    assert struct.unpack("<i", pkt[18:22])[0] == SENTINEL_CMD


def test_defect_signature():
    assert died_of_defect(DIED)
    assert not died_of_defect(SURVIVED)
    assert not died_of_defect("INFO:core:handle_sigs: terminating due to SIGCHLD\n")
    assert sentinel_pids(SURVIVED) == {31933}
    assert sentinel_pids(DIED) == set()


def test_a_node_without_listed_receivers_is_not_passed_unprobed():
    """MI answering before the BIN receivers are forked must not read as 'survived'."""
    class Node:
        name = "backup"

        def addresses(self):
            from harness.cluster.interfaces import NodeAddresses
            return NodeAddresses("backup", "10.1.2.11", 5062, 8080, "10.1.2.100", 5060)

    sent = []
    with pytest.raises(WarmupError, match="backup: MI lists no BIN receiver to probe"):
        warm_up(Node(), lambda packet, addr: sent.append(addr), lambda: [],
                load_settings(use_env=False), WarmupStats())
    assert sent == []


class HungNode:
    """A node whose first receiver dies of the defect on the probe while its main process
    hangs in shutdown (still 'running'); its second start survives the probe."""

    name = "backup"

    def __init__(self):
        self.start_no, self.sent, self.killed = 1, False, 0

    def addresses(self):
        from harness.cluster.interfaces import NodeAddresses
        return NodeAddresses("backup", "10.1.2.11", 5062, 8080, "10.1.2.100", 5060)

    def pids(self):
        return [31921] if self.start_no == 1 else [31950]

    def bin_receiver_activity(self, pid):
        if not self.sent:
            return (10, True)
        return None if self.start_no == 1 else (11, True)

    def is_running(self):
        return True  # the main process never exits by itself here

    def current_logs(self):
        return DIED if self.start_no == 1 and self.sent else ""

    def death_report(self):
        return None

    def kill(self):
        self.killed += 1

    def start(self):
        self.start_no, self.sent = self.start_no + 1, False


def test_a_receiver_killed_by_the_defect_restarts_the_node_even_if_main_hangs():
    node, stats = HungNode(), WarmupStats()

    def send(packet, addr):
        assert addr == ("10.1.2.11", 5062)
        node.sent = True

    assert warm_up(node, send, node.pids, load_settings(use_env=False), stats) == 1
    assert (node.killed, node.start_no, stats.probed, stats.died) == (1, 2, 2, 1)
    assert stats.events[0].report.startswith("node backup: a BIN receiver died; last log lines:\n")
    assert "terminating due to SIGCHLD" in stats.events[0].report


def test_a_receiver_that_never_sleeps_in_recvfrom_is_probed_through_the_sentinel():
    """2.1.0's BIN receivers read a non-blocking socket: /proc never shows them asleep in
    recvfrom, so a probe cannot be seen taken that way; the sentinel's log line decides."""
    sent: list[bytes] = []

    class Node:
        name = "primary"
        logs = ""

        def addresses(self):
            class A:
                bin_addr = ("10.0.0.2", 5062)
            return A()

        def bin_receiver_activity(self, pid):
            return (7, False)  # running, not in a blocking recvfrom

        def current_logs(self):
            return self.logs

        def is_running(self):
            return True

    node = Node()

    def send(packet, addr):
        sent.append(packet)
        if packet == sentinel_packet():
            node.logs += SURVIVED.replace("31933", "41")

    stats = WarmupStats()
    assert warm_up(node, send, lambda: [41], load_settings(use_env=False), stats) == 0
    assert sentinel_packet() in sent


def test_a_receiver_left_at_pid_0_restarts_the_node_until_mi_gives_it_one():
    """2.1.0-2.1.1 may zero a started receiver's pid (internal_fork): the warm-up starts
    the node afresh, counts it among its restarts (not as a defect death), and gives up
    after warmup.max_restarts with that error."""
    from harness.cluster.interfaces import ZeroedPid

    settings = load_settings(use_env=False)
    node, stats = HungNode(), WarmupStats()
    zeroed = [2]  # the first two starts draw the race

    def pids():
        if zeroed[0]:
            zeroed[0] -= 1
            raise ZeroedPid("backup: MI ps lists [(0, 'BIN receiver')]")
        return [31950]

    switches = itertools.count(10)  # the receiver is fine once MI names it: it takes the probe
    node.bin_receiver_activity = lambda pid: (next(switches), True)  # type: ignore[method-assign]
    node.start_no = 2
    sent: list[tuple[str, int]] = []
    assert warm_up(node, lambda packet, addr: sent.append(addr), pids, settings, stats) == 2
    assert (node.killed, node.start_no, stats.died) == (2, 4, 0)
    zeroed[0] = settings.warmup.max_restarts + 1
    with pytest.raises(ZeroedPid):
        warm_up(node, lambda packet, addr: None, pids, settings, stats)
