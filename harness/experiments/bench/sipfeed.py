"""The replication capacity when a real primary feeds a real backup from SIP calls.

SIPp places short calls (INVITE … ACK, BYE) through the primary at a stepped call
rate; the primary replicates each to the backup. A step is judged like the pybin
feed (harness.experiments.bench.probe), except that "offered" is what the primary says it sent
(``*_sent``: once per event) and the witness of loss is the backup's ``*_recv`` and
the kernel's drop counters in the backup's namespace. SIP calls that fail are the
proxy's capacity, not replication's, and are reported beside it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path

from harness import live
from harness.backends import BackendKind
from harness.base.settings import Settings
from harness.base.wait import WaitTimeout, wait_until
from harness.experiments.bench.kernel import read_counters
from harness.experiments.bench.probe import (
    Step,
    failure_lines,
    load_average,
    recv_total,
)
from harness.experiments.bench.report import Config, rcvbuf_from_log
from harness.experiments.bench.stepping import step_rates
from harness.experiments.calls import CallPair
from harness.instruments.sipp import SippError

SENT = ("create_sent", "update_sent", "delete_sent")
STEP_SECONDS = 3.0
START_CPS, CEILING_CPS = 100.0, 1600.0


def bench_sip_feed(kind: BackendKind, settings: Settings, *, progress: Callable[[str], None],
                   start: float = START_CPS, ceiling: float = CEILING_CPS, refine: int = 1) -> Config:
    config = Config(kind.name, settings.opensips.bin_children, "sip", unit="calls/s")
    if reason := kind.unavailable(settings):
        config.error = reason
        return config
    workdir = Path(tempfile.mkdtemp(prefix="harness-bench-sip-"))
    with live.start(kind, settings, ("primary", "backup")) as lc:
        cluster = lc.cluster
        backup, primary = cluster.nodes["backup"], cluster.nodes["primary"]
        config.rcvbuf = rcvbuf_from_log(backup.current_logs())
        bin_port = cluster.addresses["backup"].bin_port
        mi_b, mi_p = cluster.mi("backup"), cluster.mi("primary")

        def one(cps: float) -> tuple[bool, Step]:
            calls = max(1, int(cps * STEP_SECONDS))
            sent0, recv0 = mi_p.get_statistics("dialog:"), mi_b.get_statistics("dialog:")
            k0 = read_counters(backup, bin_port)
            marks = (len(primary.current_logs()), len(backup.current_logs()))
            pair = CallPair(cluster, "basic", calls=calls, rate=cps, workdir=workdir / f"{cps:g}",
                            max_concurrent=max(100, int(cps * 4)))
            failed: int | str
            with pair:
                try:
                    failed = pair.wait(timeout=calls / cps + 60).failed
                except SippError as err:  # SIPp stuck or dead: the proxy's limit, stopped on exit
                    failed = f"SIPp did not finish ({str(err).splitlines()[0][:120]})"
            sent = sum(mi_p.get_statistics("dialog:")[k] - sent0[k] for k in SENT)

            def counted() -> int | None:
                got = recv_total(mi_b.get_statistics("dialog:")) - recv_total(recv0)
                return got if got >= sent else None

            try:
                got = wait_until(counted, timeout=10, interval=0.25, alive=cluster.check,
                                 what="the backup to count what the primary sent")
            except WaitTimeout as err:
                got = recv_total(mi_b.get_statistics("dialog:")) - recv_total(recv0)
                del err
            k = read_counters(backup, bin_port).minus(k0)
            errors = (failure_lines(primary.current_logs()[marks[0]:])
                      + failure_lines(backup.current_logs()[marks[1]:]))[:5]
            if failed:
                errors.append(f"SIPp: {failed} of {calls} calls failed" if isinstance(failed, int) else failed)
            step = Step(cps, cps, sent, got, sent - got, 0, k, True, load_average(), errors)
            progress(f"sip: {cps:,.0f} calls/s: backup counted {got}/{sent} BIN packets, "
                     f"kernel drops {k.rcvbuf_errors}, SIPp failed {failed} (load {step.load})")
            return step.clean, step

        search = step_rates(one, start=start, ceiling=ceiling, refine=refine)
        config.steps = [step for _, _, step in search.steps]
        config.capacity, config.first_loss = search.capacity, search.first_loss
    return config
