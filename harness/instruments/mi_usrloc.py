"""The usrloc module's MI replies (1.11, 2.1) as typed values: ``ul_dump``.

Every 1.11 and 2.1 release prints a binding the same way (``ul_mi.c``
``mi_add_aor_node``): a ``Domain:: location table=512 records=3`` node per table, an
``AOR::`` node per record, a ``Contact:: URI Q=0.5`` node per binding (list order) with
one child line per field, optional ones (User-agent, Received, Path, Socket, Attr,
SIP_instance) left out when empty. ``ul_dump brief`` prints the AOR lines only.
Pure: `harness.instruments.mi` does the I/O (a full dump must fit mi_datagram's ~32 KB
of reply text: about 110 bindings; ``brief`` about 2,000 AORs).
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.instruments.mi_replies import MIError, MINode, MIReply

#: what ul_dump prints instead of seconds left (ul_mi.c mi_add_aor_node, every 1.11/2.1)
EXPIRES_WORDS = ("permanent", "deleted", "expired")


@dataclass(frozen=True)
class UlContact:
    """One binding as ``ul_dump`` prints it (the same text in every 1.11 and 2.1).

    ``expires`` is the seconds left at the node's ``time(0)`` when it answered, or None
    where it printed a word (``expires_text``: permanent, expired, deleted). ``q`` is
    what it printed ("" when the Contact had none, "0.5", "1"); `q_value` is the
    wire's q × 1000 (-1 for none). Optional lines missing from the dump are "".
    """

    contact: str
    q: str
    expires: int | None
    expires_text: str
    callid: str
    cseq: int
    user_agent: str
    received: str
    path: str
    state: str
    flags: int
    #: the names of the branch flags set (the script's flag names; unnamed bits are not printed)
    cflags: tuple[str, ...]
    #: the binding's socket (its advertised form if it has one); "" when it has none
    socket: str
    methods: int
    attr: str
    sip_instance: str

    @property
    def q_value(self) -> int:
        """q × 1000 as the ``ul`` packet carries it; -1 when the Contact had no q."""
        if not self.q:
            return -1
        whole, _, frac = self.q.partition(".")
        return int(whole) * 1000 + int((frac + "000")[:3])


@dataclass(frozen=True)
class UlRecord:
    """One AOR and its bindings, in the node's list order (empty for ``ul_dump brief``)."""

    aor: str
    contacts: tuple[UlContact, ...]


@dataclass(frozen=True)
class UlDomain:
    """One usrloc table (``save("location")`` makes ``location``) of a ``ul_dump``."""

    name: str
    #: its hash size, and how many AORs it held by the node's own count: None from 50
    #: AORs on, where mi_usrloc_dump flushed the Domain line (every 50 AORs) before it
    #: added ``records=`` to it
    table_size: int
    records: int | None
    aors: tuple[UlRecord, ...]

    def get(self, aor: str) -> UlRecord | None:
        return next((r for r in self.aors if r.aor == aor), None)


def _ul_int(node: MINode | None, what: str) -> int:
    if node is None:
        raise MIError(f"ul_dump: contact without {what}")
    try:
        return int(node.value)
    except ValueError:
        raise MIError(f"ul_dump: {what} is not a number: {node.value!r}") from None


def _value_attrs(node: MINode) -> tuple[str, dict[str, str]]:
    """A node written ``name:: value a=1 b=2`` (Domain, Contact): its value and attributes."""
    words = node.value.split(" ")
    attrs: dict[str, str] = {}
    while len(words) > 1 and "=" in words[-1]:
        k, _, v = words.pop().partition("=")
        attrs[k] = v
    return " ".join(words), dict(reversed(attrs.items()))


def _ul_contact(node: MINode) -> UlContact:
    uri, attrs = _value_attrs(node)
    if "Q" not in attrs:
        raise MIError(f"ul_dump: contact {uri!r} without its Q attribute")
    def text(name: str) -> str:
        child = node.child(name)
        return child.value if child is not None else ""

    expires = text("Expires")
    if not (expires.isdigit() or expires in EXPIRES_WORDS):
        raise MIError(f"ul_dump: contact {uri!r}: Expires {expires!r} is neither seconds nor "
                      f"{', '.join(EXPIRES_WORDS)}")
    return UlContact(
        contact=uri, q=attrs["Q"], expires=int(expires) if expires.isdigit() else None,
        expires_text=expires, callid=text("Callid"), cseq=_ul_int(node.child("Cseq"), "Cseq"),
        user_agent=text("User-agent"), received=text("Received"), path=text("Path"),
        state=text("State"), flags=_ul_int(node.child("Flags"), "Flags"),
        cflags=tuple(text("Cflags").split()), socket=text("Socket"),
        methods=_ul_int(node.child("Methods"), "Methods"), attr=text("Attr"),
        sip_instance=text("SIP_instance"))


def parse_ul_dump(reply: MIReply) -> list[UlDomain]:
    """The ``Domain`` nodes of a ``ul_dump`` (or ``ul_dump brief``) reply, in its order."""
    out = []
    for node in reply.nodes:
        if node.name != "Domain":
            continue
        name, attrs = _value_attrs(node)
        try:
            size = int(attrs.get("table", ""))
            records = int(attrs["records"]) if "records" in attrs else None
        except ValueError:
            raise MIError(f"ul_dump: domain line {node.text!r}: table= / records= not numbers") from None
        aors = tuple(UlRecord(a.value, tuple(_ul_contact(c) for c in a.children if c.name == "Contact"))
                     for a in node.children if a.name == "AOR")
        out.append(UlDomain(name, size, records, aors))
    return out
