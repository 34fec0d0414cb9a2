"""Relay logs made the way the forwarder makes them (the Impairer decides, LogWriter
writes, read_relay_log reads), with time passed in: for the replay and prediction tests."""

from __future__ import annotations

import io
from typing import Any

from pybin import dialog
from pybin.dialog import Command
from pybin.relay import Impairer, Impairment, RelayLog, inspect, read_relay_log
from pybin.relay.log import LogWriter
from pybin.replica import Replica

VIP_SOCK = b"udp:10.0.0.100:5060"
T0 = 1_800_000_000.0
TIMEOUT = int(T0) + 7200


def packet(command: int, call: int, state: int = 4, **extra: Any) -> bytes:
    fields: dict[str, Any] = {"call_id": b"call-%d@10.0.0.1" % call, "from_tag": b"ft-%d" % call,
                              "to_tag": b"tt-%d" % call}
    if command != Command.DELETED:
        fields.update(state=state, caller_sock=VIP_SOCK, callee_sock=VIP_SOCK, timeout=TIMEOUT,
                      caller_cseq=b"1", callee_cseq=b"0")
    fields.update(extra)
    return dialog.make(command, **fields).encode()


def calls(n: int, ack_first: frozenset[int] = frozenset()) -> list[bytes]:
    """created (state 3) then updated (state 4) per call; only updated for ``ack_first``."""
    out = []
    for i in range(n):
        if i not in ack_first:
            out.append(packet(Command.CREATED, i, state=3))
        out.append(packet(Command.UPDATED, i, state=4))
    return out


def relay_log(datagrams: list[bytes], text: str) -> RelayLog:
    """The log a Relay with ``text`` writes for ``datagrams`` read 1 ms apart."""
    impairer = Impairer(Impairment.parse(text))
    buffer = io.StringIO()
    writer = LogWriter(buffer)
    writer.header(("10.0.0.1", 40000), ("10.0.0.12", 5062), impairer.impairment.describe(), "little", T0)
    seq = [0]

    def send(arrival: Any, t: float) -> None:
        for _ in range(arrival.pending):
            arrival.sent.append((seq[0], t, arrival.out, None))
            seq[0] += 1
        writer.record(arrival)

    now = T0
    for data in datagrams:
        arrival, ready = impairer.arrive(data, now)
        arrival.t, arrival.src, arrival.info = now, ("10.0.0.11", 5062), inspect(data)
        if not arrival.copies:
            writer.record(arrival)
        for item in ready:
            item.info = item.info or inspect(item.data)
            send(item, now)
        now += 0.001
    for item in impairer.take_held():
        item.info = item.info or inspect(item.data)
        send(item, now)
    writer.end(now, impairer.counters.as_dict())
    return read_relay_log(buffer.getvalue().splitlines())


def key(i: int) -> tuple[bytes, bytes, bytes]:
    return (b"call-%d@10.0.0.1" % i, b"ft-%d" % i, b"tt-%d" % i)


def backup() -> Replica:
    return Replica([VIP_SOCK], release="1.10.5")
