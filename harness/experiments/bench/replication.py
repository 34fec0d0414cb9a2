"""`harness bench replication`: how fast a real 1.10 backup takes replicated dialogs.

For each backend and ``bin_children`` value: a lone backup node (it accepts
replicated dialogs, replicates to nobody), pybin as the primary, the offered rate of
created+updated+deleted packets stepped (harness.experiments.bench.stepping) until a step loses
something, each step judged by harness.experiments.bench.probe. Then the memory one replicated
dialog costs on the backup (MI ``get_statistics shmem:`` before and after N created).
The SIP-fed variant (a real primary, SIPp calls) is harness.experiments.bench.sipfeed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from harness import live
from harness.backends import BackendKind
from harness.base.settings import Settings
from harness.base.wait import WaitTimeout, wait_until
from harness.experiments.bench.flood import dialog_packets
from harness.experiments.bench.probe import BackupProbe, Step, load_average
from harness.experiments.bench.report import Config, Memory, Report, rcvbuf_from_log
from harness.experiments.bench.sipfeed import bench_sip_feed
from harness.experiments.bench.stepping import step_rates
from pybin.dialog import Command

#: seconds of traffic per step (packets = rate x this, capped)
STEP_SECONDS = 2.0
MAX_PACKETS = 120_000
#: replicated dialogs held to measure the memory one costs
MEMORY_DIALOGS = 2000


def measure_memory(probe: BackupProbe, tag: str, sock: str, dialogs: int) -> Memory:
    """shmem used_size before and after ``dialogs`` created dialogs, which are then deleted."""
    mi = probe.mi
    before = mi.get_statistics("shmem:")
    base = mi.get_statistics("dialog:").get("active_dialogs", 0)
    created = dialog_packets(f"{tag}-mem", dialogs, sock, commands=(Command.CREATED,))
    probe.offer(created, rate=1000, expect_left=dialogs)
    try:
        wait_until(lambda: mi.get_statistics("dialog:").get("active_dialogs", 0) >= base + dialogs,
                   timeout=30, interval=0.25, what=f"{dialogs} replicated dialogs on the backup",
                   alive=probe.node.check_alive)
    except WaitTimeout:
        pass  # the figure below is per dialog actually held
    held = mi.get_statistics("dialog:").get("active_dialogs", 0) - base
    after = mi.get_statistics("shmem:")
    probe.offer(dialog_packets(f"{tag}-mem", dialogs, sock, commands=(Command.DELETED,)),
                rate=1000, expect_left=0)
    return Memory(held, before.get("used_size", 0), after.get("used_size", 0),
                  after.get("free_size", 0), load_average())


def bench_backup(kind: BackendKind, settings: Settings, bin_children: int, *, start: float,
                 ceiling: float, refine: int, memory_dialogs: int,
                 progress: Callable[[str], None]) -> Config:
    """One backup with ``bin_children`` receivers: memory per dialog, then the rate search."""
    backend_name = kind.name
    config = Config(backend_name, bin_children, "pybin")
    s = settings.with_overrides({"opensips": {"bin_children": bin_children}})
    if reason := kind.unavailable(s):
        config.error = reason
        return config
    with live.start(kind, s, ("backup",)) as lc:
        cluster = lc.cluster
        config.restarts = cluster.restarts.get("backup", 0)
        node = cluster.nodes["backup"]
        config.rcvbuf = rcvbuf_from_log(node.current_logs())
        host, port = cluster.sip_addr
        vip_sock = f"udp:{host}:{port}"
        sock = cluster.udp_socket(0)
        try:
            probe = BackupProbe(node, cluster.mi("backup"), sock, cluster.addresses["backup"].bin_addr)
            tag = f"{backend_name}-{bin_children}"
            if memory_dialogs:
                config.memory = measure_memory(probe, tag, vip_sock, memory_dialogs)
                progress(f"{tag}: {config.memory.per_dialog:.0f} B of shm per replicated dialog")
            counter = iter(range(1_000_000))

            def one(rate: float) -> tuple[bool, Step]:
                packets = min(int(rate * STEP_SECONDS), MAX_PACKETS)
                dialogs = max(1, packets // 3)
                step = probe.offer(dialog_packets(f"{tag}-{next(counter)}", dialogs, vip_sock), rate)
                progress(f"{tag}: {rate:,.0f} pkt/s asked, {step.offered:,.0f} offered: "
                         f"{step.received}/{step.sent} counted, {step.left} left, "
                         f"kernel drops {step.kernel.rcvbuf_errors if step.kernel else '?'}"
                         f"{'' if step.alive else ', NODE DIED'} (load {step.load})")
                return step.clean, step

            search = step_rates(one, start=start, ceiling=ceiling, refine=refine,
                                stop=lambda step: not step.alive)
            config.steps = [step for _, _, step in search.steps]
            config.capacity, config.first_loss = search.capacity, search.first_loss
        finally:
            sock.close()
    return config


def run_replication_bench(backends: Sequence[BackendKind], settings: Settings, bin_children: Sequence[int], *,
                          start: float, ceiling: float, refine: int = 2,
                          memory_dialogs: int = MEMORY_DIALOGS, sip: bool = True,
                          progress: Callable[[str], None]) -> Report:
    report = Report([], load_average(), 0.0)
    for kind in backends:
        backend = kind.name
        for k in bin_children:
            progress(f"{backend}: backup with bin_children={k} (load {load_average()})")
            try:
                report.configs.append(bench_backup(kind, settings, k, start=start, ceiling=ceiling,
                                                   refine=refine, memory_dialogs=memory_dialogs,
                                                   progress=progress))
            except Exception as err:  # one configuration failing still reports the others
                report.configs.append(Config(backend, k, "pybin", error=_first_line(err)))
        if sip:
            progress(f"{backend}: a real primary feeding the backup from SIPp calls")
            try:
                report.configs.append(bench_sip_feed(kind, settings, progress=progress))
            except Exception as err:
                report.configs.append(Config(backend, settings.opensips.bin_children, "sip",
                                             error=_first_line(err)))
    report.load_end = load_average()
    return report


def _first_line(err: BaseException) -> str:
    """An exception as one line (SIPp's errors carry whole logs)."""
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
