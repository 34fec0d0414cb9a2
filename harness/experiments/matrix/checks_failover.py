"""Failover: the backup carries held calls once the primary is killed and the VIP moved.
Runs last on the shared cluster (it kills the primary, so the session's next check
gets a new cluster)."""

from __future__ import annotations

from harness.experiments.failover.errors import FailoverError
from harness.experiments.failover.run import FailoverRun
from harness.experiments.matrix.evidence import log_categories
from harness.experiments.matrix.registry import Observation, check
from harness.experiments.matrix.session import PairSession

FAILOVER_CALLS = 10


@check("failover", "10 held calls through the primary, the primary killed and the VIP moved: "
       "the backup carries them (re-INVITE and BYE through it)")
def failover(s: PairSession) -> Observation:
    lc = s.shared()
    s.retire_shared()  # the primary dies here: no later check may use this cluster
    run = FailoverRun(lc.cluster, FAILOVER_CALLS, workdir=s.dir("failover"), rate=50,
                      release_rate=20, probe_interval=None, witness=lc.peer)
    try:
        result = run.run()
    except FailoverError as err:
        raise FailoverError(f"the failover did not run to the end: {str(err)[:160]}") from None
    return {
        "backup.missing_before_kill": result.missing_on_backup,
        "calls.lost": result.lost,
        "calls.completed": run.summary.successful if run.summary else None,
        "backup.failed_requests": result.failed_requests,
        "backup.dialogs_left": result.backup_dialogs_left,
        "backup.alive": result.backup_alive,
        "backup.errors": log_categories("\n".join(result.backup_errors)),
        "nodes.timed_out": sorted(result.timed_out),
    }
