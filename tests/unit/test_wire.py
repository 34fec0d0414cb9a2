"""The wire layer against bin_interface.c's rules, byte for byte."""

from __future__ import annotations

import pytest

from pybin.errors import (
    LocalProtocolError,
    MalformedPacket,
    PacketTooLarge,
    TruncatedPacket,
)
from pybin.wire import (
    BUF_SIZE,
    MIN_PACKET_SIZE,
    ByteOrder,
    DropReason,
    PacketBuilder,
    PacketReader,
    PacketRejected,
    checksum,
    parse_header,
)


def test_checksum_is_crc32_without_final_xor():
    # Standard CRC-32 of "123456789" is 0xCBF43926; 1.10 leaves out the final XOR.
    assert checksum(b"123456789") == 0x340BC6D9
    assert checksum(b"") == 0xFFFFFFFF


def test_checksum_matches_every_captured_packet(basic_calls):
    for item in basic_calls:
        stored = int.from_bytes(item.data[4:8], "little")
        assert checksum(item.data[8:]) == stored


def test_builder_writes_the_documented_layout():
    b = PacketBuilder(b"tm", 7)
    b.push_str(b"abc")
    b.push_int(-1)
    b.push_str(None)
    data = b.finish()
    body = (
        (2).to_bytes(4, "little") + b"tm" + (7).to_bytes(4, "little")
        + (3).to_bytes(4, "little") + b"abc" + b"\xff\xff\xff\xff" + b"\0\0\0\0"
    )
    assert data == b"P4CK" + checksum(body).to_bytes(4, "little") + body


def test_builder_allows_exactly_buf_size_and_not_one_byte_more():
    header = 8 + 4 + len(b"dialog") + 4
    fits = PacketBuilder(b"dialog", 1)
    fits.push_str(b"x" * (BUF_SIZE - header - 4))
    assert len(fits.finish()) == BUF_SIZE == 65535

    too_big = PacketBuilder(b"dialog", 1)
    with pytest.raises(PacketTooLarge, match="65535"):
        too_big.push_str(b"x" * (BUF_SIZE - header - 3))
    assert too_big.size == header  # a refused push writes nothing, as in C


def test_push_int_boundary():
    b = PacketBuilder(b"dialog", 1)
    b.push_str(b"x" * (BUF_SIZE - 22 - 4 - 4))
    b.push_int(5)
    assert b.size == BUF_SIZE
    with pytest.raises(PacketTooLarge):
        b.push_int(6)


@pytest.mark.parametrize("value", [2**32, -(2**31) - 1, "1", 1.5, True])
def test_push_int_refuses_what_four_bytes_cannot_hold(value):
    with pytest.raises(LocalProtocolError):
        PacketBuilder(b"x1", 1).push_int(value)


def _packet(name: bytes, cmd: int = 1, body: bytes = b"") -> bytes:
    b = PacketBuilder(name, cmd)
    data = b.finish() + body
    return data[:4] + checksum(data[8:]).to_bytes(4, "little") + data[8:]


def test_smallest_packet_is_accepted():
    data = _packet(b"tm")
    assert len(data) == MIN_PACKET_SIZE == 18
    packet = parse_header(data)
    assert (packet.module, packet.command, packet.payload) == (b"tm", 1, b"")


@pytest.mark.parametrize(
    "data, reason",
    [
        (_packet(b"tm")[:17], DropReason.RUNT),
        (b"P4CX" + _packet(b"tm")[4:], DropReason.BAD_MARKER),
        (_packet(b"tm")[:8] + b"\x03" + _packet(b"tm")[9:], DropReason.BAD_CHECKSUM),
        (_packet(b"tm")[:17] + b"x", DropReason.BAD_CHECKSUM),
    ],
)
def test_receiver_rules(data, reason):
    with pytest.raises(PacketRejected) as info:
        parse_header(data)
    assert info.value.reason is reason


def test_name_longer_than_the_datagram_is_refused():
    body = (50).to_bytes(4, "little") + b"dialog" + b"\0" * 4
    data = b"P4CK" + checksum(body).to_bytes(4, "little") + body
    with pytest.raises(PacketRejected) as info:
        parse_header(data)
    assert info.value.reason is DropReason.BAD_NAME
    assert "name length 50" in str(info.value)


def test_reader_pops_in_order_and_stops_at_the_end():
    b = PacketBuilder(b"mod", 2)
    b.push_str(b"one")
    b.push_int(0xFFFFFFFE)
    b.push_str(b"")
    b.push_str(b"two")
    reader = parse_header(b.finish()).reader()
    assert reader.pop_str() == b"one"
    assert reader.pop_int() == 0xFFFFFFFE
    reader.skip_str(1)
    assert reader.pop_str() == b"two"
    assert reader.remaining == 0
    with pytest.raises(TruncatedPacket):
        reader.pop_int()


def test_reader_length_past_end_and_negative_length():
    body = (1000).to_bytes(4, "little") + b"abc"
    with pytest.raises(TruncatedPacket, match="run past the end"):
        PacketReader(body).pop_str("call_id")
    with pytest.raises(MalformedPacket, match="negative length -2"):
        PacketReader((-2).to_bytes(4, "little", signed=True)).pop_str()


def test_big_endian_packets_round_trip():
    b = PacketBuilder(b"dialog", 3, ByteOrder.BIG)
    b.push_str(b"abc")
    data = b.finish()
    assert data[8:12] == b"\0\0\0\x06"
    assert data[4:8] == checksum(data[8:]).to_bytes(4, "big")
    packet = parse_header(data, ByteOrder.BIG)
    assert packet.command == 3
    assert packet.reader().pop_str() == b"abc"
    with pytest.raises(PacketRejected):
        parse_header(data)  # the checksum bytes read in the wrong order do not match
