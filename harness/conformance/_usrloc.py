"""Helpers shared by the live usrloc tests (not a test module).

A usrloc test runs on a 1.11 or 2.1 pair (the plugin's ``usrloc_pair``: 1.11.11 unless
``--opensips-version`` / ``--opensips-pair`` name others), with the template's
registrations on (settings ``usrloc.replicate``). What SIPp's REGISTERs carried is read
back from its message log here, so each test compares packets with SIP, field by field.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from _dialogs import vip_socket, wait_until

from harness.experiments.location import table_diffs
from harness.instruments.mi_usrloc import UlDomain
from harness.instruments.sip import SipMessage
from harness.instruments.sipp import REGISTRATIONS, SippSummary
from harness.live import LiveCluster
from pybin import usrloc
from pybin.registrar import Registrar
from pybin.usrloc import Method

#: the template's setting that turns registrations on (off by default)
USRLOC = {"usrloc": {"replicate": True}}
TABLE = "location"
#: registrar's methods when the REGISTER says nothing (ALL_METHODS)
ALL_METHODS = 0xFFFFFFFF

#: per REGISTER scenario, the ul commands each of its AORs replicates, in order
SEQUENCES: dict[str, list[str]] = {name: list(s.replicates) for name, s in REGISTRATIONS.items()}


def start(opensips_cluster: Callable[..., LiveCluster], pair: Any, **options: Any) -> LiveCluster:
    """A primary/backup cluster of ``pair``'s builds with registrations replicated."""
    return opensips_cluster(settings=USRLOC, releases={"primary": pair.primary.label,
                                                       "backup": pair.backup.label}, **options)


def replica(lc: LiveCluster, release: str) -> Registrar:
    """pybin's registrar as the backup is configured: its table and its SIP socket."""
    return Registrar([TABLE], [vip_socket(lc.cluster)], release=release)


def dump(mi: Any) -> tuple[UlDomain, float, float]:
    """The node's ``location`` table, the time just before asking and how long it took."""
    at = time.time()
    tables = {d.name: d for d in mi.ul_dump()}
    return tables[TABLE], at, time.time() - at


def settled(lc: LiveCluster, node: str, reg: Registrar, what: str, timeout: float = 20.0,
            until: Callable[[UlDomain], bool] = lambda domain: True) -> UlDomain:
    """Wait until ``node``'s table satisfies ``until`` and, with its usrloc statistics,
    equals the replica's after its timer ran (the node's runs every ``timer_interval``
    s); on the deadline the test fails with the differences last seen."""
    mi = lc.cluster.mi(node)
    last: list[str] = []

    def same() -> UlDomain | None:
        domain, at, took = dump(mi)
        if not until(domain):
            last[:] = ["not yet: " + what]
            return None
        reg.expire(now=int(at))
        diffs = table_diffs(domain, reg.snapshot(now=int(at)), at=at, took=took)
        stats = mi.get_statistics("usrloc:")
        if stats != reg.statistics():
            diffs.append(f"statistics {stats} ≠ {reg.statistics()}")
        last[:] = diffs
        return None if diffs else domain

    try:
        return wait_until(same, timeout, what, interval=0.5)
    except BaseException:
        if last:
            raise AssertionError(f"{what}: {last}") from None
        raise


@dataclass(frozen=True)
class ContactHeader:
    """One Contact of a REGISTER, as the registrar reads it."""

    uri: str
    q: int
    expires: int | None
    methods: int
    instance: str


def contacts_of(request: SipMessage) -> list[ContactHeader]:
    """The Contact header values of a REGISTER, with the parameters save() reads.

    A contact without +sip.instance gets the previous contact's of the same REGISTER:
    registrar's pack_ci keeps ``static ucontact_info_t ci``, cleared once per message,
    and sets ``ci.instance`` only ``if (_c->instance)`` (every 1.11 and 2.1)."""
    out: list[ContactHeader] = []
    for value in request.headers("Contact"):  # one contact per header in our scenarios
        if value.strip() == "*":
            continue
        m = re.fullmatch(r"<([^>]*)>(.*)", value.strip())
        assert m, value
        params = dict(p.partition("=")[::2] for p in m[2].split(";") if p)
        q = round(float(params["q"]) * 1000) if "q" in params else -1
        methods = ALL_METHODS
        if "methods" in params:
            methods = 0
            for name in params["methods"].strip('"').split(","):
                methods |= Method[name.strip()]
        instance = params.get("+sip.instance", "").strip('"') or (out[-1].instance if out else "")
        out.append(ContactHeader(m[1], q, int(params["expires"]) if "expires" in params else None,
                                 methods, instance))
    return out


def registers(summary: SippSummary) -> dict[tuple[str, int], tuple[SipMessage, float]]:
    """(Call-ID, CSeq) → the REGISTER first sent, and when its 200 OK came back."""
    out = {}
    for call in summary.calls:
        sent = [m for m in call.messages if m.direction == "sent" and not m.is_response]
        for request in sent:
            cseq = request.cseq[0]
            if (call.call_id, cseq) in out:
                continue  # a retransmission
            ok = next((m.t for m in call.messages if m.direction == "received" and m.code == 200
                       and m.cseq == (cseq, "REGISTER")), None)
            assert ok is not None, f"no 200 OK for REGISTER {call.call_id} CSeq {cseq}"
            out[(call.call_id, cseq)] = (request, ok)
    return out


def ul_of(packets: Iterable[Any], aors: Iterable[str]) -> dict[str, list[usrloc.UlMessage]]:
    """AOR → its ``ul`` messages among the peer's packets, in arrival order."""
    wanted = {a.encode() for a in aors}
    out: dict[str, list[usrloc.UlMessage]] = {a.decode(): [] for a in wanted}
    for p in packets:
        if p.packet.module == usrloc.MODULE_NAME:
            msg = p.usrloc()
            if msg.aor in wanted:
                out[msg.aor.decode()].append(msg)
    return out
