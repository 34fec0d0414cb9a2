"""The steps of a failover run with a faulty replication: an impaired link, a backup
restarted while the calls are held, a resync (`Faults` is that part of `FailoverRun`).

- **A link** (``live.start(link={"primary>backup": ...})``): the backup will not hold
  every dialog, so the replication step waits for the link to be quiet instead — the
  primary's ``update_sent`` covers every call (each ACK replicated), the relay has read
  as many datagrams as the primary counted sending (``create_sent + update_sent``: 1.10
  bumps them after the sends), holds none back, and the backup's ``*_recv`` moved by
  exactly what the relay's log says its receiver accepted. Then the kill.
- **A restart** (``--restart backup``): once the backup holds every call, it is
  restarted (SIGTERM, a fresh process, the BIN warm-up); what it lacks afterwards is
  measured, and for how long (until the calls end, or until a resync restored them).
- **A resync** (``--resync``): the primary's live dialogs, read over MI, are sent to
  the restarted backup as ``created`` (`harness.experiments.resync`); the run waits
  until the backup took every one and compares its copies with the primary's, field
  by field.

`prediction` turns what these steps recorded into the call-by-call prediction that
`result_from` checks against the outcome (`harness.experiments.failover.prediction`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from harness.base.wait import Count, WaitTimeout, wait_until
from harness.experiments.failover.deadlines import PAGE, PROGRESS_S
from harness.experiments.failover.errors import FailoverError
from harness.experiments.failover.metrics import CallKey
from harness.experiments.failover.prediction import Prediction, after_restart, from_link
from harness.experiments.resync import compare, resync, timeout_drift
from harness.instruments.link import LinkRelay
from harness.instruments.mi import MIClient
from pybin.dialog import DialogCreated
from pybin.relay import replay
from pybin.replica import Replica
from pybin.resync import flags_for

if TYPE_CHECKING:
    from harness.cluster import Cluster

RECV = ("create_recv", "update_recv", "delete_recv")


class Faults:
    """The fault steps of `FailoverRun`, over the state its other steps record."""

    cluster: Cluster
    primary: str
    backup: str
    keys: set[CallKey]
    backup_mi: MIClient
    sync_timeout: float
    timed_out: list[str]
    missing_on_backup: int
    stats_before: dict[str, int]
    kill_at: float
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    say: Callable[[str], None]
    _shm: Callable[[str], None]
    link: LinkRelay | None
    restart: bool
    resync: bool
    #: the backup's *_recv before the first call (the link's step counts from there)
    recv_before: dict[str, int]
    restart_info: dict[str, Any] | None
    resync_info: dict[str, Any] | None
    #: (send time, packet) of every created the resync sent
    resent: list[tuple[float, DialogCreated]]

    def _backup_sockets(self) -> list[str]:
        a = self.cluster.addresses[self.backup]
        return [f"udp:{a.sip_ip}:{a.sip_port}"]

    def _backup_release(self) -> str:
        return self.cluster.nodes[self.backup].release().version

    def _held_on_backup(self) -> set[CallKey]:
        return {d.key for d in self.backup_mi.dlg_list(context=False, page_size=PAGE)} & self.keys

    # -- an impaired link ----------------------------------------------------------------
    def wait_for_link(self) -> None:
        """Wait until the link is quiet and the backup took all the relay gave it (the
        module doc says how that is known); count what the backup lacks."""
        link = self.link
        assert link is not None
        primary_mi = self.cluster.mi(self.primary)
        seen: dict[str, int] = {}

        def quiet() -> bool:
            sent = primary_mi.get_statistics()
            c = link.counters
            seen.update(updates=sent.get("update_sent", 0),
                        sent=sent.get("create_sent", 0) + sent.get("update_sent", 0),
                        relayed=c.received, held=c.held)
            return seen["updates"] >= len(self.keys) and c.received >= seen["sent"] and c.held == 0

        self.say(f"waiting for link {link.name} to go quiet and {self.backup} to take what it "
                 f"was given (deadline {self.sync_timeout:.0f}s) …")
        t0 = self.clock()
        try:
            wait_until(quiet, timeout=self.sync_timeout, interval=0.2, alive=self.cluster.check,
                       what=f"link {link.name} to go quiet",
                       progress=lambda _v, _t: self.say(
                           f"  {self.primary} sent {seen.get('sent')}, the relay read "
                           f"{seen.get('relayed')}, holds {seen.get('held')}"),
                       progress_every=PROGRESS_S, clock=self.clock, sleep=self.sleep)
            accepted = replay(link.log(), Replica(self._backup_sockets(), release=self._backup_release()))
            want = sum(accepted.received.values())

            def taken() -> Count:
                stats = self.backup_mi.get_statistics()
                return Count(sum(stats.get(k, 0) - self.recv_before.get(k, 0) for k in RECV), want)

            left = max(1.0, self.sync_timeout - (self.clock() - t0))
            wait_until(taken, timeout=left, interval=0.2, alive=self.cluster.check,
                       what=f"{self.backup}'s *_recv to count the {want} dialog packets the relay delivered",
                       progress=lambda c, _t: self.say(f"  {self.backup} counted {c}"),
                       progress_every=PROGRESS_S, clock=self.clock, sleep=self.sleep)
        except WaitTimeout as err:
            self.timed_out.append("replication")
            self.say(f"warning: {err}; going on")
        self.missing_on_backup = len(self.keys - self._held_on_backup())
        self.say(f"  {self.backup} lacks {self.missing_on_backup} of {len(self.keys)} dialogs "
                 f"({link.counters.summary()})")
        self.stats_before = self.backup_mi.get_statistics()
        self._shm("before")

    # -- a restart, and a resync -----------------------------------------------------------
    def restart_backup(self) -> None:
        """Restart the backup under the held calls; measure what it lacks afterwards."""
        self.say(f"restarting {self.backup} while {len(self.keys)} calls are held …")
        held_before = len(self.keys) - self.missing_on_backup
        warmups = self.cluster.restarts.get(self.backup, 0)
        at, t0 = time.time(), self.clock()
        self.cluster.restart(self.backup)
        took = self.clock() - t0
        self.backup_mi = self.cluster.mi(self.backup)
        held_after = len(self._held_on_backup())
        self.restart_info = {"node": self.backup, "at": at, "took_s": round(took, 3),
                             "held_before": held_before, "held_after": held_after,
                             "lacking": len(self.keys) - held_after,
                             "warmup_restarts": self.cluster.restarts.get(self.backup, 0) - warmups}
        self.say(f"  {self.backup} restarted in {took:.1f}s; it holds {held_after} of the "
                 f"{len(self.keys)} calls held through the primary")
        self.stats_before = self.backup_mi.get_statistics()
        self._shm("before")

    def resync_backup(self) -> None:
        """Send the primary's live dialogs to the backup; wait until it took them all;
        compare its copies with the primary's, field by field."""
        dest = self.cluster.addresses[self.backup].bin_addr
        primary_mi = self.cluster.mi(self.primary)
        flags = flags_for(self.cluster.settings.dialog.create_flags)
        self.say(f"resync: {self.primary}'s dialogs (MI dlg_list_ctx) → {self.backup} as created …")
        before = self.backup_mi.get_statistics().get("create_recv", 0)
        report = resync(primary_mi, self.cluster.send_bin, dest, flags=flags)
        self.resent = [(report.done_at, p) for p in report.packets]
        try:
            wait_until(lambda: Count(self.backup_mi.get_statistics().get("create_recv", 0) - before,
                                     report.sent),
                       timeout=self.sync_timeout, interval=0.1, alive=self.cluster.check,
                       what=f"{self.backup} to take the {report.sent} created the resync sent",
                       clock=self.clock, sleep=self.sleep)
        except WaitTimeout:
            self.timed_out.append("resync")
        done_at = time.time()
        on_primary = primary_mi.dlg_list(context=True, page_size=PAGE)
        on_backup = self.backup_mi.dlg_list(context=True, page_size=PAGE)
        compared, differences = compare(on_primary, on_backup)
        held = len(self._held_on_backup())
        self.resync_info = {**report.to_json(), "done_at": done_at, "held_after": held,
                            "compared": compared, "differences": len(differences),
                            "first_differences": differences[:20],
                            "timeout_drift_s": timeout_drift(on_primary, on_backup)}
        self.say(f"  {report.summary()}; {self.backup} holds {held}; {compared} compared "
                 f"field by field, {len(differences)} differences")
        self.stats_before = self.backup_mi.get_statistics()

    # -- the prediction ------------------------------------------------------------------
    def prediction(self) -> Prediction | None:
        """The call-by-call prediction from what the fault steps recorded; None for a
        run on a perfect link without a restart."""
        if self.link is not None:
            return from_link(self.link.name, self.link.log(), self.keys, self._backup_sockets(),
                             self._backup_release(), self.kill_at)
        if self.restart_info is not None:
            return after_restart(self.keys, self.restart_info["at"], self._backup_sockets(),
                                 self._backup_release(), self.resent, at=self.kill_at)
        return None


def check_faults(link: LinkRelay | None, restart: bool, resync: bool) -> None:
    """The combinations a run can do: a link, or a restart (with or without a resync)."""
    if resync and not restart:
        raise FailoverError("a resync needs a restart (--restart backup --resync)")
    if link is not None and restart:
        raise FailoverError("an impaired link and a restart are separate runs: choose one")
