"""A reference user-location table that applies ``ul`` packets like an OpenSIPS backup.

The rules are those of ``receive_binary_packet`` and the ``receive_*`` functions of
1.11.11's ``ureplication.c``, with what they call: ``find_domain``, ``get_urecord``,
``insert_urecord``, ``delete_urecord``, ``get_ucontact``, ``insert_ucontact`` /
``mem_insert_ucontact`` / ``new_ucontact`` (``compute_next_hop``), ``update_ucontact``
(``mem_update_ucontact``, ``update_contact_pos``), ``delete_ucontact``, and the
``nodb_timer`` / ``mem_timer_udomain`` expiry. ``Registrar(..., release=V)`` applies
release V's rules where they differ (``pybin.registrar_rules``). The backup modelled
keeps contacts in memory only (``db_mode`` 0, the mode replication is meant for).

Where usrloc is odd we copy the oddity: a contact insert never checks for an existing
binding (a second one is added), an update that finds no binding inserts one, a
contact delete leaves its emptied AOR in place, ``update_contact_pos`` orders by q the
other way round from ``mem_insert_ucontact``.

Pure and clock-free: every call that needs the time takes ``now=`` (unix seconds).
A binding whose ``expires`` is 0 is permanent; any other binding is gone once
``expires <= now`` (``VALID_CONTACT``): ``snapshot(now=)`` leaves it out, ``expire(now=)``
(the usrloc timer) removes it, and the AORs it leaves empty.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import NamedTuple, Union

from .bindings import (
    Binding,
    MatchingMode,
    get_ucontact,
    insert_at,
    int32,
    move_updated,
    refusal,
    sip_uri_parses,
)
from .dialog import STR
from .errors import RemoteProtocolError
from .registrar_rules import BASELINE, RegistrarRules, rules_for
from .sockets import ListenSocket
from .usrloc import (
    CONTACT_FIELDS,
    MESSAGES,
    MODULE_NAME,
    RAW,
    ContactDeleted,
    ContactFlag,
    ContactInserted,
    ContactUpdated,
    RecordDeleted,
    RecordInserted,
    UlCommand,
    UlMessage,
    decode_packet,
)
from .wire import Packet, PacketReader

#: ul_mod.c defaults
DEFAULT_CSEQ_DELAY = 20


class RecordKey(NamedTuple):
    domain: bytes
    aor: bytes


class Action(enum.Enum):
    """What a packet did to the table."""

    RECORD_CREATED = "record created"
    RECORD_DELETED = "record deleted"
    CONTACT_INSERTED = "contact inserted"
    CONTACT_UPDATED = "contact updated"
    CONTACT_DELETED = "contact deleted"


@dataclass(frozen=True, slots=True)
class Applied:
    """The packet changed the table (receive_* returned 0)."""

    command: UlCommand
    key: RecordKey
    actions: tuple[Action, ...]


@dataclass(frozen=True, slots=True)
class Ignored:
    """usrloc takes the packet and changes nothing (returns 0): an AOR that exists, a
    delete for an AOR it does not have, a stale update (1.11.9+, 2.1.5)."""

    command: UlCommand
    key: RecordKey
    reason: str


@dataclass(frozen=True, slots=True)
class Rejected:
    """usrloc logs "failed to process a binary packet"; ``actions`` is what moved anyway
    (an AOR created before its contact was refused stays)."""

    command: UlCommand | int
    key: RecordKey | None
    reason: str
    actions: tuple[Action, ...] = ()


@dataclass(frozen=True, slots=True)
class Crashed:
    """The packet kills the node (SIGSEGV); nothing after it applies."""

    command: UlCommand | int
    key: RecordKey | None
    reason: str


@dataclass(frozen=True, slots=True)
class Expired:
    """The timer removed a binding (``contact``), or an AOR left empty (``contact`` None)."""

    key: RecordKey
    contact: bytes | None


Outcome = Union[Applied, Ignored, Rejected, Crashed]


@dataclass(slots=True)
class DomainStats:
    """``get_statistics usrloc:``'s per-table counters (``location-users`` ...)."""

    users: int = 0
    contacts: int = 0
    expires: int = 0


_TIME_FIELDS = ("expires", "last_modified")


class Registrar:
    """A usrloc backup's table (1.11.11's unless ``release`` says), fed ``ul`` messages.

    ``domains`` are the tables the backup registered (``save("location")`` registers
    "location"); ``listen_sockets`` the socket strings its grep_sock_info matches (its
    own and their advertised names: ``"udp:10.0.0.100:5060"``). ``matching_mode``,
    ``cseq_delay``, ``desc_time_order`` and ``skip_replicated_db_ops`` are the usrloc
    modparams of the same names. ``time_t_size`` is the backup's ``sizeof(time_t)``:
    a packet whose time fields have another size is refused (the C receiver would
    memcpy ``sizeof`` bytes past or short of them).
    """

    def __init__(
        self,
        domains: Iterable[bytes | str] = (b"location",),
        listen_sockets: Iterable[str | bytes] = (),
        *,
        release: str = BASELINE,
        matching_mode: MatchingMode = MatchingMode.CONTACT_ONLY,
        cseq_delay: int = DEFAULT_CSEQ_DELAY,
        desc_time_order: bool = False,
        skip_replicated_db_ops: bool = False,
        time_t_size: int = 8,
        uri_parses: Callable[[bytes], bool] = sip_uri_parses,
    ) -> None:
        self.rules: RegistrarRules = rules_for(release)
        self.release = self.rules.release
        parsed = []
        for text in listen_sockets:
            sock = ListenSocket.parse(text)
            if sock is None:
                raise ValueError(f"not a listen socket (proto:host:port): {text!r}")
            parsed.append(sock)
        self.listen_sockets: tuple[ListenSocket, ...] = tuple(parsed)
        self.matching_mode = MatchingMode(matching_mode)
        self.cseq_delay = cseq_delay
        self.desc_time_order = desc_time_order
        self.skip_replicated_db_ops = skip_replicated_db_ops
        if time_t_size not in (4, 8):
            raise ValueError(f"time_t is 4 or 8 bytes, not {time_t_size}")
        self.time_t_size = time_t_size
        self.uri_parses = uri_parses
        self._tables: dict[bytes, dict[bytes, list[Binding]]] = {
            d.encode() if isinstance(d, str) else bytes(d): {} for d in domains
        }
        self.stats: dict[bytes, DomainStats] = {d: DomainStats() for d in self._tables}
        #: why the modelled node is dead (None while it applies packets)
        self.down: str | None = None

    # -- reading the table -------------------------------------------------------------

    def get(self, domain: bytes, aor: bytes) -> tuple[Binding, ...] | None:
        """The AOR's bindings in the backup's list order (expired ones included until
        ``expire``); None when it has no such AOR."""
        contacts = self._tables.get(domain, {}).get(aor)
        return None if contacts is None else tuple(contacts)

    def snapshot(self, *, now: int) -> dict[RecordKey, tuple[Binding, ...]]:
        """What a lookup at ``now`` sees: valid bindings per AOR, AORs without any left out."""
        view: dict[RecordKey, tuple[Binding, ...]] = {}
        for domain, records in self._tables.items():
            for aor, contacts in records.items():
                valid = tuple(c for c in contacts if c.valid(now))
                if valid:
                    view[RecordKey(domain, aor)] = valid
        return view

    def statistics(self) -> dict[str, int]:
        """Named as ``get_statistics usrloc:`` names them."""
        out = {"registered_users": sum(s.users for s in self.stats.values())}
        for domain, s in self.stats.items():
            name = domain.decode("utf-8", "backslashreplace")
            out.update({f"{name}-users": s.users, f"{name}-contacts": s.contacts, f"{name}-expires": s.expires})
        return out

    # -- applying packets --------------------------------------------------------------

    def apply_packet(self, packet: Packet, *, now: int) -> Outcome:
        """receive_binary_packet(): dispatch on the command, then apply."""
        command = packet.command
        if packet.module != MODULE_NAME or command not in MESSAGES:
            return Rejected(command, None, f"invalid usrloc binary packet type: {command}")
        if self.down is not None:
            return Crashed(UlCommand(command), None, f"the node is down: {self.down}")
        try:
            message = decode_packet(packet)
        except RemoteProtocolError as err:
            empty = _empty_raw_field(packet)
            if empty is not None and empty[0] in self._tables:
                self.down = f"SIGSEGV: memcpy() from the NULL bin_pop_str() gives for an empty {empty[1]}"
                return Crashed(UlCommand(command), None, self.down)
            # the C receiver pops garbage and goes on; we refuse
            return Rejected(UlCommand(command), None, f"undecodable packet: {err}")
        return self.apply(message, now=now)

    def apply(self, message: UlMessage, *, now: int) -> Outcome:
        """Apply one decoded message at unix time ``now``."""
        if not isinstance(message, tuple(MESSAGES.values())):
            raise TypeError(f"not a ul message: {type(message).__name__}")
        key = RecordKey(message.domain, message.aor)
        command = message.command
        if self.down is not None:
            return Crashed(command, key, f"the node is down: {self.down}")
        records = self._tables.get(message.domain)
        if records is None:
            return Rejected(command, key, f"domain {message.domain!r} is not local")
        if isinstance(message, RecordInserted):
            if message.aor in records:
                return Ignored(command, key, "the AOR exists")
            self._new_record(key)
            return Applied(command, key, (Action.RECORD_CREATED,))
        if isinstance(message, RecordDeleted):
            if message.aor not in records:
                return Ignored(command, key, "no such AOR")
            return Applied(command, key, self._delete_record(key))
        if isinstance(message, ContactDeleted):
            return self._delete_contact(message, key, now)
        return self._insert_or_update(message, key, now)

    # -- the receive_* functions -------------------------------------------------------

    def _insert_or_update(self, msg: ContactInserted | ContactUpdated, key: RecordKey, now: int) -> Outcome:
        command = msg.command
        for name in _TIME_FIELDS:
            size = getattr(msg, name).size
            if size != self.time_t_size:
                return Rejected(command, key, f"{name} is {size} bytes, this backup's time_t {self.time_t_size}")
        if msg.q.size != 4:
            return Rejected(command, key, f"q is {msg.q.size} bytes, qvalue_t is 4")
        if not msg.sock or msg.sock[:1] == b"\0":
            return Rejected(command, key, f"bad received socket: {msg.sock!r}")
        wanted = ListenSocket.parse(msg.sock)
        if wanted is None:
            return Rejected(command, key, f"bad socket {msg.sock!r}")
        sock: bytes | None = msg.sock
        if not any(s.serves(wanted) for s in self.listen_sockets):
            if self.rules.refuses_foreign_socket:
                return Rejected(command, key, f"non-local socket {msg.sock!r}")
            sock = None  # 1.11.10+: stored without a socket
        flags = msg.flags | ContactFlag.MEM if self.skip_replicated_db_ops else msg.flags
        binding = Binding(
            msg.contact, msg.call_id, msg.user_agent, msg.path, msg.attr, msg.received, msg.instance,
            msg.expires.value, msg.q.value, sock, int32(msg.cseq), int(flags), msg.cflags, msg.methods,
            msg.last_modified.value,
        )
        created: tuple[Action, ...] = ()
        contacts = self._tables[key.domain].get(key.aor)
        if contacts is None:  # "failed to fetch local urecord - creating new one"
            contacts = self._new_record(key)
            created = (Action.RECORD_CREATED,)
        elif isinstance(msg, ContactUpdated):
            rc, index = self._get_ucontact(contacts, msg, now)
            if rc == -2 and self.rules.takes_stale_updates:
                self.down = "SIGSEGV: update_ucontact() of the NULL contact get_ucontact() gave for -2"
                return Crashed(command, key, self.down)
            if rc == 0:
                contacts[index] = self._updated(contacts[index], binding)
                move_updated(contacts, index, desc_time_order=self.desc_time_order)
                return Applied(command, key, (Action.CONTACT_UPDATED,))
            if rc != 1 and not self.rules.takes_stale_updates:
                return Ignored(command, key, f"the binding is newer than this update (get_ucontact {rc})")
            # rc 1 (not found), or -1 where stale updates are taken: a binding is added
        reason = refusal(binding, self.uri_parses, check_contact=not self.rules.stores_unparsable_contact)
        if reason is not None:
            return Rejected(command, key, f"failed to insert ucontact: {reason}", created)
        insert_at(contacts, binding, desc_time_order=self.desc_time_order)
        self.stats[key.domain].contacts += 1
        return Applied(command, key, created + (Action.CONTACT_INSERTED,))

    def _delete_contact(self, msg: ContactDeleted, key: RecordKey, now: int) -> Outcome:
        contacts = self._tables[key.domain].get(key.aor)
        if contacts is None:
            return Ignored(msg.command, key, "failed to fetch local urecord - ignoring request")
        rc, index = self._get_ucontact(contacts, msg, now)
        if rc != 0:  # the C test is "rc != 0 && rc != 2": -2 is refused too
            return Rejected(msg.command, key, f"contact {msg.contact!r} not found (get_ucontact {rc})")
        del contacts[index]
        self.stats[key.domain].contacts -= 1
        return Applied(msg.command, key, (Action.CONTACT_DELETED,))  # the AOR stays, even empty

    def _get_ucontact(self, contacts: list[Binding], msg: ContactUpdated | ContactDeleted, now: int) -> tuple[int, int]:
        """The receivers' lookup: get_ucontact(record, contact, callid, cseq + 1)."""
        return get_ucontact(contacts, msg.contact, msg.call_id, int32(int32(msg.cseq) + 1), now,
                            mode=self.matching_mode, cseq_delay=self.cseq_delay)

    def _updated(self, old: Binding, new: Binding) -> Binding:
        """mem_update_ucontact(): everything but the contact and its instance."""
        call_id = old.call_id if self.rules.keeps_call_id_on_update else new.call_id
        return replace(new, contact=old.contact, instance=old.instance, call_id=call_id)

    def _new_record(self, key: RecordKey) -> list[Binding]:
        contacts: list[Binding] = []
        self._tables[key.domain][key.aor] = contacts
        self.stats[key.domain].users += 1
        return contacts

    def _delete_record(self, key: RecordKey) -> tuple[Action, ...]:
        """delete_urecord(): every binding, then the AOR."""
        contacts = self._tables[key.domain].pop(key.aor)
        stats = self.stats[key.domain]
        stats.contacts -= len(contacts)
        stats.users -= 1
        return (Action.CONTACT_DELETED,) * len(contacts) + (Action.RECORD_DELETED,)

    # -- the timer ---------------------------------------------------------------------

    def expire(self, *, now: int) -> list[Expired]:
        """The usrloc timer at ``now``: nodb_timer drops every binding that is no longer
        valid, mem_timer_udomain every AOR left without bindings."""
        gone: list[Expired] = []
        for domain, records in self._tables.items():
            stats = self.stats[domain]
            for aor in list(records):
                contacts = records[aor]
                for c in [c for c in contacts if not c.valid(now)]:
                    contacts.remove(c)
                    stats.contacts -= 1
                    stats.expires += 1
                    gone.append(Expired(RecordKey(domain, aor), c.contact))
                if not contacts:
                    del records[aor]
                    stats.users -= 1
                    gone.append(Expired(RecordKey(domain, aor), None))
        return gone

    def next_expiry(self) -> int | None:
        """The earliest ``expires`` of a binding that is not permanent (aioquic's get_timer)."""
        times = [c.expires for records in self._tables.values() for cs in records.values() for c in cs if c.expires]
        return min(times) if times else None


def _empty_raw_field(packet: Packet) -> tuple[bytes, str] | None:
    """(domain, field) when a contact packet, read as far as the C receiver reads it,
    carries a raw C integer field of length 0: receive_ucontact_* memcpy()s from the
    NULL that bin_pop_str() gives for it (once find_domain() took the domain)."""
    if packet.command not in (UlCommand.CONTACT_INSERT, UlCommand.CONTACT_UPDATE):
        return None
    reader = PacketReader(packet.data, packet.payload_offset, packet.byte_order)
    try:
        domain = reader.pop_str("domain")
        for name, kind in CONTACT_FIELDS[1:]:
            if kind == RAW:
                if reader.pop_str(name) == b"":
                    return domain, name
            elif kind == STR:
                reader.pop_str(name)
            else:
                reader.pop_int(name)
    except RemoteProtocolError:  # cut short before: the C pops fail and read stale values
        return None
    return None


__all__ = [
    "Action",
    "MatchingMode",
    "Applied",
    "Binding",
    "Crashed",
    "DomainStats",
    "Expired",
    "Ignored",
    "Outcome",
    "RecordKey",
    "Registrar",
    "Rejected",
]
