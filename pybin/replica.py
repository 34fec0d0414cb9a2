"""A reference dialog table that applies replication like an OpenSIPS backup.

The rules are those of 1.10.5's ``dlg_replication.c`` (``dlg_replicated_create`` /
``_update`` / ``_delete`` and ``receive_binary_packet``), with the helpers they call
(``get_dlg``/``match_dialog``, ``fetch_socket_info``/``grep_sock_info``,
``read_dialog_vars``/``read_dialog_profiles``, ``next_state_dlg`` on BYE,
``dlg_ontimeout``). The harness compares real backups against it, so where 1.10 is
odd we copy the oddity and say so in a comment.

``Replica(..., release="1.10.2")`` applies another release's backup rules where they
differ from 1.10.5's (``pybin.rules``: h_id kept or renumbered, the updated's timeout
applied or not, a refused create left linked, ping flags deadlocking the receiver);
the codec is the same for every release.

Pure and clock-free (aioquic style): every call that needs the time takes ``now=``
(unix seconds); ``expire(now)`` plays the dialog timer. No I/O, no sleeping.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple, Union

from .dialog import (
    Command,
    DialogCreated,
    DialogDeleted,
    DialogMessage,
    DialogUpdated,
    DlgFlag,
    DlgState,
    MODULE_NAME,
    decode_packet,
)
from .errors import RemoteProtocolError
from .rules import BASELINE, BackupRules, rules_for
from .sockets import ListenSocket
from .wire import Packet

UINT_MAX = 0xFFFFFFFF
#: dialog modparam hash_size default (dialog.c)
DEFAULT_HASH_SIZE = 4096
_ENDED_BY_BYE = (DlgState.CONFIRMED_NA, DlgState.CONFIRMED)


class DialogKey(NamedTuple):
    """What ``get_dlg`` looks a dialog up by (either tag order matches, as in C)."""

    call_id: bytes
    from_tag: bytes
    to_tag: bytes


@dataclass(frozen=True, slots=True)
class Applied:
    """The packet changed the table. ``key`` is the dialog's own (its tags in its order);
    ``created`` is True when a dialog was built."""

    command: Command
    key: DialogKey
    created: bool = False


@dataclass(frozen=True, slots=True)
class Ignored:
    """1.10 accepts the packet and does nothing (return 0): a duplicate create."""

    command: Command
    key: DialogKey
    reason: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """1.10 logs an error for the packet (return -1); the table may still have moved."""

    command: Command | int
    key: DialogKey | None
    reason: str


@dataclass(frozen=True, slots=True)
class Expired:
    """The dialog timer ended a dialog; ``bye_sent`` when BYEONTIMEOUT made 1.10 send BYEs."""

    key: DialogKey
    bye_sent: bool = False


@dataclass(frozen=True, slots=True)
class Crashed:
    """The packet kills the node (``hung=False``: SIGSEGV) or stops its BIN receiver for
    good (``hung=True``: a deadlock) under this release's rules; nothing after it applies.
    Never on 1.10.5: see ``BackupRules.failed_create_stays_linked`` / ``ping_flags_hang``."""

    command: Command
    key: DialogKey
    reason: str
    hung: bool = False


Outcome = Union[Applied, Ignored, Rejected, Crashed]


@dataclass(slots=True)
class ReplicaDialog:
    """One dialog as the backup holds it.

    ``vars`` and ``profiles`` are in the backup's own list order: 1.10 prepends each
    value and profile link, so a created packet's pairs end up reversed, and this is
    the order the backup would send them in if it replicated the dialog itself.
    ``h_id`` is the primary's (the packet's). Where ``h_id_kept`` the backup shows
    exactly that (1.10.0-1.10.2, 1.11.0-1.11.2, 1.11.10+); otherwise (1.10.5) it
    relabels it to ``max(next_id, h_id + 1)`` with ``next_id`` seeded by ``rand()``,
    which no one can predict: ``h_id_matches`` says whether an observed h_id fits.
    ``h_entry`` is always exact.
    """

    call_id: bytes
    from_tag: bytes
    to_tag: bytes
    from_uri: bytes
    to_uri: bytes
    h_entry: int
    h_id: int
    start_ts: int
    state: DlgState | int
    caller_sock: bytes
    callee_sock: bytes
    caller_cseq: bytes
    callee_cseq: bytes
    caller_route_set: bytes
    callee_route_set: bytes
    caller_contact: bytes
    callee_contact: bytes
    callee_from_uri: bytes
    callee_to_uri: bytes
    vars: list[tuple[bytes, bytes]] = field(default_factory=list)
    profiles: list[tuple[bytes, bytes]] = field(default_factory=list)
    user_flags: int = 0
    flags: int = 0
    caller_last_gen_cseq: int = 0
    callee_last_gen_cseq: int = 0
    #: absolute unix second at which the dialog timer fires; None once out of the timer
    expires_at: int | None = None
    #: dlg->lifetime: 0 after create, the last relative timeout an update set
    lifetime: int = 0
    #: the backup keeps ``h_id`` as sent (release rule ``keeps_h_id``)
    h_id_kept: bool = False

    @property
    def key(self) -> DialogKey:
        return DialogKey(self.call_id, self.from_tag, self.to_tag)

    def h_id_matches(self, observed: int) -> bool:
        """Whether a backup's h_id for this dialog can be ``observed``: equal where the
        release keeps it, else at least ``h_id + 1`` (any value when that wraps)."""
        if self.h_id_kept:
            return observed == self.h_id
        return self.h_id == UINT_MAX or observed > self.h_id

    def matches(self, call_id: bytes, from_tag: bytes, to_tag: bytes) -> bool:
        """match_dialog(): the tags may come in either order (downstream or upstream)."""
        if self.call_id != call_id:
            return False
        if self.from_tag == from_tag:
            return self.to_tag == to_tag
        if self.from_tag == to_tag:
            return self.to_tag == from_tag
        return False


@dataclass(slots=True)
class ReplicaStats:
    """The receiving side of ``get_statistics dialog:``, named as 1.10 names them."""

    create_recv: int = 0
    update_recv: int = 0
    delete_recv: int = 0
    active_dialogs: int = 0
    processed_dialogs: int = 0
    expired_dialogs: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


def dlg_hash(call_id: bytes, size: int = DEFAULT_HASH_SIZE) -> int:
    """core_hash(callid, 0, size) of hash_func.h, with x86's signed ``char``."""
    h = 0

    def mix(h: int, v: int) -> int:
        v &= UINT_MAX
        return (h + (v ^ (v >> 3))) & UINT_MAX

    s = [b - 256 if b > 127 else b for b in call_id]
    i = 0
    n = len(s)
    while i <= n - 4:
        h = mix(h, (s[i] << 24) + (s[i + 1] << 16) + (s[i + 2] << 8) + s[i + 3])
        i += 4
    v = 0
    for c in s[i:]:
        v = ((v << 8) + c) & UINT_MAX
    h = mix(h, v)
    h = ((h + (h >> 11)) + ((h >> 13) + (h >> 23))) & UINT_MAX
    return h & (size - 1) if size else h


class Replica:
    """A backup's dialog table (1.10.5's unless ``release`` says), fed with decoded
    dialog messages.

    ``listen_sockets`` are the node's own SIP sockets (``"udp:10.0.0.100:5060"``): a
    dialog whose caller or callee socket is not among them is rejected, as 1.10 does.
    ``profiles`` optionally predefines profiles (name → has a value), as a config's
    ``profiles_with_value`` / ``profiles_no_value`` would; others are defined on first
    sight, valued when their first value is not empty (add_profile_definitions).
    ``release`` (``"1.10.0"`` … ``"1.11.11"``) picks that release's backup rules
    (``self.rules``, from ``pybin.rules.CHANGES``); ValueError for any other string.
    Under an older release's rules a packet may kill or hang the node: ``apply`` then
    returns ``Crashed``, ``down`` says why, and nothing applies any more.
    """

    def __init__(
        self,
        listen_sockets: Iterable[str | bytes],
        *,
        profiles: Mapping[bytes, bool] | None = None,
        hash_size: int = DEFAULT_HASH_SIZE,
        release: str = BASELINE,
    ) -> None:
        self.rules: BackupRules = rules_for(release)
        self.release = self.rules.release
        parsed = []
        for text in listen_sockets:
            sock = ListenSocket.parse(text)
            if sock is None:
                raise ValueError(f"not a listen socket (proto:host:port): {text!r}")
            parsed.append(sock)
        if hash_size <= 0 or hash_size & (hash_size - 1):
            raise ValueError(f"hash_size must be a power of two, got {hash_size}")
        self.listen_sockets: tuple[ListenSocket, ...] = tuple(parsed)
        self.hash_size = hash_size
        self.profile_definitions: dict[bytes, bool] = dict(profiles or {})
        self.stats = ReplicaStats()
        # call_id → dialogs in link order (one hash bucket, narrowed to the Call-ID)
        self._table: dict[bytes, list[ReplicaDialog]] = {}
        # failed_create_stays_linked: Call-IDs with a leg-less dialog in the hash
        self._legless: dict[bytes, DialogKey] = {}
        #: why the modelled node is dead or hung (None while it applies packets)
        self.down: str | None = None

    # -- reading the table -------------------------------------------------------------

    def __iter__(self) -> Iterator[ReplicaDialog]:
        for dialogs in self._table.values():
            yield from dialogs

    def __len__(self) -> int:
        return sum(len(d) for d in self._table.values())

    def get(self, call_id: bytes, from_tag: bytes, to_tag: bytes) -> ReplicaDialog | None:
        """get_dlg(): the first matching dialog that is not in state DELETED."""
        for dlg in self._table.get(call_id, ()):
            if dlg.state != DlgState.DELETED and dlg.matches(call_id, from_tag, to_tag):
                return dlg
        return None

    def by_state(self) -> dict[DlgState | int, int]:
        counts: dict[DlgState | int, int] = {}
        for dlg in self:
            counts[dlg.state] = counts.get(dlg.state, 0) + 1
        return counts

    @property
    def legless(self) -> tuple[DialogKey, ...]:
        """Refused creates a 1.10.0-1.10.2 / 1.11.0-1.11.2 backup left linked without
        legs: not listed here (``__iter__``), but MI dlg_list on the real node walks them
        and dereferences NULL legs, as does any later packet with the same Call-ID."""
        return tuple(self._legless.values())

    def next_expiry(self) -> int | None:
        """When ``expire`` next has something to do (aioquic's get_timer)."""
        times = [d.expires_at for d in self if d.expires_at is not None]
        return min(times) if times else None

    # -- applying packets --------------------------------------------------------------

    def apply_packet(self, packet: Packet, *, now: int) -> Outcome:
        """receive_binary_packet(): dispatch on the command, count, apply."""
        command = packet.command
        if packet.module != MODULE_NAME or command not in (1, 2, 3):
            return Rejected(command, None, f"invalid dialog binary packet command: {command}")
        try:
            message = decode_packet(packet)
        except RemoteProtocolError as err:
            # 1.10 would pop garbage and go on; we refuse, but count as it counts.
            self._count_recv(Command(command))
            if command == Command.CREATED:
                self.stats.processed_dialogs += 1
            return Rejected(Command(command), None, f"undecodable packet: {err}")
        return self.apply(message, now=now)

    def apply(self, message: DialogMessage, *, now: int) -> Outcome:
        """Apply one decoded message at unix time ``now``; counters move as in 1.10."""
        if not isinstance(message, (DialogCreated, DialogUpdated, DialogDeleted)):
            raise TypeError(f"not a dialog message: {type(message).__name__}")
        key = DialogKey(message.call_id, message.from_tag, message.to_tag)
        if self.down is not None:
            return Crashed(message.command, key, f"the node is down: {self.down}")
        if message.call_id in self._legless:
            # every handler starts with get_dlg, whose match_dialog reads dlg->legs[0]
            self.down = ("SIGSEGV: a lookup of a Call-ID whose refused create was left "
                         "linked without legs (failed_create_stays_linked)")
            return Crashed(message.command, key, self.down)
        if isinstance(message, DialogCreated):
            outcome = self._create(message, now, check_duplicate=True)
        elif isinstance(message, DialogUpdated):
            outcome = self._update(message, now)
        else:
            outcome = self._delete(message)
        if isinstance(outcome, Crashed):
            return outcome  # the handler never returned
        # receive_binary_packet bumps *_recv after the handler, whatever it returned.
        self._count_recv(message.command)
        return outcome

    def _count_recv(self, command: Command) -> None:
        if command == Command.CREATED:
            self.stats.create_recv += 1
        elif command == Command.UPDATED:
            self.stats.update_recv += 1
        else:
            self.stats.delete_recv += 1

    def _serves(self, sock: bytes) -> bool:
        wanted = ListenSocket.parse(sock)
        return wanted is not None and any(s.serves(wanted) for s in self.listen_sockets)

    def _create(
        self, msg: DialogCreated | DialogUpdated, now: int, *, check_duplicate: bool
    ) -> Outcome:
        # processed_dialogs counts every entry into dlg_replicated_create, duplicates
        # and rejected dialogs included.
        self.stats.processed_dialogs += 1
        key = DialogKey(msg.call_id, msg.from_tag, msg.to_tag)
        command = msg.command
        if check_duplicate and self.get(*key) is not None:
            return Ignored(command, key, "dialog with this Call-ID and tags already exists")
        for which, sock in (("caller", msg.caller_sock), ("callee", msg.callee_sock)):
            if not self._serves(sock):
                shown = sock.decode("ascii", "backslashreplace") or "(empty)"
                if self.rules.failed_create_stays_linked:
                    # linked before the socket check, left there by packet_error
                    self._legless.setdefault(msg.call_id, key)
                return Rejected(
                    command, key, f"{which} socket {shown} is not one of our listen sockets"
                )
        # insert_dlg_timer with the remaining time, 0 when already past (fires at once).
        remaining = msg.timeout - now if msg.timeout > now else 0
        dlg = ReplicaDialog(
            call_id=msg.call_id,
            from_tag=msg.from_tag,
            to_tag=msg.to_tag,
            from_uri=msg.from_uri,
            to_uri=msg.to_uri,
            h_entry=dlg_hash(msg.call_id, self.hash_size),
            h_id=msg.h_id,
            start_ts=msg.start_ts,
            state=msg.state,
            caller_sock=msg.caller_sock,
            callee_sock=msg.callee_sock,
            caller_cseq=msg.caller_cseq,
            callee_cseq=msg.callee_cseq,
            caller_route_set=msg.caller_route_set,
            callee_route_set=msg.callee_route_set,
            caller_contact=msg.caller_contact,
            callee_contact=msg.callee_contact,
            callee_from_uri=msg.callee_from_uri,
            callee_to_uri=msg.callee_to_uri,
            user_flags=msg.user_flags,
            flags=msg.flags,
            caller_last_gen_cseq=msg.caller_last_gen_cseq,
            callee_last_gen_cseq=msg.callee_last_gen_cseq,
            expires_at=now + remaining,
            lifetime=0,
            h_id_kept=self.rules.keeps_h_id,
        )
        self._table.setdefault(msg.call_id, []).append(dlg)
        if self.rules.ping_flags_hang and msg.flags & (DlgFlag.PING_CALLER | DlgFlag.PING_CALLEE):
            # linked and in the timer, then ref_dlg() takes the bucket lock the receiver
            # holds: vars, profiles, active_dialogs and *_recv are never reached
            self.down = ("BIN receiver deadlocked: ref_dlg() on the bucket lock it holds, "
                         "for a dialog with ping flags (ping_flags_hang)")
            return Crashed(command, key, self.down, hung=True)
        self._read_vars(dlg, msg.vars)
        self._read_profiles(dlg, msg.profiles, double_check=False)
        # active_dialogs goes up whatever the state (active_dlgs_cnt, not exported,
        # only counts confirmed ones).
        self.stats.active_dialogs += 1
        return Applied(command, key, created=True)

    def _update(self, msg: DialogUpdated, now: int) -> Outcome:
        dlg = self.get(msg.call_id, msg.from_tag, msg.to_tag)
        if dlg is None:
            # "dialog not found, building new": a create without the duplicate check.
            return self._create(msg, now, check_duplicate=False)
        # Taken: state (assigned as is, no state machine), both cseqs, vars, profiles,
        # user_flags, flags, timeout (update_timeout_ignored: the callee's
        # last_gen_cseq in its place). Skipped: URIs, h_id, start_ts, sockets, route
        # sets, contacts, mangled URIs, last_gen_cseqs.
        dlg.state = msg.state
        dlg.caller_cseq = msg.caller_cseq
        dlg.callee_cseq = msg.callee_cseq
        dlg.user_flags = msg.user_flags
        dlg.flags = msg.flags
        if self.rules.update_timeout_ignored:
            # bin_skip_int(2); bin_pop_int(&timeout): the callee's last_gen_cseq, as is
            lifetime = _as_int32(msg.callee_last_gen_cseq)
        else:
            lifetime = _as_int32(msg.timeout - now)
        if dlg.lifetime != lifetime:
            dlg.lifetime = lifetime
            # update_dlg_timer only re-arms a dialog still in the timer list
            if dlg.expires_at is not None:
                dlg.expires_at = now + lifetime
        self._read_vars(dlg, msg.vars)
        self._read_profiles(dlg, msg.profiles, double_check=True)
        return Applied(msg.command, dlg.key)

    def _delete(self, msg: DialogDeleted) -> Outcome:
        key = DialogKey(msg.call_id, msg.from_tag, msg.to_tag)
        dlg = self.get(*key)
        if dlg is None:
            # Ended dialogs are DELETED, which get_dlg skips: same error as unknown.
            return Rejected(msg.command, key, "dialog not found (unknown or already deleted)")
        # destroy_linkers runs before the state check, even for a refused delete.
        dlg.profiles.clear()
        if dlg.state not in _ENDED_BY_BYE:
            # next_state_dlg(BYE) leaves unconfirmed/early dialogs as they are.
            return Rejected(
                msg.command, key, f"duplicate dialog delete request (state {_state_name(dlg.state)})"
            )
        self._end(dlg)
        return Applied(msg.command, dlg.key)

    def _end(self, dlg: ReplicaDialog) -> None:
        dlg.state = DlgState.DELETED
        dlg.flags |= DlgFlag.HASBYE
        dlg.expires_at = None
        bucket = self._table[dlg.call_id]
        bucket.remove(dlg)
        if not bucket:
            del self._table[dlg.call_id]
        self.stats.active_dialogs -= 1

    def expire(self, *, now: int) -> list[Expired]:
        """dlg_ontimeout for every dialog whose timer is due at ``now``.

        Confirmed dialogs end (with BYEONTIMEOUT a real node first sends BYEs and ends
        the dialog when they complete; we end it at once). Unconfirmed and early
        dialogs leave the timer and stay, as BYE does not move them.
        """
        ended: list[Expired] = []
        due = [d for d in self if d.expires_at is not None and d.expires_at <= now]
        for dlg in sorted(due, key=lambda d: d.expires_at or 0):
            if dlg.state in _ENDED_BY_BYE:
                bye = bool(dlg.flags & DlgFlag.BYEONTIMEOUT)
                dlg.profiles.clear()
                self._end(dlg)
                self.stats.expired_dialogs += 1
                ended.append(Expired(dlg.key, bye_sent=bye))
            else:
                dlg.expires_at = None
        return ended

    # -- vars and profiles -------------------------------------------------------------

    @staticmethod
    def _read_vars(dlg: ReplicaDialog, pairs: Iterable[tuple[bytes, bytes]]) -> None:
        """read_dialog_vars + store_dlg_value: empty names/values skipped, replace or prepend."""
        changed = False
        for name, value in pairs:
            if not name or not value:
                continue
            for i, (old, _) in enumerate(dlg.vars):
                if old == name:
                    dlg.vars[i] = (name, value)
                    break
            else:
                dlg.vars.insert(0, (name, value))
            changed = True
        if changed:
            dlg.flags |= DlgFlag.VP_CHANGED

    def _read_profiles(
        self, dlg: ReplicaDialog, pairs: Iterable[tuple[bytes, bytes]], *, double_check: bool
    ) -> None:
        """read_dialog_profiles: on update, a profile already linked is left alone."""
        changed = False
        for name, value in pairs:
            if not name:
                continue
            if double_check and any(linked == name for linked, _ in dlg.profiles):
                continue
            has_value = self.profile_definitions.setdefault(name, bool(value))
            dlg.profiles.insert(0, (name, value if has_value else b""))
            changed = True
        if changed:
            dlg.flags |= DlgFlag.VP_CHANGED


def _as_int32(value: int) -> int:
    """``int timeout`` in dlg_replicated_update: the subtraction wraps like C's."""
    value &= UINT_MAX
    return value - (1 << 32) if value & 0x80000000 else value


def _state_name(state: DlgState | int) -> str:
    return state.name if isinstance(state, DlgState) else str(state)


__all__ = [
    "Applied",
    "Crashed",
    "DialogKey",
    "Expired",
    "Ignored",
    "ListenSocket",
    "Outcome",
    "Rejected",
    "Replica",
    "ReplicaDialog",
    "ReplicaStats",
    "dlg_hash",
]
