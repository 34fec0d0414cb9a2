"""The naive baseline of ``python -m pybin.bench``: what one writes first, to compare with.

Reads a pcap with ``struct``, decodes each field with one ``struct`` call, prints
``json.dumps`` of the same objects ``pybin decode --json`` prints (or the same
summary line); encodes JSON lines field by field; listens on a plain socket; forwards
datagrams with a blocking recv/sendto loop. It
handles only the common case (classic little-endian pcap, Ethernet/IPv4/UDP, good
packets) and checks nothing: it is the yardstick, not a tool. Run it as
``python -m pybin.bench.naive decode FILE [--json] | encode | listen PORT COUNT |
relay PORT DEST_PORT``.
"""

import json
import re
import socket
import struct
import sys
import zlib

from pybin.dialog import DIALOG_FIELDS
from pybin.endpoint import DEFAULT_RCVBUF, set_rcvbuf
from pybin.textio import summary_line

PAIR = re.compile(rb"((?:[^\\|#]|\\.)*)#((?:[^\\|#]|\\.)*)\|")


def text(raw):
    return raw.decode("utf-8", "surrogateescape")


def unescape(raw):
    return text(re.sub(rb"\\(.)", rb"\1", raw) if b"\\" in raw else raw)


def decode(data):
    """One BIN datagram → the object ``pybin decode --json`` prints."""
    (name_len,) = struct.unpack_from("<i", data, 8)
    module = data[12 : 12 + name_len]
    (command,) = struct.unpack_from("<i", data, 12 + name_len)
    offset = 16 + name_len
    dialog = None
    if module == b"dialog":
        dialog = {}
        for name, kind in DIALOG_FIELDS[: 3 if command == 3 else None]:
            (value,) = struct.unpack_from("<I", data, offset)
            offset += 4
            if kind == "int":
                dialog[name] = value
                continue
            raw = data[offset : offset + value]
            offset += value
            dialog[name] = [[unescape(n), unescape(v)] for n, v in PAIR.findall(raw)] if kind == "pairs" else text(raw)
    checksum_ok = struct.unpack_from("<I", data, 4)[0] == ~zlib.crc32(data[8:]) & 0xFFFFFFFF
    return {"module": text(module), "command": command, "checksum_ok": checksum_ok, "hex": data.hex(), "dialog": dialog}


def read_pcap(path):
    """(timestamp, source, destination, payload) of every BIN datagram of an Ethernet pcap."""
    with open(path, "rb") as capture:
        capture.read(24)
        while header := capture.read(16):
            seconds, micros, length, _ = struct.unpack("<IIII", header)
            frame = capture.read(length)
            if frame[12:14] != b"\x08\x00" or frame[23] != 17:
                continue
            start = 14 + (frame[14] & 15) * 4
            sport, dport, size = struct.unpack_from("!HHH", frame, start)
            payload = frame[start + 8 : start + size]
            if payload[:4] == b"P4CK":
                src, dst = socket.inet_ntoa(frame[26:30]), socket.inet_ntoa(frame[30:34])
                yield seconds + micros / 1e6, f"{src}:{sport}", f"{dst}:{dport}", payload


def encode(obj):
    """A JSON-lines object → the datagram."""
    dialog = obj["dialog"]
    if dialog is None:
        return bytes.fromhex(obj["hex"])
    body = struct.pack("<i", 6) + b"dialog" + struct.pack("<i", obj["command"])
    for name, kind in DIALOG_FIELDS[: 3 if obj["command"] == 3 else None]:
        value = dialog[name]
        if kind == "int":
            body += struct.pack("<I", value)
            continue
        if kind == "pairs":
            raw = b"".join(re.sub(rb"([\\|#])", rb"\\\1", n.encode("utf-8", "surrogateescape")) + b"#"
                           + re.sub(rb"([\\|#])", rb"\\\1", v.encode("utf-8", "surrogateescape")) + b"|" for n, v in value)
        else:
            raw = value.encode("utf-8", "surrogateescape")
        body += struct.pack("<I", len(raw)) + raw
    return b"P4CK" + struct.pack("<I", ~zlib.crc32(body) & 0xFFFFFFFF) + body


def main(argv):
    if argv[0] == "decode":
        for timestamp, src, dst, data in read_pcap(argv[1]):
            obj = decode(data)
            print(json.dumps(obj) if "--json" in argv else summary_line(obj, f"{timestamp:.6f} {src} → {dst} "))
    elif argv[0] == "encode":
        for line in sys.stdin:
            print(encode(json.loads(line)).hex())
    elif argv[0] == "listen":  # PORT COUNT, with pybin listen's receive buffer (a fair race)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        set_rcvbuf(sock, DEFAULT_RCVBUF)
        sock.bind(("127.0.0.1", int(argv[1])))
        print("listening", file=sys.stderr, flush=True)
        for _ in range(int(argv[2])):
            print(json.dumps(decode(sock.recvfrom(65535)[0])))
    elif argv[0] == "relay":  # PORT DEST_PORT: what one writes first to forward datagrams
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        set_rcvbuf(sock, DEFAULT_RCVBUF)
        sock.bind(("127.0.0.1", int(argv[1])))
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        dest = ("127.0.0.1", int(argv[2]))
        print("listening", file=sys.stderr, flush=True)
        try:
            while True:
                out.sendto(sock.recv(65535), dest)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main(sys.argv[1:])
