"""Helpers shared by the live conformance tests (not a test module).

They wait on observed events with deadlines (never a fixed sleep) and group what the
pybin peer received per dialog, so each test states its expectations in a few lines.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import pytest

from harness.base.wait import WaitTimeout
from harness.base.wait import wait_until as harness_wait
from harness.instruments.peer import PeerPacket
from pybin.dialog import (
    DialogCreated,
    DialogDeleted,
    DialogMessage,
    DialogUpdated,
    DlgFlag,
)

T = TypeVar("T")

#: what the template's create_dialog("B") leaves in dlg->flags once on the wire
#: (ISINIT: the dialog was created here; BYEONTIMEOUT: the "B" flag)
WIRE_FLAGS = int(DlgFlag.ISINIT | DlgFlag.BYEONTIMEOUT)
#: seconds allowed between start_ts + configured lifetime and the packet's timeout.
#: 1.10 writes timeout as time(0) + expiry tick - current tick: two clocks read at
#: different instants, so it may be a second either side. Measured with
#: harness/conformance/measure_timers.py, 7 runs x 60 held calls (4 local, 3 docker, two runs at
#: once on 2 cores): timeout - start_ts - lifetime was -1 (38), 0 (1154) or +1 (64) of
#: 1256 packets, never more.
TIMEOUT_TOLERANCE = 1


def wait_until(cond: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """The harness's wait helper, failing the test (not erroring it) at the deadline."""
    try:
        return harness_wait(cond, timeout=timeout, what=what, interval=interval)
    except WaitTimeout as err:
        pytest.fail(str(err))


def backend_can_run(config: pytest.Config, name: str, reason: str | None) -> None:
    """For test modules written against one backend: skip when it cannot run here,
    but fail when the run asked for that backend by name (as the plugin does)."""
    if reason is None:
        return
    if config.getoption("--opensips-backend") == name:
        pytest.fail(f"--opensips-backend {name} cannot run: {reason}", pytrace=False)
    pytest.skip(reason)


def by_call(received: Iterable[PeerPacket]) -> dict[bytes, list[DialogMessage]]:
    """Decoded dialog messages per Call-ID, in arrival order."""
    out: dict[bytes, list[DialogMessage]] = {}
    for p in received:
        msg = p.dialog()
        out.setdefault(msg.call_id, []).append(msg)
    return out


def all_have(call_ids: Iterable[bytes], pred: Callable[[DialogMessage], bool]
             ) -> Callable[[list[PeerPacket]], bool]:
    """A ``peer.wait_for`` predicate: every call has at least one message matching ``pred``."""
    wanted = set(call_ids)

    def check(received: list[PeerPacket]) -> bool:
        seen = {cid for cid, msgs in by_call(received).items() if any(pred(m) for m in msgs)}
        return wanted <= seen

    return check


def is_confirmed_update(msg: DialogMessage) -> bool:
    return isinstance(msg, DialogUpdated) and int(msg.state) == 4


def is_deleted(msg: DialogMessage) -> bool:
    return isinstance(msg, DialogDeleted)


def vip_socket(cluster: Any) -> str:
    """The socket string both legs of every dialog carry: the shared SIP listen address."""
    host, port = cluster.sip_addr
    return f"udp:{host}:{port}"


def script_diffs(msg: DialogCreated | DialogUpdated, settings: Any, from_user: str) -> list[str]:
    """What opensips.cfg.j2 puts in every dialog: vars, profiles, flags, lifetime."""
    d = settings.dialog
    diffs = []
    want_vars = ((b"acct", d.acct.encode()),)
    if msg.vars != want_vars:
        diffs.append(f"vars: {msg.vars!r} != {want_vars!r}")
    # the script links `inbound` then `caller`; 1.10 prepends each link
    want_profiles = ((d.profile_with_value.encode(), from_user.encode()),
                     (d.profile_no_value.encode(), b""))
    if msg.profiles != want_profiles:
        diffs.append(f"profiles: {msg.profiles!r} != {want_profiles!r}")
    if msg.user_flags != 1 << d.flag:
        diffs.append(f"user_flags: {msg.user_flags} != {1 << d.flag}")
    if msg.flags != WIRE_FLAGS:
        diffs.append(f"flags: {msg.flags} != {WIRE_FLAGS}")
    if abs(msg.timeout - (msg.start_ts + d.timeout)) > TIMEOUT_TOLERANCE:
        diffs.append(f"timeout: {msg.timeout} not start_ts {msg.start_ts} + {d.timeout}")
    for name in ("callee_from_uri", "callee_to_uri"):
        if getattr(msg, name) != b"":
            diffs.append(f"{name}: {getattr(msg, name)!r} != b''")
    if (msg.caller_last_gen_cseq, msg.callee_last_gen_cseq) != (0, 0):
        diffs.append("last_gen_cseq: not (0, 0)")
    return diffs
