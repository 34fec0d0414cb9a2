"""One AOR's list of bindings, kept the way usrloc's ``urecord.c`` and ``ucontact.c`` keep it.

Pure functions over a ``list[Binding]`` in the backup's list order (the order MI
``ul_dump`` prints): ``get_ucontact`` (which binding a packet is about, and whether its
CSeq is stale), ``insert_at`` (``mem_insert_ucontact``'s place), ``move_updated``
(``update_contact_pos``), ``refusal`` (why ``new_ucontact`` would not build it).
``pybin.registrar`` applies packets with them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass


class MatchingMode(enum.IntEnum):
    """usrloc's ``matching_mode``: how get_ucontact finds a binding."""

    CONTACT_ONLY = 0
    CONTACT_CALLID = 1


@dataclass(frozen=True, slots=True)
class Binding:
    """One ucontact as the backup holds it. MI ``ul_dump`` shows every field but
    ``last_modified``; its Expires is relative to the dump's time, its Cflags are flag
    names, its Socket the matched socket's (advertised) name, and it leaves out empty
    strings. ``sock`` is None where the backup has no such socket (1.11.10+)."""

    contact: bytes
    call_id: bytes
    user_agent: bytes
    path: bytes
    attr: bytes
    received: bytes
    instance: bytes
    expires: int
    q: int
    sock: bytes | None
    cseq: int  # a C int: the wire's four bytes read signed
    flags: int
    cflags: int
    methods: int
    last_modified: int

    def valid(self, now: int) -> bool:
        """VALID_CONTACT: not yet expired, or permanent (expires 0)."""
        return self.expires > now or self.expires == 0


def int32(value: int) -> int:
    """The four bytes of a C int, read signed (C's wrap-around included)."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def get_ucontact(contacts: list[Binding], contact: bytes, call_id: bytes, cseq: int, now: int, *,
                 mode: MatchingMode, cseq_delay: int) -> tuple[int, int]:
    """get_ucontact() (urecord.c): 0 found, 1 not found, -1 an older CSeq, -2 the same
    CSeq within ``cseq_delay`` of the binding's last_modified; and the index it found.

    The CSeq test applies when the Call-IDs are equal (CONTACT_CALLID matches on both,
    so always there); the receivers pass the packet's CSeq + 1.
    """
    by_call_id = mode is MatchingMode.CONTACT_CALLID
    for index, c in enumerate(contacts):
        if c.contact == contact and (not by_call_id or c.call_id == call_id):
            if by_call_id or c.call_id == call_id:
                if cseq < c.cseq:
                    return -1, index
                if cseq == c.cseq:
                    return (-2 if c.last_modified + cseq_delay > now else -1), index
            return 0, index
    return 1, -1


def insert_at(contacts: list[Binding], binding: Binding, *, desc_time_order: bool) -> None:
    """mem_insert_ucontact(): before the first binding of a lower q (after those of an
    equal one); with desc_time_order, first of all."""
    index = 0
    if not desc_time_order:
        while index < len(contacts) and not contacts[index].q < binding.q:
            index += 1
    contacts.insert(index, binding)


def move_updated(contacts: list[Binding], index: int, *, desc_time_order: bool) -> None:
    """update_contact_pos(): desc_time_order moves it first; otherwise, when out of
    place, before the first binding whose q is not lower: ascending, the opposite of
    mem_insert_ucontact's order, as upstream has it."""
    c = contacts[index]
    if desc_time_order:
        contacts.insert(0, contacts.pop(index))
        return
    if (index == 0 or c.q <= contacts[index - 1].q) and (index == len(contacts) - 1 or c.q >= contacts[index + 1].q):
        return
    del contacts[index]
    at = next((i for i, other in enumerate(contacts) if not other.q < c.q), len(contacts))
    contacts.insert(at, c)


_SIP_URI = re.compile(
    rb"(?i)(?:sips?:(?:[^@;?]*@)?(\[[0-9a-f:.]+\]|[^:;?@\[\]]+)(?::(\d{1,5}))?(?:[;?].*)?|tel:[^;?].*)", re.S
)


def sip_uri_parses(uri: bytes) -> bool:
    """An approximation of parse_uri(): sip:/sips:/tel:, a host (sip) and a port that
    fits. Real primaries only send URIs their own parse_uri took; pass your own
    ``uri_parses`` to the Registrar where crafted packets need the exact parser."""
    m = _SIP_URI.fullmatch(uri)
    return m is not None and len(uri) >= 5 and (m[2] is None or int(m[2]) <= 0xFFFF)


def path_first_uri(path: bytes) -> bytes:
    """get_path_dst_uri(): the first Path entry's URI (inside <> when it has them)."""
    first = path.split(b",", 1)[0].strip()
    start, end = first.find(b"<"), first.find(b">")
    return first[start + 1 : end] if 0 <= start < end else first


def refusal(b: Binding, uri_parses: Callable[[bytes], bool], *, check_contact: bool) -> str | None:
    """new_ucontact(): why it returns NULL (the contact does not parse, where
    ``check_contact``; compute_next_hop cannot parse the next hop: the first Path URI,
    else received, else the contact), or None when it builds the binding."""
    if check_contact and not uri_parses(b.contact):
        return f"contact {b.contact!r} is not valid"
    hop = path_first_uri(b.path) if b.path else b.received or b.contact
    if not uri_parses(hop):
        return f"failed to resolve next hop {hop!r}"
    return None


__all__ = [
    "Binding",
    "MatchingMode",
    "get_ucontact",
    "insert_at",
    "int32",
    "move_updated",
    "path_first_uri",
    "refusal",
    "sip_uri_parses",
]
