"""What the baseline release (1.10.5) must show in each check, from its sources.

The matrix compares every pair with the baseline pair run minutes earlier; these
values keep that baseline honest: a baseline observation off them fails the run (and
the behaviour test), so a 1.10.5 that stops doing what its code says is never the
yardstick. Each value follows from the check's experiment and 1.10.5's dialog module
(``modules/dialog`` at tag 1.10.5):

- ``dlg_handlers.c`` ``dlg_onreply``: created is replicated from ``TMCB_RESPONSE_OUT``,
  after the 200 OK is relayed, while the dialog is still CONFIRMED_NA (state 3) — the
  checks' callers ACK 200 ms later, so every call replicates it;
- ``dlg_onroute``: the ACK moves the dialog to CONFIRMED (4) and replicates updated, as
  does a re-INVITE's cseq change; the BYE moves it to DELETED and ``next_state_dlg``
  (``dlg_hash.c``) replicates deleted only on that transition from a confirmed state:
  failed and cancelled calls replicate nothing;
- ``dlg_replication.c`` ``dlg_replicated_create``: the backup links the dialog under its
  own next id (h_id renumbered);
- ``bin_interface.c``: datagrams under 18 bytes are dropped with an INFO line, a bad
  checksum with a WARNING.
"""

from __future__ import annotations

from typing import Any

from harness.experiments.matrix.checks_failover import FAILOVER_CALLS
from harness.experiments.matrix.checks_sip import CALLS
from harness.experiments.matrix.judge import flatten
from harness.instruments.sipp.scenarios import REGISTRATIONS

#: users per usrloc check (defined here: checks_usrloc imports this module, so this
#: module cannot import it)
USERS = 3

_ALIVE = {"primary": True, "backup": True}


def _confirmed(updates: int, held: bool) -> dict[str, Any]:
    seq = " ".join(["created(3)"] + ["updated(4)"] * updates + ["deleted"])
    out: dict[str, Any] = {
        "calls.successful": CALLS,
        "primary.packets": [[seq, CALLS]],
        "primary.created": [["after 200 OK", CALLS]],
        "primary.stats": {"create_sent": CALLS, "update_sent": CALLS * updates, "delete_sent": CALLS,
                          "processed_dialogs": CALLS, "failed_dialogs": 0},
        "backup.stats": {"create_recv": CALLS, "update_recv": CALLS * updates, "delete_recv": CALLS,
                         "active_dialogs": 0},
        "backup.dialogs_after": [],
        "nodes.alive": _ALIVE,
    }
    if held:
        out.update({"backup.while_up": [["state 4", CALLS]], "backup.h_id": "its own",
                    "backup.fields_unlike_primary": []})
    return out


def _failed() -> dict[str, Any]:
    return {
        "calls.successful": CALLS,
        "primary.packets": [["(none)", CALLS]],
        "primary.created": [["not sent", CALLS]],
        "primary.stats": {"create_sent": 0, "update_sent": 0, "delete_sent": 0,
                          "processed_dialogs": CALLS, "failed_dialogs": CALLS},
        "backup.stats": {"create_recv": 0, "update_recv": 0, "delete_recv": 0, "active_dialogs": 0},
        "backup.dialogs_after": [],
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
    # ringing changes nothing 1.10.5 replicates: created still follows the 200 OK
    "sip.ringing": _confirmed(1, held=False),
    # keys of nested observations are dotted (harness.experiments.matrix.judge.flatten)
    "flags.bye_on_timeout": {
        "primary.wire_flags": ["BYEONTIMEOUT|ISINIT"],
        "backup.dialogs": ["state 4 user_flags 8"],  # set_dlg_flag("3")
        "backup.mi": "answers", "calls.successful": 2,
        "primary.packets": [["created(3) updated(4) deleted", 2]],
        "backup.stats.create_recv": 2, "backup.stats.update_recv": 2, "backup.stats.delete_recv": 2,
        "backup.active_after": 0, "nodes.alive.backup": True, "nodes.alive.primary": True,
    },
    # 1.10.3+ does not ping replicated dialogs (837032b6): only the primary sends OPTIONS
    "flags.pinging": {
        "primary.wire_flags": ["BYEONTIMEOUT|ISINIT|PING_CALLEE|PING_CALLER"],
        "backup.dialogs": ["state 4 user_flags 8"], "backup.mi": "answers", "calls.successful": 2,
        "primary.options_to": ["callee", "caller"], "backup.options_to": [],
        "primary.packets": [["created(3) updated(4) deleted", 2]],
        "backup.active_after": 0, "nodes.alive.backup": True, "nodes.alive.primary": True,
    },
    # each node expires its own copy; only the VIP's owner can reach the parties
    "expiry": {
        "primary.own_copy": "expired", "backup.own_copy": "expired",
        "primary.bye_to": ["callee", "caller"], "backup.bye_to": [],
        "primary.stats.expired_dialogs": 1, "backup.stats.expired_dialogs": 1,
        "backup.stats.active_dialogs": 0, "nodes.alive.backup": True, "nodes.alive.primary": True,
    },
    "parity": {
        "backup.dialogs": ["state 4"], "backup.h_id": "its own", "backup.fields_unlike_primary": [],
        "pybin.fields_unlike_backup": ["h_id"], "calls.successful": CALLS,
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
    # of ten fresh 1.10.5 receivers with ASLR, at least one dies of EINVAL (p ~ 0.9999)
    "recvfrom_defect": {"backup.first_packet": "dies"},
    "failover": {
        "backup.missing_before_kill": 0, "calls.lost": 0, "calls.completed": FAILOVER_CALLS,
        "backup.failed_requests": 0, "backup.dialogs_left": 0, "backup.alive": True,
        "nodes.timed_out": [],
    },
}


def _registered(scenario: str, bindings: int) -> dict[str, Any]:
    """What 1.11.11 shows for `USERS` users through a REGISTER scenario: the primary
    replicates the scenario's commands per AOR (registrar's save(), usrloc's
    replicate_*: `REGISTRATIONS`), the backup replicates nothing back, both tables hold
    the same bindings, and pybin's registrar agrees with the backup."""
    seq = " ".join(REGISTRATIONS[scenario].replicates)
    held = [[f"{bindings} binding(s)", USERS]]
    return {"calls.successful": USERS, "primary.ul": [[seq, USERS]], "backup.ul": [["(none)", USERS]],
            "primary.bindings": held, "backup.bindings": held, "backup.fields_unlike_primary": [],
            "pybin.fields_unlike_backup": [], "nodes.alive.primary": True, "nodes.alive.backup": True}


#: the usrloc checks' reference is 1.11.11's own pair (1.10 has no usrloc replication);
#: from 1.11.11's modules/usrloc (ureplication.c, urecord.c, ucontact.c) and registrar
USRLOC_EXPECT: dict[str, dict[str, Any]] = {
    "usrloc.register": _registered("register", 1),
    "usrloc.refresh": _registered("refresh", 1),
    "usrloc.multi_contact": _registered("multi_contact", 4),
    # the AOR is gone on both nodes: no binding left
    "usrloc.unregister": _registered("unregister", 0),
    # the 2 s binding expired on each node by its own timer; the hour's one stays
    "usrloc.expiry": _registered("expiry", 1),
}

#: the release each table of expectations is about
EXPECTED_OF: dict[str, dict[str, dict[str, Any]]] = {"1.10.5": BASELINE_EXPECT, "1.11.11": USRLOC_EXPECT}


def deviations(check: str, observed: dict[str, Any], release: str = "1.10.5") -> list[str]:
    """``key: observed X, 1.10.5 must show Y`` for each expected key that differs. A
    check the backend cannot run has nothing to deviate (the report lists it as not run)."""
    flat = flatten(observed)
    want = EXPECTED_OF.get(release, {}).get(check, {})
    out = []
    for k, v in want.items():
        got = flat.get(k, observed.get(k, "(absent)"))
        if got != v:
            out.append(f"{k}: observed {got!r}, {release} must show {v!r}")
    return out
