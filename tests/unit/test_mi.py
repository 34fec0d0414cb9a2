"""MI reply parsing against replies captured from a real OpenSIPS 1.10.5.

The literals below are verbatim mi_datagram replies (default tab indent), captured
with the local backend: two confirmed calls through a primary (10.157.0.11, VIP
10.157.0.100) from a SIPp caller (.201) to a SIPp callee (.202).
"""

import socket
import threading

import pytest

from harness.instruments.mi import MIClient, MITimeout
from harness.instruments.mi_replies import (
    MIError,
    format_request,
    parse_dialogs,
    parse_ps,
    parse_reply,
    parse_statistics,
)

# dlg_list (no arguments)
ALL = (
    '200 OK\n'
    'dialog::  hash=1580:1296918523\n'
    '\tstate:: 4\n'
    '\tuser_flags:: 8\n'
    '\ttimestart:: 1795693504\n'
    '\ttimeout:: 1795700704\n'
    '\tcallid:: cap-1@harness\n'
    '\tfrom_uri:: sip:alice@10.157.0.201:5060\n'
    '\tto_uri:: sip:bob@10.157.0.202:5060\n'
    '\tcaller_tag:: 8198Tag001\n'
    '\tcaller_contact:: sip:alice@10.157.0.201:5060\n'
    '\tcallee_cseq:: 0\n'
    '\tcaller_route_set:: \n'
    '\tcaller_bind_addr:: udp:10.157.0.100:5060\n'
    '\tcallee_tag:: 8197Uas1\n'
    '\tcallee_contact:: sip:bob@10.157.0.202:5060\n'
    '\tcaller_cseq:: 1\n'
    '\tcallee_route_set:: \n'
    '\tcallee_bind_addr:: udp:10.157.0.100:5060\n'
    'dialog::  hash=3877:1861475475\n'
    '\tstate:: 4\n'
    '\tuser_flags:: 8\n'
    '\ttimestart:: 1795693504\n'
    '\ttimeout:: 1795700704\n'
    '\tcallid:: cap-2@harness\n'
    '\tfrom_uri:: sip:alice@10.157.0.201:5060\n'
    '\tto_uri:: sip:bob@10.157.0.202:5060\n'
    '\tcaller_tag:: 8198Tag002\n'
    '\tcaller_contact:: sip:alice@10.157.0.201:5060\n'
    '\tcallee_cseq:: 0\n'
    '\tcaller_route_set:: \n'
    '\tcaller_bind_addr:: udp:10.157.0.100:5060\n'
    '\tcallee_tag:: 8197Uas2\n'
    '\tcallee_contact:: sip:bob@10.157.0.202:5060\n'
    '\tcaller_cseq:: 1\n'
    '\tcallee_route_set:: \n'
    '\tcallee_bind_addr:: udp:10.157.0.100:5060\n'
)

# dlg_list_ctx cap-2@harness
ONE = (
    '200 OK\n'
    'dialog::  hash=3877:1861475475\n'
    '\tstate:: 4\n'
    '\tuser_flags:: 8\n'
    '\ttimestart:: 1795693504\n'
    '\ttimeout:: 1795700704\n'
    '\tcallid:: cap-2@harness\n'
    '\tfrom_uri:: sip:alice@10.157.0.201:5060\n'
    '\tto_uri:: sip:bob@10.157.0.202:5060\n'
    '\tcaller_tag:: 8198Tag002\n'
    '\tcaller_contact:: sip:alice@10.157.0.201:5060\n'
    '\tcallee_cseq:: 0\n'
    '\tcaller_route_set:: \n'
    '\tcaller_bind_addr:: udp:10.157.0.100:5060\n'
    '\tcallee_tag:: 8197Uas2\n'
    '\tcallee_contact:: sip:bob@10.157.0.202:5060\n'
    '\tcaller_cseq:: 1\n'
    '\tcallee_route_set:: \n'
    '\tcallee_bind_addr:: udp:10.157.0.100:5060\n'
    '\tcontext:: \n'
    '\t\tvalue:: acct = a|b#c\\d\n'
    '\t\tprofile:: caller = alice\n'
    '\t\tprofile:: inbound = \n'
)

# dlg_list_ctx 0 1 (index 0, count 1)
PAGED = (
    '200 OK\n'
    'dlg_counter:: 2\n'
    'dialog::  hash=1580:1296918523\n'
    '\tstate:: 4\n'
    '\tuser_flags:: 8\n'
    '\ttimestart:: 1795693504\n'
    '\ttimeout:: 1795700704\n'
    '\tcallid:: cap-1@harness\n'
    '\tfrom_uri:: sip:alice@10.157.0.201:5060\n'
    '\tto_uri:: sip:bob@10.157.0.202:5060\n'
    '\tcaller_tag:: 8198Tag001\n'
    '\tcaller_contact:: sip:alice@10.157.0.201:5060\n'
    '\tcallee_cseq:: 0\n'
    '\tcaller_route_set:: \n'
    '\tcaller_bind_addr:: udp:10.157.0.100:5060\n'
    '\tcallee_tag:: 8197Uas1\n'
    '\tcallee_contact:: sip:bob@10.157.0.202:5060\n'
    '\tcaller_cseq:: 1\n'
    '\tcallee_route_set:: \n'
    '\tcallee_bind_addr:: udp:10.157.0.100:5060\n'
    '\tcontext:: \n'
    '\t\tvalue:: acct = a|b#c\\d\n'
    '\t\tprofile:: caller = alice\n'
    '\t\tprofile:: inbound = \n'
)

# ps
PS = (
    '200 OK\n'
    'Process::  ID=0 PID=8114 Type=attendant\n'
    'Process::  ID=1 PID=8117 Type=MI Datagram\n'
    'Process::  ID=2 PID=8118 Type=BIN receiver udp:10.157.0.11:5062 \n'
    'Process::  ID=3 PID=8119 Type=SIP receiver udp:10.157.0.100:5060 \n'
    'Process::  ID=4 PID=8120 Type=SIP receiver udp:10.157.0.100:5060 \n'
    'Process::  ID=5 PID=8121 Type=time_keeper\n'
    'Process::  ID=6 PID=8122 Type=timer\n'
)

# get_statistics dialog:
STATS = (
    '200 OK\n'
    'dialog:active_dialogs = 2\n'
    'dialog:early_dialogs = 0\n'
    'dialog:processed_dialogs = 2\n'
    'dialog:expired_dialogs = 0\n'
    'dialog:failed_dialogs = 0\n'
    'dialog:create_sent = 2\n'
    'dialog:update_sent = 2\n'
    'dialog:delete_sent = 0\n'
    'dialog:create_recv = 0\n'
    'dialog:update_recv = 0\n'
    'dialog:delete_recv = 0\n'
)

# dlg_list_ctx nosuch-callid
ERR = (
    '404 No such dialog\n'
)


def test_dlg_list_two_dialogs_typed():
    dialogs = parse_dialogs(parse_reply(ALL))
    assert [d.callid for d in dialogs] == ["cap-1@harness", "cap-2@harness"]
    d = dialogs[0]
    assert (d.h_entry, d.h_id) == (1580, 1296918523)
    assert d.state == 4 and d.user_flags == 8
    assert d.timestart == 1795693504 and d.timeout == 1795700704
    assert d.from_uri == "sip:alice@10.157.0.201:5060"
    assert d.to_uri == "sip:bob@10.157.0.202:5060"
    assert d.key == ("cap-1@harness", "8198Tag001", "8197Uas1")
    # 1.10 labels the caller leg's cseq "callee_cseq"; it stays with the caller leg
    assert d.caller.cseq == "0" and d.callee.cseq == "1"
    assert d.caller.contact == "sip:alice@10.157.0.201:5060"
    assert d.callee.contact == "sip:bob@10.157.0.202:5060"
    assert d.caller.route_set == "" and d.callee.route_set == ""
    assert d.caller.bind_addr == d.callee.bind_addr == "udp:10.157.0.100:5060"
    assert d.vars is None and d.profiles is None  # plain dlg_list has no context


def test_dlg_list_ctx_vars_and_profiles():
    (d,) = parse_dialogs(parse_reply(ONE))
    assert d.callid == "cap-2@harness" and d.to_tag == "8197Uas2"
    assert d.vars == {"acct": "a|b#c\\d"}
    assert d.profiles == (("caller", "alice"), ("inbound", ""))


def test_paged_reply_has_counter_and_one_dialog():
    reply = parse_reply(PAGED)
    counter = [n for n in reply.nodes if n.name == "dlg_counter"]
    assert counter and counter[0].value == "2"
    assert [d.callid for d in parse_dialogs(reply)] == ["cap-1@harness"]


def test_statistics_as_ints():
    stats = parse_statistics(parse_reply(STATS))
    assert stats["active_dialogs"] == 2 and stats["create_sent"] == 2
    assert stats["update_sent"] == 2 and stats["delete_recv"] == 0
    assert len(stats) == 11


def test_ps_types_keep_spaces():
    procs = parse_ps(parse_reply(PS))
    assert [p.type for p in procs if p.type.startswith("BIN")] == [
        "BIN receiver udp:10.157.0.11:5062"]
    assert procs[0].pid == 8114 and procs[0].type == "attendant"


def test_error_reply():
    reply = parse_reply(ERR)
    assert (reply.code, reply.reason, reply.nodes) == (404, "No such dialog", [])


def test_garbage_reply_is_a_clear_error():
    with pytest.raises(MIError, match="unparsable"):
        parse_reply(b"\x00garbage")


def test_request_format():
    assert format_request("get_statistics", "dialog:") == b":get_statistics:\ndialog:\n\n"
    assert format_request("dlg_list") == b":dlg_list:\n\n"
    with pytest.raises(ValueError):
        format_request("dlg_list", "a\nb")


class FakeMI:
    """A UDP server on loopback answering canned replies, like mi_datagram."""

    def __init__(self, replies):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.addr = self.sock.getsockname()
        self.requests = []
        self.replies = replies
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            self.requests.append(data)
            reply = self.replies(data)
            if reply is not None:
                self.sock.sendto(reply.encode(), peer)

    def close(self):
        self.sock.close()


def test_client_pages_through_dlg_list():
    pages = {b":dlg_list_ctx:\n0\n1\n\n": PAGED,
             b":dlg_list_ctx:\n1\n1\n\n": PAGED.replace("cap-1@harness", "cap-9@harness")
             .replace("1580:1296918523", "3877:1861475475")}
    fake = FakeMI(lambda req: pages.get(req))
    try:
        dialogs = MIClient(fake.addr, timeout=2).dlg_list(page_size=1)
    finally:
        fake.close()
    assert [d.callid for d in dialogs] == ["cap-1@harness", "cap-9@harness"]
    assert len(fake.requests) == 2


def test_dlg_count_is_one_page_of_one():
    """1.10's reply to a page carries dlg_counter: the count at any size, one request."""
    fake = FakeMI(lambda req: PAGED.replace("dlg_counter:: 2", "dlg_counter:: 10000")
                  if req == b":dlg_list:\n0\n1\n\n" else None)
    try:
        assert MIClient(fake.addr, timeout=2).dlg_count() == 10000
    finally:
        fake.close()
    assert fake.requests == [b":dlg_list:\n0\n1\n\n"]


def test_client_timeout_and_dead_node():
    fake = FakeMI(lambda req: None)
    try:
        with pytest.raises(MITimeout, match="no reply within"):
            MIClient(fake.addr, timeout=0.2).get_statistics()

        class Dead(RuntimeError):
            pass

        def alive():
            raise Dead("node x died")

        with pytest.raises(Dead):
            MIClient(fake.addr, timeout=5, alive=alive).get_statistics()
    finally:
        fake.close()


def test_client_non_2xx_raises_and_dialog_lookup_404_is_none():
    fake = FakeMI(lambda req: ERR)
    try:
        client = MIClient(fake.addr, timeout=2)
        with pytest.raises(MIError, match="404 No such dialog") as exc:
            client.command("dlg_list")
        assert exc.value.code == 404
        assert client.dialog("nosuch-callid") is None
    finally:
        fake.close()


# 1.11.11's replies, as a real 1.11.11 node printed them (local build of upstream's tag)
DLG_LIST_1_11 = (
    "200 OK\n"
    "dialog::  hash=2984:749185545 dialog_id=12816931596809\n"
    "\tstate:: 4\n\tuser_flags:: 8\n\ttimestart:: 1796050267\n\tdatestart:: 2026-11-30 14:51:07\n"
    "\ttimeout:: 1796057467\n\tdateout:: 2026-11-30 16:51:07\n"
    "\tcallid:: 1-4424@10.160.146.200\n\tfrom_uri:: sip:caller@10.160.146.200:5070\n"
    "\tto_uri:: sip:service@10.160.146.201:5080\n\tcaller_tag:: 4424SIPpTag001\n"
    "\tcaller_contact:: sip:caller@10.160.146.200:5070\n\tcallee_cseq:: 0\n"
    "\tcaller_route_set:: \n\tcaller_bind_addr:: udp:10.160.146.100:5060\n"
    "\tCALLEES:: \n\t\tcallee:: \n\t\t\tcallee_tag:: 4422SIPpTag011\n"
    "\t\t\tcallee_contact:: sip:callee@10.160.146.201:5080;transport=UDP\n"
    "\t\t\tcaller_cseq:: 1\n\t\t\tcallee_route_set:: \n"
    "\t\t\tcallee_bind_addr:: udp:10.160.146.100:5060\n"
    "\tcontext:: \n\t\tvalues:: \n\t\t\tacct:: a|b#c\\d\n"
    "\t\tprofiles:: \n\t\t\tcaller:: caller\n\t\t\tinbound:: \n\n"
)


def test_dlg_list_of_1_11_groups_callees_and_context_and_parses_like_1_10() -> None:
    (d,) = parse_dialogs(parse_reply(DLG_LIST_1_11))
    assert (d.h_entry, d.h_id, d.state, d.user_flags) == (2984, 749185545, 4, 8)
    assert (d.timestart, d.timeout, d.callid) == (1796050267, 1796057467, "1-4424@10.160.146.200")
    assert d.caller is not None and (d.caller.tag, d.caller.cseq) == ("4424SIPpTag001", "0")
    assert d.caller.bind_addr == "udp:10.160.146.100:5060"
    assert [(c.tag, c.contact, c.cseq) for c in d.callees] == [
        ("4422SIPpTag011", "sip:callee@10.160.146.201:5080;transport=UDP", "1")]
    assert d.vars == {"acct": "a|b#c\\d"}
    assert d.profiles == (("caller", "caller"), ("inbound", ""))


def test_statistics_of_1_11_are_name_value_nodes() -> None:
    reply = parse_reply("200 OK\ndialog:active_dialogs:: 1\ndialog:delete_sent:: 0\n\n")
    assert parse_statistics(reply) == {"active_dialogs": 1, "delete_sent": 0}


def test_uptime_is_the_whole_seconds_the_node_printed() -> None:
    """A real 1.11.0 node's reply (1.10 and 2.1 print the same three lines)."""
    reply = ("200 OK\nNow:: Sun Dec  6 18:23:03 2026\nUp since:: Sun Dec  6 18:23:02 2026\n"
             "Up time:: 1 [sec]\n")
    fake = FakeMI(lambda req: reply if req == b":uptime:\n\n" else None)
    try:
        assert MIClient(fake.addr, timeout=2).uptime() == 1
    finally:
        fake.close()
    bad = FakeMI(lambda req: reply.replace("1 [sec]", "soon"))
    try:
        with pytest.raises(MIError, match="uptime: cannot read 'soon'"):
            MIClient(bad.addr, timeout=2).uptime()
    finally:
        bad.close()
