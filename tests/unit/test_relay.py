"""pybin.relay without sockets: the Impairment text, the determinism rule, each fault,
the selectors and the held queue, with time passed in (no clock, no sleep).

The expected decisions are computed here a second time, straight from the rule the
``pybin.relay.faults`` docstring writes down, and the counts for seed 7 are pinned:
a change to the rule would silently change every recorded run's meaning.
"""

from __future__ import annotations

import hashlib
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pybin import dialog
from pybin.errors import RemoteProtocolError
from pybin.relay import Impairer, Impairment, ImpairmentError, PacketInfo, inspect
from pybin.wire import DropReason, PacketBuilder, PacketRejected, parse_header


def stream(n: int = 600) -> list[bytes]:
    """created, updated, deleted for call 0, then call 1, ... (n datagrams)."""
    out = []
    for i in range(n):
        cmd = (1, 2, 3)[i % 3]
        fields: dict[str, object] = {
            "call_id": b"call-%d@10.0.0.1" % (i // 3), "from_tag": b"ft-%d" % (i // 3), "to_tag": b"tt-%d" % (i // 3),
        }
        if cmd != 3:
            fields.update(state=4, caller_sock=b"udp:10.0.0.100:5060", timeout=1_800_000_000)
        out.append(dialog.make(cmd, **fields).encode())
    return out


STREAM = stream()


def u(seed: int, index: int, fault: str, k: int = 0) -> float:
    """The rule as the docstring writes it."""
    digest = hashlib.blake2b(f"{seed}:{index}:{fault}".encode(), digest_size=32).digest()
    return int.from_bytes(digest[8 * k : 8 * k + 8], "big") / 2**64


def feed(text: str, datagrams: list[bytes] = STREAM, gap: float = 0.001) -> tuple[Impairer, list[object]]:
    """Every datagram through an Impairer, ``gap`` seconds apart; (impairer, what left, in order)."""
    impairer = Impairer(Impairment.parse(text))
    out: list[object] = []
    for i, data in enumerate(datagrams):
        _, ready = impairer.arrive(data, i * gap)
        out += ready
    out += impairer.take_held()
    return impairer, out


# -- the text form -----------------------------------------------------------------------


def test_the_issue_s_example_parses_to_every_field() -> None:
    imp = Impairment.parse("loss=0.02,reorder=0.01,reorder_by=3,delay=20±5,seed=7,only=created|deleted")
    assert (imp.loss, imp.reorder, imp.reorder_by, imp.delay, imp.jitter, imp.seed) == (0.02, 0.01, 3, 20.0, 5.0, 7)
    assert imp.only == {dialog.Command.CREATED, dialog.Command.DELETED}
    assert (imp.duplicate, imp.corrupt, imp.truncate, imp.calls) == (0.0, 0.0, 0.0, None)
    assert imp.describe() == "loss=0.02,reorder=0.01,delay=20±5,seed=7,only=created|deleted"


@pytest.mark.parametrize("sign", ["±", "+-", "~"])
def test_the_jitter_sign_has_ascii_spellings(sign: str) -> None:
    assert Impairment.parse(f"delay=20{sign}5") == Impairment(delay=20, jitter=5)


def test_call_ids_travel_percent_escaped_and_come_back_as_bytes() -> None:
    imp = Impairment.parse("calls=a@h|b%2Cc|100%25|%FF")
    assert imp.calls == {b"a@h", b"b,c", b"100%", b"\xff"}
    assert Impairment.parse(imp.describe()) == imp
    assert Impairment(calls=["x@y"]).calls == {b"x@y"}


def test_an_empty_text_is_no_impairment() -> None:
    assert Impairment.parse("") == Impairment() and not Impairment().faults
    assert Impairment().describe() == "seed=0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loss=1.5", "loss=1.5: a probability is between 0 and 1"),
        ("duplicate=-0.1", "duplicate=-0.1: a probability is between 0 and 1"),
        ("loss=inf", "loss=inf: not a finite number"),
        ("loss=x", "loss='x': not a number"),
        ("lose=0.1", "unknown key 'lose'"),
        ("loss", "'loss': not KEY=VALUE"),
        ("loss=0.1,,seed=2", "'': not KEY=VALUE"),
        ("seed=1.5", "seed='1.5': not a whole number"),
        ("reorder_by=0", "reorder_by=0: at least 1"),
        ("reorder_timeout=0", "reorder_timeout=0"),
        ("delay=-1", "delay=-1: cannot be negative"),
        ("delay=5±6", "the jitter is larger than the delay"),
        ("delay=5±x", "delay's jitter='x': not a number"),
        ("only=created|bye", "only: 'bye' is not a dialog command"),
        ("calls=a||b", "calls: an empty Call-ID"),
        ("loss=0.1,loss=0.2", "loss given twice"),
    ],
)
def test_bad_text_is_one_line_value_error(text: str, message: str) -> None:
    with pytest.raises(ImpairmentError) as info:
        Impairment.parse(text)
    assert isinstance(info.value, ValueError)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_the_constructor_validates_too() -> None:
    with pytest.raises(ImpairmentError, match="not a finite number"):
        Impairment(loss=True)  # type: ignore[arg-type]
    with pytest.raises(ImpairmentError, match="only: name at least one"):
        Impairment(only=[])
    with pytest.raises(ImpairmentError, match="a set of Call-IDs, not one string"):
        Impairment(calls="abc")  # type: ignore[arg-type]
    assert Impairment(only=["created", 3]).only == {dialog.Command.CREATED, dialog.Command.DELETED}
    assert Impairment.parse("loss=0.1,seed=3").replace(seed=4) == Impairment(loss=0.1, seed=4)
    with pytest.raises(ImpairmentError, match="loss=2"):
        Impairment().replace(loss=2)


probabilities = st.floats(0, 1)
delays = st.floats(0, 1e7, allow_subnormal=False)


@st.composite
def impairments(draw: st.DrawFn) -> Impairment:
    delay = draw(delays)
    return Impairment(
        loss=draw(probabilities), duplicate=draw(probabilities), reorder=draw(probabilities),
        reorder_by=draw(st.integers(1, 1000)), reorder_timeout=draw(st.floats(1e-3, 1e7)),
        delay=delay, jitter=draw(st.floats(0, delay)),
        corrupt=draw(probabilities), truncate=draw(probabilities), seed=draw(st.integers(-(2**70), 2**70)),
        only=draw(st.none() | st.sets(st.sampled_from(list(dialog.Command)), min_size=1)),
        calls=draw(st.none() | st.sets(st.binary(min_size=1, max_size=12), min_size=1, max_size=4)),
    )


@given(impairments())
def test_describe_parses_back_to_the_same_impairment(imp: Impairment) -> None:
    text = imp.describe()
    assert Impairment.parse(text) == imp
    assert "\n" not in text and " " not in text


# -- the determinism rule ----------------------------------------------------------------

ALL = "loss=0.1,duplicate=0.1,reorder=0.1,corrupt=0.1,truncate=0.1,delay=20±5"


def decisions(text: str) -> list[tuple[object, ...]]:
    impairer = Impairer(Impairment.parse(text))
    return [(a.actions, a.out, a.copies, a.delay) for a in (impairer.decide(i, d) for i, d in enumerate(STREAM))]


def test_same_seed_and_input_give_the_same_decisions_and_another_seed_does_not() -> None:
    first = decisions(ALL + ",seed=7")
    assert first == decisions(ALL + ",seed=7")
    assert first != decisions(ALL + ",seed=8")
    assert sum(1 for actions, *_ in first if actions != ["delay"]) > 200  # the faults did hit


def test_decisions_do_not_depend_on_time_or_on_the_other_faults() -> None:
    slow, _ = feed("loss=0.1,seed=7", gap=5.0)
    fast, _ = feed("loss=0.1,seed=7", gap=0.0)
    together = Impairer(Impairment.parse(ALL + ",seed=7"))
    alone = Impairer(Impairment.parse("reorder=0.1,seed=7"))
    for i, data in enumerate(STREAM):
        a, b = together.decide(i, data), alone.decide(i, data)
        if "drop" not in a.actions:
            assert ("reorder" in a.actions) == ("reorder" in b.actions)
    assert slow.counters.dropped == fast.counters.dropped


@pytest.mark.parametrize(
    ("fault", "pinned"),
    [("loss", 68), ("duplicate", 67), ("reorder", 67), ("corrupt", 63), ("truncate", 70)],
)
def test_each_fault_hits_the_datagrams_the_rule_names(fault: str, pinned: int) -> None:
    impairer = Impairer(Impairment.parse(f"{fault}=0.1,seed=7"))
    hit = [i for i, data in enumerate(STREAM) if impairer.decide(i, data).actions]
    assert hit == [i for i in range(len(STREAM)) if u(7, i, fault) < 0.1]
    assert len(hit) == pinned


def test_counts_on_seed_7_with_every_fault_at_once() -> None:
    impairer, out = feed(ALL + ",seed=7")
    c = impairer.counters
    assert (c.received, c.dropped, c.duplicated, c.reordered, c.corrupted, c.truncated, c.delayed) == (
        600, 68, 62, 59, 56, 64, 532,
    )
    assert len(out) == 600 - 68  # every arrival that was not dropped left once (copies apart)


# -- what each fault does to the bytes and the order -------------------------------------


def test_loss_leaves_no_copy() -> None:
    impairer, out = feed("loss=0.25,seed=3")
    assert len(out) == 600 - impairer.counters.dropped
    assert [a.index for a in out] == [i for i in range(600) if not u(3, i, "loss") < 0.25]


def test_duplicate_sends_the_same_bytes_twice() -> None:
    _, out = feed("duplicate=0.2,seed=3")
    doubled = [a for a in out if a.copies == 2]
    assert [a.index for a in doubled] == [i for i in range(600) if u(3, i, "duplicate") < 0.2]
    assert all(a.out == a.data for a in out)


def test_corrupt_flips_one_byte_after_the_header_and_the_checksum_refuses_it() -> None:
    impairer = Impairer(Impairment(corrupt=1.0, seed=5))
    for i, data in enumerate(STREAM[:60]):
        out = impairer.decide(i, data).out
        diff = [k for k in range(len(data)) if out[k] != data[k]]
        assert len(out) == len(data) and len(diff) == 1
        assert diff[0] == 8 + math.floor(u(5, i, "corrupt", 1) * (len(data) - 8))
        assert out[diff[0]] ^ data[diff[0]] == 1 + math.floor(u(5, i, "corrupt", 2) * 255)
        with pytest.raises(PacketRejected) as info:
            parse_header(out)
        assert info.value.reason is DropReason.BAD_CHECKSUM


def test_truncate_cuts_re_seals_and_nothing_cut_decodes() -> None:
    impairer = Impairer(Impairment(truncate=1.0, seed=5))
    reasons = []
    for i, data in enumerate(STREAM[:90]):
        out = impairer.decide(i, data).out
        assert len(out) == 1 + math.floor(u(5, i, "truncate", 1) * (len(data) - 1))
        assert out[8:] == data[8 : len(out)]
        with pytest.raises(RemoteProtocolError) as info:
            dialog.decode(out)
        reason = info.value.reason.name if isinstance(info.value, PacketRejected) else type(info.value).__name__
        # a header needs 18 bytes and "dialog" 4 more; past that, the re-sealed checksum
        # is right and the cut reaches the dialog fields
        expected = "RUNT" if len(out) < 18 else "BAD_NAME" if len(out) < 22 else "TruncatedPacket"
        assert reason == expected
        if expected == "TruncatedPacket":
            assert parse_header(out).command == data[18]
        reasons.append(reason)
    assert set(reasons) == {"RUNT", "BAD_NAME", "TruncatedPacket"} and reasons.count("TruncatedPacket") == 74


def test_truncate_then_corrupt_still_fails_the_checksum() -> None:
    impairer = Impairer(Impairment(truncate=1.0, corrupt=1.0, seed=1))
    for i, data in enumerate(STREAM[:30]):
        arrival = impairer.decide(i, data)
        assert arrival.actions == ["truncate", "corrupt"] or len(arrival.out) <= 8
        if len(arrival.out) >= 18:
            with pytest.raises(PacketRejected, match="checksum"):
                parse_header(arrival.out)


def test_reorder_holds_until_n_later_datagrams_arrived() -> None:
    data = STREAM[:12]
    held = [i for i in range(12) if u(149, i, "reorder") < 0.3]
    assert held == [3, 4, 10]  # the seed chosen to show two held at once
    _, out = feed("reorder=0.3,reorder_by=2,seed=149", data)
    # 3 leaves right after 5 arrived, 4 after 6; 10 is still held at the end (take_held)
    assert [a.index for a in out] == [0, 1, 2, 5, 3, 6, 4, 7, 8, 9, 11, 10]


def test_a_reordered_datagram_leaves_at_its_timeout_when_the_stream_stops() -> None:
    impairer = Impairer(Impairment(reorder=1.0, reorder_by=5, reorder_timeout=200))
    first, ready = impairer.arrive(STREAM[0], 10.0)
    assert ready == [] and impairer.next_wakeup() == pytest.approx(10.2)
    assert impairer.due(10.199) == []
    assert impairer.due(10.2) == [first]
    assert impairer.next_wakeup() is None


def test_delay_is_seeded_uniform_jitter_and_jitter_reorders() -> None:
    impairer = Impairer(Impairment(delay=20, jitter=5, seed=4))
    arrivals, order = [], []
    for i, data in enumerate(STREAM[:200]):
        arrival, ready = impairer.arrive(data, i * 0.001)  # ready: what fell due meanwhile
        arrivals.append(arrival)
        order += [a.index for a in ready]
    order += [a.index for a in impairer.due(1.0)]
    for i, a in enumerate(arrivals):
        assert a.delay == pytest.approx((20 + 5 * (2 * u(4, i, "delay") - 1)) / 1000)
        assert 0.015 <= a.delay <= 0.025
    assert sorted(order) == list(range(200))
    assert order != list(range(200))  # 1 ms apart, ±5 ms of jitter: some overtake
    assert order == sorted(range(200), key=lambda i: i * 0.001 + arrivals[i].delay)


def test_a_fixed_delay_keeps_the_order_even_at_equal_due_times() -> None:
    impairer = Impairer(Impairment(delay=10))
    for data in STREAM[:50]:
        assert impairer.arrive(data, 1.0)[1] == []  # all at once: fifty equal due times
    assert [a.index for a in impairer.due(1.01)] == list(range(50))


def test_take_held_gives_delayed_then_reordered() -> None:
    impairer = Impairer(Impairment(reorder=1.0, reorder_by=100, delay=10, seed=0))
    left = [[a.index for a in impairer.arrive(data, float(i))[1]] for i, data in enumerate(STREAM[:3])]
    # 0 times out at 1.0 s (when 1 arrives) and is due at 1.01 s: 2's arrival sends it;
    # 1 times out at 2.0 s and is due at 2.01 s; 2 waits for its timeout at 3.0 s
    assert left == [[], [], [0]]
    assert [a.index for a in impairer.take_held()] == [1, 2]
    assert impairer.holding == 0


# -- selectors ---------------------------------------------------------------------------


def test_only_touches_the_chosen_commands() -> None:
    impairer, _ = feed("loss=0.5,seed=7,only=created")
    hit = [i for i in range(600) if i % 3 == 0 and u(7, i, "loss") < 0.5]
    assert impairer.counters.dropped == len(hit) == 100


def test_calls_touch_only_their_packets_and_other_modules_pass() -> None:
    others = [PacketBuilder("ul", 1).finish(), b"not bin at all, long enough", b"P4CK"]
    datagrams = STREAM[:30] + others
    imp = Impairment(loss=1.0, calls={b"call-2@10.0.0.1", b"call-7@10.0.0.1"})
    impairer = Impairer(imp)
    fates = [impairer.decide(i, d) for i, d in enumerate(datagrams)]
    assert [i for i, a in enumerate(fates) if a.actions] == [6, 7, 8, 21, 22, 23]
    assert all(not a.selected and a.copies == 1 for a in fates[30:])


def test_without_selectors_faults_touch_every_datagram_bin_or_not() -> None:
    impairer = Impairer(Impairment(corrupt=1.0))
    assert impairer.decide(0, b"SIP/2.0 200 OK\r\n\r\n").actions == ["corrupt"]
    assert impairer.decide(1, b"tiny").actions == []  # no byte after a header to flip


def test_inspect_names_what_a_receiver_would_read() -> None:
    created = STREAM[0]
    assert inspect(created) == PacketInfo(b"dialog", 1, True, None, b"call-0@10.0.0.1", b"ft-0", b"tt-0")
    assert inspect(created[:4] + b"\0\0\0\0" + created[8:]).checksum_ok is False
    assert inspect(b"PACK" + created[4:]).error == "BAD_MARKER"
    assert inspect(b"short").error == "RUNT"
    ul = inspect(PacketBuilder("ul", 4).finish())
    assert (ul.module, ul.command, ul.is_dialog) == (b"ul", 4, False)
