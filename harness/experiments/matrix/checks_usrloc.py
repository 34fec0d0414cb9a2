"""usrloc checks: registrations replicated from primary to backup (1.11 and 2.1).

Each check registers `USERS` users through the VIP with one of the REGISTER scenarios
(`harness.instruments.sipp.REGISTRATIONS`) on a cluster of the pair's own with
registrations on (settings ``usrloc.replicate``; shared by the usrloc checks of the
pair), then observes once the behaviour is over: the ``ul`` packets the primary sent
for those users have stopped coming, both nodes' tables hold nothing short-lived any
more (the ``expiry`` scenario's 2 s binding has been removed by each node's own usrloc
timer), and the tables have stayed the same for `SETTLE_S`. A deadline that passes is
an error of the cell.

Observed: the ``ul`` commands per user (primary's and backup's), the bindings per user
on each node, the binding fields where the backup differs from the primary and from
pybin's registrar replica fed the same packets, usrloc statistics moved, survival.

A release without usrloc replication (1.10) cannot run them: such pairs are *not run*,
and the cells are compared with 1.11.11's own pair (`REFERENCE`), not with 1.10.5.
"""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Iterable

from harness.base.wait import WaitTimeout, wait_until
from harness.cluster.interfaces import NodeDied
from harness.experiments.location import binding_diffs, valid_contacts
from harness.experiments.matrix.complete import END_S, SETTLE_S, Incomplete
from harness.experiments.matrix.evidence import alive, counted
from harness.experiments.matrix.expected import USERS
from harness.experiments.matrix.registry import Observation, check
from harness.experiments.matrix.session import PairSession
from harness.experiments.registrations import Users, user_names
from harness.instruments.mi_replies import MIError
from harness.instruments.mi_usrloc import UlContact, UlDomain
from harness.live import LiveCluster
from pybin import usrloc
from pybin.registrar import Registrar

#: the usrloc table the template's save()/lookup() use, and the settings turning it on
TABLE = "location"
USRLOC = {"usrloc": {"replicate": True}}
#: the release whose own pair the usrloc checks are compared with
REFERENCE = "1.11.11"
#: a binding this close to its expiry (seconds) is still a behaviour under way
SHORT_LIVED_S = 10
#: ul_dump fields that are the node's own, not replicated state: seconds left (judged
#: by the replica with a tolerance), state (CS_NEW on both in db_mode 0 anyway)
OWN_FIELDS = ("expires", "expires_text")
_names = itertools.count(1)


def _domain(lc: LiveCluster, node: str, aors: set[str]) -> UlDomain:
    """``node``'s location table cut to ``aors`` (other checks' users share the cluster)."""
    tables = {d.name: d for d in lc.cluster.mi(node).ul_dump()}
    domain = tables.get(TABLE, UlDomain(TABLE, 0, 0, ()))
    return dataclasses.replace(domain, aors=tuple(r for r in domain.aors if r.aor in aors))


def _shape(domain: UlDomain) -> tuple[tuple[str, tuple[tuple[str, int, str], ...]], ...]:
    """What must stay the same to be settled: AORs, their contacts, CSeqs and q (not the
    seconds left, which tick)."""
    return tuple((r.aor, tuple((c.contact, c.cseq, c.q) for c in r.contacts)) for r in domain.aors)


def _ul_of(lc: LiveCluster, node: str, start: int, aors: set[str]) -> list[tuple[float, usrloc.UlMessage]]:
    """The ``ul`` messages ``node`` sent the peer since ``start``, for ``aors``."""
    assert lc.peer is not None
    addr = lc.cluster.addresses[node].bin_addr
    out = []
    for p in lc.peer.received[start:]:
        if p.source == addr and p.packet.module == usrloc.MODULE_NAME:
            msg = p.usrloc()
            if msg.aor.decode("utf-8", "replace") in aors:
                out.append((p.time, msg))
    return out


def _short_lived(domain: UlDomain) -> bool:
    return any(c.expires_text in ("expired", "deleted") or (c.expires is not None and c.expires <= SHORT_LIVED_S)
               for r in domain.aors for c in r.contacts)


#: how far ``time(0)`` (glibc's vDSO reads the kernel's coarse realtime clock, advanced
#: once per tick) may lag ``time.time()``, with room to spare: on the development
#: machine it still showed the last second up to 7 ms after ``time.time()`` had passed it
COARSE_CLOCK_S = 0.05


def _settled(lc: LiveCluster, start: int, aors: set[str]) -> tuple[dict[str, UlDomain], float, float]:
    """Wait until the registrations' behaviour is over (module docstring): each node's
    table, cut to ``aors``; when the reading of those tables began (``time.time()``) and
    how long it took. ``ul_dump`` prints each binding's seconds left against the node's
    clock as it dumps, so a binding is compared with pybin's at that instant, not at a
    later one: a dump late in one second read against the clock a moment later was a
    second "off" (the ``expires`` of 4 of 1,722 cells of a ``--repeat 3`` run). The
    instant is moved `COARSE_CLOCK_S` earlier: ``ul_dump`` reads ``time(0)``, the
    kernel's coarse clock, which may still show the last second a tick after
    ``time.time()`` has passed it (1 of 120 cells of a targeted rerun at f04e712, before)."""
    last: dict[str, object] = {}
    since = time.monotonic()
    why: list[str] = []

    def over() -> tuple[dict[str, UlDomain], float, float] | None:
        nonlocal since
        read_at = time.time() - COARSE_CLOCK_S
        tables = {n: _domain(lc, n, aors) for n in ("primary", "backup")}
        took = time.time() - read_at
        now = {"packets": len(_ul_of(lc, "primary", start, aors)) + len(_ul_of(lc, "backup", start, aors)),
               **{n: _shape(t) for n, t in tables.items()}}
        if now != last:
            last.clear()
            last.update(now)
            since = time.monotonic()
        why[:] = [f"{n} still holds a binding about to expire" for n, t in tables.items() if _short_lived(t)]
        if not why and time.monotonic() - since < SETTLE_S:
            why[:] = ["tables or packets still changing"]
        return None if why else (tables, read_at, took)

    try:
        return wait_until(over, timeout=END_S, interval=0.25, what="the registrations to settle")
    except WaitTimeout:
        raise Incomplete(f"registrations not settled after {END_S:g} s: {'; '.join(why)}") from None


def _bindings(domain: UlDomain, aors: Iterable[str]) -> list[list[object]]:
    valid = valid_contacts(domain)
    return counted(f"{len(valid.get(a, ()))} binding(s)" for a in aors)


def _unlike(mine: UlContact, theirs: UlContact) -> set[str]:
    fields = [f.name for f in dataclasses.fields(UlContact) if f.name not in OWN_FIELDS]
    out = {f for f in fields if getattr(mine, f) != getattr(theirs, f)}
    if mine.expires is not None and theirs.expires is not None and abs(mine.expires - theirs.expires) > 2:
        out.add("expires")
    return out


def _fields_unlike_primary(backup: UlDomain, primary: UlDomain) -> list[str]:
    theirs = valid_contacts(primary)
    out: set[str] = set()
    for aor, contacts in valid_contacts(backup).items():
        other = {c.contact: c for c in theirs.get(aor, ())}
        for c in contacts:
            out |= _unlike(c, other[c.contact]) if c.contact in other else {"missing on the primary"}
    out |= {"missing on the backup" for aor in theirs if aor not in valid_contacts(backup)}
    return sorted(out)


def _fields_unlike_replica(backup: UlDomain, reg: Registrar, at: float, took: float) -> list[str]:
    reg.expire(now=int(at))
    ours = {k.aor.decode("utf-8", "replace"): v for k, v in reg.snapshot(now=int(at)).items()
            if k.domain.decode("utf-8", "replace") == TABLE}
    theirs = valid_contacts(backup)
    out: set[str] = set()
    if set(ours) != set(theirs):
        out.add("AORs")
    for aor in set(ours) & set(theirs):
        node, replica = theirs[aor], ours[aor]
        if [c.contact for c in node] != [b.contact.decode("utf-8", "replace") for b in replica]:
            out.add("bindings")
            continue
        for entry, binding in zip(node, replica):
            out |= {d.split(":", 1)[0] for d in binding_diffs(entry, binding, at=at, took=took)}
    return sorted(out)


def _stats(lc: LiveCluster, node: str) -> dict[str, int]:
    return lc.cluster.mi(node).get_statistics("usrloc:")


def registrations(s: PairSession, scenario: str) -> Observation:
    """`USERS` users through ``scenario``; see the module."""
    lc = s.shared("usrloc", USRLOC)
    start = len(lc.peer.received) if lc.peer is not None else 0
    before = {n: _stats(lc, n) for n in ("primary", "backup")}
    names = user_names(USERS, prefix=f"{scenario.replace('_', '')}{next(_names)}x")
    aors = set(names)
    users = Users(lc.cluster, names, workdir=s.dir("users"))
    s.cleanup(users.stop)
    summary = users.register(scenario).wait(60)
    tables, at, took = _settled(lc, start, aors)
    obs: Observation = {"calls.successful": summary.successful}
    for node in ("primary", "backup"):
        words: dict[str, list[str]] = {a: [] for a in names}
        for _, msg in _ul_of(lc, node, start, aors):
            words[msg.aor.decode("utf-8", "replace")].append(msg.command.word)
        obs[f"{node}.ul"] = counted(" ".join(w) or "(none)" for w in words.values())
        obs[f"{node}.bindings"] = _bindings(tables[node], names)
        after = _stats(lc, node)
        obs[f"{node}.stats"] = {k: after.get(k, 0) - before[node].get(k, 0) for k in sorted(after)}
    obs["backup.fields_unlike_primary"] = _fields_unlike_primary(tables["backup"], tables["primary"])
    sock = f"udp:{lc.cluster.sip_addr[0]}:{lc.cluster.sip_addr[1]}"
    reg = Registrar([TABLE], [sock], release=s.pair.backup.version)
    for t, msg in _ul_of(lc, "primary", start, aors):
        reg.apply(msg, now=int(t))
    obs["pybin.fields_unlike_backup"] = _fields_unlike_replica(tables["backup"], reg, at, took)
    try:
        obs["nodes.alive"] = alive(lc.cluster)
    except (MIError, NodeDied) as exc:  # pragma: no cover - alive() catches these itself
        raise Incomplete(str(exc)) from None
    return obs


def _register(name: str, scenario: str, covers: str) -> None:
    check(name, covers, features=("usrloc replication",), baseline=REFERENCE)(
        lambda s: registrations(s, scenario))


_register("usrloc.register", "register", "users REGISTER one binding each: ul packets, both tables, "
          "the backup against the primary and pybin's registrar replica")
_register("usrloc.refresh", "refresh", "each binding registered, then refreshed (CSeq 2, q 0.9)")
_register("usrloc.multi_contact", "multi_contact", "four bindings per user, three in one REGISTER")
_register("usrloc.unregister", "unregister", "two bindings, one removed, then Contact: * (all removed)")
_register("usrloc.expiry", "expiry", "a 2 s binding beside an hour's: each node's own timer removes it; "
          "nothing about it is replicated")
