"""The relay's log: one JSON line per datagram it read, enough to rebuild what it sent.

The first line says what the relay was (``{"relay": {"listen", "dest", "impairment",
"byte_order", "t"}}``); the last, written by ``close()``, its counters
(``{"end": {"t", "counters"}}``). Between them, one line per datagram read, written
when its fate is complete (dropped, or every copy sent), so lines of held datagrams
come after later ones; ``index`` is the arrival order::

    {"index": 4, "t": 1754000000.123456, "src": "10.0.0.11:5062", "len": 402,
     "module": "dialog", "command": 1, "checksum_ok": true,
     "call_id": "1-26919@10.77.0.20", "from_tag": "...", "to_tag": "...",
     "selected": true, "action": ["corrupt", "delay"], "delay_ms": 21.375,
     "hex": "5034434b...",
     "sent": [{"seq": 3, "t": 1754000000.144900, "hex": "5034434b..."}]}

- ``module``/``command`` are null for a datagram that is not a BIN packet; ``error``
  then names the rule it breaks (``RUNT``, ``BAD_MARKER``, ``BAD_NAME``).
- ``call_id``/``from_tag``/``to_tag`` only for dialog packets (text; bytes that are not
  UTF-8 as lone surrogates, as ``pybin decode --json`` writes them).
- ``action``: ``["forward"]`` for a datagram sent on untouched (once, at once), else
  the faults that hit it, in the order applied (``drop``, ``truncate``, ``corrupt``,
  ``duplicate``, ``reorder``, ``delay``).
- ``sent``: one entry per datagram handed to the kernel; ``seq`` numbers every send of
  the relay (0, 1, 2 ...), so sorting by it gives the order DEST was sent them; ``t``
  is time.time() just after the send; ``hex`` is given only when the bytes differ from
  the input's (corrupt, truncate); ``error`` when the kernel refused the send.
- ``at_close``: a held datagram sent by ``close()`` before its time; ``held``: one
  still held when the relay closed without delivering (``sent`` is then ``[]``).

``read_relay_log`` reads it back; ``delivered`` lists what reached the wire, in order.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import IO, Any, NamedTuple, Union

from ..errors import PybinError
from .faults import Arrival, PacketInfo

FORMAT = 1
_NO_INFO = PacketInfo()
_BOOL = {True: "true", False: "false", None: "null"}
#: a str → its JSON string literal, ASCII only (lone surrogates as \\udcXX, like json.dumps)
_json_text = encode_basestring_ascii


class RelayLogError(PybinError, ValueError):
    """A relay log line that cannot be read (not JSON, a key missing, bad hex)."""


class Sent(NamedTuple):
    """One datagram the relay handed to the kernel."""

    seq: int
    t: float
    data: bytes
    #: the kernel refused it (then it never left)
    error: str | None = None


@dataclass(frozen=True, slots=True)
class RelayRecord:
    """One datagram the relay read, and what became of it."""

    index: int
    t: float
    src: str
    data: bytes
    module: bytes | None
    command: int | None
    call_id: bytes | None
    from_tag: bytes | None
    to_tag: bytes | None
    selected: bool
    actions: tuple[str, ...]
    delay_ms: float | None
    sent: tuple[Sent, ...]
    at_close: bool = False
    held: bool = False


@dataclass(frozen=True, slots=True)
class RelayLog:
    """A whole log: the relay's header, its records by arrival, and its final counters
    (None when the relay did not close: then the log may lack held datagrams)."""

    header: dict[str, Any]
    records: tuple[RelayRecord, ...]
    counters: dict[str, int] | None

    def __iter__(self) -> Iterator[RelayRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)


_LINE = ('{"index":%d,"t":%r,"src":%s,"len":%d%s,"selected":%s,"action":[%s]%s,'
         '"hex":"%s","sent":[%s]%s}\n')
_DIALOG = ',"module":"dialog","command":%d,"checksum_ok":%s,"call_id":%s,"from_tag":%s,"to_tag":%s'
_MODULE = ',"module":%s,"command":%d,"checksum_ok":%s'
_NOT_BIN = ',"module":null,"command":null,"error":"%s"'
_SENT = '{"seq":%d,"t":%r}'


def _sent_entry(seq: int, t: float, out: bytes, data: bytes, error: str | None) -> str:
    """A send; its bytes only when they differ from the input's, its error if refused."""
    extra = ',"hex":"%s"' % out.hex() if out is not data and out != data else ""
    if error is not None:
        extra += ',"error":%s' % _json_text(error)
    return '{"seq":%d,"t":%r%s}' % (seq, t, extra)


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def _raw(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _show(addr: Any) -> str:
    if not isinstance(addr, tuple):
        return str(addr)
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"


class LogWriter:
    """Writes the lines; ``log`` is a path (opened here, closed by ``close``) or an
    open file (text or binary, left open)."""

    def __init__(self, log: Union[str, "os.PathLike[str]", IO[Any]]) -> None:
        if isinstance(log, (str, os.PathLike)):
            self._file: IO[Any] = open(log, "w", encoding="ascii", buffering=1 << 16)
            self._owned = True
        else:
            self._file = log
            self._owned = False
        binary = not (isinstance(self._file, io.TextIOBase) or hasattr(self._file, "encoding"))
        write = self._file.write
        self._write = (lambda line: write(line.encode("ascii"))) if binary else write
        self._dumps = json.JSONEncoder(separators=(",", ":")).encode
        #: sender address → its JSON text (a relay sees few senders)
        self._places: dict[Any, str] = {}
        self._modules: dict[bytes, str] = {}

    def header(self, listen: Any, dest: Any, impairment: str, byte_order: str, t: float) -> None:
        self._line({"relay": {"format": FORMAT, "listen": _show(listen), "dest": _show(dest),
                              "impairment": impairment, "byte_order": byte_order, "t": t}})

    def record(self, arrival: Arrival) -> None:
        """One datagram's line, formatted by hand in one ``%``: at tens of thousands of
        datagrams a second, a dict through ``json`` per datagram was most of the relay's
        time. The tests read every line back with ``json``."""
        info = arrival.info or _NO_INFO
        data = arrival.data
        src = self._places.get(arrival.src)
        if src is None:
            src = self._places[arrival.src] = _json_text(_show(arrival.src))
        if info.call_id is not None:
            what = _DIALOG % (
                info.command, _BOOL[info.checksum_ok],
                _json_text(info.call_id.decode("utf-8", "surrogateescape")),
                _json_text(info.from_tag.decode("utf-8", "surrogateescape")),  # type: ignore[union-attr]
                _json_text(info.to_tag.decode("utf-8", "surrogateescape")),  # type: ignore[union-attr]
            )
        elif info.module is not None:
            module = self._modules.get(info.module)
            if module is None:
                module = self._modules[info.module] = _json_text(_text(info.module))
            what = _MODULE % (module, info.command, _BOOL[info.checksum_ok])
        else:
            what = _NOT_BIN % info.error
        actions = arrival.actions
        sends = arrival.sent
        if len(sends) == 1 and sends[0][2] is data and sends[0][3] is None:  # forwarded untouched
            sent = _SENT % sends[0][:2]
        else:
            sent = ",".join([_sent_entry(seq, t, out, data, error) for seq, t, out, error in sends])
        self._write(_LINE % (
            arrival.index, arrival.t, src, len(data), what, _BOOL[arrival.selected],
            '"%s"' % '","'.join(actions) if actions else '"forward"',
            ',"delay_ms":%r' % round(arrival.delay * 1000.0, 6) if "delay" in actions else "",
            data.hex(), sent,
            (',"at_close":true' if arrival.at_close else "") + (',"held":true' if arrival.held else ""),
        ))

    def end(self, t: float, counters: dict[str, int]) -> None:
        self._line({"end": {"t": t, "counters": counters}})

    def _line(self, obj: dict[str, Any]) -> None:
        self._write(self._dumps(obj) + "\n")

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        if self._owned:
            self._file.close()
        else:
            self._file.flush()


def _record(obj: dict[str, Any]) -> RelayRecord:
    data = bytes.fromhex(obj["hex"])
    sent = tuple(
        Sent(int(s["seq"]), float(s["t"]), bytes.fromhex(s["hex"]) if "hex" in s else data, s.get("error"))
        for s in obj["sent"]
    )
    module = obj["module"]
    call_id = obj.get("call_id")
    return RelayRecord(
        index=int(obj["index"]),
        t=float(obj["t"]),
        src=str(obj["src"]),
        data=data,
        module=None if module is None else _raw(module),
        command=obj["command"],
        call_id=None if call_id is None else _raw(call_id),
        from_tag=None if call_id is None else _raw(obj["from_tag"]),
        to_tag=None if call_id is None else _raw(obj["to_tag"]),
        selected=bool(obj["selected"]),
        actions=tuple(obj["action"]),
        delay_ms=obj.get("delay_ms"),
        sent=sent,
        at_close=bool(obj.get("at_close", False)),
        held=bool(obj.get("held", False)),
    )


def read_relay_log(source: Union[str, "os.PathLike[str]", Iterable[str]]) -> RelayLog:
    """A log file (path, or lines) → RelayLog with the records in arrival order.

    Raises RelayLogError naming the line for anything that is not a relay log line.
    """
    if isinstance(source, (str, os.PathLike)):
        with open(source, encoding="ascii", errors="surrogateescape") as lines:
            return read_relay_log(list(lines))
    header: dict[str, Any] | None = None
    counters: dict[str, int] | None = None
    records: list[RelayRecord] = []
    for number, line in enumerate(source, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if "relay" in obj:
                header = obj["relay"]
            elif "end" in obj:
                counters = obj["end"]["counters"]
            else:
                records.append(_record(obj))
        except (ValueError, KeyError, TypeError, AttributeError) as err:
            what = f"{type(err).__name__}: {err}" if not isinstance(err, json.JSONDecodeError) else f"not JSON: {err.msg}"
            raise RelayLogError(f"relay log line {number}: {what}") from None
    if header is None:
        raise RelayLogError("not a relay log: no {\"relay\": ...} line")
    records.sort(key=lambda r: r.index)
    return RelayLog(header, tuple(records), counters)


def delivered(records: Iterable[RelayRecord]) -> list[tuple[float, bytes]]:
    """(time sent, bytes) of every datagram the relay handed to the kernel, in the order
    it sent them (refused sends left out): what DEST was sent, byte for byte."""
    sent = [s for record in records for s in record.sent if s.error is None]
    sent.sort(key=lambda s: s.seq)
    return [(s.t, s.data) for s in sent]
