"""The reference replica, rule by rule (dlg_replication.c of 1.10.5), then the real capture."""

from __future__ import annotations

from typing import Any

import pytest

from pybin import dialog
from pybin.dialog import Command, DlgFlag, DlgState, make
from pybin.pcap import CapturedDatagram
from pybin.replica import (
    Applied,
    DialogKey,
    Expired,
    Ignored,
    ListenSocket,
    Rejected,
    Replica,
    dlg_hash,
)
from pybin.wire import PacketBuilder, parse_header

VIP = "udp:10.0.0.100:5060"
NOW = 1_700_000_000
KEY = DialogKey(b"call-1@h", b"ftag", b"ttag")


def msg(command: Command = Command.CREATED, **fields: Any) -> Any:
    base: dict[str, Any] = dict(
        call_id=KEY.call_id,
        from_tag=KEY.from_tag,
        to_tag=KEY.to_tag,
        from_uri=b"sip:alice@a",
        to_uri=b"sip:bob@b",
        h_id=7,
        start_ts=NOW - 5,
        state=DlgState.CONFIRMED_NA,
        caller_sock=VIP.encode(),
        callee_sock=VIP.encode(),
        caller_cseq=b"1",
        callee_cseq=b"0",
        caller_route_set=b"<sip:rr1>",
        callee_route_set=b"<sip:rr2>",
        caller_contact=b"sip:alice@1.1.1.1",
        callee_contact=b"sip:bob@2.2.2.2",
        callee_from_uri=b"",
        callee_to_uri=b"",
        vars=((b"acct", b"a|b#c\\d"),),
        profiles=((b"caller", b"alice"), (b"inbound", b"")),
        user_flags=3,
        flags=int(DlgFlag.ISINIT),
        timeout=NOW + 3600,
        caller_last_gen_cseq=0,
        callee_last_gen_cseq=0,
    )
    if command == Command.DELETED:
        base = {k: base[k] for k in ("call_id", "from_tag", "to_tag")}
    base.update(fields)
    return make(command, **base)


def stats(replica: Replica) -> dict[str, int]:
    return replica.stats.as_dict()


def counts(create: int = 0, update: int = 0, delete: int = 0, active: int = 0, processed: int = 0, expired: int = 0) -> dict[str, int]:
    return {
        "create_recv": create,
        "update_recv": update,
        "delete_recv": delete,
        "active_dialogs": active,
        "processed_dialogs": processed,
        "expired_dialogs": expired,
    }


@pytest.fixture
def replica() -> Replica:
    return Replica([VIP])


# -- created -------------------------------------------------------------------------------


def test_created_builds_the_dialog_with_every_field(replica: Replica) -> None:
    assert replica.apply(msg(), now=NOW) == Applied(Command.CREATED, KEY, created=True)
    dlg = replica.get(*KEY)
    assert dlg is not None
    assert (dlg.state, dlg.h_id, dlg.start_ts) == (DlgState.CONFIRMED_NA, 7, NOW - 5)
    assert dlg.h_entry == dlg_hash(KEY.call_id) < 4096
    assert (dlg.caller_route_set, dlg.callee_contact) == (b"<sip:rr1>", b"sip:bob@2.2.2.2")
    assert dlg.vars == [(b"acct", b"a|b#c\\d")]
    # profile links are prepended in 1.10: the wire order comes out reversed
    assert dlg.profiles == [(b"inbound", b""), (b"caller", b"alice")]
    # reading vars/profiles marks the dialog VP_CHANGED, after the wire's flags were taken
    assert dlg.flags == DlgFlag.ISINIT | DlgFlag.VP_CHANGED
    assert (dlg.expires_at, dlg.lifetime) == (NOW + 3600, 0)
    assert stats(replica) == counts(create=1, active=1, processed=1)


def test_duplicate_created_is_ignored_but_counted(replica: Replica) -> None:
    replica.apply(msg(), now=NOW)
    outcome = replica.apply(msg(state=DlgState.CONFIRMED, caller_cseq=b"9"), now=NOW)
    assert isinstance(outcome, Ignored) and outcome.key == KEY
    # tags in the other order are the same dialog (match_dialog, upstream)
    swapped = msg(from_tag=KEY.to_tag, to_tag=KEY.from_tag)
    assert isinstance(replica.apply(swapped, now=NOW), Ignored)
    (dlg,) = replica
    assert (dlg.state, dlg.caller_cseq) == (DlgState.CONFIRMED_NA, b"1")
    # processed_dialogs is bumped on entry to dlg_replicated_create, duplicates included
    assert stats(replica) == counts(create=3, active=1, processed=3)


def test_same_call_id_with_other_tags_is_another_dialog(replica: Replica) -> None:
    replica.apply(msg(), now=NOW)
    assert replica.apply(msg(to_tag=b"other"), now=NOW).created  # type: ignore[union-attr]
    assert len(replica) == 2


@pytest.mark.parametrize(
    ("caller", "callee", "reason"),
    [
        (b"udp:10.0.0.99:5060", VIP.encode(), "caller socket udp:10.0.0.99:5060 is not one of"),
        (VIP.encode(), b"", "callee socket (empty) is not one of"),
        (VIP.encode(), b"udp:10.0.0.100:5061", "callee socket"),
        (b"tcp:10.0.0.100:5060", VIP.encode(), "caller socket"),
        (b"nonsense", VIP.encode(), "caller socket"),
    ],
)
def test_created_with_a_socket_we_do_not_listen_on_is_rejected(
    replica: Replica, caller: bytes, callee: bytes, reason: str
) -> None:
    outcome = replica.apply(msg(caller_sock=caller, callee_sock=callee), now=NOW)
    assert isinstance(outcome, Rejected) and reason in outcome.reason
    assert len(replica) == 0
    assert stats(replica) == counts(create=1, processed=1)


@pytest.mark.parametrize(
    ("listen", "wire"),
    [
        ("udp:10.0.0.100:5060", "UDP:10.0.0.100:5060"),
        ("udp:10.0.0.100:5060", "10.0.0.100:5060"),  # no proto: UDP
        ("udp:10.0.0.100:5060", "udp:10.0.0.100"),  # no port: any port
        ("udp:[::1]:5060", "udp:[0:0::1]:5060"),  # compared as addresses
        ("udp:sip.example.com:5060", "udp:SIP.example.com:5060"),  # names: any case
    ],
)
def test_socket_strings_match_like_grep_sock_info(listen: str, wire: str) -> None:
    replica = Replica([listen])
    sock = wire.encode()
    assert isinstance(replica.apply(msg(caller_sock=sock, callee_sock=sock), now=NOW), Applied)


def test_listen_sockets_must_parse() -> None:
    with pytest.raises(ValueError, match="not a listen socket"):
        Replica(["udp:[::1"])
    assert ListenSocket.parse(b"udp:10.0.0.1:5060") == ListenSocket("udp", "10.0.0.1", 5060)
    assert ListenSocket.parse(b"") is None


# -- updated -------------------------------------------------------------------------------


def test_updated_for_an_unknown_dialog_acts_as_created(replica: Replica) -> None:
    outcome = replica.apply(msg(Command.UPDATED, state=DlgState.CONFIRMED), now=NOW)
    assert outcome == Applied(Command.UPDATED, KEY, created=True)
    assert replica.get(*KEY).state == DlgState.CONFIRMED  # type: ignore[union-attr]
    assert stats(replica) == counts(update=1, active=1, processed=1)


def test_updated_for_an_unknown_dialog_still_checks_sockets(replica: Replica) -> None:
    outcome = replica.apply(msg(Command.UPDATED, callee_sock=b""), now=NOW)
    assert isinstance(outcome, Rejected) and "callee socket" in outcome.reason
    assert stats(replica) == counts(update=1, processed=1)


def test_updated_takes_state_cseqs_vars_profiles_flags_timeout_only(replica: Replica) -> None:
    replica.apply(msg(), now=NOW)
    update = msg(
        Command.UPDATED,
        from_uri=b"sip:changed@x",
        h_id=99,
        start_ts=1,
        state=DlgState.CONFIRMED,
        caller_sock=b"udp:192.0.2.1:5060",  # not ours: an update does not look
        callee_sock=b"",
        caller_cseq=b"2",
        callee_cseq=b"5",
        caller_route_set=b"<sip:new>",
        callee_route_set=b"",
        caller_contact=b"sip:new@n",
        callee_contact=b"",
        callee_from_uri=b"sip:m@m",
        callee_to_uri=b"sip:n@n",
        vars=((b"acct", b"new"), (b"extra", b"1"), (b"skipped", b"")),
        profiles=((b"caller", b"mallory"), (b"vip", b"")),
        user_flags=0x10,
        flags=int(DlgFlag.ISINIT | DlgFlag.BYEONTIMEOUT),
        timeout=NOW + 60,
        caller_last_gen_cseq=11,
        callee_last_gen_cseq=12,
    )
    assert replica.apply(update, now=NOW + 1) == Applied(Command.UPDATED, KEY)
    dlg = replica.get(*KEY)
    assert dlg is not None
    # taken
    assert dlg.state == DlgState.CONFIRMED
    assert (dlg.caller_cseq, dlg.callee_cseq) == (b"2", b"5")
    assert dlg.user_flags == 0x10
    assert dlg.flags == DlgFlag.ISINIT | DlgFlag.BYEONTIMEOUT | DlgFlag.VP_CHANGED
    assert (dlg.lifetime, dlg.expires_at) == (59, NOW + 60)
    # vars: replaced in place, new ones prepended, empty values skipped, none removed
    assert dlg.vars == [(b"extra", b"1"), (b"acct", b"new")]
    # profiles: a name already linked is left alone (double_check), new ones linked
    assert dlg.profiles == [(b"vip", b""), (b"inbound", b""), (b"caller", b"alice")]
    # not taken
    assert (dlg.from_uri, dlg.h_id, dlg.start_ts) == (b"sip:alice@a", 7, NOW - 5)
    assert (dlg.caller_sock, dlg.callee_sock) == (VIP.encode(), VIP.encode())
    assert (dlg.caller_route_set, dlg.callee_route_set) == (b"<sip:rr1>", b"<sip:rr2>")
    assert (dlg.caller_contact, dlg.callee_contact) == (b"sip:alice@1.1.1.1", b"sip:bob@2.2.2.2")
    assert (dlg.callee_from_uri, dlg.callee_to_uri) == (b"", b"")
    assert (dlg.caller_last_gen_cseq, dlg.callee_last_gen_cseq) == (0, 0)
    assert stats(replica) == counts(create=1, update=1, active=1, processed=1)


def test_updated_state_is_assigned_without_the_state_machine(replica: Replica) -> None:
    replica.apply(msg(state=DlgState.CONFIRMED), now=NOW)
    replica.apply(msg(Command.UPDATED, state=DlgState.EARLY), now=NOW)
    assert replica.get(*KEY).state == DlgState.EARLY  # type: ignore[union-attr]
    # an update to DELETED hides the dialog from get_dlg; active_dialogs does not move
    replica.apply(msg(Command.UPDATED, state=DlgState.DELETED), now=NOW)
    assert replica.get(*KEY) is None and len(replica) == 1
    assert replica.apply(msg(), now=NOW).created  # type: ignore[union-attr]
    assert stats(replica)["active_dialogs"] == 2


def test_updated_with_an_unchanged_lifetime_leaves_the_timer() -> None:
    replica = Replica([VIP])
    replica.apply(msg(timeout=NOW + 100), now=NOW)
    # lifetime is 0 after create; timeout == now gives 0 again, so no re-arm
    replica.apply(msg(Command.UPDATED, timeout=NOW + 50), now=NOW + 50)
    assert replica.get(*KEY).expires_at == NOW + 100  # type: ignore[union-attr]
    replica.apply(msg(Command.UPDATED, timeout=NOW + 80), now=NOW + 50)
    assert replica.get(*KEY).expires_at == NOW + 80  # type: ignore[union-attr]


# -- deleted -------------------------------------------------------------------------------


@pytest.mark.parametrize("state", [DlgState.CONFIRMED_NA, DlgState.CONFIRMED])
def test_deleted_ends_a_confirmed_dialog(replica: Replica, state: DlgState) -> None:
    replica.apply(msg(state=state), now=NOW)
    swapped = msg(Command.DELETED, from_tag=KEY.to_tag, to_tag=KEY.from_tag)
    assert replica.apply(swapped, now=NOW) == Applied(Command.DELETED, KEY)
    assert len(replica) == 0
    assert stats(replica) == counts(create=1, delete=1, active=0, processed=1)


def test_deleted_twice_or_unknown_is_an_error(replica: Replica) -> None:
    replica.apply(msg(), now=NOW)
    replica.apply(msg(Command.DELETED), now=NOW)
    again = replica.apply(msg(Command.DELETED), now=NOW)
    assert isinstance(again, Rejected) and "not found" in again.reason
    unknown = replica.apply(msg(Command.DELETED, call_id=b"nobody"), now=NOW)
    assert isinstance(unknown, Rejected) and unknown.key == DialogKey(b"nobody", b"ftag", b"ttag")
    assert stats(replica) == counts(create=1, delete=3, active=0, processed=1)


@pytest.mark.parametrize("state", [DlgState.UNCONFIRMED, DlgState.EARLY])
def test_deleted_before_200_ok_is_refused_but_unlinks_profiles(replica: Replica, state: DlgState) -> None:
    replica.apply(msg(state=state), now=NOW)
    outcome = replica.apply(msg(Command.DELETED), now=NOW)
    assert isinstance(outcome, Rejected) and "duplicate dialog delete request" in outcome.reason
    dlg = replica.get(*KEY)
    assert dlg is not None and dlg.state == state and dlg.profiles == []
    assert stats(replica) == counts(create=1, delete=1, active=1, processed=1)


# -- the dialog timer ----------------------------------------------------------------------


def test_expire_ends_confirmed_dialogs_when_due(replica: Replica) -> None:
    replica.apply(msg(timeout=NOW + 100), now=NOW)
    replica.apply(msg(call_id=b"byes", timeout=NOW + 200, flags=int(DlgFlag.BYEONTIMEOUT)), now=NOW)
    assert replica.next_expiry() == NOW + 100
    assert replica.expire(now=NOW + 99) == []
    assert replica.expire(now=NOW + 100) == [Expired(KEY)]
    assert replica.expire(now=NOW + 300) == [Expired(DialogKey(b"byes", b"ftag", b"ttag"), bye_sent=True)]
    assert len(replica) == 0 and replica.next_expiry() is None
    assert stats(replica) == counts(create=2, active=0, processed=2, expired=2)


def test_a_timeout_already_past_fires_at_once(replica: Replica) -> None:
    replica.apply(msg(timeout=NOW - 10), now=NOW)
    assert replica.next_expiry() == NOW
    assert replica.expire(now=NOW) == [Expired(KEY)]


def test_expire_leaves_early_dialogs_but_takes_them_off_the_timer(replica: Replica) -> None:
    replica.apply(msg(state=DlgState.EARLY, timeout=NOW + 1), now=NOW)
    assert replica.expire(now=NOW + 5) == []
    assert replica.get(*KEY) is not None and replica.next_expiry() is None
    # update_dlg_timer cannot re-arm a dialog that left the timer
    replica.apply(msg(Command.UPDATED, state=DlgState.EARLY, timeout=NOW + 100), now=NOW + 5)
    assert replica.next_expiry() is None


# -- packets -------------------------------------------------------------------------------


def test_apply_packet_decodes_and_refuses_other_commands(replica: Replica) -> None:
    assert replica.apply_packet(parse_header(msg().encode()), now=NOW).created  # type: ignore[union-attr]
    unknown = PacketBuilder("dialog", 9).finish()
    outcome = replica.apply_packet(parse_header(unknown + b""), now=NOW)
    assert isinstance(outcome, Rejected) and "command: 9" in outcome.reason
    short = PacketBuilder("dialog", 1)
    short.push_str(b"only-a-call-id")
    outcome = replica.apply_packet(parse_header(short.finish()), now=NOW)
    assert isinstance(outcome, Rejected) and outcome.reason.startswith("undecodable packet")
    assert stats(replica) == counts(create=2, active=1, processed=2)


def test_dlg_hash_is_core_hash_with_signed_chars() -> None:
    # values printed by core_hash() of 1.10.5 hash_func.h compiled with gcc on x86-64
    assert [dlg_hash(c) for c in (b"1-26919@10.77.0.20", b"", b"a", b"abcde")] == [2935, 0, 109, 1153]
    assert dlg_hash(b"\xff\xfe\x80z") == 3982
    assert dlg_hash("café-€@host".encode()) == 3684
    assert dlg_hash(b"abcde", 0) == 1834960001


# -- the real capture ----------------------------------------------------------------------

CAPTURE_VIP = "udp:10.77.0.100:5060"


def replay(replica: Replica, datagrams: list[CapturedDatagram]) -> list[Any]:
    outcomes = []
    for item in datagrams:
        now = int(item.timestamp)
        replica.expire(now=now)
        outcomes.append(replica.apply(dialog.decode(item.data), now=now))
    return outcomes


def test_replaying_the_capture_leaves_the_three_calls_whose_bye_was_refused(
    basic_calls: list[CapturedDatagram],
) -> None:
    replica = Replica([CAPTURE_VIP])
    outcomes = replay(replica, basic_calls)
    assert all(isinstance(o, Applied) for o in outcomes)
    assert replica.by_state() == {DlgState.CONFIRMED_NA: 3}
    assert sorted(d.call_id for d in replica) == [b"1-26919@10.77.0.20", b"2-26919@10.77.0.20", b"3-26919@10.77.0.20"]
    assert sorted(d.h_entry for d in replica) == [625, 1395, 2935]
    first = replica.get(b"1-26919@10.77.0.20", b"26919SIPpTag001", b"26802SIPpTag014")
    assert first is not None
    assert first.vars == [(b"acct", b"a|b#c\\d")]
    assert first.profiles == [(b"inbound", b""), (b"caller", b"alice")]
    assert stats(replica) == counts(create=9, update=6, delete=6, active=3, processed=9)
    # an hour later their timers end them
    assert len(replica.expire(now=int(basic_calls[-1].timestamp) + 3600)) == 3
    assert stats(replica)["active_dialogs"] == 0


def test_replaying_without_the_virtual_ip_rejects_every_dialog(basic_calls: list[CapturedDatagram]) -> None:
    """A backup that does not listen on the shared VIP keeps nothing (the 1.10 HA trap)."""
    replica = Replica(["udp:10.77.0.12:5060"])
    outcomes = replay(replica, basic_calls)
    assert all(isinstance(o, Rejected) for o in outcomes)
    assert len(replica) == 0
    # updates of unknown dialogs went through dlg_replicated_create too
    assert stats(replica) == counts(create=9, update=6, delete=6, active=0, processed=15)


def test_updates_alone_rebuild_what_a_lost_created_would_have(basic_calls: list[CapturedDatagram]) -> None:
    replica = Replica([CAPTURE_VIP])
    without_created = [d for d in basic_calls if parse_header(d.data).command != Command.CREATED]
    replay(replica, without_created)
    # the 3 refused-BYE calls only ever sent created; the other 6 were rebuilt and deleted
    assert len(replica) == 0
    assert stats(replica) == counts(update=6, delete=6, active=0, processed=6)
