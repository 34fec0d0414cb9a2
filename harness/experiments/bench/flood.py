"""The offered load: pybin-built dialog packets, sent paced from the harness's address.

Each dialog is one created, one updated (state CONFIRMED) and one deleted, as a real
primary sends for a call (INVITE, ACK, BYE). They are interleaved with a lag, so a
dialog lives for a few dozen packets, as calls overlap, instead of arriving as three
back-to-back packets. Dialogs carry an expiry an hour away and no bye-on-timeout flag,
so nothing the bench leaves behind can expire into a BYE storm while it runs.
Everything is encoded before the clock starts: the sender's pace is then sendto alone.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass

from pybin.dialog import Command, DlgFlag, DlgState, make

#: how many dialogs later a dialog's updated and then its deleted are sent
LAG = 64


def dialog_fields(tag: str, n: int, sock: str, now: int) -> dict[str, object]:
    """A created/updated dialog like the harness's script makes (vars, profiles, route sets)."""
    s = sock.encode()
    return dict(
        call_id=f"bench-{tag}-{n}@harness".encode(), from_tag=f"f{n}".encode(), to_tag=f"t{n}".encode(),
        from_uri=f"sip:caller{n}@bench.example.com".encode(), to_uri=b"sip:callee@bench.example.com",
        h_id=n, start_ts=now, state=DlgState.CONFIRMED_NA, caller_sock=s, callee_sock=s,
        caller_cseq=b"1", callee_cseq=b"0",
        caller_route_set=b"<sip:10.0.0.100;lr;did=abc.1>", callee_route_set=b"<sip:10.0.0.100;lr;did=abc.1>",
        caller_contact=f"sip:caller{n}@10.0.0.200:5070".encode(),
        callee_contact=b"sip:callee@10.0.0.201:5080",
        vars=((b"acct", b"bench"),), profiles=((b"caller", f"caller{n}".encode()), (b"inbound", b"")),
        user_flags=8, flags=int(DlgFlag.ISINIT), timeout=now + 3600)


def interleave(dialogs: int, lag: int = LAG) -> Iterator[tuple[int, int]]:
    """(command, dialog index) in send order: created i, updated i-lag, deleted i-2*lag."""
    for i in range(dialogs + 2 * lag):
        if i < dialogs:
            yield Command.CREATED, i
        if 0 <= i - lag < dialogs:
            yield Command.UPDATED, i - lag
        if 0 <= i - 2 * lag < dialogs:
            yield Command.DELETED, i - 2 * lag


def dialog_packets(tag: str, dialogs: int, sock: str, *, now: int | None = None,
                   commands: tuple[int, ...] = (Command.CREATED, Command.UPDATED, Command.DELETED),
                   lag: int = LAG) -> list[bytes]:
    """The encoded packets of ``dialogs`` dialogs (only ``commands`` of each), in send order."""
    now = int(time.time()) if now is None else now
    out = []
    for command, n in interleave(dialogs, lag):
        if command not in commands:
            continue
        f = dialog_fields(tag, n, sock, now)
        if command == Command.UPDATED:
            f["state"] = DlgState.CONFIRMED
        elif command == Command.DELETED:
            f = {k: f[k] for k in ("call_id", "from_tag", "to_tag")}
        out.append(make(command, **f).encode())
    return out


@dataclass(frozen=True)
class Sent:
    packets: int
    seconds: float

    @property
    def rate(self) -> float:
        """What was really offered (the sender may fall behind the asked rate)."""
        return self.packets / self.seconds if self.seconds > 0 else 0.0


def send_paced(sock: socket.socket, dest: tuple[str, int], packets: list[bytes], rate: float) -> Sent:
    """Send at ``rate`` packets/s in bursts of about a millisecond's worth.

    The schedule is absolute (packet k leaves at start + k/rate), so a descheduled
    sender catches up instead of drifting; the wait between bursts is pacing, not
    synchronisation. ENOBUFS/EAGAIN is retried on the same packet: the kernel
    refusing to queue on our side is not loss at the node.
    """
    interval = 1.0 / rate
    start = time.perf_counter()
    sent = 0
    for data in packets:
        ahead = start + sent * interval - time.perf_counter()
        if ahead > 0.001:
            time.sleep(ahead)
        while True:
            try:
                sock.sendto(data, dest)
                break
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as err:
                if err.errno != 105:  # ENOBUFS
                    raise
        sent += 1
    return Sent(sent, time.perf_counter() - start)
