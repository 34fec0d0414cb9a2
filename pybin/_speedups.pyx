# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Compiled twin of ``_fields.py``: same functions, same results, same None-on-error.

Why it exists: on a small CI machine a per-field ``struct`` decoder manages about
70,000 dialog packets a second; the interpreter overhead per field, not the work, is
the cost. Here each field costs a few machine instructions.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport int32_t, uint32_t
from libc.string cimport memcmp, memcpy

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
    """Fields after the command; ``s`` string, ``p`` pairs string, ``I`` u32."""
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
            if lay[k] == 112:  # 'p'
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
        if lay[k] != 73:
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
        if lay[k] != 73:
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
            s = <const unsigned char *>PyBytes_AS_STRING(item)
            n = PyBytes_GET_SIZE(item)
            for i in range(n):
                c = s[i]
                if c == b'\\' or c == b'|' or c == b'#':
                    out[k] = b'\\'
                    k += 1
                out[k] = c
                k += 1
            out[k] = b'#' if j == 0 else b'|'
            k += 1
    return result
