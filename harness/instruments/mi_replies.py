"""OpenSIPS MI replies as typed values: the tree, dialogs, statistics, processes
(registrations: `harness.instruments.mi_usrloc`).

Wire format (1.10 mi_datagram, the same in 1.11 and 2.1): request ``:<cmd>:\\n`` + one
line per argument + an empty line; reply ``<code> <reason>\\n`` + one line per tree
node, children indented by one tab per level, a node written as ``name:: value
attr=val`` (``name::`` absent for unnamed nodes) + a final empty line. Parsing is pure:
`harness.instruments.mi` does the I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from harness.base.errors import HarnessError


class MIError(HarnessError, RuntimeError):
    """The node answered with a non-2xx MI code (or an unparsable reply)."""

    def __init__(self, message: str, code: int | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason


@dataclass
class MINode:
    """One line of a reply tree."""

    name: str
    value: str
    attrs: dict[str, str] = field(default_factory=dict)
    children: list[MINode] = field(default_factory=list)
    #: everything after "name:: " as written (attributes included)
    text: str = ""

    def child(self, name: str) -> MINode | None:
        return next((c for c in self.children if c.name == name), None)


@dataclass
class MIReply:
    code: int
    reason: str
    nodes: list[MINode]
    raw: str

    def walk(self) -> Iterator[MINode]:
        stack = list(reversed(self.nodes))
        while stack:
            n = stack.pop()
            yield n
            stack.extend(reversed(n.children))


@dataclass(frozen=True)
class DialogLeg:
    """One leg as dlg_list prints it.

    `cseq` is the leg's r_cseq. Beware: 1.10 *labels* the caller leg's r_cseq
    "callee_cseq" and a callee leg's "caller_cseq"; here each value stays with the leg
    whose block printed it.
    """

    tag: str
    contact: str
    cseq: str
    route_set: str
    bind_addr: str


@dataclass(frozen=True)
class DialogEntry:
    """A dialog from `dlg_list` / `dlg_list_ctx`."""

    h_entry: int
    h_id: int
    state: int
    user_flags: int
    timestart: int
    #: absolute expiry (unix seconds) or 0 when no timer is armed
    timeout: int
    callid: str
    from_uri: str
    to_uri: str
    caller: DialogLeg | None
    callees: tuple[DialogLeg, ...]
    #: dialog variables, only from dlg_list_ctx (None from plain dlg_list)
    vars: dict[str, str] | None = None
    #: (profile, value) pairs, value "" for no-value profiles; only from dlg_list_ctx
    profiles: tuple[tuple[str, str], ...] | None = None

    @property
    def from_tag(self) -> str:
        return self.caller.tag if self.caller else ""

    @property
    def to_tag(self) -> str:
        """The confirmed callee leg's tag (the last leg 1.10 printed), "" if none."""
        return self.callees[-1].tag if self.callees else ""

    @property
    def callee(self) -> DialogLeg | None:
        return self.callees[-1] if self.callees else None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.callid, self.from_tag, self.to_tag)


@dataclass(frozen=True)
class ProcessEntry:
    id: int
    pid: int
    type: str


def format_request(command: str, *args: str) -> bytes:
    """``:cmd:\\n`` + one line per argument + the terminating empty line."""
    for a in (command, *args):
        if "\n" in a:
            raise ValueError(f"MI argument {a!r} contains a newline")
    return (f":{command}:\n" + "".join(f"{a}\n" for a in args) + "\n").encode()


def parse_reply(data: bytes | str, indent: str = "\t") -> MIReply:
    """Parse a mi_datagram reply into code, reason and a node tree."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    lines = text.split("\n")
    head = lines[0]
    code_s, _, reason = head.partition(" ")
    if not code_s.isdigit():
        raise MIError(f"unparsable MI reply: {head[:80]!r}")
    roots: list[MINode] = []
    stack: list[tuple[int, MINode]] = []
    for line in lines[1:]:
        if line == "":
            continue
        level = 0
        while indent and line.startswith(indent, level * len(indent)):
            level += 1
        body = line[level * len(indent):]
        node = _parse_line(body)
        while stack and stack[-1][0] >= level:
            stack.pop()
        (stack[-1][1].children if stack else roots).append(node)
        stack.append((level, node))
    return MIReply(int(code_s), reason, roots, text)


def _parse_line(body: str) -> MINode:
    name, sep, rest = body.partition(":: ")
    if not sep:
        if body.endswith("::"):
            return MINode(body[:-2], "", text="")
        return MINode("", body, text=body)
    attrs: dict[str, str] = {}
    value = rest
    # attributes follow the value as " name=val"; only valueless nodes carry them in
    # the replies we read (e.g. "dialog::  hash=3:12"), so split only those.
    if rest.startswith(" "):
        value = ""
        for part in rest.split():
            k, _, v = part.partition("=")
            attrs[k] = v
    return MINode(name, value, attrs, text=rest)


def parse_dialogs(reply: MIReply) -> list[DialogEntry]:
    """The `dialog` nodes of a dlg_list / dlg_list_ctx reply."""
    return [_dialog(n) for n in reply.nodes if n.name == "dialog"]


def _int(value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise MIError(f"dlg_list: {what} is not a number: {value!r}") from None


def _flat_legs(children: list[MINode]) -> Iterator[MINode]:
    """The dialog's child nodes with 1.11's leg grouping (``CALLEES::`` > ``callee::`` >
    ``callee_tag::``...) flattened into 1.10's plain sequence of leg fields."""
    for c in children:
        if c.name in ("CALLEES", "callee") and not c.value:
            yield from _flat_legs(c.children)
        else:
            yield c


def _context(node: MINode) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """Vars and profiles of a ``context::`` node, in either release's layout.

    1.10 lists ``value:: name = v`` and ``profile:: name = v``; 1.11 groups them as
    ``values::`` > ``name:: v`` and ``profiles::`` > ``name:: v``.
    """
    vars_: dict[str, str] = {}
    profiles: list[tuple[str, str]] = []
    for item in node.children:
        if item.name in ("values", "profiles") and not item.value:
            for sub in item.children:
                if item.name == "values":
                    vars_[sub.name] = sub.value
                else:
                    profiles.append((sub.name, sub.value))
            continue
        k, _, v = item.value.partition(" = ")
        if item.name == "value":
            vars_[k] = v
        elif item.name == "profile":
            profiles.append((k, v))
    return vars_, profiles


def _dialog(node: MINode) -> DialogEntry:
    h_entry_s, _, h_id_s = node.attrs.get("hash", "").partition(":")
    scalars: dict[str, str] = {}
    legs: list[dict[str, str]] = []
    vars_: dict[str, str] | None = None
    profiles: list[tuple[str, str]] | None = None
    for c in _flat_legs(node.children):
        if c.name in ("caller_tag", "callee_tag"):
            legs.append({"role": c.name[:6], "tag": c.value})
        elif c.name.endswith(("_contact", "_cseq", "_route_set", "_bind_addr")) and legs:
            key = c.name.split("_", 1)[1]
            legs[-1][key] = c.value
        elif c.name == "context":
            vars_, profiles = _context(c)
        else:
            scalars[c.name] = c.value

    def leg(d: dict[str, str]) -> DialogLeg:
        return DialogLeg(tag=d.get("tag", ""), contact=d.get("contact", ""),
                         cseq=d.get("cseq", ""), route_set=d.get("route_set", ""),
                         bind_addr=d.get("bind_addr", ""))

    callers = [leg(d) for d in legs if d["role"] == "caller"]
    return DialogEntry(
        h_entry=_int(h_entry_s, "hash entry"),
        h_id=_int(h_id_s, "hash id"),
        state=_int(scalars.get("state", ""), "state"),
        user_flags=_int(scalars.get("user_flags", "0"), "user_flags"),
        timestart=_int(scalars.get("timestart", "0"), "timestart"),
        timeout=_int(scalars.get("timeout", "0"), "timeout"),
        callid=scalars.get("callid", ""),
        from_uri=scalars.get("from_uri", ""),
        to_uri=scalars.get("to_uri", ""),
        caller=callers[0] if callers else None,
        callees=tuple(leg(d) for d in legs if d["role"] == "callee"),
        vars=vars_,
        profiles=tuple(profiles) if profiles is not None else None,
    )


def parse_statistics(reply: MIReply) -> dict[str, int]:
    """``group:name = value`` lines (1.10) or ``group:name:: value`` nodes (1.11)
    → {"name": value} (group prefix dropped)."""
    out: dict[str, int] = {}
    for n in reply.nodes:
        k, sep, v = n.value.partition(" = ")
        if not sep and n.name and n.value:
            k, sep, v = n.name, "::", n.value
        if not sep:
            continue
        try:
            out[k.split(":", 1)[-1]] = int(v)
        except ValueError:
            raise MIError(f"statistic {k!r} is not a number: {v!r}") from None
    return out


def parse_ps(reply: MIReply) -> list[ProcessEntry]:
    out = []
    for n in reply.nodes:
        if n.name == "Process":
            out.append(ProcessEntry(int(n.attrs.get("ID", "-1")),
                                    int(n.attrs.get("PID", "-1")),
                                    _ps_type(n)))
    return out


def _ps_type(n: MINode) -> str:
    # "  ID=2 PID=7 Type=BIN receiver udp:10.0.0.1:5062 ": the type holds spaces
    _, sep, rest = n.text.partition("Type=")
    return rest.strip() if sep else ""

