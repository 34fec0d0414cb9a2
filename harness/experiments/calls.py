"""SIP calls through a cluster: a SIPp callee and caller placed on the cluster network.

The caller sends every request to the cluster's virtual IP (whoever holds it), with
the callee named in the Request-URI, so the same call keeps working when the VIP moves
to the backup. Works with either backend: each backend gives client hosts that know
how to run a command where their address lives.
"""

from __future__ import annotations

import itertools
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypedDict

from harness.cluster import Cluster
from harness.cluster.interfaces import Backend, ClientHost
from harness.instruments.sipp import (
    HOLD_MARKER,
    HOLDABLE,
    SCENARIOS,
    SippError,
    SippSummary,
    SippUAC,
    SippUAS,
)

CALLEE_PORT = 5080
CALLER_PORT = 5070
_pairs = itertools.count()


class RunnerOptions(TypedDict):
    command_prefix: Sequence[str]
    socket_factory: Callable[[int], socket.socket]


class CallsError(SippError):
    """A scenario name the harness does not have, or a hold it cannot do."""


def runner_options(backend: Backend, host: ClientHost, workdir: Path) -> RunnerOptions:
    """How to run SIPp on ``host`` and reach its control sockets from here.

    The workdir is named as the command's working directory: a host that runs SIPp
    in a fresh container (docker backend) mounts it at its own path, wherever it
    lives (pytest's ``--basetemp`` need not be under the temp directory).
    """
    return {"command_prefix": host.argv([], cwd=str(workdir)), "socket_factory": backend.socket}


def scenario_files(scenario: str | Path, hold: bool) -> tuple[str | Path, str | Path]:
    """(caller, callee) scenarios: a kept scenario's name for both, or your own pair.

    Your own pair is a path prefix: ``Path("dir/info")`` means ``dir/info_uac.xml`` and
    ``dir/info_uas.xml``, written like the kept ones (see scenarios).
    """
    if isinstance(scenario, Path):
        uac, uas = (scenario.with_name(f"{scenario.name}_{role}.xml") for role in ("uac", "uas"))
        missing = [str(f) for f in (uac, uas) if not f.is_file()]
        if missing:
            raise CallsError(f"scenario {scenario}: no {' and no '.join(missing)}")
        if hold and HOLD_MARKER not in uac.read_text(encoding="latin-1"):
            raise CallsError(f"scenario {scenario} cannot be held: {uac} has no {HOLD_MARKER} marker")
        return uac, uas
    if scenario not in SCENARIOS:
        raise CallsError(f"unknown scenario {scenario!r} (one of {', '.join(SCENARIOS)})")
    if hold and scenario not in HOLDABLE:
        raise CallsError(f"scenario {scenario!r} cannot be held (holdable: {', '.join(sorted(HOLDABLE))})")
    return scenario, scenario


#: a caller's pause between the initial 200 OK and its ACK where a check needs every
#: call to replicate created: 1.10.3+ sends created from tm's RESPONSE_OUT only while the
#: dialog is unacknowledged, so an ACK handled first (a sub-millisecond race, 4 of 420
#: calls under load) suppresses it; 200 ms takes the race out
ACK_DELAY_MS = 200
#: the callee's first 200 OK retransmission beside a delayed ACK: 20 times
#: `ACK_DELAY_MS`, far beyond what a loaded machine adds to the caller's pause
ANSWER_RETRANS_MS = 4000
#: the callee's ring between its 180 and its 200 OK where a check needs every call to
#: replicate created exactly once: dialog's dlg_onreply sends created from tm's
#: RESPONSE_OUT callback, which runs for the 180 too and reads the dialog's state
#: without its lock, so a 180 whose callback runs after another SIP worker confirmed
#: the dialog on the 200 sends created a second time (5 of 1,092 cells of the --repeat 3
#: matrix before this ring, primaries 1.10.3-1.11.5). With the 180 relayed this long
#: before the 200 exists, the race is out of the call
RING_BEFORE_ANSWER_MS = 200


class CallPair:
    """One SIPp callee + one SIPp caller running ``scenario`` through a cluster.

    ``scenario`` is a kept scenario's name or your own pair (see `scenario_files`).
    ``uac_options`` go to the caller (`SippUAC`), ``uas_options`` to the callee. A caller
    that delays its ACK (``ack_delay_ms``) gets a callee that waits `ANSWER_RETRANS_MS`
    before retransmitting its 200 OK, so the ACK always comes first (see
    `render_scenario`).
    """

    def __init__(self, cluster: Cluster, scenario: str | Path = "basic", *, calls: int = 1,
                 rate: float = 10.0, hold: bool = False, workdir: str | Path,
                 max_concurrent: int | None = None, uas_options: dict[str, object] | None = None,
                 **uac_options: object) -> None:
        uac_scenario, uas_scenario = scenario_files(scenario, hold)
        label = scenario.name if isinstance(scenario, Path) else scenario
        backend = cluster.backend
        index = next(_pairs)
        self.caller_host = backend.client(f"caller{index}" if index else "caller")
        self.callee_host = backend.client(f"callee{index}" if index else "callee")
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        vip, sip_port = cluster.sip_addr
        if uac_options.get("ack_delay_ms") is not None:
            uas_options = {"answer_retrans_ms": ANSWER_RETRANS_MS, **(uas_options or {})}
        self.uas = SippUAS(uas_scenario, self.callee_host.ip, CALLEE_PORT, workdir=self.workdir,
                           name=f"{label}-uas", **runner_options(backend, self.callee_host, self.workdir),
                           **(uas_options or {}))  # type: ignore[arg-type]
        self.uac = SippUAC(uac_scenario, f"{self.callee_host.ip}:{CALLEE_PORT}", self.caller_host.ip,
                           CALLER_PORT, workdir=self.workdir, calls=calls, rate=rate, hold=hold,
                           max_concurrent=max_concurrent, outbound_proxy=f"{vip}:{sip_port}",
                           name=f"{label}-uac", **runner_options(backend, self.caller_host, self.workdir),
                           **uac_options)

    def start(self, timeout: float = 60.0) -> CallPair:
        """Start the callee, then the caller; each must be ready within ``timeout`` s.

        60 s: on the Docker backend each SIPp is a ``docker run``, and on a loaded engine
        one took 32 s to write its first statistics row (the Docker ``--repeat 3`` matrix
        of 2026-12-07, ``flags.pinging`` 1.10.0>1.10.5); 20 s made that cell an error."""
        self.uas.start(timeout)
        try:
            self.uac.start(timeout)
        except BaseException:
            self.uas.halt()
            raise
        return self

    def wait(self, timeout: float) -> SippSummary:
        """Wait for the caller to finish every call; then stop the callee. The caller's summary."""
        try:
            return self.uac.wait(timeout)
        finally:
            self.uas.halt()

    def stop(self) -> None:
        for proc in (self.uac, self.uas):
            try:
                proc.halt()
            except SippError:
                pass

    def __enter__(self) -> CallPair:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
