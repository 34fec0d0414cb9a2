"""What a backup behind a relay was left holding: the relay's log replayed into a ``Replica``.

The log says byte for byte what the relay sent the backup, in order (``delivered``).
Replaying exactly that into a ``pybin.replica.Replica`` of the backup's release, with
the receiver's acceptance rules first (``parse_header``: a corrupted datagram fails
the checksum and goes nowhere, as on the real node), predicts the backup's dialog
table without asking the backup. The prediction is only as good as the Replica's
rules, which is the point: where a real backup disagrees, one of them is wrong.

The rules that matter on a lossy link are the backup's, not the primary's: a 1.10
backup builds a dialog from an ``updated`` it has no dialog for ("dialog not found,
building new") and ignores a ``created`` for a dialog it has, so a call survives the
loss of either of its two packets, and reordering them costs nothing. A call is lost
when both are lost, or when its only packet is: a 1.10.5 primary sends no ``created``
when the ACK was handled before the 200 OK's send callback (``dlg_onreply``,
``TMCB_RESPONSE_OUT``: only while the dialog is still CONFIRMED_NA).

``carries`` is the rule for a call the backup can carry after a failover, and
``Replay.explain`` names the packets whose fate explains a call the backup cannot.
No I/O: the caller reads the log (``read_relay_log``) and passes the records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..dialog import MODULE_NAME, Command, DlgState
from ..errors import PybinError
from ..replica import Applied, DialogKey, Ignored, Outcome, Rejected, Replica, ReplicaDialog
from ..wire import ByteOrder, PacketRejected, parse_header
from .impairment import COMMAND_NAMES
from .log import RelayRecord

#: actions after which no intact copy of a datagram reached the backup
HARMFUL = frozenset({"drop", "corrupt", "truncate"})
#: states in which in-dialog requests through a 1.10 backup drive the dialog (below)
CARRYING_STATES = frozenset({DlgState.CONFIRMED_NA, DlgState.CONFIRMED})


@dataclass(frozen=True, slots=True)
class PacketFate:
    """One dialog packet the relay read, and what became of it."""

    #: arrival order at the relay (the log's ``index``)
    index: int
    command: int | None
    actions: tuple[str, ...]
    #: datagrams the relay handed to the kernel for it (2 when duplicated, 0 when dropped)
    copies: int

    @property
    def harmful(self) -> bool:
        """No intact copy of it reached the backup: dropped, corrupted, cut, or never sent."""
        return bool(HARMFUL.intersection(self.actions)) or self.copies == 0

    def describe(self) -> str:
        """``#12 created: drop`` — the log's index, the command, what the relay did."""
        name = COMMAND_NAMES.get(self.command, str(self.command))  # type: ignore[call-overload]
        what = "+".join(self.actions) if self.copies or "drop" in self.actions else "held, never sent"
        return f"#{self.index} {name}: {what}"


def carries(replica: Replica, key: DialogKey | tuple[bytes, bytes, bytes], now: float) -> bool:
    """Whether a backup holding ``replica``'s table can carry the call ``key`` at ``now``.

    The harness's failover counts a call recovered when the backup's dialog module
    matched its re-INVITE and its BYE and replicated ``updated`` and ``deleted`` for
    it. On 1.10 (``dlg_onroute``, ``next_state_dlg``) that needs a dialog that
    ``get_dlg`` finds by Call-ID and tags (the harness's ``dlg_match_mode`` 1 falls
    back to them when the renumbered h_id in the Route's did does not match), whose
    timer has not fired, in state:

    - CONFIRMED (4): the re-INVITE moves the cseq → ``updated``; the BYE ends it → ``deleted``;
    - CONFIRMED_NA (3, the ``created`` arrived and the ACK's ``updated`` did not): the
      re-INVITE leaves it in 3 and sends nothing, but its ACK moves it to 4, which
      replicates ``updated``; the BYE then ends it → ``deleted``.

    UNCONFIRMED/EARLY dialogs (which 1.10.5 primaries never replicate) stay as they are
    on a BYE, and a dialog the backup refused (a socket that is not its own) is not in
    the table at all: neither is carried.
    """
    dialog = replica.get(*key)
    return dialog is not None and _carrying(dialog, now)


def _carrying(dialog: ReplicaDialog, now: float) -> bool:
    if dialog.state not in CARRYING_STATES:
        return False
    return dialog.expires_at is None or dialog.expires_at > now


@dataclass
class Replay:
    """The replica after the replay, and how each datagram and each call fared."""

    replica: Replica
    #: datagrams the relay sent (every copy), and those the backup's receiver accepted
    sent: int = 0
    accepted: int = 0
    #: accepted dialog packets by command: what the backup's ``*_recv`` statistics count
    received: Counter[int] = field(default_factory=Counter)
    #: datagrams the receiver refused, by DropReason name (BAD_CHECKSUM for a corrupted one)
    refused: Counter[str] = field(default_factory=Counter)
    #: Call-ID → each of its dialog packets at the relay, in arrival order
    fates: dict[bytes, list[PacketFate]] = field(default_factory=dict)
    #: Call-ID → what the replica made of each of its packets that reached it, in order
    outcomes: dict[bytes, list[Outcome]] = field(default_factory=dict)
    #: Call-ID → cut packets of it that passed the receiver's checks (re-sealed by the
    #: relay) and reached the dialog module: the Replica refuses them, but 1.10.5 pops
    #: past the end and goes on with uninitialised strings (PROTOCOL.md fact 3), so what
    #: the backup does with them — and whether it survives — is not predictable
    undefined: Counter[bytes] = field(default_factory=Counter)

    def carried(self, key: DialogKey | tuple[bytes, bytes, bytes], now: float) -> bool:
        return carries(self.replica, key, now)

    def explain(self, call_id: bytes) -> list[str]:
        """Why the backup cannot carry ``call_id``: the packets of it the link lost or
        damaged, a ``created`` the primary never sent, or what the backup refused."""
        fates = self.fates.get(call_id, [])
        if not fates:
            return ["no packet of this call reached the relay"]
        reasons = [f.describe() for f in fates if f.harmful]
        if self.undefined[call_id]:
            reasons.append(f"{self.undefined[call_id]} cut packet(s) reached the backup's dialog module: "
                           "1.10.5 reads uninitialised memory there (undefined, not predicted)")
        if not any(f.command == Command.CREATED for f in fates):
            reasons.append("the primary sent no created (its ACK was handled before the 200 OK's "
                           "send callback, 1.10.5 dlg_onreply)")
        for outcome in self.outcomes.get(call_id, []):
            if not isinstance(outcome, (Applied, Ignored)):
                reasons.append(f"{type(outcome).__name__.lower()} by the backup: {outcome.reason}")
        return reasons or ["every packet of it reached the backup intact"]


def replay(records: Iterable[RelayRecord], replica: Replica, *,
           byte_order: ByteOrder = ByteOrder.LITTLE, until: float | None = None) -> Replay:
    """Apply what the relay sent (every copy, in send order; before ``until`` if given)
    to ``replica``, each at its send time (``now=int(t)``: the Replica's clock is whole
    unix seconds, like the backup's ``time(0)``)."""
    records = list(records)
    result = Replay(replica)
    for record in records:
        if record.call_id is not None:
            result.fates.setdefault(record.call_id, []).append(
                PacketFate(record.index, record.command, record.actions,
                           sum(1 for s in record.sent if s.error is None)))
    sends = sorted(((s.seq, s.t, s.data, r.call_id) for r in records for s in r.sent if s.error is None),
                   key=lambda send: send[0])
    for _, t, data, call_id in sends:
        if until is not None and t >= until:
            break
        result.sent += 1
        try:
            packet = parse_header(data, byte_order)
        except PacketRejected as err:
            result.refused[err.reason.name] += 1
            continue
        result.accepted += 1
        if packet.module != MODULE_NAME or packet.command not in (1, 2, 3):
            continue  # another module's, or a command the dialog module refuses: no *_recv
        result.received[packet.command] += 1
        try:
            outcome = replica.apply_packet(packet, now=int(t))
        except PybinError as err:  # a packet the Replica cannot even dispatch
            result.refused[f"undecodable: {err}"] += 1
            continue
        key = getattr(outcome, "key", None)
        if key is not None:
            result.outcomes.setdefault(key.call_id, []).append(outcome)
        elif isinstance(outcome, Rejected) and call_id is not None and outcome.reason.startswith("undecodable"):
            result.undefined[call_id] += 1
    return result


__all__ = ["CARRYING_STATES", "HARMFUL", "PacketFate", "Replay", "carries", "replay"]
