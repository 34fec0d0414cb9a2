"""The ``pybin`` command line: decode captures, encode and send JSON lines, listen live.

Every failure is one line on stderr and a non-zero exit; whatever was already decoded
or sent before the failure has been written out (stdout is flushed before the error
line). Output goes out in blocks: captures and replication streams run to millions of
packets, and the lines are written from the packets' bytes by the codec.
"""

from __future__ import annotations

import argparse
import codecs
import io
import json
import os
import select
import socket
import sys
import time
from binascii import hexlify
from collections import Counter
from collections.abc import Iterator
from typing import Any, TextIO

from . import __version__
from ._codec import COMPILED
from ._codec import impl as _codec
from .dialog import MODULE_NAME
from .errors import PybinError
from .jsonio import packet_from_json, packet_from_json_line, packet_json_line
from .pcap import ReadCounts, bin_rows
from .textio import DIALOG_COMMANDS, packet_summary
from .textio import summary_line  # noqa: F401  harness.capture still imports it from here
from .wire import NAME_START, ByteOrder, PacketRejected

EXIT_BAD_INPUT = 2
EXIT_IO = 3


class CliError(Exception):
    """A failure to report as one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def _order(args: argparse.Namespace) -> ByteOrder:
    return ByteOrder.BIG if args.big_endian else ByteOrder.LITTLE


def parse_hostport(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as the endpoint reads it; port 0 means nothing here."""
    from .endpoint import EndpointError, parse_address  # asyncio: only for commands with addresses

    try:
        host, port = parse_address(value)
    except EndpointError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    if port == 0:
        raise argparse.ArgumentTypeError(f"port 0 in {value!r}: give a real port")
    return host, port


class Output:
    """stdout as bytes, written in blocks; flushed per line only for a terminal or
    with ``--line-buffered`` (a flush per line was a system call per packet)."""

    def __init__(self, line_buffered: bool = False) -> None:
        sys.stdout.flush()
        self._stream = getattr(sys.stdout, "buffer", None) or _TextSink(sys.stdout)
        self.write = self._stream.write
        self.per_line = line_buffered or sys.stdout.isatty()

    def line(self, data: bytes) -> None:
        self.write(data + b"\n")
        if self.per_line:
            self._stream.flush()

    def flush(self) -> None:
        self._stream.flush()


class _TextSink:
    """A stdout without a byte layer (e.g. redirect_stdout to a StringIO) takes text."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, data: bytes) -> None:
        self._stream.write(data.decode("utf-8", "surrogateescape"))

    def flush(self) -> None:
        self._stream.flush()


class Tally:
    """``--stats``: packets per module and command, drops per reason; stderr at the end."""

    def __init__(self, byte_order: ByteOrder) -> None:
        self._little = byte_order is ByteOrder.LITTLE
        self.packets: Counter[tuple[bytes, int]] = Counter()
        self.bad_checksum = 0
        self.dropped: Counter[str] = Counter()

    def packet(self, data: bytes) -> None:
        _, name_len, command, stored, computed = _codec.header(data, self._little)
        self.packets[data[NAME_START : NAME_START + name_len], command] += 1
        self.bad_checksum += stored != computed

    def drop(self, err: Exception) -> None:
        self.dropped[err.reason.name if isinstance(err, PacketRejected) else type(err).__name__] += 1

    def report(self) -> None:
        def name(module: bytes, command: int) -> str:
            if module == MODULE_NAME and command in DIALOG_COMMANDS:
                return f"dialog {DIALOG_COMMANDS[command]}"
            return f"{module.decode('utf-8', 'backslashreplace')} cmd={command}"

        packets = ", ".join(f"{name(*key)} {n}" for key, n in sorted(self.packets.items()))
        drops = ", ".join(f"{reason} {n}" for reason, n in sorted(self.dropped.items()))
        print(f"stats: packets {self.packets.total()}{': ' + packets if packets else ''}", file=sys.stderr)
        print(f"stats: bad checksum {self.bad_checksum}", file=sys.stderr)
        print(f"stats: dropped {self.dropped.total()}{': ' + drops if drops else ''}", file=sys.stderr)


def cmd_decode(args: argparse.Namespace) -> int:
    order = _order(args)
    as_json = args.json
    out = Output(args.line_buffered)
    tally = Tally(order) if args.stats else None
    counts = ReadCounts()
    places: dict[tuple[str, int, str, int], bytes] = {}
    try:
        for timestamp, src, sport, dst, dport, data, _ in bin_rows(args.file, counts):
            try:
                if as_json:
                    line = packet_json_line(data, order)
                else:
                    place = places.get((src, sport, dst, dport))
                    if place is None:
                        place = places[src, sport, dst, dport] = f" {src}:{sport} → {dst}:{dport} ".encode()
                    line = packet_summary(data, b"%.6f%s" % (timestamp, place), order)
            except PybinError as err:
                if tally is not None:
                    tally.drop(err)
                raise CliError(f"{args.file}: packet {counts.bin} ({src}:{sport} → {dst}:{dport}): {err}") from None
            out.line(line)
            if tally is not None:
                tally.packet(data)
        out.flush()
    except BrokenPipeError:
        raise
    except OSError as err:
        raise CliError(f"{args.file}: {err.strerror or err}", EXIT_IO) from None
    except PybinError as err:
        raise CliError(f"{args.file}: {err}") from None
    finally:
        if tally is not None:
            if counts.udp > counts.bin:
                tally.dropped["NOT_BIN"] += counts.udp - counts.bin
            tally.report()
    if not counts.bin:
        print(f"pybin: {args.file}: no BIN packets ({counts.udp} UDP datagrams, none starting with P4CK)",
              file=sys.stderr)
    return 0


def _input_lines(stream: TextIO) -> Iterator[tuple[int, bytes | str]]:
    """stdin's lines numbered as text mode numbers them: as bytes when stdin is UTF-8
    (so that the codec can read them without decoding), else as text."""
    raw = stream.buffer if isinstance(stream, io.TextIOWrapper) else None
    if raw is None or codecs.lookup(stream.encoding).name != "utf-8":
        yield from enumerate(stream, 1)
        return
    number = 0
    for line in raw:
        if b"\r" not in line:
            number += 1
            yield number, line
            continue
        for part in io.StringIO(_text(line, stream, number + 1), newline=None):  # text mode's newlines
            number += 1
            yield number, part


def _text(line: bytes, stream: TextIO, number: int) -> str:
    try:
        return line.decode(stream.encoding, stream.errors or "strict")
    except UnicodeDecodeError as err:
        raise CliError(f"line {number}: not {stream.encoding} text: {err.reason}") from None


def _packets_from_stdin(order: ByteOrder) -> Iterator[bytes]:
    """Lines exactly as ``decode --json`` writes them take the codec's one pass; any
    other line is read with json.loads, which also words the errors."""
    one_pass = COMPILED  # the pure twin's exactness check costs more than json.loads saves
    for number, line in _input_lines(sys.stdin):
        try:
            if type(line) is bytes:
                data = packet_from_json_line(line, order) if one_pass else None
                if data is not None:
                    yield data
                    continue
                line = _text(line, sys.stdin, number)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise CliError(f"line {number}: not JSON: {err.msg} at column {err.colno}") from None
            yield packet_from_json(obj, order)
        except PybinError as err:
            raise CliError(f"line {number}: {err}") from None


def cmd_encode(args: argparse.Namespace) -> int:
    out = Output(args.line_buffered)
    for data in _packets_from_stdin(_order(args)):
        out.line(hexlify(data))
    out.flush()
    return 0


def _socket_for(host: str, port: int, bind: bool) -> socket.socket:
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    except socket.gaierror as err:
        raise CliError(f"{host}: {err.strerror}", EXIT_IO) from None
    sock = socket.socket(info[0], socket.SOCK_DGRAM)
    if bind:
        try:
            sock.bind(info[4])
        except OSError as err:
            sock.close()
            raise CliError(f"cannot listen on {host}:{port}: {err.strerror}", EXIT_IO) from None
    return sock


def cmd_send(args: argparse.Namespace) -> int:
    host, port = args.dest
    sock = _socket_for(*args.source, bind=True) if args.source else _socket_for(host, port, False)
    sent = 0
    try:
        target = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4]
        for data in _packets_from_stdin(_order(args)):
            try:
                sock.sendto(data, target)
            except OSError as err:
                raise CliError(f"send to {host}:{port} failed: {err.strerror}", EXIT_IO) from None
            sent += 1
    finally:
        sock.close()
        print(f"sent {sent} packets to {host}:{port}", file=sys.stderr)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    from .endpoint import DEFAULT_RCVBUF, set_rcvbuf

    host, port = args.addr
    sock = _socket_for(host, port, bind=True)
    set_rcvbuf(sock, DEFAULT_RCVBUF)  # a burst must wait in the kernel, not be lost there
    sock.setblocking(False)
    order = _order(args)
    as_json = args.json
    out = Output(args.line_buffered)
    tally = Tally(order) if args.stats else None
    received = dropped = 0
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    places: dict[Any, bytes] = {}
    recvfrom = sock.recvfrom
    print(f"listening on {host}:{port}", file=sys.stderr)
    try:
        while args.count is None or received < args.count:
            try:
                data, src = recvfrom(65535)
            except BlockingIOError:
                out.flush()  # idle: show what we have before waiting
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0 or not select.select([sock], [], [], left)[0]:
                    break
                continue
            try:
                if as_json:
                    line = packet_json_line(data, order)
                else:
                    place = places.get(src)
                    if place is None:
                        place = places[src] = f"{src[0]}:{src[1]} ".encode()
                    line = packet_summary(data, place, order)
            except PybinError as err:
                dropped += 1
                if tally is not None:
                    tally.drop(err)
                out.flush()
                print(f"{src[0]}:{src[1]}: dropped: {err}", file=sys.stderr)
                continue
            received += 1
            out.line(line)
            if tally is not None:
                tally.packet(data)
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
        out.flush()
        print(f"received {received} packets, dropped {dropped}", file=sys.stderr)
        if tally is not None:
            tally.report()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pybin", description="OpenSIPS 1.10 Binary Internal Interface tools"
    )
    parser.add_argument("--version", action="version", version=f"pybin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def order_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--big-endian", action="store_true", help="integers in big-endian order (big-endian senders)"
        )

    def output_flags(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--line-buffered", action="store_true", help="flush every line (always done on a terminal)"
        )
        p.add_argument(
            "--stats", action="store_true", help="counts per module/command and drops per reason, on stderr at the end"
        )

    p = sub.add_parser("decode", help="decode every BIN packet in a pcap/pcapng capture")
    p.add_argument("file")
    p.add_argument("--json", action="store_true", help="one JSON object per packet")
    output_flags(p)
    order_flag(p)
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("encode", help="JSON lines on stdin → packet hex per line")
    p.add_argument("--line-buffered", action="store_true", help="flush every line (always done on a terminal)")
    order_flag(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("listen", help="decode live packets arriving on HOST:PORT")
    p.add_argument("addr", type=parse_hostport, metavar="HOST:PORT")
    p.add_argument("--json", action="store_true")
    p.add_argument("--count", type=int, help="stop after N packets")
    p.add_argument("--timeout", type=float, help="stop after S seconds")
    output_flags(p)
    order_flag(p)
    p.set_defaults(func=cmd_listen)

    p = sub.add_parser("send", help="send packets given as JSON lines on stdin")
    p.add_argument("dest", type=parse_hostport, metavar="HOST:PORT")
    p.add_argument("--source", type=parse_hostport, metavar="HOST:PORT", help="bind here first")
    order_flag(p)
    p.set_defaults(func=cmd_send)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as err:
        sys.stdout.flush()
        print(f"pybin: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: not an error, and nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
