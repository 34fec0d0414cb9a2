"""``harness bench link``: lost calls against the replication link's loss, reordering and
delay — what an operator needs to size a replication network.

Each point is a whole failover run (`harness.experiments.failover`) of N held calls on a
fresh primary/backup pair whose replication to the backup goes through a relay with
that point's faults (`harness.live.start(link=...)`), one seed for every point. Every
point carries the prediction made from the relay's log beside the outcome, so the
curve is checked call by call, not fitted: a point whose losses the prediction did not
foresee (or foresaw and did not happen) is flagged. Each figure has the load average
beside it: the machine is shared.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness import live
from harness.backends import BackendKind
from harness.base.errors import UsageError
from harness.base.settings import Settings
from harness.experiments.bench.probe import load_average
from harness.experiments.failover import FailoverError, run_failover
from pybin.relay import Impairment

#: the axes a point varies, and how a value of each is written as faults
AXES = ("loss", "reorder", "delay")
DEFAULT_LOSS = (0.0, 0.001, 0.005, 0.01, 0.02, 0.05)
DEFAULT_REORDER = (0.01, 0.05, 0.2)
#: delay points in ms; each gets a jitter of half its value (which also reorders)
DEFAULT_DELAY = (5.0, 20.0, 100.0)


def faults(axis: str, value: float, seed: int) -> Impairment:
    """The link's faults at one point: ``loss=0.01,seed=7``, ``delay=20±10,seed=7`` ..."""
    if axis == "delay":
        return Impairment(delay=value, jitter=value / 2, seed=seed)
    return Impairment(**{axis: value}, seed=seed)  # type: ignore[arg-type]


@dataclass
class LinkPoint:
    """One failover run through one impaired link."""

    axis: str
    value: float
    faults: str
    calls: int
    lost: int | None = None
    predicted_lost: int | None = None
    unexpected_lost: int | None = None
    unexpected_survivors: int | None = None
    #: lost calls whose every packet the link lost, and calls whose only packet (no created:
    #: the ACK came first) it lost
    lost_both: int | None = None
    lost_lone_updated: int | None = None
    relay_sent: int | None = None
    link_delay_ms_p50: float | None = None
    link_delay_ms_p99: float | None = None
    service_gap_ms: float | None = None
    wall_s: float | None = None
    load: float | None = None
    error: str | None = None

    @property
    def agrees(self) -> bool:
        return self.error is None and not self.unexpected_lost and not self.unexpected_survivors

    @property
    def percent(self) -> float:
        """The axis value as shown: percent for loss/reorder, ms for delay."""
        return self.value if self.axis == "delay" else self.value * 100


@dataclass
class LinkReport:
    backend: str
    calls: int
    seed: int
    points: list[LinkPoint] = field(default_factory=list)
    load_start: float = 0.0
    load_end: float = 0.0
    plot: str | None = None

    def to_json(self) -> str:
        return json.dumps({**{k: v for k, v in asdict(self).items() if k != "points"},
                           "points": [asdict(p) for p in self.points]})

    def table(self) -> str:
        head = (f"{'faults':<26} {'lost':>5} {'predicted':>9} {'both lost':>9} {'lone upd.':>9} "
                f"{'unexpected':>10} {'link delay p50/p99 ms':>21} {'gap ms':>7} {'load':>5}  note")
        lines = [f"{self.calls} held calls per point, backend {self.backend}, seed {self.seed}", head,
                 "-" * len(head)]
        for p in self.points:
            if p.error is not None:
                lines.append(f"{p.faults:<26} {'-':>5} {'-':>9} {'-':>9} {'-':>9} {'-':>10} {'-':>21} "
                             f"{'-':>7} {_num(p.load):>5}  failed: {p.error}")
                continue
            unexpected = f"{p.unexpected_lost}+{p.unexpected_survivors}"
            delay = f"{_num(p.link_delay_ms_p50)}/{_num(p.link_delay_ms_p99)}"
            lines.append(f"{p.faults:<26} {p.lost:>5} {p.predicted_lost:>9} {p.lost_both:>9} "
                         f"{p.lost_lone_updated:>9} {unexpected:>10} {delay:>21} {_num(p.service_gap_ms):>7} "
                         f"{_num(p.load):>5}  {'' if p.agrees else 'PREDICTION MISSED'}")
        if self.plot:
            lines.append(f"plot: {self.plot}")
        return "\n".join(lines)


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}" if abs(v) >= 100 else f"{v:.3g}"


def _causes(lost_causes: dict[str, list[str]]) -> tuple[int, int]:
    lone = sum(1 for why in lost_causes.values() if any("sent no created" in w for w in why))
    return len(lost_causes) - lone, lone


def run_point(kind: BackendKind, settings: Settings, axis: str, value: float, *, calls: int, seed: int,
              rate: float, workdir: Path, progress: Callable[[str], None]) -> LinkPoint:
    """One failover through a link with this point's faults; a run that fails is a point
    with its error, not the end of the bench."""
    imp = faults(axis, value, seed)
    point = LinkPoint(axis, value, imp.describe(), calls, load=load_average())
    t0 = time.monotonic()
    try:
        with live.start(kind, settings, ("primary", "backup"), peer="first", workdir=workdir,
                        link={"primary>backup": imp}) as lc:
            result = run_failover(lc.cluster, calls, workdir=workdir, rate=rate, witness=lc.peer,
                                  link=lc.links["primary>backup"], progress=progress)
    except (FailoverError, OSError) as err:
        point.error = str(err).splitlines()[0][:200]
        return point
    finally:
        point.wall_s = round(time.monotonic() - t0, 1)
    figures = result.prediction_figures or {}
    point.lost, point.predicted_lost = result.lost, result.predicted_lost
    point.unexpected_lost = len(result.unexpected_lost or [])
    point.unexpected_survivors = len(result.unexpected_survivors or [])
    point.lost_both, point.lost_lone_updated = _causes(result.lost_causes or {})
    point.relay_sent = figures.get("relay_sent")
    point.link_delay_ms_p50 = figures.get("link_delay_ms_p50")
    point.link_delay_ms_p99 = figures.get("link_delay_ms_p99")
    point.service_gap_ms = result.service_gap_ms
    return point


def run_link_bench(kind: BackendKind, settings: Settings, *, calls: int, seed: int,
                   axes: dict[str, Sequence[float]], rate: float = 200.0, plot: Path | None = None,
                   progress: Callable[[str], None]) -> LinkReport:
    """Every point of every axis, in order; the plot (when asked) once they are all in."""
    report = LinkReport(kind.name, calls, seed, load_start=load_average())
    todo = [(axis, v) for axis in AXES for v in axes.get(axis, ())]
    for n, (axis, value) in enumerate(todo, 1):
        text = faults(axis, value, seed).describe()
        progress(f"point {n}/{len(todo)}: {calls} calls through a link with {text} (load {load_average()})")
        work = Path(tempfile.mkdtemp(prefix="harness-bench-link-"))
        point = run_point(kind, settings, axis, value, calls=calls, seed=seed, rate=rate, workdir=work,
                          progress=lambda line: progress(f"  {line}"))
        report.points.append(point)
        if point.agrees:
            shutil.rmtree(work, ignore_errors=True)
        else:
            progress(f"  kept {work}: {point.error or 'the prediction missed'}")
        progress(f"  lost {point.lost}, predicted {point.predicted_lost} in {point.wall_s}s")
    report.load_end = load_average()
    if plot is not None:
        from harness.experiments.bench.plot import plot_link  # matplotlib only here

        report.plot = str(plot_link(report, plot))
    return report


def point_values(text: str, what: str) -> list[float]:
    """``"0,0.1,0.5"`` (percent for loss/reorder, ms for delay) → the values; "" → none."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated numbers, not {text!r}") from None
    if any(v < 0 or (what != "--delay" and v > 100) for v in values):
        raise UsageError(f"{what}: {text!r} (percentages are 0-100, delays at least 0)")
    return [v if what == "--delay" else v / 100 for v in values]
