"""The Relay on loopback sockets: what its log says it sent is what a receiver got.

Every wait is a condition with a deadline (``wait_received``, ``drain``), never a
sleep; after ``close()`` every send has returned, and on loopback a returned send is
already in the receiver's queue, so the receiver is read out without waiting.
"""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from test_relay import STREAM

from pybin.endpoint import send_datagrams, set_rcvbuf
from pybin.relay import (
    Impairment,
    Relay,
    RelayError,
    RelayLogError,
    delivered,
    read_relay_log,
)
from pybin.wire import PacketBuilder

T = TypeVar("T")
DEADLINE = 10.0
ALL = "loss=0.1,duplicate=0.1,reorder=0.1,corrupt=0.1,truncate=0.1,delay=3±2"


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 60)

    return asyncio.run(bounded())


def receiver() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    set_rcvbuf(sock, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


def read_out(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


async def relay_through(impairment: Any, datagrams: list[bytes], log: Any = None, **kw: Any) -> tuple[Relay, list[bytes]]:
    """Send ``datagrams`` through a relay, wait until all were read and left, close."""
    with receiver() as sink:
        relay = Relay(("127.0.0.1", 0), sink.getsockname(), impairment, log=log, **kw)
        async with relay:
            send_datagrams(relay.address, datagrams)
            await relay.wait_received(len(datagrams), DEADLINE)
            await relay.drain(DEADLINE)
        return relay, read_out(sink)


def test_the_log_rebuilds_exactly_what_the_receiver_got(tmp_path: Path) -> None:
    path = tmp_path / "relay.jsonl"
    relay, got = run(relay_through(ALL + ",seed=7", STREAM, log=path))
    log = read_relay_log(path)
    assert [data for _, data in delivered(log)] == got
    c = relay.counters
    assert (c.received, c.dropped, c.duplicated, c.reordered, c.corrupted, c.truncated, c.delayed) == (
        600, 68, 62, 59, 56, 64, 532,  # the pure decisions of test_relay, on the wire
    )
    assert c.sent == len(got) == 600 - 68 + 62 and c.held == 0
    assert log.counters == c.as_dict()
    assert [r.index for r in log] == list(range(600))
    assert [r.data for r in log] == STREAM
    assert log.header["impairment"] == Impairment.parse(ALL + ",seed=7").describe()
    first = log.records[0]
    assert (first.module, first.command, first.call_id, first.from_tag) == (b"dialog", 1, b"call-0@10.0.0.1", b"ft-0")
    times = [t for t, _ in delivered(log)]
    assert times == sorted(times)


def test_same_seed_same_log_apart_from_times_and_another_seed_differs() -> None:
    def essence(seed: int) -> list[tuple[object, ...]]:
        sink = io.StringIO()
        run(relay_through(f"{ALL},seed={seed}", STREAM, log=sink))
        return [
            (r.index, r.data, r.selected, r.actions, r.delay_ms, [s.data for s in r.sent], r.at_close, r.held)
            for r in read_relay_log(sink.getvalue().splitlines())
        ]

    first = essence(7)
    assert first == essence(7)
    assert first != essence(8)


def test_without_faults_or_log_every_datagram_passes_in_order() -> None:
    relay, got = run(relay_through(None, STREAM))
    assert got == STREAM
    c = relay.counters
    assert (c.received, c.forwarded, c.sent, c.dropped, c.held) == (600, 600, 600, 0, 0)


def test_what_is_not_a_bin_packet_is_forwarded_as_it_is_and_logged() -> None:
    sink = io.StringIO()
    odd = [b"OPTIONS sip:x SIP/2.0\r\n\r\n", b"P4CK", PacketBuilder("ul", 2).finish()]
    relay, got = run(relay_through("loss=1.0,only=created", odd + STREAM[:3], log=sink))
    assert got == odd + STREAM[1:3]  # the created was lost; nothing else was selected
    records = read_relay_log(sink.getvalue().splitlines()).records
    assert [(r.module, r.command, r.selected, r.actions) for r in records] == [
        (None, None, False, ("forward",)), (None, None, False, ("forward",)), (b"ul", 2, False, ("forward",)),
        (b"dialog", 1, True, ("drop",)), (b"dialog", 2, False, ("forward",)), (b"dialog", 3, False, ("forward",)),
    ]
    assert '"error":"BAD_MARKER"' in sink.getvalue() and '"error":"RUNT"' in sink.getvalue()


def test_close_delivers_what_is_held_or_logs_it_as_held() -> None:
    async def scenario(deliver: bool) -> tuple[Relay, list[bytes], Any]:
        log = io.StringIO()
        with receiver() as sink:
            relay = Relay(("127.0.0.1", 0), sink.getsockname(), "reorder=1.0,reorder_timeout=60000", log=log)
            await relay.start()
            send_datagrams(relay.address, STREAM[:5])
            await relay.wait_received(5, DEADLINE)
            assert relay.counters.held == 3  # reorder_by 3: 0 and 1 left when 3 and 4 arrived
            await relay.close(deliver_held=deliver)
            got = read_out(sink)
        return relay, got, read_relay_log(log.getvalue().splitlines())

    relay, got, log = run(scenario(True))
    # 0 left after 3 arrived, 1 after 4; 2, 3, 4 were held and sent by close, in order
    assert got == [STREAM[i] for i in (0, 1, 2, 3, 4)]
    assert [r.at_close for r in log] == [False, False, True, True, True]
    assert (relay.counters.forwarded, relay.counters.unsent) == (5, 0)

    relay, got, log = run(scenario(False))
    assert got == STREAM[:2]
    assert [(r.held, len(r.sent)) for r in log] == [(False, 1), (False, 1), (True, 0), (True, 0), (True, 0)]
    c = relay.counters
    assert (c.forwarded, c.unsent, c.held) == (2, 3, 0)
    assert c.received == c.forwarded + c.dropped + c.held + c.unsent


def test_the_socket_factory_makes_both_sockets() -> None:
    families = []

    def factory(family: int) -> socket.socket:
        families.append(family)
        return socket.socket(family, socket.SOCK_DGRAM)

    relay, got = run(relay_through("duplicate=1.0", STREAM[:2], socket_factory=factory))
    assert families == [socket.AF_INET, socket.AF_INET]
    assert got == [STREAM[0], STREAM[0], STREAM[1], STREAM[1]]


def test_the_log_can_be_a_binary_file_and_tally_counts_per_kind(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with open(path, "wb") as binary:
        relay, _ = run(relay_through("loss=0.5,seed=1,only=deleted", STREAM[:30], log=binary, tally=True))
    assert len(read_relay_log(path)) == 30
    assert relay.tally is not None
    assert relay.tally["dialog created", "forward"] == 10
    assert relay.tally["dialog deleted", "drop"] + relay.tally["dialog deleted", "forward"] == 10
    assert relay.tally["dialog deleted", "drop"] == relay.counters.dropped > 0


def test_a_listen_address_in_use_is_one_clear_line() -> None:
    async def scenario() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            relay = Relay(taken.getsockname(), ("127.0.0.1", 9))
            with pytest.raises(RelayError, match=r"^cannot listen on 127\.0\.0\.1:\d+: Address already in use$"):
                await relay.start()
            assert relay.closed

    run(scenario())


def test_waiting_past_the_deadline_says_what_was_seen() -> None:
    async def scenario() -> None:
        async with Relay(("127.0.0.1", 0), ("127.0.0.1", 9)) as relay:
            with pytest.raises(TimeoutError, match=r"no 1 datagrams received within 0.05s .*received 0"):
                await relay.wait_received(1, 0.05)

    run(scenario())


def test_the_limit_stops_reading_at_n() -> None:
    async def scenario() -> tuple[int, list[bytes]]:
        with receiver() as sink:
            async with Relay(("127.0.0.1", 0), sink.getsockname(), limit=4) as relay:
                send_datagrams(relay.address, STREAM[:10])
                await relay.wait_received(4, DEADLINE)
            return relay.counters.received, read_out(sink)

    received, got = run(scenario())
    assert received == 4 and got == STREAM[:4]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"relay": {}}', "nope"], "relay log line 2: not JSON"),
        (['{"relay": {}}', '{"index": 0}'], "relay log line 2: KeyError"),
        (['{"index": 0}'], "relay log line 1: KeyError"),
        ([], "not a relay log"),
    ],
)
def test_a_bad_log_line_is_named(lines: list[str], message: str) -> None:
    with pytest.raises(RelayLogError, match=message):
        read_relay_log(lines)


def test_log_text_fields_survive_any_bytes_and_an_ipv6_sender() -> None:
    from pybin import dialog

    odd = dialog.make(3, call_id=b'q"uo\\te\xff\n\x00@h', from_tag=b"\xc3(", to_tag=b"t\x7f").encode()
    log = io.StringIO()

    async def scenario() -> None:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sink:
            sink.bind(("::1", 0))
            async with Relay(("::1", 0), sink.getsockname(), log=log) as relay:
                with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sender:
                    sender.sendto(odd, relay.address)
                    await relay.wait_received(1, DEADLINE)
                    src = "[::1]:%d" % sender.getsockname()[1]
            assert sink.recv(65536) == odd
        (record,) = read_relay_log(log.getvalue().splitlines())
        assert (record.call_id, record.from_tag, record.to_tag) == (b'q"uo\\te\xff\n\x00@h', b"\xc3(", b"t\x7f")
        assert record.src == src and record.data == odd

    run(scenario())


@pytest.mark.parametrize("logged", [False, True], ids=["plain path", "logged path"])
def test_a_refusal_left_by_an_earlier_datagram_does_not_cost_the_next_one(logged: bool) -> None:
    """While DEST's port is closed, each send leaves an ICMP error on the relay's
    (connected) socket, and Linux reports it on the NEXT send, which then does not
    leave. The relay sends that one again, so nothing is lost once DEST is back."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as control:  # what the relay meets
        control.connect(("127.0.0.1", port))
        control.send(b"first")
        with pytest.raises(ConnectionRefusedError):
            control.send(b"second")

    async def scenario() -> tuple[Relay, list[bytes]]:
        async with Relay(("127.0.0.1", 0), ("127.0.0.1", port), log=io.StringIO() if logged else None) as relay:
            send_datagrams(relay.address, STREAM[:1])
            await relay.wait_received(1, DEADLINE)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
                sink.bind(("127.0.0.1", port))
                sink.setblocking(False)
                send_datagrams(relay.address, STREAM[1:4])
                await relay.wait_received(4, DEADLINE)
                return relay, read_out(sink)

    relay, got = run(scenario())
    assert got == STREAM[1:4]
    assert (relay.counters.sent, relay.counters.socket_errors) == (4, 0)


class FakeSocket:
    """A socket whose send buffer is full (or DEST refused) when the test says so."""

    def __init__(self) -> None:
        self.wire: list[bytes] = []
        self.failures: list[OSError] = []  # raised by the next sends, in order
        self.full = False

    def send(self, data: bytes) -> int:
        if self.full:
            raise BlockingIOError
        if self.failures:
            raise self.failures.pop(0)
        self.wire.append(data)
        return len(data)

    def fileno(self) -> int:
        return 99

    def settimeout(self, timeout: float) -> None:
        self.full = False  # blocking now: the kernel waits for room


class FakeLoop:
    def __init__(self) -> None:
        self.writer: Any = None

    def add_writer(self, fd: int, callback: Any) -> None:
        self.writer = callback

    def remove_writer(self, fd: int) -> None:
        self.writer = None


def fake_sender() -> tuple[Any, FakeSocket, FakeLoop, list[tuple[bytes, Any, Any]], list[int]]:
    from pybin.relay.sender import Sender

    sock, loop, sent, drained = FakeSocket(), FakeLoop(), [], []
    sender = Sender(sock, loop, lambda data, tag, error: sent.append((data, tag, error)),  # type: ignore[arg-type]
                    lambda: drained.append(1))
    return sender, sock, loop, sent, drained


def test_a_full_send_buffer_queues_and_keeps_the_order() -> None:
    sender, sock, loop, sent, drained = fake_sender()
    sender.send(b"a", 1)
    sock.full = True
    sender.send(b"b", 2)
    sock.full = False
    sender.send(b"c", 3)  # room again, but b is waiting: c goes behind it
    assert (sock.wire, sender.queued, loop.writer is not None) == ([b"a"], 2, True)
    loop.writer()
    assert sock.wire == [b"a", b"b", b"c"] and [tag for _, tag, _ in sent] == [1, 2, 3]
    assert (sender.queued, loop.writer, drained) == (0, None, [1])


def test_a_refusal_is_retried_once_and_a_second_one_is_reported() -> None:
    sender, sock, _, sent, _ = fake_sender()
    sock.failures = [ConnectionRefusedError(111, "Connection refused")]
    sender.send(b"a", 1)
    sock.failures = [ConnectionRefusedError(111, "Connection refused")] * 2
    sender.send(b"b", 2)
    sock.failures = [OSError(90, "Message too long")]
    sender.send(b"c", 3)
    assert sock.wire == [b"a"]
    assert sent == [(b"a", 1, None), (b"b", 2, "ConnectionRefusedError: Connection refused"),
                    (b"c", 3, "OSError: Message too long")]


def test_close_sends_what_is_queued() -> None:
    sender, sock, loop, sent, _ = fake_sender()
    sock.full = True
    sender.send(b"a", 1)
    sender.send(b"b", 2)
    sender.flush_blocking()
    assert sock.wire == [b"a", b"b"] and loop.writer is None and [e for *_, e in sent] == [None, None]
