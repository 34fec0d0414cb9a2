"""usrloc payloads (module ``ul``): literal vectors from a real 1.11.11 pair, round trips,
raw C integers by their length, hostile bytes."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pybin
from pybin import _fields, usrloc
from pybin.errors import (
    LocalProtocolError,
    MalformedPacket,
    PacketTooLarge,
    PybinError,
    TruncatedPacket,
)
from pybin.usrloc import (
    CONTACT_DELETE_FIELDS,
    CONTACT_FIELDS,
    RECORD_FIELDS,
    ContactDeleted,
    ContactFlag,
    ContactInserted,
    ContactUpdated,
    Method,
    RawInt,
    RecordDeleted,
    RecordInserted,
    UlCommand,
    decode,
    make,
    q_text,
)
from pybin.wire import ByteOrder, PacketBuilder, checksum

IMPLS = [pytest.param(_fields, id="pure")]
if usrloc.COMPILED:
    IMPLS.append(pytest.param(usrloc._impl, id="compiled"))


@pytest.fixture(params=IMPLS)
def impl(request, monkeypatch):
    """Run the test once on each codec implementation that is installed."""
    monkeypatch.setattr(usrloc, "_impl", request.param)
    return request.param


# Seen on the wire between a 1.11.11 primary and backup (x86-64), REGISTER of alice with
# "Contact: <sip:alice@127.0.0.70:5090>;expires=300" and an Allow header.
CONTACT_INSERT = bytes.fromhex(
    "5034434bff01538402000000756c03000000080000006c6f636174696f6e05000000616c696365190000007369"
    "703a616c696365403132372e302e302e37303a353039300e0000007573726c6f632d3140707962696e120000"
    "00707962696e2d7573726c6f632f616c69636500000000000000000000000000000000080000002e8c156b00"
    "00000004000000ffffffff130000007564703a3132372e302e302e36313a3530363001000000000000000000"
    "00002f00000008000000028b156b00000000"
)
# The record_insert that came before it.
RECORD_INSERT = bytes.fromhex("5034434b0fdd490b02000000756c01000000080000006c6f636174696f6e05000000616c696365")


def _record(command: int, domain: bytes, aor: bytes) -> bytes:
    builder = PacketBuilder(b"ul", command)
    builder.push_str(domain)
    builder.push_str(aor)
    return builder.finish()


def test_captured_contact_insert_literal(impl):
    msg = decode(CONTACT_INSERT)
    assert type(msg) is ContactInserted and msg.command is UlCommand.CONTACT_INSERT
    assert (msg.domain, msg.aor, msg.contact) == (b"location", b"alice", b"sip:alice@127.0.0.70:5090")
    assert (msg.call_id, msg.user_agent) == (b"usrloc-1@pybin", b"pybin-usrloc/alice")
    assert (msg.path, msg.attr, msg.received, msg.instance) == (b"", b"", b"", b"")
    assert msg.expires == RawInt(1796574254, 8)
    assert msg.q == RawInt(-1, 4)  # Q_UNSPECIFIED: the Contact had no q
    assert msg.last_modified == RawInt(1796573954, 8)
    assert msg.expires.value - msg.last_modified.value == 300
    assert msg.sock == b"udp:127.0.0.61:5060"
    assert (msg.cseq, msg.flags, msg.cflags) == (1, 0, 0)
    assert Method(msg.methods) == Method.INVITE | Method.CANCEL | Method.ACK | Method.BYE | Method.OPTIONS
    assert msg.encode() == CONTACT_INSERT
    assert pybin.decode(CONTACT_INSERT) == msg


def test_record_and_delete_literals(impl):
    assert decode(RECORD_INSERT) == RecordInserted(b"location", b"alice")
    assert RecordInserted(b"location", b"alice").encode() == RECORD_INSERT
    assert _record(1, b"location", b"alice") == RECORD_INSERT
    assert decode(_record(2, b"location", b"alice")) == RecordDeleted(b"location", b"alice")
    builder = PacketBuilder(b"ul", 5)
    for value in (b"location", b"alice", b"sip:alice-3@127.0.0.70:5090;transport=udp", b"usrloc-1@pybin"):
        builder.push_str(value)
    builder.push_int(3)
    msg = decode(builder.finish())
    assert msg == ContactDeleted(b"location", b"alice", b"sip:alice-3@127.0.0.70:5090;transport=udp",
                                 b"usrloc-1@pybin", 3)
    assert msg.encode() == builder.finish()


def test_field_tables_are_ureplication_c():
    assert [n for n, _ in RECORD_FIELDS] == ["domain", "aor"]
    assert [n for n, _ in CONTACT_FIELDS] == [
        "domain", "aor", "contact", "call_id", "user_agent", "path", "attr", "received", "instance",
        "expires", "q", "sock", "cseq", "flags", "cflags", "methods", "last_modified",
    ]
    assert ContactInserted._LAYOUT == ContactUpdated._LAYOUT == b"sssssssssrrsIIIIr"
    assert [n for n, _ in CONTACT_DELETE_FIELDS] == ["domain", "aor", "contact", "call_id", "cseq"]
    assert ContactDeleted._LAYOUT == b"ssssI" and RecordInserted._LAYOUT == RecordDeleted._LAYOUT == b"ss"
    assert {int(c): c.word for c in UlCommand} == {
        1: "record_insert", 2: "record_delete", 3: "contact_insert", 4: "contact_update", 5: "contact_delete",
    }
    assert ContactFlag.MEM == 1


@pytest.mark.parametrize("order", list(ByteOrder))
def test_a_32_bit_sender_is_read_by_the_length_of_its_fields(order, impl):
    little = order is ByteOrder.LITTLE
    builder = PacketBuilder(b"ul", 4, order)
    for name, kind in CONTACT_FIELDS:
        if kind == "raw":
            builder.push_str((-2 if name == "q" else 1796574254).to_bytes(4, "little" if little else "big", signed=True))
        elif kind == "int":
            builder.push_int(7)
        else:
            builder.push_str(name.encode())
    data = builder.finish()
    msg = decode(data, order)
    assert (msg.expires, msg.q, msg.last_modified) == (RawInt(1796574254, 4), RawInt(-2, 4), RawInt(1796574254, 4))
    assert msg.encode(order) == data
    assert msg.encode(ByteOrder.BIG if little else ByteOrder.LITTLE) != data


@pytest.mark.parametrize("size", [0, 1, 3, 5, 7, 9, 16])
def test_raw_fields_of_other_lengths_are_refused_naming_the_field(size, impl):
    builder = PacketBuilder(b"ul", 3)
    for name, kind in CONTACT_FIELDS:
        if name == "expires":
            builder.push_str(b"\x01" * size)
        elif kind == "raw":
            builder.push_str(b"\0" * 8)
        elif kind == "int":
            builder.push_int(0)
        else:
            builder.push_str(b"x")
    with pytest.raises(MalformedPacket, match=f"expires: a C integer travels in 4 or 8 bytes, this one in {size}"):
        decode(builder.finish())


def test_trailing_bytes_and_truncation_are_refused(impl):
    data = _record(1, b"location", b"alice")
    resealed = data + b"\0\0\0\0"
    resealed = resealed[:4] + checksum(resealed[8:]).to_bytes(4, "little") + resealed[8:]
    with pytest.raises(MalformedPacket, match="4 bytes after the last field \\(aor\\)"):
        decode(resealed)
    cut = CONTACT_INSERT[:120]
    cut = cut[:4] + checksum(cut[8:]).to_bytes(4, "little") + cut[8:]
    with pytest.raises(TruncatedPacket, match="instance: length needs 4 bytes at offset 120, 0 left"):
        decode(cut)


def test_unknown_command_and_other_modules():
    with pytest.raises(MalformedPacket, match="unknown ul command 6"):
        decode(PacketBuilder(b"ul", 6).finish())
    with pytest.raises(MalformedPacket, match="not b'ul'"):
        decode(_sealed(CONTACT_INSERT[8:].replace(b"\x02\0\0\0ul", b"\x02\0\0\0tm")))
    with pytest.raises(MalformedPacket, match="module b'tm' is not one pybin decodes \\(dialog, ul\\)"):
        pybin.decode(PacketBuilder(b"tm", 1).finish())


def test_pybin_decode_returns_dialogs_as_before(basic_calls):
    for item in basic_calls:
        assert pybin.decode(item.data) == pybin.dialog.decode(item.data)


def test_make_defaults_sizes_and_errors():
    msg = make(3, aor=b"a", expires=1796574254)
    assert msg.expires == RawInt(1796574254, 8) and msg.last_modified == RawInt(0, 8)
    assert msg.q == RawInt(-1, 4) and msg.contact == b"" and msg.cseq == 0
    assert make(4, q=RawInt(500, 8)).q == RawInt(500, 8)
    assert decode(make(UlCommand.RECORD_DELETE, aor=b"a").encode()) == RecordDeleted(b"", b"a")
    with pytest.raises(LocalProtocolError, match="unknown ul field 'state'"):
        make(3, state=1)
    with pytest.raises(LocalProtocolError, match="unknown ul command 9"):
        make(9)


@pytest.mark.parametrize(
    "fields, error",
    [
        ({"cseq": -1}, "cseq must be an integer in 0..4294967295"),
        ({"contact": "text"}, "contact must be bytes"),
        ({"expires": RawInt(1, 5)}, "expires: a C integer is 4 or 8 bytes here, not 5"),
        ({"q": RawInt(2**31, 4)}, "q must be an integer in -2147483648..2147483647"),
        ({"last_modified": RawInt(2**63, 8)}, "last_modified must be an integer in"),
        ({"expires": RawInt(True, 8)}, "expires must be an integer"),
        ({"expires": (1, 8)}, "expires must be a RawInt"),
    ],
)
def test_encode_refuses_values_the_wire_cannot_carry(fields, error, impl):
    with pytest.raises(LocalProtocolError, match=error):
        make(3, **fields).encode()


def test_a_plain_int_for_a_raw_field_is_refused_when_built_directly(impl):
    values = list(make(3))
    values[9] = 1796574254
    with pytest.raises(LocalProtocolError, match="expires must be a RawInt"):
        ContactInserted(*values).encode()


def test_oversized_contact_names_the_field(impl):
    with pytest.raises(PacketTooLarge, match="attr"):
        make(3, attr=b"x" * 70000).encode()


@pytest.mark.parametrize("q, text", [(-1, ""), (1000, "1"), (1500, "1"), (0, "0"), (500, "0.5"), (50, "0.05"),
                                     (123, "0.123"), (900, "0.9"), (-7, "0")])
def test_q_text_is_q2str(q, text):
    assert q_text(q) == text


texts = st.binary(max_size=40) | st.sampled_from([b"", b"sip:alice@10.0.0.1", b"\xff\x00"])
u32 = st.integers(0, 2**32 - 1)
raw = st.one_of(st.builds(RawInt, st.integers(-(2**31), 2**31 - 1), st.just(4)),
                st.builds(RawInt, st.integers(-(2**63), 2**63 - 1), st.just(8)))
FIELD_STRATEGY = {"str": texts, "int": u32, "raw": raw}


def message_strategy(cls):
    return st.builds(lambda values: cls(*values), st.tuples(*(FIELD_STRATEGY[kind] for _, kind in cls.FIELDS)))


messages = st.one_of(*(message_strategy(cls) for cls in usrloc.MESSAGES.values()))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=400)
@given(msg=messages, order=st.sampled_from(ByteOrder))
def test_round_trip_every_message_type(msg, order, impl):
    data = msg.encode(order)
    back = decode(data, order)
    assert type(back) is type(msg)
    assert back == msg
    assert back.encode(order) == data
    assert pybin.decode(data, order) == msg


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=500)
@given(data=st.binary(max_size=400))
def test_random_bytes_decode_or_raise_our_error(data, impl):
    for candidate in (data, b"P4CK" + data, _sealed(b"\x02\0\0\0ul" + data)):
        try:
            msg = decode(candidate)
        except PybinError:
            continue
        assert msg.encode() == candidate


def _sealed(body: bytes) -> bytes:
    return b"P4CK" + checksum(body).to_bytes(4, "little") + body


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=500)
@given(msg=messages, cut=st.integers(0, 500),
       flips=st.lists(st.tuples(st.integers(8, 499), st.integers(0, 255)), max_size=4))
def test_damaged_valid_packets_with_a_good_checksum_decode_or_raise_our_error(msg, cut, flips, impl):
    data = bytearray(msg.encode())
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    damaged = _sealed(bytes(data[8 : max(cut, 18)]))
    try:
        back = decode(damaged)
    except PybinError:
        return
    assert back.encode() == damaged


@pytest.mark.skipif(not usrloc.COMPILED, reason="compiled codec not built")
@settings(max_examples=500)
@given(data=st.binary(max_size=300), layout=st.text("sIpr", max_size=8), little=st.booleans())
def test_compiled_and_pure_field_codecs_agree(data, layout, little):
    from pybin import _speedups  # type: ignore[attr-defined]

    lay = layout.encode()
    assert _speedups.pop_fields(data, 0, lay, little) == _fields.pop_fields(data, 0, lay, little)
    popped = _fields.pop_fields(data, 0, lay, little)
    if popped is not None and b"p" not in lay:
        head = b"\x02\0\0\0ul\x01\0\0\0"
        assert _speedups.build(head, lay, popped[0], little) == _fields.build(head, lay, popped[0], little)


@pytest.mark.skipif(not usrloc.COMPILED, reason="compiled codec not built")
@settings(max_examples=300)
@given(values=st.lists(st.one_of(raw, st.builds(RawInt, st.integers(), st.integers(-1, 9)),
                                 st.tuples(st.integers(-5, 5), st.just(4)), st.integers(), st.none()), max_size=4))
def test_compiled_and_pure_builders_agree_on_any_raw_value(values):
    from pybin import _speedups  # type: ignore[attr-defined]

    lay = b"r" * len(values)
    for little in (True, False):
        assert _speedups.build(b"", lay, values, little) == _fields.build(b"", lay, values, little)
