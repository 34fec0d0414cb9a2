"""Dialog payloads: literal vectors from a real 1.10.5 pair, round trips, hostile bytes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybin import _fields, dialog
from pybin.dialog import (
    DIALOG_FIELDS,
    DialogCreated,
    DialogDeleted,
    DialogUpdated,
    DlgState,
    decode,
    decode_pairs,
    encode_pairs,
    make,
)
from pybin.errors import LocalProtocolError, MalformedPacket, PacketTooLarge, PybinError
from pybin.wire import ByteOrder, PacketBuilder

IMPLS = [pytest.param(_fields, id="pure")]
if dialog.COMPILED:
    IMPLS.append(pytest.param(dialog._impl, id="compiled"))


@pytest.fixture(params=IMPLS)
def impl(request, monkeypatch):
    """Run the test once on each codec implementation that is installed."""
    monkeypatch.setattr(dialog, "_impl", request.param)
    return request.param


def test_first_captured_packet_literal(basic_calls, impl):
    msg = decode(basic_calls[0].data)
    assert type(msg) is DialogCreated
    assert msg.call_id == b"1-26919@10.77.0.20"
    assert msg.from_tag == b"26919SIPpTag001"
    assert msg.to_tag == b"26802SIPpTag014"
    assert msg.from_uri == b"sip:alice@10.77.0.20:5070"
    assert msg.to_uri == b"sip:bob@10.77.0.21:5080"
    assert msg.h_id == 562474275
    assert msg.start_ts == 1795691641
    assert msg.state is DlgState.CONFIRMED_NA
    assert msg.caller_sock == msg.callee_sock == b"udp:10.77.0.100:5060"
    assert (msg.caller_cseq, msg.callee_cseq) == (b"0", b"1")
    assert msg.callee_contact == b"sip:10.77.0.21:5080;transport=UDP"
    assert msg.vars == ((b"acct", b"a|b#c\\d"),)
    assert msg.profiles == ((b"caller", b"alice"), (b"inbound", b""))
    assert (msg.user_flags, msg.flags, msg.timeout) == (0, 16, 1795695241)
    assert msg.timeout - msg.start_ts == 3600


def test_capture_sequence_and_states(basic_calls, impl):
    msgs = [decode(d.data) for d in basic_calls]
    kinds = "".join({1: "c", 2: "u", 3: "d"}[m.command] for m in msgs)
    assert kinds == "ccc" + "cucucu" + "ddd" + "cucu" + "dd" + "cu" + "d"
    assert all(m.state == DlgState.CONFIRMED for m in msgs if m.command == 2)
    assert type(msgs[-1]) is DialogDeleted
    assert basic_calls[-1].src == ("10.77.0.12", 5062)  # the backup, after failover


def test_every_captured_packet_reencodes_byte_exact(basic_calls, impl):
    for item in basic_calls:
        assert decode(item.data).encode() == item.data


def test_pairs_literals_from_the_wire():
    assert encode_pairs([(b"x", b"y"), (b"acct", b"a|b#c\\d")]) == b"x#y|acct#a\\|b\\#c\\\\d|"
    profiles = b"trunk#t\\|1\\#x|caller#alice|vip#|inbound#|"
    assert decode_pairs(profiles) == (
        (b"trunk", b"t|1#x"), (b"caller", b"alice"), (b"vip", b""), (b"inbound", b""),
    )
    assert encode_pairs(decode_pairs(profiles)) == profiles
    assert decode_pairs(b"") == ()


@pytest.mark.parametrize(
    "raw, problem",
    [
        (b"a#b", "not closed"),
        (b"a|", "has no '#'"),
        (b"a#b#c|", "second unescaped '#'"),
        (b"a\\x#b|", "escapes nothing"),
    ],
)
def test_pairs_that_are_not_pairs_are_refused(raw, problem, impl):
    with pytest.raises(MalformedPacket, match=problem):
        decode_pairs(raw)


texts = st.binary(max_size=40) | st.sampled_from([b"", b"|", b"#", b"\\", b"a\\|b#c"])
pairs = st.lists(st.tuples(texts, texts), max_size=5).map(tuple)
u32 = st.integers(0, 2**32 - 1)
FIELD_STRATEGY = {"str": texts, "int": u32, "pairs": pairs}


def message_strategy(cls):
    return st.builds(
        lambda values: cls(*values),
        st.tuples(*(FIELD_STRATEGY[kind] for _, kind in cls.FIELDS)),
    )


messages = message_strategy(DialogCreated) | message_strategy(DialogUpdated) | message_strategy(DialogDeleted)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(msg=messages, order=st.sampled_from(ByteOrder))
def test_round_trip_every_message_type(msg, order, impl):
    data = msg.encode(order)
    back = decode(data, order)
    assert type(back) is type(msg)
    assert tuple(back) == tuple(msg)
    assert back.encode(order) == data


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(items=pairs)
def test_pairs_round_trip(items, impl):
    assert decode_pairs(encode_pairs(items)) == items


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=500)
@given(data=st.binary(max_size=400))
def test_random_bytes_decode_or_raise_our_error(data, impl):
    try:
        decode(data)
    except PybinError:
        pass


def _resealed(data: bytes) -> bytes:
    from pybin.wire import checksum

    return data[:4] + checksum(data[8:]).to_bytes(4, "little") + data[8:]


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=500)
@given(cut=st.integers(0, 400), flips=st.lists(st.tuples(st.integers(8, 399), st.integers(0, 255)), max_size=4))
def test_damaged_real_packets_with_valid_checksum(basic_calls, cut, flips, impl):
    data = bytearray(basic_calls[0].data)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    data = _resealed(bytes(data[: max(cut, 18)]))
    try:
        msg = decode(data)
    except PybinError:
        return
    assert msg.encode() == data


@pytest.mark.skipif(not dialog.COMPILED, reason="compiled codec not built")
@settings(max_examples=500)
@given(data=st.binary(max_size=300), layout=st.text("sIp", max_size=8))
def test_compiled_and_pure_codecs_agree(data, layout):
    from pybin import _speedups  # type: ignore[attr-defined]

    lay = layout.encode()
    assert _speedups.pop_fields(data, 0, lay, True) == _fields.pop_fields(data, 0, lay, True)
    assert _speedups.split_pairs(data) == _fields.split_pairs(data)
    assert _speedups.crc(data, 0) == _fields.crc(data, 0)


def test_trailing_bytes_are_reported(basic_calls, impl):
    data = _resealed(basic_calls[-1].data + b"\0\0")
    with pytest.raises(MalformedPacket, match="2 bytes after the last field"):
        decode(data)


def test_truncated_field_names_the_field(basic_calls, impl):
    data = _resealed(basic_calls[0].data[:60])
    with pytest.raises(PybinError, match="from_uri|to_tag|from_tag"):
        decode(data)


def test_unknown_command_and_other_module():
    b = PacketBuilder(b"dialog", 9)
    with pytest.raises(MalformedPacket, match="unknown dialog command 9"):
        decode(b.finish())
    with pytest.raises(MalformedPacket, match="not b'dialog'"):
        decode(PacketBuilder(b"tm", 1).finish())


def test_make_defaults_and_errors():
    msg = make(1, call_id=b"c", state=DlgState.CONFIRMED)
    assert msg.to_tag == b"" and msg.vars == () and msg.timeout == 0
    assert decode(msg.encode()).state is DlgState.CONFIRMED
    with pytest.raises(LocalProtocolError, match="unknown dialog field 'bogus'"):
        make(1, bogus=1)
    with pytest.raises(LocalProtocolError, match="unknown dialog command"):
        make(7)


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"h_id": -1}, "h_id must be an integer"),
        ({"timeout": 2**32}, "timeout must be an integer"),
        ({"call_id": "text"}, "call_id must be bytes"),
        ({"vars": ((b"a", "b"),)}, "pairs"),
    ],
)
def test_encode_refuses_values_the_wire_cannot_carry(fields, error, impl):
    with pytest.raises(LocalProtocolError, match=error):
        make(1, **fields).encode()


def test_oversized_dialog_names_the_field(impl):
    with pytest.raises(PacketTooLarge, match="callee_contact"):
        make(1, callee_contact=b"x" * 70000).encode()


def test_field_table_matches_protocol_notes():
    assert len(DIALOG_FIELDS) == 25
    assert [n for n, _ in DIALOG_FIELDS][18:20] == ["vars", "profiles"]
    assert DialogDeleted._fields == ("call_id", "from_tag", "to_tag")
