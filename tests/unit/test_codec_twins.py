"""The compiled codec and its pure-Python twin give the same answers (header, JSON lines).

The field functions are compared in test_dialog.py; these are the ones the command
line's fast paths added.
"""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybin import _fields
from pybin._codec import COMPILED

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
