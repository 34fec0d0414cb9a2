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

from typing import Any

from harness.matrix.checks import CALLS

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


BASELINE_EXPECT: dict[str, dict[str, Any]] = {
    "sip.basic": _confirmed(1, held=True),
    # the re-INVITE's 200 OK replicates one more updated (its CSeq); its ACK none
    "sip.reinvite": _confirmed(2, held=True),
    "sip.callee_bye": _confirmed(1, held=False),
    "sip.cancel": _failed(),
    "sip.rejected": _failed(),
    "sip.long_headers": _confirmed(1, held=True),
    "sip.record_route": _confirmed(1, held=True),
}


def deviations(check: str, observed: dict[str, Any]) -> list[str]:
    """``key: observed X, 1.10.5 must show Y`` for each expected key that differs."""
    want = BASELINE_EXPECT.get(check, {})
    return [f"{k}: observed {observed.get(k, '(absent)')!r}, 1.10.5 must show {v!r}"
            for k, v in want.items() if observed.get(k, "(absent)") != v]
