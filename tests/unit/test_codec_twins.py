"""The compiled codec and its pure-Python twin give the same answers (header, JSON lines).

The field functions are compared in test_dialog.py; these are the ones the command
line's fast paths added. The JSON line must also be byte for byte what json.dumps
writes for ``packet_to_json`` — the form ``pybin decode --json`` always had.
"""

from __future__ import annotations

import json
import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybin import _fields, jsonio, usrloc
from pybin._codec import COMPILED
from pybin._fields import RawInt
from pybin.dialog import DIALOG_FIELDS, make
from pybin.errors import PybinError
from pybin.textio import packet_summary, summary_line
from pybin.wire import ByteOrder, PacketBuilder

pytestmark = pytest.mark.skipif(not COMPILED, reason="compiled codec not built")


def _sealed(body: bytes, little: bool = True) -> bytes:
    order = "<" if little else ">"
    return b"P4CK" + struct.pack(order + "I", ~zlib.crc32(body) & 0xFFFFFFFF) + body


def _headers() -> list[bytes]:
    good = _sealed(struct.pack("<i", 6) + b"dialog" + struct.pack("<i", 3) + b"\0" * 12)
    out = [good, good[:17], good[:18], b"P4CX" + good[4:], good[:4] + b"\0\0\0\0" + good[8:]]
    for name_len in (-(2**31), -1, 0, 2, len(good) - 16, len(good) - 15, 2**31 - 1):
        out.append(_sealed(struct.pack("<i", name_len) + good[12:]))
    out.append(_sealed(struct.pack("<i", 2) + b"ul" + struct.pack("<i", -7)))
    return out


@pytest.mark.parametrize("data", _headers())
@pytest.mark.parametrize("little", [True, False])
def test_header_verdicts_agree(data: bytes, little: bool) -> None:
    from pybin import _speedups  # type: ignore[attr-defined]

    assert _speedups.header(data, little) == _fields.header(data, little)


def test_header_reads_the_fields_it_reports() -> None:
    data = _sealed(struct.pack("<i", 2) + b"ul" + struct.pack("<i", -7))
    computed = ~zlib.crc32(data[8:]) & 0xFFFFFFFF
    assert _fields.header(data, True) == (0, 2, -7, computed, computed)
    assert _fields.header(data[:17], True) == (1, 0, 0, 0, 0)
    assert _fields.header(b"X" * 20, True) == (2, 0, 0, 0, 0)


@settings(max_examples=500)
@given(tail=st.binary(max_size=64), seal=st.booleans(), little=st.booleans())
def test_header_agrees_on_any_bytes(tail: bytes, seal: bool, little: bool) -> None:
    from pybin import _speedups  # type: ignore[attr-defined]

    data = _sealed(tail, little) if seal else b"P4CK" + tail
    assert _speedups.header(data, little) == _fields.header(data, little)
    assert _speedups.header(tail, little) == _fields.header(tail, little)


# -- JSON lines: compiled, pure and json.dumps(packet_to_json(...)) all agree ----------------


# bytes that stress the UTF-8 decoder and json's escaping: controls, quotes, DEL,
# every lead/continuation boundary, surrogates encoded in UTF-8, astral characters
TRICKY = st.sampled_from([
    b"\x00", b"\x1f", b'"', b"\\", b"\x7f", b"\x80", b"\xbf", b"\xc0\x80", b"\xc2\x80", b"\xdf\xbf",
    b"\xe0\x9f\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xed\xa0\x80", b"\xef\xbf\xbf", b"\xf0\x8f\xbf\xbf",
    b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf", b"\xf4\x90\x80\x80", b"\xf5", b"\xff", "é€😀".encode(), b"\n\r\t\b\f",
])
TEXT = st.lists(st.one_of(TRICKY, st.binary(max_size=6)), max_size=5).map(b"".join)
PAIRS = st.lists(st.tuples(TEXT, TEXT), max_size=3).map(tuple)


@st.composite
def dialog_packets(draw):
    command = draw(st.sampled_from([1, 2, 3]))
    fields = {}
    for name, kind in DIALOG_FIELDS[: 3 if command == 3 else None]:
        if kind == "int":
            fields[name] = draw(st.sampled_from([0, 1, 4, 2**31, 2**32 - 1]))
        elif kind == "pairs":
            fields[name] = draw(PAIRS)
        else:
            fields[name] = draw(TEXT)
    return make(command, **fields).encode()


def _lines(data: bytes) -> tuple[object, object, object]:
    from pybin import _speedups  # type: ignore[attr-defined]

    args = (data, jsonio._MODULES, True)
    try:
        careful: object = json.dumps(jsonio.packet_to_json(data)).encode()
    except PybinError:
        careful = None
    return _speedups.json_line(*args), _fields.json_line(*args), careful


@settings(max_examples=400)
@given(dialog_packets())
def test_json_lines_agree_on_any_dialog(data: bytes) -> None:
    compiled, pure, careful = _lines(data)
    assert compiled == pure == careful is not None
    assert jsonio.packet_json_line(data) == careful
    summary = summary_line(jsonio.packet_to_json(data), "p ").encode("utf-8", "surrogateescape")
    assert packet_summary(data, b"p ") == summary


@settings(max_examples=300)
@given(dialog_packets(), st.integers(0, 400), st.binary(min_size=1, max_size=3), st.booleans())
def test_json_lines_agree_on_damaged_packets(data: bytes, at: int, junk: bytes, reseal: bool) -> None:
    at %= len(data)
    broken = data[:at] + junk + data[at + len(junk):]
    if reseal:
        broken = broken[:4] + struct.pack("<I", ~zlib.crc32(broken[8:]) & 0xFFFFFFFF) + broken[8:]
    compiled, pure, careful = _lines(broken)
    assert compiled == pure
    assert compiled is None or compiled == careful


@pytest.mark.parametrize("module, command", [(b"tm", 1), (b"\xffx\"", -5), (b"dialog\0", 2), (b"ul\0", 3)])
def test_json_lines_of_other_modules(module: bytes, command: int) -> None:
    builder = PacketBuilder(module, command)
    builder.push_str(b"anything")
    data = builder.finish()
    compiled, pure, careful = _lines(data)
    assert compiled == pure == careful
    assert json.loads(compiled)["dialog"] is None  # type: ignore[arg-type]


def test_a_bad_checksum_is_reported_not_refused(basic_calls) -> None:
    data = basic_calls[0].data[:4] + b"\0\0\0\0" + basic_calls[0].data[8:]
    compiled, pure, careful = _lines(data)
    assert compiled == pure == careful
    assert b'"checksum_ok": false' in compiled  # type: ignore[operator]


# -- JSON lines back: the canonical reader agrees with its twin and with json.loads ---------


def _read_back(line: bytes) -> object:
    from pybin import _speedups  # type: ignore[attr-defined]

    for order in ByteOrder:
        args = (line, jsonio._MODULE_HEADS[order], order is ByteOrder.LITTLE)
        assert _speedups.packet_from_json_line(*args) == _fields.packet_from_json_line(*args)
        fast = jsonio.packet_from_json_line(line, order)
        if fast is not None:
            assert fast == jsonio.packet_from_json(json.loads(line), order)
    return jsonio.packet_from_json_line(line)


@settings(max_examples=400)
@given(dialog_packets())
def test_every_line_decode_writes_is_read_back_in_one_pass(data: bytes) -> None:
    line = jsonio.packet_json_line(data)
    assert _read_back(line) == data
    assert _read_back(line + b"\n") == data


@settings(max_examples=400)
@given(dialog_packets(), st.integers(0, 10_000), st.sampled_from([b"", b" ", b"\\", b'"', b"0", b"\\u00", b"-", b"\xc3\xa9"]),
       st.integers(0, 3))
def test_any_other_line_is_left_to_json_loads_or_read_the_same(data: bytes, at: int, insert: bytes, cut: int) -> None:
    line = jsonio.packet_json_line(data)
    at %= len(line) + 1
    _read_back(line[:at] + insert + line[at + cut:])


@pytest.mark.parametrize(
    "line",
    [
        b'{"module": "dialog", "command": 3, "checksum_ok": true, "hex": "", "dialog": {"call_id": "a\\/b", "from_tag": "", "to_tag": ""}}',
        b'{"module": "dialog", "command": 3, "checksum_ok": true, "hex": "", "dialog": {"call_id": "\\u0041", "from_tag": "", "to_tag": ""}}',
        b'{"module": "dialog", "command": 3, "checksum_ok": true, "hex": "", "dialog": {"call_id": "\\u00E9", "from_tag": "", "to_tag": ""}}',
        b'{"module": "dialog", "command": 3, "checksum_ok": true, "hex": "", "dialog": {"call_id": "\\ud800", "from_tag": "", "to_tag": ""}}',
        b'{"module": "dialog", "command": 3, "checksum_ok": true, "hex": "", "dialog": {"call_id": "\\udc7f", "from_tag": "", "to_tag": ""}}',
        b'{"module": "dialog", "command": 3, "checksum_ok": false, "hex": "", "dialog": {"call_id": "", "from_tag": "", "to_tag": ""}}',
        b'{"module": "dialog", "command": 03, "checksum_ok": true, "hex": "", "dialog": {"call_id": "", "from_tag": "", "to_tag": ""}}',
        b'{"module": "dialog", "command": 3, "checksum_ok": true, "hex": "", "dialog": {"call_id": "", "to_tag": "", "from_tag": ""}}',
        b'{"module":"dialog", "command": 3, "checksum_ok": true, "hex": "", "dialog": {"call_id": "", "from_tag": "", "to_tag": ""}}',
        b'{"module": "ul", "command": -0, "checksum_ok": true, "hex": "00", "dialog": null}',
        b'{"module": "ul", "command": 1, "checksum_ok": true, "hex": "0 0", "dialog": null}',
        b'{"module": "ul", "command": 2147483648, "checksum_ok": true, "hex": "00", "dialog": null}',
    ],
)
def test_lines_decode_never_writes_take_the_careful_way(line: bytes) -> None:
    assert _read_back(line) is None


@pytest.mark.parametrize(
    "line, expected",
    [
        (b'{"module": "ul", "command": -7, "checksum_ok": false, "hex": "5034aB", "dialog": null}', b"P4\xab"),
        (b'{"module": "dialog", "command": 3, "checksum_ok": true, "hex": "zz", "dialog": '
         b'{"call_id": "\\ud83d\\ude00\\udcff\\u007f\\n", "from_tag": "", "to_tag": ""}}',
         make(3, call_id="😀".encode() + b"\xff\x7f\n").encode()),
    ],
)
def test_canonical_lines_read_back_exactly(line: bytes, expected: bytes) -> None:
    assert _read_back(line) == expected


def test_a_line_for_a_packet_over_65535_bytes_is_left_to_the_careful_way() -> None:
    line = jsonio.packet_json_line(make(3, call_id=b"x" * 60_000).encode()).replace(b'"x', b'"' + b"y" * 6000 + b"x")
    assert _read_back(line) is None
    with pytest.raises(PybinError, match="65535-byte packet limit"):
        jsonio.packet_from_json(json.loads(line))


def test_big_endian_packets_read_and_write_the_same(basic_calls) -> None:
    from pybin import _speedups  # type: ignore[attr-defined]
    from pybin.dialog import decode

    for item in basic_calls:
        data = decode(item.data).encode(ByteOrder.BIG)
        args = (data, jsonio._MODULES, False)
        careful = json.dumps(jsonio.packet_to_json(data, ByteOrder.BIG)).encode()
        assert _speedups.json_line(*args) == _fields.json_line(*args) == careful
        assert jsonio.packet_json_line(data, ByteOrder.BIG) == careful
        assert jsonio.packet_from_json_line(careful, ByteOrder.BIG) == data
        text = summary_line(jsonio.packet_to_json(data, ByteOrder.BIG)).encode()
        assert packet_summary(data, b"", ByteOrder.BIG) == text


# -- the same for usrloc (module "ul"): raw C integers in strings included -------------------

RAW_VALUES = st.one_of(
    st.builds(RawInt, st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31), 1796574254]), st.just(4)),
    st.builds(RawInt, st.sampled_from([0, -1, 2**63 - 1, -(2**63), 1796574254, 2**32]), st.just(8)),
)


@st.composite
def ul_packets(draw):
    command = draw(st.sampled_from([1, 2, 3, 4, 5]))
    cls = usrloc.MESSAGES[command]
    fields = {}
    for name, kind in cls.FIELDS:
        if kind == "int":
            fields[name] = draw(st.sampled_from([0, 1, 47, 2**31, 2**32 - 1]))
        elif kind == "raw":
            fields[name] = draw(RAW_VALUES)
        else:
            fields[name] = draw(TEXT)
    return usrloc.make(command, **fields).encode(draw(st.sampled_from(ByteOrder)))


def _both_orders(data: bytes) -> ByteOrder:
    """The byte order a ul_packets() example was written in (the name length says)."""
    return ByteOrder.LITTLE if data[8:12] == b"\x02\0\0\0" else ByteOrder.BIG


@settings(max_examples=400)
@given(ul_packets())
def test_json_lines_agree_on_any_ul_packet(data: bytes) -> None:
    from pybin import _speedups  # type: ignore[attr-defined]

    order = _both_orders(data)
    little = order is ByteOrder.LITTLE
    careful = json.dumps(jsonio.packet_to_json(data, order)).encode()
    assert _speedups.json_line(data, jsonio._MODULES, little) == _fields.json_line(data, jsonio._MODULES, little) == careful
    assert json.loads(careful)["ul"]["domain"] is not None
    summary = summary_line(jsonio.packet_to_json(data, order), "p ").encode("utf-8", "surrogateescape")
    assert packet_summary(data, b"p ", order) == summary


@settings(max_examples=300)
@given(ul_packets(), st.integers(0, 400), st.binary(min_size=1, max_size=3), st.booleans())
def test_json_lines_agree_on_damaged_ul_packets(data: bytes, at: int, junk: bytes, reseal: bool) -> None:
    at %= len(data)
    broken = data[:at] + junk + data[at + len(junk):]
    if reseal:
        broken = broken[:4] + struct.pack("<I", ~zlib.crc32(broken[8:]) & 0xFFFFFFFF) + broken[8:]
    compiled, pure, careful = _lines(broken)
    assert compiled == pure
    assert compiled is None or compiled == careful


@settings(max_examples=400)
@given(ul_packets())
def test_every_ul_line_decode_writes_is_read_back_in_one_pass(data: bytes) -> None:
    order = _both_orders(data)
    line = jsonio.packet_json_line(data, order)
    for reader_order in ByteOrder:
        from pybin import _speedups  # type: ignore[attr-defined]

        args = (line, jsonio._MODULE_HEADS[reader_order], reader_order is ByteOrder.LITTLE)
        assert _speedups.packet_from_json_line(*args) == _fields.packet_from_json_line(*args)
    assert jsonio.packet_from_json_line(line, order) == data
    assert jsonio.packet_from_json(json.loads(line), order) == data


@settings(max_examples=400)
@given(ul_packets(), st.integers(0, 10_000),
       st.sampled_from([b"", b" ", b"-", b"0", b"9", b"99999999999", b'"', b"}", b", \"size\": 4", b"\\u00"]),
       st.integers(0, 3))
def test_any_other_ul_line_is_left_to_json_loads_or_read_the_same(data: bytes, at: int, insert: bytes, cut: int) -> None:
    line = jsonio.packet_json_line(data, _both_orders(data))
    at %= len(line) + 1
    _read_back(line[:at] + insert + line[at + cut:])


_UL_HEAD = b'{"module": "ul", "command": 1, "checksum_ok": true, "hex": "", "ul": {"domain": "", "aor": ""}}'
_RAW_LINE = (b'{"module": "ul", "command": 5, "checksum_ok": true, "hex": "", "ul": {"domain": "", "aor": "", '
             b'"contact": "", "call_id": "", "cseq": 0}}')


@pytest.mark.parametrize(
    "line",
    [
        _UL_HEAD.replace(b'"ul": {', b'"dialog": {'),  # fields under the other module's key
        _UL_HEAD.replace(b'"module": "ul"', b'"module": "dialog"'),
        _UL_HEAD.replace(b'"command": 1', b'"command": 6'),
        _UL_HEAD.replace(b'"ul": {"domain": ""', b'"ul": {"domain": null'),
        _UL_HEAD.replace(b'}}', b', "x": 1}}'),
        _UL_HEAD.replace(b'"ul": {"domain": "", "aor": ""}', b'"ul": null'),  # only "dialog": null is a hex line
        _RAW_LINE.replace(b'"cseq": 0', b'"cseq": -1'),
    ],
)
def test_ul_lines_decode_never_writes_take_the_careful_way(line: bytes) -> None:
    assert _read_back(line) is None


def _contact_line(expires: bytes) -> bytes:
    msg = usrloc.make(3, domain=b"location", aor=b"alice")
    return jsonio.packet_json_line(msg.encode()).replace(b'"expires": {"value": 0, "size": 8}', expires)


@pytest.mark.parametrize(
    "raw",
    [
        b'"expires": {"value": 2147483648, "size": 4}',  # does not fit in 4 bytes
        b'"expires": {"value": -2147483649, "size": 4}',
        b'"expires": {"value": 9223372036854775808, "size": 8}',
        b'"expires": {"value": -9223372036854775809, "size": 8}',
        b'"expires": {"value": 99999999999999999999, "size": 8}',
        b'"expires": {"value": 1, "size": 5}',
        b'"expires": {"value": 1, "size": 0}',
        b'"expires": {"size": 8, "value": 1}',  # json.loads reads it; the codec writes the other order
        b'"expires": {"value": -0, "size": 8}',
        b'"expires": {"value": 01, "size": 8}',
        b'"expires": {"value": 1.0, "size": 8}',
        b'"expires": {"value": true, "size": 8}',
        b'"expires": {"value": 1, "size": 8, "x": 0}',
        b'"expires": 1',
    ],
)
def test_raw_integers_decode_never_writes_take_the_careful_way(raw: bytes) -> None:
    assert _read_back(_contact_line(raw)) is None


@pytest.mark.parametrize(
    "raw, value",
    [
        (b'"expires": {"value": -9223372036854775808, "size": 8}', RawInt(-(2**63), 8)),
        (b'"expires": {"value": 9223372036854775807, "size": 8}', RawInt(2**63 - 1, 8)),
        (b'"expires": {"value": -2147483648, "size": 4}', RawInt(-(2**31), 4)),
        (b'"expires": {"value": 2147483647, "size": 4}', RawInt(2**31 - 1, 4)),
    ],
)
def test_raw_integer_boundaries_read_back_in_one_pass(raw: bytes, value: RawInt) -> None:
    data = _read_back(_contact_line(raw))
    assert data == usrloc.make(3, domain=b"location", aor=b"alice", expires=value).encode()
