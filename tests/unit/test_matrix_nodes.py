"""Pure helpers of the behaviour checks (harness.experiments.matrix.evidence and the checks), offline."""

from pathlib import Path

import dpkt

from harness.experiments.matrix.checks_backup import replica_differences
from harness.experiments.matrix.checks_hostile import defect_verdict
from harness.experiments.matrix.evidence import (
    counted,
    flag_names,
    log_categories,
    log_category,
    log_records,
    sequences,
    short_packet,
    sip_requests_by_sender,
    wire_flags,
)
from pybin.dialog import Command, DlgFlag, make
from pybin.wire import checksum


def test_flag_names_sorted_and_unknown_bits_in_hex():
    assert flag_names(int(DlgFlag.ISINIT | DlgFlag.BYEONTIMEOUT)) == "BYEONTIMEOUT|ISINIT"
    assert flag_names(0) == "none"
    assert flag_names(int(DlgFlag.PING_CALLER) | 1 << 20) == "0x100000|PING_CALLER"


def test_wire_flags_are_distinct_sets_whether_or_not_created_was_sent():
    a = make(Command.CREATED, call_id=b"c", flags=int(DlgFlag.BYEONTIMEOUT))
    b = make(Command.UPDATED, call_id=b"c", flags=int(DlgFlag.BYEONTIMEOUT))
    p = make(Command.UPDATED, call_id=b"c", flags=int(DlgFlag.BYEONTIMEOUT | DlgFlag.ISINIT))
    d = make(Command.DELETED, call_id=b"c")
    assert wire_flags([a, b, b, d]) == wire_flags([b, d]) == ["BYEONTIMEOUT"]
    assert wire_flags([b, p]) == ["BYEONTIMEOUT", "BYEONTIMEOUT|ISINIT"]


LOG = ("=== harness: start #1 of backup at 14:55:40 ===\n"
       "Nov 30 14:55:41 [21239] ERROR:core:bin_pop_int: Receive binary packet buffer overflow"
       "Nov 30 14:55:41 [21239] ERROR:core:bin_pop_str: Receive binary packet buffer overflow"
       "Nov 30 14:55:41 [21239] ERROR:dialog:receive_binary_packet: Failed to process a binary packet!\n"
       "Nov 30 14:55:41 [21239] WARNING:core:bin_receive_loop: Invalid binary packet header! "
       "First 10 bytes: P4CX\x01\x02garbage\n"
       "Nov  1 04:05:06 [7] INFO:core:bin_receive_loop: received invalid packet: len = 17\n"
       "Nov 30 14:55:41 [21239] ERROR:dialog:receive_binary_packet: Invalid dialog binary packet command: 424242\n"
       "Nov 30 14:55:41 [21239] ERROR:dialog:receive_binary_packet: Failed to process a binary packet!\n")


def test_log_records_split_records_sharing_a_line():
    records = log_records(LOG)
    assert records[:3] == ["ERROR:core:bin_pop_int: Receive binary packet buffer overflow",
                           "ERROR:core:bin_pop_str: Receive binary packet buffer overflow",
                           "ERROR:dialog:receive_binary_packet: Failed to process a binary packet!"]
    assert len(records) == 7  # the harness's own mark is not a record


def test_log_category_hides_numbers_and_header_bytes():
    assert log_category("INFO:core:bin_receive_loop: received invalid packet: len = 17") == \
        "INFO:core:bin_receive_loop: received invalid packet: len = N"
    assert log_category("WARNING:core:x: Invalid binary packet header! First 10 bytes: P4\x00\nzz") == \
        "WARNING:core:x: Invalid binary packet header! First N bytes: …"


def test_log_categories_stop_before_the_last_sentinel():
    cats = log_categories(LOG, until="424242")
    assert "ERROR:dialog:receive_binary_packet: Invalid dialog binary packet command: N" not in cats
    assert cats == sorted(cats) and len(cats) == 5
    assert len(log_categories(LOG)) == 6  # the two "Failed to process" records are one category


def test_log_categories_leave_out_what_the_machines_load_decides():
    """2.1's late-timer warnings come and go with the load; the expiry errors stay."""
    log = ("Dec  6 20:25:01 [31] ERROR:tm:msg_send: send() for proto 1 failed\n"
           "Dec  6 20:25:01 [32] WARNING:core:handle_timer_job: timer job <dlg-timer> has a 10406 us delay in execution\n"
           "Dec  6 20:25:01 [32] WARNING:core:handle_timer_job: utimer job <tm-utimer> has a 9871 us delay in execution\n"
           "Dec  6 20:25:02 [31] WARNING:core:handle_timer_job: timer job <dlg-timer> is late\n")
    assert log_categories(log) == ["ERROR:tm:msg_send: send() for proto N failed",
                                   "WARNING:core:handle_timer_job: timer job <dlg-timer> is late"]


def test_short_packets_are_18_and_19_bytes_with_a_valid_checksum():
    for name, size in ((b"dl", 18), (b"dlg", 19)):
        data = short_packet(name)
        assert len(data) == size and data[:4] == b"P4CK"
        assert int.from_bytes(data[4:8], "little") == checksum(data[8:])
        bad = short_packet(name, good_crc=False)
        assert len(bad) == size and int.from_bytes(bad[4:8], "little") != checksum(bad[8:])


def test_defect_verdict_folds_some_and_all():
    assert defect_verdict({"dies": 4, "survives": 6}) == "dies"
    assert defect_verdict({"dies": 10}) == "dies"
    assert defect_verdict({"survives": 10}) == "survives"
    assert defect_verdict({"dies (other cause)": 1, "survives": 9}) == "dies (other cause)/survives"


def test_distributions_are_counted_lists():
    assert counted(["b", "a", "b"]) == [["a", 1], ["b", 2]]
    assert counted([]) == []
    c = make(Command.CREATED, call_id=b"c1", state=3)
    u = make(Command.UPDATED, call_id=b"c1", state=4)
    d = make(Command.DELETED, call_id=b"c1")
    grouped = {"c1": [c, u, d], "c2": [u, d]}
    assert sequences(grouped, ["c1", "c2", "c3"]) == [
        ["(none)", 1], ["created(3) updated(4) deleted", 1], ["updated(4) deleted", 1]]


def test_replica_differences_timeout_slack():
    a = {"h_id": 1, "state": 4, "timeout": 100, "vars": {}}
    assert replica_differences(a, {**a, "timeout": 102}) == []
    assert replica_differences(a, {**a, "timeout": 103, "h_id": 2}) == ["h_id", "timeout"]


def _frame(mac: bytes, src: str, dst: str, payload: bytes) -> bytes:
    udp = dpkt.udp.UDP(sport=5060, dport=5060, data=payload)
    udp.ulen = len(udp)
    ip = dpkt.ip.IP(src=bytes(map(int, src.split("."))), dst=bytes(map(int, dst.split("."))),
                    p=dpkt.ip.IP_PROTO_UDP, data=udp)
    ip.len = len(ip)
    return bytes(dpkt.ethernet.Ethernet(src=mac, dst=b"\xff" * 6, type=dpkt.ethernet.ETH_TYPE_IP, data=ip))


def test_sip_requests_told_apart_by_mac(tmp_path: Path):
    pcap = tmp_path / "c.pcap"
    p_mac, b_mac = b"\x02\0\0\0\0\x0a", b"\x02\0\0\0\0\x0b"
    with open(pcap, "wb") as f:
        w = dpkt.pcap.Writer(f)
        w.writepkt(_frame(p_mac, "10.0.0.10", "10.0.0.1", b"P4CK...."), 1.0)   # primary's own address
        w.writepkt(_frame(b_mac, "10.0.0.11", "10.0.0.1", b"200 OK"), 1.1)    # backup's own address
        w.writepkt(_frame(p_mac, "10.0.0.100", "10.0.0.200", b"BYE sip:a@x SIP/2.0\r\n"), 2.0)
        w.writepkt(_frame(p_mac, "10.0.0.100", "10.0.0.201", b"BYE sip:b@x SIP/2.0\r\n"), 2.1)
        w.writepkt(_frame(b_mac, "10.0.0.100", "10.0.0.201", b"BYE sip:b@x SIP/2.0\r\n"), 2.2)
        w.writepkt(_frame(b_mac, "10.0.0.100", "10.0.0.201", b"OPTIONS sip:b@x SIP/2.0\r\n"), 2.3)
    seen = sip_requests_by_sender(pcap, {"primary": "10.0.0.10", "backup": "10.0.0.11"},
                                  {"caller": "10.0.0.200", "callee": "10.0.0.201"}, "BYE")
    assert seen == {"primary": {"callee": 1, "caller": 1}, "backup": {"callee": 1}}
    # a capture cut inside a record reads as far as it goes
    pcap.write_bytes(pcap.read_bytes()[:-5])
    assert sip_requests_by_sender(pcap, {"primary": "10.0.0.10"}, {}, "BYE") == \
        {"primary": {"10.0.0.200": 1, "10.0.0.201": 1}}


def test_log_category_hides_pointers():
    assert log_category("ERROR:core:udp_send: sendto(sock,0x7f3ab2c1d0,12,0,0x7ffd8e9a1fd0,16): "
                        "Network is unreachable(101)") == \
        "ERROR:core:udp_send: sendto(sock,N,N,N,N,N): Network is unreachable(N)"
