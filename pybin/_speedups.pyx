# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of ``_fields.py``: same functions, same results, same None-on-error.

Why it exists: on a small CI machine a per-field ``struct`` decoder manages about
70,000 dialog packets a second; the interpreter overhead per field, not the work, is
the cost. Here each field costs a few machine instructions. The same holds, more so,
for the JSON lines of the command line: json.dumps / json.loads of a 30-key object
cost more than everything else a packet needs.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport realloc
from libc.string cimport memcmp, memcpy

from pybin._fields import RawInt

cdef uint32_t T[8][256]


cdef void _make_tables():
    """Slicing-by-8 tables for the reflected polynomial 0xEDB88320."""
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = n
        for k in range(8):
            if c & 1:
                c = 0xEDB88320 ^ (c >> 1)
            else:
                c = c >> 1
        T[0][n] = c
    for n in range(256):
        c = T[0][n]
        for k in range(1, 8):
            c = T[0][c & 0xFF] ^ (c >> 8)
            T[k][n] = c


_make_tables()


cdef inline uint32_t _crc(const unsigned char *p, Py_ssize_t n) noexcept nogil:
    """crc32_uint() of crc.c: from 0xFFFFFFFF, no final XOR."""
    cdef uint32_t h = 0xFFFFFFFF
    cdef uint32_t a, b
    while n >= 8:
        a = h ^ (p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24))
        b = p[4] | (<uint32_t>p[5] << 8) | (<uint32_t>p[6] << 16) | (<uint32_t>p[7] << 24)
        h = (T[7][a & 0xFF] ^ T[6][(a >> 8) & 0xFF] ^ T[5][(a >> 16) & 0xFF] ^ T[4][a >> 24]
             ^ T[3][b & 0xFF] ^ T[2][(b >> 8) & 0xFF] ^ T[1][(b >> 16) & 0xFF] ^ T[0][b >> 24])
        p += 8
        n -= 8
    while n > 0:
        h = T[0][(h ^ p[0]) & 0xFF] ^ (h >> 8)
        p += 1
        n -= 1
    return h


cdef inline uint32_t _rd(const unsigned char *p, bint little) noexcept nogil:
    if little:
        return p[0] | (<uint32_t>p[1] << 8) | (<uint32_t>p[2] << 16) | (<uint32_t>p[3] << 24)
    return p[3] | (<uint32_t>p[2] << 8) | (<uint32_t>p[1] << 16) | (<uint32_t>p[0] << 24)


cdef inline void _wr(unsigned char *p, uint32_t v, bint little) noexcept nogil:
    if little:
        p[0] = v & 0xFF
        p[1] = (v >> 8) & 0xFF
        p[2] = (v >> 16) & 0xFF
        p[3] = (v >> 24) & 0xFF
    else:
        p[3] = v & 0xFF
        p[2] = (v >> 8) & 0xFF
        p[1] = (v >> 16) & 0xFF
        p[0] = (v >> 24) & 0xFF


cdef inline uint64_t _rd64(const unsigned char *p, bint little) noexcept nogil:
    cdef uint64_t lo = _rd(p, little), hi = _rd(p + 4, little)
    if little:
        return lo | (hi << 32)
    return (lo << 32) | hi


cdef inline void _wr64(unsigned char *p, uint64_t v, bint little) noexcept nogil:
    if little:
        _wr(p, <uint32_t>v, True)
        _wr(p + 4, <uint32_t>(v >> 32), True)
    else:
        _wr(p, <uint32_t>(v >> 32), False)
        _wr(p + 4, <uint32_t>v, False)


cdef object _rawint(const unsigned char *p, uint32_t n, bint little):
    """A C integer sent as its own 4 or 8 bytes; None for any other size."""
    if n == 4:
        return tuple.__new__(RawInt, (<int32_t>_rd(p, little), 4))
    if n == 8:
        return tuple.__new__(RawInt, (<int64_t>_rd64(p, little), 8))
    return None


def crc(bytes data, Py_ssize_t start):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    if start > n:
        start = n
    return _crc(<const unsigned char *>PyBytes_AS_STRING(data) + start, n - start)


cdef object _pairs(const unsigned char *p, Py_ssize_t end):
    """Split ``name#value|...``; None when the text is not exactly such pairs."""
    cdef Py_ssize_t i = 0, w, start
    cdef unsigned char c
    cdef unsigned char *b = NULL
    cdef bytearray buf = None
    cdef list pairs = []
    cdef int part
    cdef object name = None, text
    while i < end:
        for part in range(2):
            start = i
            w = -1  # -1: no escape seen, the text is a plain slice of the input
            while True:
                if i >= end:
                    return None
                c = p[i]
                if c == 92:  # backslash
                    if i + 1 >= end:
                        return None
                    c = p[i + 1]
                    if c != 92 and c != 124 and c != 35:
                        return None
                    if w < 0:
                        if buf is None:
                            buf = bytearray(end)
                            b = buf
                        w = i - start
                        memcpy(b, p + start, w)
                    b[w] = c
                    w += 1
                    i += 2
                    continue
                if c == 35 or c == 124:  # '#' or '|'
                    if (c == 35) != (part == 0):
                        return None
                    break
                if w >= 0:
                    b[w] = c
                    w += 1
                i += 1
            if w < 0:
                text = PyBytes_FromStringAndSize(<const char *>p + start, i - start)
            else:
                text = PyBytes_FromStringAndSize(<const char *>b, w)
            i += 1
            if part == 0:
                name = text
            else:
                pairs.append((name, text))
    return tuple(pairs)


cdef object _pop(const unsigned char *p, Py_ssize_t end, Py_ssize_t offset,
                 const unsigned char *lay, Py_ssize_t count, bint little):
    """Fields after the command; ``s`` string, ``p`` pairs string, ``I`` u32, ``r`` a
    C integer in a 4- or 8-byte string (a RawInt)."""
    cdef Py_ssize_t k
    cdef uint32_t n
    cdef list values = [None] * count
    cdef object pairs
    if offset < 0:
        return None
    for k in range(count):
        if offset + 4 > end:
            return None
        n = _rd(p + offset, little)
        offset += 4
        if lay[k] == 73:  # 'I'
            values[k] = n
        else:
            if n > end - offset:
                return None
            if lay[k] == 114:  # 'r'
                values[k] = _rawint(p + offset, n, little)
                if values[k] is None:
                    return None
            elif lay[k] == 112:  # 'p'
                pairs = _pairs(p + offset, n)
                if pairs is None:
                    return None
                values[k] = pairs
            else:
                values[k] = PyBytes_FromStringAndSize(<const char *>p + offset, n)
            offset += n
    return values, offset


def pop_fields(bytes data, Py_ssize_t offset, bytes layout, bint little):
    return _pop(<const unsigned char *>PyBytes_AS_STRING(data), PyBytes_GET_SIZE(data), offset,
                <const unsigned char *>PyBytes_AS_STRING(layout), PyBytes_GET_SIZE(layout), little)


def split_pairs(bytes raw):
    return _pairs(<const unsigned char *>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))


cdef inline int32_t _header(const unsigned char *p, Py_ssize_t size, bint little,
                            int32_t *name_len, int32_t *cmd, uint32_t *stored,
                            uint32_t *computed) noexcept nogil:
    """The receive loop's header checks; 0 good, 1 runt, 2 not P4CK, 3 name past the end."""
    name_len[0] = 0
    cmd[0] = 0
    stored[0] = 0
    computed[0] = 0
    if size < 18:
        return 1
    if p[0] != 80 or p[1] != 52 or p[2] != 67 or p[3] != 75:
        return 2
    stored[0] = _rd(p + 4, little)
    computed[0] = _crc(p + 8, size - 8)
    name_len[0] = <int32_t>_rd(p + 8, little)
    if name_len[0] < 0 or name_len[0] > size - 16:
        return 3
    cmd[0] = <int32_t>_rd(p + 12 + name_len[0], little)
    return 0


def header(bytes data, bint little):
    """(verdict, name_len, command, stored, computed): see ``_fields.header``."""
    cdef int32_t name_len, cmd
    cdef uint32_t stored, computed
    cdef int32_t verdict = _header(<const unsigned char *>PyBytes_AS_STRING(data),
                                   PyBytes_GET_SIZE(data), little,
                                   &name_len, &cmd, &stored, &computed)
    return verdict, name_len, cmd, stored, computed


def decode_packet(bytes data, bytes module, tuple layouts, bint little):
    """Header checks, module name, command and every field in one pass.

    ``layouts[cmd]`` is the layout of command ``cmd``. Returns (cmd, values) for a
    packet that is good in every respect, else None.
    """
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    cdef int32_t name_len, cmd
    cdef uint32_t stored, computed
    cdef bytes layout
    if _header(p, size, little, &name_len, &cmd, &stored, &computed) or stored != computed:
        return None
    if name_len != PyBytes_GET_SIZE(module) or memcmp(p + 12, PyBytes_AS_STRING(module), name_len) != 0:
        return None
    if cmd < 0 or cmd >= len(layouts):
        return None
    layout = layouts[cmd]
    if layout is None:
        return None
    popped = _pop(p, size, 16 + name_len, <const unsigned char *>PyBytes_AS_STRING(layout),
                  PyBytes_GET_SIZE(layout), little)
    if popped is None or popped[1] != size:
        return None
    return cmd, popped[0]


cdef Py_ssize_t _raw_size(object value):
    """A RawInt's size when it is 4 or 8 and holds its value (as a signed C integer), else 0."""
    if type(value) is not RawInt:
        return 0
    number, size = value
    if type(number) is not int or type(size) is not int:
        return 0
    if size == 4 and -2147483648 <= number <= 2147483647:
        return 4
    if size == 8 and -9223372036854775808 <= number <= 9223372036854775807:
        return 8
    return 0


cdef Py_ssize_t _put_raw(unsigned char *o, object value, bint little):
    """Length and bytes of a RawInt that ``_raw_size`` accepted."""
    cdef int64_t number = value[0]
    if value[1] == 4:
        _wr(o, 4, little)
        _wr(o + 4, <uint32_t><int32_t>number, little)
        return 8
    _wr(o, 8, little)
    _wr64(o + 4, <uint64_t>number, little)
    return 12


def build(bytes head, bytes layout, values, bint little):
    cdef const unsigned char *lay = <const unsigned char *>PyBytes_AS_STRING(layout)
    cdef Py_ssize_t count = PyBytes_GET_SIZE(layout)
    cdef Py_ssize_t k, size, n, pos
    cdef unsigned char *out
    cdef object value
    cdef bytes result
    if not isinstance(values, (list, tuple)):
        return None
    if len(values) != count:
        return None
    size = 8 + PyBytes_GET_SIZE(head)
    for k in range(count):
        value = values[k]
        if lay[k] == 114:  # 'r'
            n = _raw_size(value)
            if n == 0:
                return None
            size += 4 + n
        elif lay[k] != 73:
            if type(value) is not bytes:
                return None
            size += 4 + PyBytes_GET_SIZE(value)
        else:
            if type(value) is not int or value < 0 or value > 0xFFFFFFFF:
                return None
            size += 4
    result = PyBytes_FromStringAndSize(NULL, size)
    out = <unsigned char *>PyBytes_AS_STRING(result)
    memcpy(out, b"P4CK", 4)
    n = PyBytes_GET_SIZE(head)
    memcpy(out + 8, PyBytes_AS_STRING(head), n)
    pos = 8 + n
    for k in range(count):
        value = values[k]
        if lay[k] == 114:  # 'r'
            pos += _put_raw(out + pos, value, little)
        elif lay[k] != 73:
            n = PyBytes_GET_SIZE(value)
            _wr(out + pos, <uint32_t>n, little)
            memcpy(out + pos + 4, PyBytes_AS_STRING(value), n)
            pos += 4 + n
        else:
            _wr(out + pos, <uint32_t>value, little)
            pos += 4
    _wr(out + 4, _crc(out + 8, size - 8), little)
    return result


def join_pairs(pairs):
    if not isinstance(pairs, (list, tuple)):
        return None
    cdef Py_ssize_t size = 0, k, n, i, j
    cdef const unsigned char *s
    cdef unsigned char *out
    cdef unsigned char c
    cdef bytes result
    cdef object pair, item
    for pair in pairs:
        if type(pair) is not tuple or len(pair) != 2:
            return None
        for item in pair:
            if type(item) is not bytes:
                return None
            s = <const unsigned char *>PyBytes_AS_STRING(item)
            n = PyBytes_GET_SIZE(item)
            size += n + 1
            for j in range(n):
                c = s[j]
                if c == b'\\' or c == b'|' or c == b'#':
                    size += 1
    result = PyBytes_FromStringAndSize(NULL, size)
    out = <unsigned char *>PyBytes_AS_STRING(result)
    k = 0
    for pair in pairs:
        for j, item in enumerate(pair):
            k += _escape(out + k, <const unsigned char *>PyBytes_AS_STRING(item), PyBytes_GET_SIZE(item))
            out[k] = b'#' if j == 0 else b'|'
            k += 1
    return result


cdef inline Py_ssize_t _escape(unsigned char *o, const unsigned char *s, Py_ssize_t n) noexcept nogil:
    """write_pair's escaping: a backslash before every backslash, '|' and '#'."""
    cdef Py_ssize_t i, k = 0
    cdef unsigned char c
    for i in range(n):
        c = s[i]
        if c == 92 or c == 124 or c == 35:
            o[k] = 92
            k += 1
        o[k] = c
        k += 1
    return k


# -- JSON lines ----------------------------------------------------------------------------

cdef unsigned char *_HEX = b"0123456789abcdef"


cdef struct _Buffer:
    unsigned char *data
    Py_ssize_t size


#: json_line's output and parse_json_line's decoded strings; the GIL keeps them ours
cdef _Buffer _out, _scratch


cdef unsigned char *_grow(_Buffer *buffer, Py_ssize_t size) except NULL:
    """The buffer, grown to at least ``size`` bytes (never shrunk: lines are alike)."""
    cdef unsigned char *grown
    if size > buffer.size:
        grown = <unsigned char *>realloc(buffer.data, size)
        if grown == NULL:
            raise MemoryError()
        buffer.data = grown
        buffer.size = size
    return buffer.data


cdef inline Py_ssize_t _u4(unsigned char *o, uint32_t v) noexcept nogil:
    o[0] = 92
    o[1] = 117  # \u
    o[2] = _HEX[(v >> 12) & 15]
    o[3] = _HEX[(v >> 8) & 15]
    o[4] = _HEX[(v >> 4) & 15]
    o[5] = _HEX[v & 15]
    return 6


cdef Py_ssize_t _json_str(unsigned char *o, const unsigned char *p, Py_ssize_t n) noexcept nogil:
    """``json.dumps(raw.decode("utf-8", "surrogateescape"))``: needs 6 * n + 2 bytes.

    Python's UTF-8 decoder takes exactly the well-formed sequences below; every other
    byte becomes U+DC80..U+DCFF on its own (the maximal-subpart rule gives the same as
    restarting at the next byte), and json's ASCII escaping writes what is not
    printable ASCII as \\uXXXX, astral characters as a surrogate pair.
    """
    cdef Py_ssize_t i = 0, w = 1, k
    cdef unsigned char c, c1
    cdef uint32_t cp
    o[0] = 34
    while i < n:
        c = p[i]
        if c < 0x80:
            i += 1
            if 32 <= c and c != 34 and c != 92 and c != 127:
                o[w] = c
                w += 1
            elif c == 34 or c == 92:
                o[w] = 92
                o[w + 1] = c
                w += 2
            elif c == 10 or c == 13 or c == 9 or c == 8 or c == 12:
                o[w] = 92
                o[w + 1] = (110 if c == 10 else 114 if c == 13 else 116 if c == 9 else 98 if c == 8 else 102)
                w += 2
            else:
                w += _u4(o + w, c)
            continue
        k = 0
        if 0xC2 <= c <= 0xDF:
            if i + 1 < n and (p[i + 1] & 0xC0) == 0x80:
                k = 2
                cp = ((c & 0x1F) << 6) | (p[i + 1] & 0x3F)
        elif 0xE0 <= c <= 0xEF:
            if i + 2 < n:
                c1 = p[i + 1]
                if ((0xA0 if c == 0xE0 else 0x80) <= c1 <= (0x9F if c == 0xED else 0xBF)
                        and (p[i + 2] & 0xC0) == 0x80):
                    k = 3
                    cp = ((c & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (p[i + 2] & 0x3F)
        elif 0xF0 <= c <= 0xF4:
            if i + 3 < n:
                c1 = p[i + 1]
                if ((0x90 if c == 0xF0 else 0x80) <= c1 <= (0x8F if c == 0xF4 else 0xBF)
                        and (p[i + 2] & 0xC0) == 0x80 and (p[i + 3] & 0xC0) == 0x80):
                    k = 4
                    cp = (((c & 0x07) << 18) | ((c1 & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6)
                          | (p[i + 3] & 0x3F))
        if k == 0:  # not UTF-8: surrogateescape's U+DC80..U+DCFF
            w += _u4(o + w, 0xDC00 + c)
            i += 1
        elif cp >= 0x10000:
            cp -= 0x10000
            w += _u4(o + w, 0xD800 | (cp >> 10))
            w += _u4(o + w, 0xDC00 | (cp & 0x3FF))
            i += k
        else:
            w += _u4(o + w, cp)
            i += k
    o[w] = 34
    return w + 1


cdef inline Py_ssize_t _put(unsigned char *o, bytes text):
    cdef Py_ssize_t n = PyBytes_GET_SIZE(text)
    memcpy(o, PyBytes_AS_STRING(text), n)
    return n


cdef inline Py_ssize_t _int(unsigned char *o, long long v) noexcept nogil:
    cdef unsigned char digits[24]
    cdef Py_ssize_t n = 0, w = 0
    cdef unsigned long long u
    if v < 0:
        o[0] = 45
        w = 1
        u = <unsigned long long>(-(v + 1)) + 1  # -v overflows for LLONG_MIN
    else:
        u = <unsigned long long>v
    while True:
        digits[n] = 48 + u % 10
        n += 1
        u //= 10
        if u == 0:
            break
    while n > 0:
        n -= 1
        o[w] = digits[n]
        w += 1
    return w


def json_line(bytes data, tuple modules, bint little):
    """``json.dumps`` of a packet's JSON-lines object, as ASCII bytes; None when the
    packet is not one (the careful path then says why).

    ``modules`` holds, per module pybin decodes, ``(name, layouts, keys)``: ``keys[cmd]``
    is, per field of command ``cmd``, the JSON text that comes before its value
    (``'"call_id": '``, ``', "from_tag": '``, ...). Its fields go under its name.
    """
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(data)
    cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
    cdef int32_t name_len, cmd
    cdef uint32_t stored, computed
    cdef Py_ssize_t w, i, need, count
    cdef unsigned char *o
    cdef list values = None
    cdef tuple names = None, layouts, spec
    cdef bytes layout, raw, module = None, name
    cdef object value, pair
    cdef bint first
    if _header(p, size, little, &name_len, &cmd, &stored, &computed):
        return None
    for spec in modules:
        name = spec[0]
        if name_len == PyBytes_GET_SIZE(name) and memcmp(p + 12, PyBytes_AS_STRING(name), name_len) == 0:
            module = name
            layouts = spec[1]
            if cmd < 0 or cmd >= len(layouts) or layouts[cmd] is None:
                return None
            layout = layouts[cmd]
            names = spec[2][cmd]
            popped = _pop(p, size, 16 + name_len, <const unsigned char *>PyBytes_AS_STRING(layout),
                          PyBytes_GET_SIZE(layout), little)
            if popped is None or popped[1] != size:
                return None
            values = popped[0]
            break
    # strings take at most 6 bytes per byte, the hex 2; keys and numbers are small
    need = 8 * size + 64 * (len(values) if values is not None else 0) + 256
    if names is not None:
        for raw in names:
            need += PyBytes_GET_SIZE(raw)
    o = _grow(&_out, need)
    w = _put(o, b'{"module": ')
    w += _json_str(o + w, p + 12, name_len)
    w += _put(o + w, b', "command": ')
    w += _int(o + w, cmd)
    w += _put(o + w, b', "checksum_ok": true, "hex": "' if stored == computed
              else b', "checksum_ok": false, "hex": "')
    for i in range(size):
        o[w] = _HEX[p[i] >> 4]
        o[w + 1] = _HEX[p[i] & 15]
        w += 2
    if values is None:
        w += _put(o + w, b'", "dialog": null}')
        return PyBytes_FromStringAndSize(<const char *>o, w)
    w += _put(o + w, b'", "')
    w += _put(o + w, module)
    w += _put(o + w, b'": {')
    count = len(values)
    for i in range(count):
        w += _put(o + w, <bytes>names[i])
        value = values[i]
        if type(value) is bytes:
            w += _json_str(o + w, <const unsigned char *>PyBytes_AS_STRING(value), PyBytes_GET_SIZE(value))
        elif type(value) is RawInt:
            w += _put(o + w, b'{"value": ')
            w += _int(o + w, <long long>value[0])
            w += _put(o + w, b', "size": ')
            w += _int(o + w, <long long>value[1])
            o[w] = 125  # }
            w += 1
        elif type(value) is tuple:
            o[w] = 91  # [
            w += 1
            first = True
            for pair in value:
                if not first:
                    o[w] = 44
                    o[w + 1] = 32
                    w += 2
                first = False
                o[w] = 91
                w += 1
                raw = pair[0]
                w += _json_str(o + w, <const unsigned char *>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
                o[w] = 44
                o[w + 1] = 32
                w += 2
                raw = pair[1]
                w += _json_str(o + w, <const unsigned char *>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw))
                o[w] = 93
                w += 1
            o[w] = 93
            w += 1
        else:
            w += _int(o + w, <uint32_t>value)
    o[w] = 125
    o[w + 1] = 125
    return PyBytes_FromStringAndSize(<const char *>o, w + 2)


# -- JSON lines back to fields ---------------------------------------------------------------

cdef inline int _hex4(const unsigned char *p) noexcept nogil:
    """Four lowercase hex digits (json.dumps writes no others); -1 otherwise."""
    cdef int v = 0, k, c
    for k in range(4):
        c = p[k]
        if 48 <= c <= 57:
            v = v * 16 + c - 48
        elif 97 <= c <= 102:
            v = v * 16 + c - 87
        else:
            return -1
    return v


cdef inline Py_ssize_t _utf8(unsigned char *o, int cp) noexcept nogil:
    if cp < 0x80:
        o[0] = cp
        return 1
    if cp < 0x800:
        o[0] = 0xC0 | (cp >> 6)
        o[1] = 0x80 | (cp & 0x3F)
        return 2
    if cp < 0x10000:
        o[0] = 0xE0 | (cp >> 12)
        o[1] = 0x80 | ((cp >> 6) & 0x3F)
        o[2] = 0x80 | (cp & 0x3F)
        return 3
    o[0] = 0xF0 | (cp >> 18)
    o[1] = 0x80 | ((cp >> 12) & 0x3F)
    o[2] = 0x80 | ((cp >> 6) & 0x3F)
    o[3] = 0x80 | (cp & 0x3F)
    return 4


cdef Py_ssize_t _jstr(const unsigned char *p, Py_ssize_t n, Py_ssize_t *at, unsigned char *o) noexcept nogil:
    """A JSON string written exactly as json.dumps writes it → its text as UTF-8 with
    surrogateescape (``o`` needs as many bytes as the input has); -1 for any other
    spelling, or for text that is not bytes (a lone surrogate outside U+DC80..U+DCFF)."""
    cdef Py_ssize_t i = at[0], w = 0
    cdef int c, cp, lo
    if i >= n or p[i] != 34:
        return -1
    i += 1
    while True:
        if i >= n:
            return -1
        c = p[i]
        if c == 34:
            break
        if c != 92:
            if c < 32 or c > 126:
                return -1
            o[w] = c
            w += 1
            i += 1
            continue
        if i + 1 >= n:
            return -1
        c = p[i + 1]
        if c == 34 or c == 92:
            o[w] = c
        elif c == 110:
            o[w] = 10
        elif c == 114:
            o[w] = 13
        elif c == 116:
            o[w] = 9
        elif c == 98:
            o[w] = 8
        elif c == 102:
            o[w] = 12
        else:
            c = 0
        if c:
            w += 1
            i += 2
            continue
        if p[i + 1] != 117 or i + 6 > n:
            return -1
        cp = _hex4(p + i + 2)
        if cp < 0:
            return -1
        i += 6
        if 0xD800 <= cp <= 0xDBFF and i + 6 <= n and p[i] == 92 and p[i + 1] == 117:
            lo = _hex4(p + i + 2)
            if 0xDC00 <= lo <= 0xDFFF:  # json.loads joins the pair into one character
                w += _utf8(o + w, 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00))
                i += 6
                continue
        if cp < 32:
            if cp == 8 or cp == 9 or cp == 10 or cp == 12 or cp == 13:
                return -1  # json.dumps writes these with their short escapes
        elif cp < 127:
            return -1  # printable ASCII is never escaped this way
        elif 0xD800 <= cp <= 0xDFFF:
            if not 0xDC80 <= cp <= 0xDCFF:
                return -1
            o[w] = cp - 0xDC00  # surrogateescape's byte
            w += 1
            continue
        w += _utf8(o + w, cp)
    at[0] = i + 1
    return w


cdef inline bint _lit(const unsigned char *p, Py_ssize_t n, Py_ssize_t *at, bytes text) noexcept:
    cdef Py_ssize_t k = PyBytes_GET_SIZE(text)
    if at[0] + k > n or memcmp(p + at[0], PyBytes_AS_STRING(text), k) != 0:
        return False
    at[0] += k
    return True


cdef inline bint _jint(const unsigned char *p, Py_ssize_t n, Py_ssize_t *at, long long *v) noexcept nogil:
    """An integer as json.dumps writes it, at most 11 digits."""
    cdef Py_ssize_t i = at[0], digits = 0
    cdef bint negative = False
    cdef long long value = 0
    if i < n and p[i] == 45:
        negative = True
        i += 1
    if i >= n or not 48 <= p[i] <= 57 or (p[i] == 48 and (negative or (i + 1 < n and 48 <= p[i + 1] <= 57))):
        return False
    while i < n and 48 <= p[i] <= 57:
        value = value * 10 + p[i] - 48
        i += 1
        digits += 1
        if digits > 11:
            return False
    v[0] = -value if negative else value
    at[0] = i
    return True


cdef inline int _unhex(int c) noexcept nogil:
    if 48 <= c <= 57:
        return c - 48
    if 97 <= c <= 102:
        return c - 87
    if 65 <= c <= 70:
        return c - 55
    return -1


cdef inline bint _jint64(const unsigned char *p, Py_ssize_t n, Py_ssize_t *at, int64_t *v,
                         Py_ssize_t size) noexcept nogil:
    """An integer as json.dumps writes it that a signed C integer of ``size`` bytes holds."""
    cdef Py_ssize_t i = at[0], digits = 0
    cdef bint negative = False
    cdef uint64_t value = 0, limit = (<uint64_t>1) << (8 * size - 1)
    if i < n and p[i] == 45:
        negative = True
        i += 1
    if i >= n or not 48 <= p[i] <= 57 or (p[i] == 48 and (negative or (i + 1 < n and 48 <= p[i + 1] <= 57))):
        return False
    while i < n and 48 <= p[i] <= 57:
        digits += 1
        if digits > 19:  # 10**19 > 2**63: out of range whatever follows
            return False
        value = value * 10 + p[i] - 48
        i += 1
    if value > limit or (value == limit and not negative):
        return False
    v[0] = -<int64_t>(value - 1) - 1 if negative and value else <int64_t>value
    at[0] = i
    return True


def packet_from_json_line(bytes line, tuple modules, bint little):
    """The datagram of a JSON line written exactly as ``pybin decode --json`` writes it,
    built as the line is read; None for any other line (the careful path then reads
    it, or says what is wrong with it) and for a packet over 65535 bytes.

    ``modules`` holds, per module pybin decodes, ``(name, layouts, keys, heads)``: the
    first three as ``json_line`` takes them, ``heads[cmd]`` everything between the
    checksum and the first field (name length, name, command).
    """
    cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(line)
    cdef Py_ssize_t n = PyBytes_GET_SIZE(line)
    cdef Py_ssize_t i = 0, size, k, count, w, at, raw_size, k_end
    cdef unsigned char *o
    cdef unsigned char *out
    cdef long long command, number
    cdef int64_t raw_value
    cdef bint checksum_ok
    cdef const unsigned char *lay
    cdef tuple names, spec = None, layouts, candidate
    cdef bytes layout, head, result, module, name
    cdef int hi, lo, part
    if n and p[n - 1] == 10:
        n -= 1
    o = _grow(&_scratch, n + 1)
    if not _lit(p, n, &i, b'{"module": '):
        return None
    size = _jstr(p, n, &i, o)
    if size < 0:
        return None
    module = PyBytes_FromStringAndSize(<const char *>o, size)
    if not _lit(p, n, &i, b', "command": ') or not _jint(p, n, &i, &command):
        return None
    if not -2147483648 <= command <= 2147483647 or not _lit(p, n, &i, b', "checksum_ok": '):
        return None
    if _lit(p, n, &i, b"true"):
        checksum_ok = True
    elif _lit(p, n, &i, b"false"):
        checksum_ok = False
    else:
        return None
    if not _lit(p, n, &i, b', "hex": '):
        return None
    size = _jstr(p, n, &i, o)
    if size < 0:
        return None
    if _lit(p, n, &i, b', "dialog": null}'):
        if i != n or size % 2:
            return None
        result = PyBytes_FromStringAndSize(NULL, size // 2)
        for k in range(size // 2):
            hi = _unhex(o[2 * k])
            lo = _unhex(o[2 * k + 1])
            if hi < 0 or lo < 0:
                return None
            (<unsigned char *>PyBytes_AS_STRING(result))[k] = hi * 16 + lo
        return result
    for candidate in modules:
        name = candidate[0]
        if name == module:
            spec = candidate
            break
    if spec is None or not _lit(p, n, &i, b', "') or not _lit(p, n, &i, module) or not _lit(p, n, &i, b'": {'):
        return None
    layouts = spec[1]
    if not checksum_ok or command < 0 or command >= len(layouts) or layouts[command] is None:
        return None
    layout = layouts[command]
    names = spec[2][command]
    head = spec[3][command]
    lay = <const unsigned char *>PyBytes_AS_STRING(layout)
    count = PyBytes_GET_SIZE(layout)
    # a field is never longer on the wire than in JSON, but for escapes in pairs (x2)
    out = _grow(&_out, 2 * n + 8 + PyBytes_GET_SIZE(head) + 4 * count)
    memcpy(out, b"P4CK", 4)
    w = 8 + _put(out + 8, head)
    for k in range(count):
        if not _lit(p, n, &i, <bytes>names[k]):
            return None
        if lay[k] == 73:  # 'I'
            if not _jint(p, n, &i, &number) or not 0 <= number <= 0xFFFFFFFF:
                return None
            _wr(out + w, <uint32_t>number, little)
            w += 4
            continue
        if lay[k] == 114:  # 'r': {"value": V, "size": 4|8} → its bytes
            if not _lit(p, n, &i, b'{"value": '):
                return None
            at = i  # the value's range depends on the size that follows it
            while i < n and (p[i] == 45 or 48 <= p[i] <= 57):
                i += 1
            if _lit(p, n, &i, b', "size": 4}'):
                raw_size = 4
            elif _lit(p, n, &i, b', "size": 8}'):
                raw_size = 8
            else:
                return None
            k_end = i
            i = at
            if not _jint64(p, n, &i, &raw_value, raw_size) or p[i] != 44:  # ','
                return None
            i = k_end
            _wr(out + w, <uint32_t>raw_size, little)
            if raw_size == 4:
                _wr(out + w + 4, <uint32_t><int32_t>raw_value, little)
            else:
                _wr64(out + w + 4, <uint64_t>raw_value, little)
            w += 4 + raw_size
            continue
        at = w
        w += 4
        if lay[k] == 112:  # 'p': [["name", "value"], ...] → name#value| escaped
            if not _lit(p, n, &i, b"["):
                return None
            if not _lit(p, n, &i, b"]"):
                while True:
                    if not _lit(p, n, &i, b"["):
                        return None
                    for part in range(2):  # name, then value
                        size = _jstr(p, n, &i, o)
                        if size < 0 or not _lit(p, n, &i, b"]" if part else b", "):
                            return None
                        w += _escape(out + w, o, size)
                        out[w] = 124 if part else 35  # '|' after the value, '#' after the name
                        w += 1
                    if _lit(p, n, &i, b"]"):
                        break
                    if not _lit(p, n, &i, b", "):
                        return None
        else:
            size = _jstr(p, n, &i, out + w)
            if size < 0:
                return None
            w += size
        _wr(out + at, <uint32_t>(w - at - 4), little)
    if not _lit(p, n, &i, b"}}") or i != n or w > 65535:
        return None
    _wr(out + 4, _crc(out + 8, w - 8), little)
    return PyBytes_FromStringAndSize(<const char *>out, w)
