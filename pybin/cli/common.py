"""What every ``pybin`` subcommand shares: one-line failures, block output, ``--stats``.

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
import socket
import sys
from collections import Counter
from collections.abc import Iterator
from typing import TextIO

from .._codec import COMPILED
from .._codec import impl as _codec
from ..errors import PybinError
from ..jsonio import packet_from_json, packet_from_json_line
from ..payloads import command_name
from ..wire import NAME_START, ByteOrder, PacketRejected

EXIT_BAD_INPUT = 2
EXIT_IO = 3


class CliError(Exception):
    """A failure to report as one line, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.code = code


def byte_order(args: argparse.Namespace) -> ByteOrder:
    return ByteOrder.BIG if args.big_endian else ByteOrder.LITTLE


def parse_hostport(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` as the endpoint reads it; port 0 means nothing here."""
    from ..endpoint import EndpointError, parse_address  # asyncio: only for commands with addresses

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
            return command_name(module, command) or f"{module.decode('utf-8', 'backslashreplace')} cmd={command}"

        packets = ", ".join(f"{name(*key)} {n}" for key, n in sorted(self.packets.items()))
        drops = ", ".join(f"{reason} {n}" for reason, n in sorted(self.dropped.items()))
        print(f"stats: packets {self.packets.total()}{': ' + packets if packets else ''}", file=sys.stderr)
        print(f"stats: bad checksum {self.bad_checksum}", file=sys.stderr)
        print(f"stats: dropped {self.dropped.total()}{': ' + drops if drops else ''}", file=sys.stderr)


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


def packets_from_stdin(order: ByteOrder) -> Iterator[bytes]:
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


def socket_for(host: str, port: int, bind: bool) -> socket.socket:
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



def order_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--big-endian", action="store_true", help="integers in big-endian order (big-endian senders)")


def line_buffered_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--line-buffered", action="store_true", help="flush every line (always done on a terminal)")


def output_flags(p: argparse.ArgumentParser) -> None:
    line_buffered_flag(p)
    p.add_argument("--stats", action="store_true",
                   help="counts per module/command and drops per reason, on stderr at the end")
