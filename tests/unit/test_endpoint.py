"""BinEndpoint on real loopback sockets: dispatch, drops, fan-out, children, deadlines.

Every wait is an awaited event with a deadline, never a sleep. Ports are ephemeral, so
the tests run side by side under ``pytest -n auto``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybin import dialog, usrloc
from pybin.endpoint import BinEndpoint, EndpointError, parse_address, send_datagrams
from pybin.errors import TruncatedPacket
from pybin.wire import (
    MARKER,
    DropReason,
    PacketBuilder,
    PacketRejected,
    checksum,
    parse_header,
)

T = TypeVar("T")
DEADLINE = 5.0


def run(coro: Awaitable[T]) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(bounded())


def packet(module: str, command: int = 1, *fields: bytes) -> bytes:
    builder = PacketBuilder(module, command)
    for value in fields:
        builder.push_str(value)
    return builder.finish()


def created(call_id: bytes = b"c1@host") -> dialog.DialogCreated:
    return dialog.make(  # type: ignore[return-value]
        dialog.Command.CREATED,
        call_id=call_id,
        from_tag=b"ft",
        to_tag=b"tt",
        state=dialog.DlgState.CONFIRMED_NA,
        caller_sock=b"udp:127.0.0.1:5060",
        callee_sock=b"udp:127.0.0.1:5060",
        vars=((b"acct", b"a|b#c\\d"),),
    )


class Collector:
    """A callback that records what it got and lets a test await the n-th arrival."""

    def __init__(self) -> None:
        self.got: list[tuple[Any, Any]] = []
        self.event = asyncio.Event()
        self.want = 1

    def __call__(self, packet: Any, source: Any) -> None:
        self.got.append((packet, source))
        if len(self.got) >= self.want:
            self.event.set()

    async def wait(self, count: int = 1) -> None:
        self.want = count
        if len(self.got) < count:
            self.event.clear()
            await asyncio.wait_for(self.event.wait(), DEADLINE)


def test_dispatches_each_module_to_its_callback_with_the_source() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as ep:
            dialogs, others = Collector(), Collector()
            ep.register(b"dialog", dialogs)
            ep.register("other", others)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                tx.bind(("127.0.0.1", 0))
                tx.sendto(created().encode(), ep.address)
                tx.sendto(packet("other", 7, b"x"), ep.address)
                await dialogs.wait()
                await others.wait()
                source = tx.getsockname()
            (got, src), = dialogs.got
            assert got.module == b"dialog" and got.command == 1
            assert dialog.decode_packet(got) == created()
            assert src[:2] == source
            (got, src), = others.got
            assert (got.module, got.command, got.reader().pop_str()) == (b"other", 7, b"x")
            assert ep.counters.dispatched == 2 and ep.counters.dropped_total == 0

    run(scenario())


def test_last_registered_callback_wins_like_bin_register_cb() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as ep:
            first, second = Collector(), Collector()
            ep.register("dialog", first)
            ep.register("dialog", second)
            send_datagrams(ep.address, [created().encode()])
            await second.wait()
            assert first.got == []

    run(scenario())


def _with_checksum(body: bytes) -> bytes:
    return MARKER + struct.pack("<I", checksum(body)) + body


def test_every_drop_reason_is_counted_and_the_endpoint_survives() -> None:
    good = created().encode()
    bad_checksum = good[:4] + b"\0\0\0\0" + good[8:]
    bad_name = _with_checksum(struct.pack("<i", 4000) + b"dialog" + struct.pack("<i", 1))
    unknown = packet("nobody")
    refused = packet("refuse")
    buggy = packet("buggy")
    datagrams = [b"P4CK" + b"\0" * 13, b"PACK" + good[4:], bad_checksum, bad_name, unknown, refused, buggy]

    def refuse(packet: Any, source: Any) -> None:
        raise TruncatedPacket("the callback could not pop its fields")

    def bug(packet: Any, source: Any) -> None:
        raise ZeroDivisionError("a bug in the callback")

    async def scenario() -> None:
        async with BinEndpoint() as ep:
            fence = Collector()
            ep.register("refuse", refuse)
            ep.register("buggy", bug)
            ep.register("fence", fence)
            # one socket to one socket on loopback keeps order: the fence comes last
            send_datagrams(ep.address, [*datagrams, packet("fence")])
            await fence.wait()
            dropped = ep.counters.dropped
            assert dropped == {
                DropReason.RUNT: 1,
                DropReason.BAD_MARKER: 1,
                DropReason.BAD_CHECKSUM: 1,
                DropReason.BAD_NAME: 1,
                DropReason.UNKNOWN_MODULE: 1,
                DropReason.HANDLER_ERROR: 1,
            }
            c = ep.counters
            assert c.callback_errors == 1
            assert c.received == 8 == c.dispatched + c.dropped_total + c.callback_errors
            # still serving after the bug
            send_datagrams(ep.address, [packet("fence")])
            await fence.wait(2)

    run(scenario())


def test_callback_bug_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with BinEndpoint() as ep:
            ep.register("buggy", lambda p, s: 1 / 0)
            send_datagrams(ep.address, [packet("buggy")])
            await ep.next_packet(DEADLINE)  # the tap sees it before dispatch
        assert ep.counters.callback_errors == 1

    with caplog.at_level(logging.ERROR, logger="pybin.endpoint"):
        run(scenario())
    assert "BIN callback for module 'buggy' failed" in caplog.text
    assert "ZeroDivisionError" in caplog.text


def test_coroutine_callback_is_awaited_and_its_errors_counted() -> None:
    async def scenario() -> None:
        done = asyncio.Event()

        async def handler(packet: Any, source: Any) -> None:
            if packet.command == 2:
                raise TruncatedPacket("short")
            done.set()

        async with BinEndpoint() as ep:
            ep.register("async", handler)
            send_datagrams(ep.address, [packet("async", 2), packet("async", 1)])
            await asyncio.wait_for(done.wait(), DEADLINE)
            await asyncio.sleep(0)  # the task's done-callback runs on the next turn
            assert ep.counters.dispatched == 1
            assert ep.counters.dropped[DropReason.HANDLER_ERROR] == 1

    run(scenario())


def test_send_reaches_every_destination_from_the_listening_socket() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as b, BinEndpoint() as c:
            async with BinEndpoint(destinations=[b.address, f"127.0.0.1:{c.address[1]}"]) as a:
                assert a.send(created()) == 2
                for peer in (b, c):
                    message, source = await peer.next_dialog(DEADLINE)
                    assert message == created()
                    assert source[:2] == a.address[:2]
                # explicit destinations override the defaults; raw bytes go as they are
                assert a.send(packet("other"), dests=b.address) == 1
                received = await b.next_packet(DEADLINE)
                assert received.packet.module == b"other"
                assert a.counters.sent == 3

    run(scenario())


def test_send_without_destination_is_a_clear_error() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as ep:
            with pytest.raises(EndpointError, match="no destination"):
                ep.send(created())

    run(scenario())


def test_children_share_one_port_with_reuseport_and_all_receive() -> None:
    flows = 64

    async def scenario() -> None:
        async with BinEndpoint(children=2) as ep:
            arrived = Collector()
            ep.register("dialog", arrived)
            # the kernel spreads by flow: many source ports reach both sockets
            # (all 64 on one socket has probability 2**-63)
            for _ in range(flows):
                send_datagrams(ep.address, [created().encode()])
            await arrived.wait(flows)
            assert sum(ep.counters.per_child) == flows
            assert all(n > 0 for n in ep.counters.per_child), ep.counters.per_child

    run(scenario())


def test_next_packet_timeout_says_what_was_awaited_and_the_counters() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as ep:
            with pytest.raises(TimeoutError) as info:
                await ep.next_dialog(0.05)
            text = str(info.value)
            assert text.startswith(f"no dialog packet within 0.05s on 127.0.0.1:{ep.address[1]}")
            assert "received 0, dispatched 0" in text
            with pytest.raises(TimeoutError, match="no BIN packet within 0s"):
                await ep.next_packet(0)

    run(scenario())


def test_next_dialog_passes_over_other_modules() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as ep:
            send_datagrams(ep.address, [packet("other"), created(b"x@y").encode()])
            message, _ = await ep.next_dialog(DEADLINE)
            assert message.call_id == b"x@y"
            # without a callback the 1.10 node would ignore both: counted, yet observable
            assert ep.counters.dropped[DropReason.UNKNOWN_MODULE] == 2

    run(scenario())


def contact(aor: bytes = b"alice") -> usrloc.ContactInserted:
    return usrloc.make(  # type: ignore[return-value]
        usrloc.UlCommand.CONTACT_INSERT, domain=b"location", aor=aor, contact=b"sip:" + aor + b"@10.0.0.1",
        expires=1796574254, sock=b"udp:127.0.0.1:5060", cseq=1,
    )


def test_ul_packets_go_to_a_ul_callback_like_bin_register_cb() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as ep:
            registrations = Collector()
            ep.register(b"ul", registrations)
            async with BinEndpoint(destinations=[ep.address]) as primary:
                primary.send(contact())
                primary.send(created())  # no dialog callback: ignored, as a 1.11 node would
                await registrations.wait()
            (got, _), = registrations.got
            assert (got.module, got.command) == (b"ul", 3)
            assert usrloc.decode_packet(got) == contact()
            assert ep.counters.dispatched == 1

    run(scenario())


def test_next_usrloc_passes_over_other_modules() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as ep:
            send_datagrams(ep.address, [created().encode(), packet("other"), contact(b"bob").encode()])
            message, source = await ep.next_usrloc(DEADLINE)
            assert message == contact(b"bob")
            assert source[0] == "127.0.0.1"
            with pytest.raises(TimeoutError, match="no ul packet within 0.05s"):
                await ep.next_usrloc(0.05)

    run(scenario())


def test_next_usrloc_raises_what_is_wrong_with_a_bad_ul_packet() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as ep:
            send_datagrams(ep.address, [packet("ul", 3, b"location")])
            with pytest.raises(TruncatedPacket, match="aor"):
                await ep.next_usrloc(DEADLINE)

    run(scenario())


def test_close_wakes_waiters_and_is_idempotent() -> None:
    async def scenario() -> None:
        ep = await BinEndpoint().start()
        waiting = asyncio.ensure_future(ep.next_packet(DEADLINE))
        await asyncio.sleep(0)  # let it start waiting
        await ep.close()
        with pytest.raises(EndpointError, match="closed"):
            await waiting
        await ep.close()
        assert ep.closed
        with pytest.raises(EndpointError, match="closed"):
            ep.send(b"P4CK", dests=("127.0.0.1", 9))
        # the port is free again
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
            again.bind(ep.address)

    run(scenario())


def test_ipv6() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 in this Python")
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError as err:
        pytest.skip(f"no IPv6 loopback here: {err}")

    async def scenario() -> None:
        async with BinEndpoint(("::1", 0)) as b:
            async with BinEndpoint("[::1]:0", destinations=[f"[::1]:{b.address[1]}"]) as a:
                a.send(created())
                message, source = await b.next_dialog(DEADLINE)
                assert message == created()
                assert source[0] == "::1" and source[1] == a.address[1]

    run(scenario())


def test_send_datagrams_binds_the_source() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as ep:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
                holder.bind(("127.0.0.1", 0))
                port = holder.getsockname()[1]
            assert send_datagrams(ep.address, [packet("aa"), packet("bb")], source=("127.0.0.1", port)) == 2
            first = await ep.next_packet(DEADLINE)
            second = await ep.next_packet(DEADLINE)
            assert [first.packet.module, second.packet.module] == [b"aa", b"bb"]
            assert first.source == ("127.0.0.1", port)

    run(scenario())


def test_listen_failure_is_one_clear_line() -> None:
    async def scenario() -> None:
        async with BinEndpoint() as taken:
            with pytest.raises(EndpointError, match=r"cannot listen on 127\.0\.0\.1:\d+: "):
                await BinEndpoint(taken.address).start()

    run(scenario())


@pytest.mark.parametrize(
    ("text", "expected"),
    [("10.0.0.1:5062", ("10.0.0.1", 5062)), ("[::1]:5062", ("::1", 5062)), (("h", 1), ("h", 1))],
)
def test_parse_address(text: Any, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["10.0.0.1", "[::1]", "host:port", ":5062", "h:70000"])
def test_parse_address_refuses(text: str) -> None:
    with pytest.raises(EndpointError, match="not an address"):
        parse_address(text)



def _agree(data: bytes) -> None:
    """The receive path inlines the good case; it must classify exactly like wire."""
    ep = BinEndpoint(tap=1)
    ep._datagram(0, data, ("127.0.0.1", 1))
    try:
        expected = parse_header(data)
    except PacketRejected as err:
        assert ep.counters.dropped == {**dict.fromkeys(DropReason, 0), err.reason: 1}
        return
    assert ep._tap is not None and ep._tap[0].packet == expected
    assert ep.counters.dropped[DropReason.UNKNOWN_MODULE] == 1


def _mutations() -> list[bytes]:
    good = created().encode()
    out = [good, packet("xy"), good + b"\0", good[:-1], good[:17], good[:18]]
    for name_len in (-1, 0, 2, 5, 6, 7, len(good) - 16, len(good) - 15, 10**6):
        out.append(_with_checksum(struct.pack("<i", name_len) + good[12:]))
    return out


@pytest.mark.parametrize("data", _mutations())
def test_inline_header_check_agrees_with_parse_header(data: bytes) -> None:
    _agree(data)


@given(st.binary(max_size=48), st.booleans())
def test_inline_header_check_agrees_on_any_bytes(tail: bytes, fix_checksum: bool) -> None:
    data = b"P4CK" + tail
    if fix_checksum and len(data) >= 8:
        data = _with_checksum(data[8:])
    _agree(data)
    _agree(tail)


def _has_net_admin() -> bool:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> 12 & 1)  # CAP_NET_ADMIN
    return False


def test_receive_buffer_is_large_enough_for_bursts() -> None:
    """With CAP_NET_ADMIN, SO_RCVBUFFORCE passes rmem_max (Python lacks the constant)."""
    from pybin.endpoint import DEFAULT_RCVBUF

    async def scenario() -> int:
        async with BinEndpoint() as ep:
            return ep.rcvbuf

    granted = run(scenario())
    if _has_net_admin():
        assert granted >= DEFAULT_RCVBUF
    else:
        try:
            rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
        except OSError:
            pytest.skip("no /proc/sys/net/core/rmem_max to compare with")
        assert granted >= min(DEFAULT_RCVBUF, rmem_max)
