"""What the baseline release (1.10.5) must show in each check, from its sources.

The matrix compares every pair with the baseline pair run minutes earlier; these
values keep that baseline honest: the behaviour test fails on the baseline itself
when 1.10.5 stops doing what its code says. Each value follows from the check's
experiment (``CALLS`` calls plus one fence call, hence the ``+ 1``) and 1.10.5's
dialog module: created follows the relayed 200 OK (``TMCB_RESPONSE_OUT``), failed
and cancelled calls replicate nothing (``dlg_hash.c`` replicates deleted only from
a confirmed state), the backup renumbers h_id (``dlg_replicated_create``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.backends import BackendKind

from harness.experiments.matrix.checks import CALLS
from harness.experiments.matrix.judge import flatten

N = CALLS + 1  # the scenario's calls and the fence call
_ALIVE = {"primary": True, "backup": True}


def _confirmed(updates_per_call: int, held: bool) -> dict[str, Any]:
    packets = " ".join(["updated(4)"] * updates_per_call + ["deleted"])
    out: dict[str, Any] = {
        "calls.successful": CALLS,
        "primary.packets": [packets],
        "primary.created": ["after 200 OK"],
        "primary.stats": {"update_sent": CALLS * updates_per_call + 1, "delete_sent": N,
                          "processed_dialogs": N, "failed_dialogs": 0},
        "backup.stats": {"update_recv": CALLS * updates_per_call + 1, "delete_recv": N,
                         "active_dialogs": 0},
        "backup.dialogs_after": ["none"],
        "nodes.alive": _ALIVE,
    }
    if held:
        out.update({"backup.while_up": ["state 4"], "backup.dialogs_while_up": CALLS,
                    "backup.h_id": "its own", "backup.fields_unlike_primary": []})
    return out


def _failed() -> dict[str, Any]:
    return {
        "calls.successful": CALLS,
        "primary.packets": ["(none)"],
        "primary.created": ["not sent"],
        "primary.stats": {"update_sent": 1, "delete_sent": 1, "processed_dialogs": N,
                          "failed_dialogs": CALLS},
        "backup.stats": {"update_recv": 1, "delete_recv": 1, "active_dialogs": 0},
        "backup.dialogs_after": ["none"],
        "nodes.alive": _ALIVE,
    }


_INVALID = ["INFO:core:bin_receive_loop: received invalid packet: len = N"]
_BAD_CRC = ["WARNING:core:bin_receive_loop: binary packet checksum test failed!"]
_OVERFLOW = ["ERROR:core:bin_pop_str: Receive binary packet buffer overflow",
             "ERROR:dialog:receive_binary_packet: Failed to process a binary packet!"]

BASELINE_EXPECT: dict[str, dict[str, Any]] = {
    "sip.basic": _confirmed(1, held=True),
    # the re-INVITE's 200 OK replicates one more updated (its CSeq); its ACK none
    "sip.reinvite": _confirmed(2, held=True),
    "sip.callee_bye": _confirmed(1, held=False),
    "sip.cancel": _failed(),
    "sip.rejected": _failed(),
    "sip.long_headers": _confirmed(1, held=True),
    "sip.record_route": _confirmed(1, held=True),
    # keys of nested observations are dotted (harness.experiments.matrix.judge.flatten)
    "flags.bye_on_timeout": {
        "primary.wire_flags": ["BYEONTIMEOUT|ISINIT"],
        "backup.dialogs": ["state 4 user_flags 8"],  # set_dlg_flag("3")
        "backup.mi": "answers", "calls.successful": 2,
        "backup.stats.active_dialogs": 0, "nodes.alive.backup": True, "nodes.alive.primary": True,
    },
    # 1.10.3+ does not ping replicated dialogs (837032b6): only the primary sends OPTIONS
    "flags.pinging": {
        "primary.wire_flags": ["BYEONTIMEOUT|ISINIT|PING_CALLEE|PING_CALLER"],
        "backup.dialogs": ["state 4 user_flags 8"], "backup.mi": "answers",
        "primary.options_to": ["callee", "caller"], "backup.options_to": [],
        "nodes.alive.backup": True, "nodes.alive.primary": True,
    },
    # each node expires its own copy; only the VIP's owner can reach the parties
    "expiry": {
        "primary.own_copy": "expired", "primary.packets": ["updated deleted"],
        "primary.bye_to": ["callee", "caller"], "primary.stats.expired_dialogs": 1,
        "backup.bye_to": [], "backup.packets": ["(none)"], "backup.stats.expired_dialogs": 1,
        "backup.stats.delete_recv": 1, "backup.stats.active_dialogs": 0,
        "nodes.alive.backup": True, "nodes.alive.primary": True,
    },
    "parity": {
        "backup.dialogs": ["state 4"], "backup.h_id": "its own", "backup.fields_unlike_primary": [],
        "pybin.fields_unlike_backup": ["h_id"], "calls.successful": 3,
        "nodes.alive.backup": True, "nodes.alive.primary": True,
    },
    "inject": {
        "backup.created.state": 3, "backup.created.fields_unlike_packet": [], "backup.created.h_id": "its own",
        "backup.updated.state": 4, "backup.updated.fields_unlike_packet": [],
        "backup.updated.timeout": "packet's",
        "backup.update_unknown.logs": ["ERROR:dialog:dlg_replicated_update: dialog not found, building new"],
        "backup.update_unknown.state": 4, "backup.deleted": "ended",
        "backup.deleted.stats_moved.delete_recv": 1, "backup.delete_unknown.stats_moved.delete_recv": 1,
        "nodes.alive.backup": True,
    },
    "robustness": {
        "backup.empty datagram": _INVALID, "backup.runt 1": _INVALID, "backup.runt 17": _INVALID,
        "backup.bad checksum": _BAD_CRC, "backup.18 bytes, bad CRC": _BAD_CRC,
        "backup.19 bytes, bad CRC": _BAD_CRC, "backup.18 bytes, valid": [], "backup.19 bytes, valid": [],
        "backup.socket length past the end": _OVERFLOW, "nodes.alive.backup": True,
    },
    # with ASLR, at least one of the fresh 1.10.5 receivers dies of EINVAL (p ~ 0.9993)
    "recvfrom_defect": {"backup.first_packet_aslr": "dies"},
    "failover": {
        "backup.missing_before_kill": 0, "calls.lost": 0, "calls.completed": 10,
        "backup.failed_requests": 0, "backup.dialogs_left": 0, "backup.alive": True,
        "nodes.timed_out": [],
    },
}

#: checks that need a backend whose nodes are host processes (``BackendKind.host_pids``)
#: and say "n/a: ..." elsewhere
NEEDS_HOST_PIDS = ("expiry", "recvfrom_defect")


def deviations(check: str, observed: dict[str, Any], kind: BackendKind) -> list[str]:
    """``key: observed X, 1.10.5 must show Y`` for each expected key that differs.

    A check that needs host pids, on a backend without them, must say so (one ``n/a``
    value) instead."""
    backend = kind.name
    if check in NEEDS_HOST_PIDS and not kind.host_pids:
        values = list(observed.values())
        ok = bool(values) and all(isinstance(v, str) and v.startswith("n/a") for v in values)
        return [] if ok else [f"{check} on {backend}: expected an n/a observation, got {observed!r}"]
    flat = flatten(observed)
    want = BASELINE_EXPECT.get(check, {})
    out = []
    for k, v in want.items():
        got = flat.get(k, observed.get(k, "(absent)"))
        if got != v:
            out.append(f"{k}: observed {got!r}, 1.10.5 must show {v!r}")
    return out
