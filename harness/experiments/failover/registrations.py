"""The failover's registration phase (``harness failover --registrations N``): N users
registered through the primary before the kill, each called through the backup after it.

Why: a backup that carries the calls but not the registrations cannot reach anyone.
1.11 and 2.1 replicate registrations over BIN (usrloc); with settings
``usrloc.replicate`` the template saves REGISTERs and routes INVITEs to the VIP by
``lookup()``. So, around `FailoverRun`:

1. `register` (before the kill): SIPp registers N users through the VIP, each at its own
   contact on the users' host; we wait (usrloc statistics, then ``ul_dump brief``) until
   the backup holds every one of them, and count those it does not.
2. `call` (after the failover, the backup holding the VIP): every user is called once
   through the VIP; the users' SIPp answers at the contacts. A user is *reached* when
   its call got a 200 OK **and** the INVITE arrived at that user's own contact (the
   backup's lookup found it); any other is *lost*.

Each step has a deadline from N and the rate, like the rest of the failover.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.base.wait import WaitTimeout, wait_until
from harness.cluster import Cluster
from harness.experiments.failover.deadlines import PROGRESS_S, SIP_TRANSACTION_S
from harness.experiments.failover.errors import FailoverError
from harness.experiments.registrations import Users, user_names
from harness.instruments.mi import MITimeout
from harness.instruments.sip import SipMessage
from harness.instruments.sipp import SippError

#: users of the failover's registrations, and the usrloc table they go to
PREFIX = "fo"
#: lost users listed by name in the result (the count is always complete)
LOST_LISTED = 20


@dataclass
class RegistrationResult:
    """What the registration phase saw; ``to_json()`` is its part of ``harness failover --json``."""

    registrations: int
    registered: int = 0
    #: users the backup held when the primary was killed
    on_backup: int = 0
    calls: int = 0
    reached: int = 0
    #: user -> why it counts as lost
    lost_users: dict[str, str] = field(default_factory=dict)
    register_s: float | None = None
    calls_s: float | None = None

    @property
    def lost(self) -> int:
        return self.registrations - self.reached

    def to_json(self) -> dict[str, Any]:
        return {"registrations": self.registrations, "registered": self.registered,
                "on_backup": self.on_backup, "calls": self.calls, "reached": self.reached,
                "lost": self.lost, "lost_users": dict(list(self.lost_users.items())[:LOST_LISTED]),
                "register_s": self.register_s, "calls_s": self.calls_s}

    def lines(self, width: int = 32) -> list[str]:
        """Lines under the failover's table, aligned with it."""
        rows = [("registered users / on backup", f"{self.registered} / {self.on_backup}"),
                ("calls to registered users", str(self.calls)),
                ("registered users lost", str(self.lost))]
        out = [f"{k:<{width}}  {v}" for k, v in rows]
        out += [f"  lost {user}: {why}" for user, why in list(self.lost_users.items())[:10]]
        if len(self.lost_users) > 10:
            out.append(f"  … and {len(self.lost_users) - 10} more")
        return out


class RegistrationPhase:
    """``count`` users registered through ``cluster``'s primary, called through its backup."""

    def __init__(self, cluster: Cluster, count: int, *, workdir: str | Path, rate: float = 200.0,
                 backup: str = "backup", progress: Callable[[str], None] | None = None) -> None:
        if count < 1 or rate <= 0:
            raise FailoverError("registrations must be at least 1 and their rate positive")
        self.cluster, self.count, self.rate, self.backup = cluster, count, rate, backup
        self.say = progress or (lambda line: None)
        self.users = Users(cluster, user_names(count, PREFIX), workdir=Path(workdir) / "registrations")
        self.table = cluster.settings.usrloc.table
        self.result = RegistrationResult(count)
        #: SIPp's run time at the rate, with the slack of one full SIP transaction
        self.deadline = 2.0 * count / rate + SIP_TRANSACTION_S + 15.0

    def register(self) -> None:
        """Register every user through the VIP (the primary); wait for the backup to hold them."""
        self.say(f"registering {self.count} users through the primary at {self.rate:g}/s …")
        try:
            summary = self.users.register("register", rate=self.rate,
                                          max_concurrent=self.count).wait(self.deadline)
        except SippError as err:
            raise FailoverError(f"registering {self.count} users failed: {str(err).splitlines()[0]}") from None
        finally:
            self.users.stop()
        self.result.registered = summary.successful
        self.result.register_s = _span(summary.calls)
        if summary.successful != self.count:
            raise FailoverError(f"only {summary.successful} of {self.count} users registered "
                                f"({'; '.join(summary.errors[:2]) or 'no SIPp error logged'})")
        mi = self.cluster.mi(self.backup)
        key = f"{self.table}-contacts"
        try:
            wait_until(lambda: mi.get_statistics("usrloc:").get(key, 0) >= self.count,
                       timeout=30.0 + 0.01 * self.count, interval=0.2, alive=self.cluster.check,
                       what=f"{self.backup} to hold {self.count} registrations",
                       progress=lambda _v, _t: self.say(f"  {self.backup} holds "
                                                        f"{mi.get_statistics('usrloc:').get(key, 0)}"),
                       progress_every=PROGRESS_S)
        except WaitTimeout:
            pass  # counted below: the missing ones will be lost
        try:  # which users, when the AOR list fits one MI reply (~2,000); else how many
            held = {r.aor for d in mi.ul_dump(brief=True) if d.name == self.table for r in d.aors}
            self.result.on_backup = len(held & set(self.users.names))
        except MITimeout:
            self.result.on_backup = min(self.count, mi.get_statistics("usrloc:").get(key, 0))
        self.say(f"  {self.result.on_backup}/{self.count} registrations on {self.backup}")

    def call(self) -> None:
        """Call every user once through the VIP (now the backup's); judge who was reached."""
        if self.cluster.vip_owner != self.backup:
            raise FailoverError(f"the VIP is on {self.cluster.vip_owner}, not on {self.backup}")
        self.say(f"calling the {self.count} registered users through {self.backup} at {self.rate:g}/s …")
        callee = self.users.answer()
        try:
            caller = self.users.call(rate=self.rate, max_concurrent=self.count)
            try:
                summary = caller.wait(self.deadline)
            except SippError as err:
                self.say(f"warning: calling stopped: {str(err).splitlines()[0]}")
                caller.halt()
                summary = caller.result()
        finally:
            callee.halt()
        answered = callee.result()
        self.result.calls = len(summary.calls)
        self.result.calls_s = _span(summary.calls)
        # Call-ID -> the user whose contact the INVITE arrived at (its Request-URI after lookup)
        arrived = {c.call_id: _request_user(m) for c in answered.calls for m in c.messages
                   if m.direction == "received" and m.method == "INVITE" and not m.is_response}
        called = set()
        for call in summary.calls:
            user = _to_user(call.messages)
            if user is None:
                continue
            called.add(user)
            if 200 not in call.codes("INVITE", 1):
                self.result.lost_users[user] = f"INVITE got {call.codes('INVITE', 1) or 'no answer'}"
            elif arrived.get(call.call_id) != user:
                self.result.lost_users[user] = (f"answered at {arrived.get(call.call_id)!r}'s contact, "
                                                "not its own")
            else:
                self.result.reached += 1
        for name in self.users.names:
            if name not in called:
                self.result.lost_users.setdefault(name, "never called")
        self.say(f"  {self.result.reached}/{self.count} registered users reached through {self.backup}")


def _span(calls: list[Any]) -> float | None:
    times = [m.t for c in calls for m in c.messages]
    return round(max(times) - min(times), 3) if times else None


def _request_user(message: SipMessage) -> str:
    """The user part of a request's Request-URI (``INVITE sip:fo0001@10.0.0.7:5080 …``)."""
    uri = message.first_line.split(" ")[1]
    return uri.split(":", 1)[1].split("@", 1)[0]


def _to_user(messages: list[SipMessage]) -> str | None:
    """The user a caller's call was for: its first INVITE's Request-URI user."""
    invite = next((m for m in messages if m.direction == "sent" and m.method == "INVITE"
                   and not m.is_response), None)
    return None if invite is None else _request_user(invite)
