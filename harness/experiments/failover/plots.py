"""The failover report's pictures, drawn with matplotlib as SVG text to embed in a page.

Each function takes what `timeline` and `result` computed and returns one ``<svg>``
element (no XML prolog), so the page needs no file beside it and no script. Text stays
text (``svg.fonttype: none``): smaller, searchable, and checkable in a browser. Each
figure's ids start with its name, so several SVGs share one HTML document without two
elements of one id, and are salted with it, so the same run draws the same bytes.

Dense series (thousands of calls) are drawn as one path each, not one element per call,
so a 10,000-call picture stays a few hundred kilobytes.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter, MaxNLocator

from harness.experiments.failover.timeline import BUCKET_S, Timeline, cdf, per_bucket

#: one colour per thing, the same in every figure
COLOURS = {"primary": "#1f6fb4", "backup": "#2b9a3e", "kill": "#d62728", "vip": "#8e44ad",
           "answer": "#6b6b6b", "gap": "#f4b6b6", "held": "#1f6fb4", "recovered": "#e07b00",
           "ended": "#9a9a9a", "p50": "#2b9a3e", "p95": "#e07b00", "p99": "#d62728"}
STYLE = {"svg.fonttype": "none", "font.family": "DejaVu Sans", "font.size": 10,
         "axes.titlesize": 11, "axes.titleweight": "bold", "axes.titlelocation": "left",
         "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
         "grid.color": "#e4e4e4", "grid.linewidth": 0.6, "legend.fontsize": 9,
         "legend.frameon": False}


def _svg(fig: Figure, name: str) -> str:
    """The figure as an inline ``<svg>`` element whose ids (and the references to them)
    start with ``name``: matplotlib numbers ``figure_1``, ``axes_1``… afresh in each figure."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r'\bid="([^"]+)"', rf'id="{name}-\1"', text)
    text = re.sub(r'href="#([^"]+)"', rf'href="#{name}-\1"', text)
    return re.sub(r"url\(#([^)]+)\)", rf"url(#{name}-\1)", text)


def _ticks(xs: Sequence[float], lows: Sequence[float], highs: Sequence[float]) -> tuple[list, list]:
    """Vertical ticks (x, low..high) as one NaN-separated line: one SVG path for all."""
    px: list[float] = []
    py: list[float] = []
    for x, lo, hi in zip(xs, lows, highs):
        px += [x, x, math.nan]
        py += [lo, hi, math.nan]
    return px, py


def _cumulative(ax, times: Sequence[float], zero: float, colour: str, label: str) -> None:
    if times:
        xs = [t - zero for t in times]
        ax.step([xs[0], *xs], [0, *range(1, len(xs) + 1)], where="post", color=colour,
                lw=1.6, label=f"{label} ({len(xs):,})")


def _marks(ax, tl: Timeline, scale: float, *, legend: bool = False) -> None:
    """The kill (signalled, then gone), the VIP move, the proxy's last and first answers
    and the service gap between them, in the legend in the order they happened, with
    their offsets from the signal."""
    zero = tl.zero
    if tl.gap is not None:
        ax.axvspan((tl.gap.last_before - zero) * scale, (tl.gap.first_after - zero) * scale,
                   color=COLOURS["gap"], alpha=0.45, lw=0,
                   label=f"service gap {tl.gap.ms:.1f} ms" if legend else None)
    lines = [(tl.kill_at, COLOURS["kill"], (0, (1, 1.5)), "primary gone, VIP move starts")]
    if tl.kill_started_at is not None:
        lines.append((tl.kill_started_at, COLOURS["kill"], "-", f"{tl.signal} sent to the primary"))
    if tl.gap is not None:
        lines += [(tl.gap.last_before, COLOURS["answer"], ":", "the proxy's last answer"),
                  (tl.gap.first_after, COLOURS["backup"], ":", "the backup's first answer")]
    if tl.vip_moved_at is not None:
        lines.append((tl.vip_moved_at, COLOURS["vip"], "--", "VIP move done, neighbours told"))
    for t, colour, style, text in sorted(lines, key=lambda line: line[0]):
        ax.axvline((t - zero) * scale, color=colour, ls=style, lw=1.5,
                   label=f"{text} ({(t - zero) * 1000:+.1f} ms)" if legend else None)


class _Plain(LogFormatter):
    """Log ticks as plain numbers (0.1, 1, 10), not powers of ten; minor ones only where
    matplotlib would label them (a narrow range)."""

    def _num_to_string(self, x: float, vmin: float, vmax: float) -> str:
        return f"{x:g}"


def _plain_log(axis) -> None:
    axis.set_major_formatter(_Plain())
    axis.set_minor_formatter(_Plain(labelOnlyBase=False))


def _bin_steps(ax, tl: Timeline, start: float, end: float, scale: float) -> None:
    """BIN dialog packets per 10 ms from each node, as steps."""
    for node in ("primary", "backup"):
        sent = tl.bin_sent.get(node, [])
        counts = per_bucket(sent, start, end)
        edges = [(start + i * BUCKET_S - tl.zero) * scale for i in range(len(counts) + 1)]
        ax.stairs(counts, edges, color=COLOURS[node], lw=1.1, fill=False,
                  label=f"BIN packets from the {node} ({len(sent):,} in all)")
    ax.set_ylabel("BIN packets\nper 10 ms")
    ax.set_ylim(bottom=0)


def timeline_svg(tl: Timeline) -> str:
    """The whole run: calls held, recovered and ended; each call's recovery; BIN traffic."""
    start, end = tl.span
    zero = tl.zero
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(11.5, 5.5), layout="constrained")
        calls, rec, bins = fig.subplots(3, 1, sharex=True, height_ratios=[1.1, 1, 0.9])
        _cumulative(calls, tl.held, zero, COLOURS["held"], "calls held")
        _cumulative(calls, tl.ended, zero, COLOURS["ended"], "calls ended (BYE answered)")
        _cumulative(calls, [r.answered for r in tl.recoveries], zero, COLOURS["recovered"],
                    "re-INVITEs answered 200 by the backup")
        calls.set_ylabel("calls")
        calls.set_ylim(bottom=0)
        calls.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
        calls.set_title("The whole run: calls set up through the primary, the primary "
                        f"{'killed' if tl.signal == 'SIGKILL' else 'frozen'}, every call "
                        "released through the backup")
        if tl.recoveries:
            xs = [r.sent - zero for r in tl.recoveries]
            ms = [max(r.ms, 1e-3) for r in tl.recoveries]
            px, py = _ticks(xs, [m / 1.15 for m in ms], [m * 1.15 for m in ms])
            rec.plot(px, py, color=COLOURS["recovered"], lw=0.7,
                     label="one tick per call: its re-INVITE sent at x, answered 200 after y ms")
            rec.set_yscale("log")
            _plain_log(rec.yaxis)
        rec.set_ylabel("recovery (ms)")
        _bin_steps(bins, tl, start, end, 1.0)
        for ax in (calls, rec, bins):
            _marks(ax, tl, 1.0)
            ax.legend(loc="upper left")
        bins.set_xlabel(f"seconds from the {tl.signal} (red line: the kill and the VIP move, "
                        "zoomed below)")
        pad = max(0.01, 0.01 * (end - start))
        bins.set_xlim((start - zero) - pad, (end - zero) + pad)
        return _svg(fig, "timeline")


def takeover_svg(tl: Timeline) -> str:
    """The takeover, zoomed: the proxy's answers stop and resume, the VIP moves, the
    first calls recover, the backup starts replicating."""
    lo, hi = tl.takeover
    zero = tl.zero
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(11.5, 3.7), layout="constrained")
        events, bins = fig.subplots(2, 1, sharex=True, height_ratios=[1.25, 1])
        rows = (("SIP answers\nfrom the VIP", tl.answers, COLOURS["answer"]),
                ("re-INVITEs\nsent", [r.sent for r in tl.recoveries], COLOURS["held"]),
                ("re-INVITEs\nanswered 200", [r.answered for r in tl.recoveries], COLOURS["recovered"]))
        for y, (_, times, colour) in enumerate(rows):
            inside = [(t - zero) * 1000 for t in times if lo <= t <= hi]
            px, py = _ticks(inside, [y - 0.35] * len(inside), [y + 0.35] * len(inside))
            events.plot(px, py, color=colour, lw=1.0)
        events.set_yticks(range(len(rows)), [name for name, _, _ in rows])
        events.set_ylim(len(rows) - 0.4, -0.6)  # read down: answers, then the calls
        events.grid(axis="y", visible=False)
        events.set_title("The takeover, zoomed: each tick is one SIP message")
        _marks(events, tl, 1000.0, legend=True)
        events.legend(loc="upper left", bbox_to_anchor=(1.0, 1.04))
        _bin_steps(bins, tl, lo, hi, 1000.0)
        _marks(bins, tl, 1000.0)
        bins.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
        bins.set_xlabel(f"milliseconds from the {tl.signal}")
        bins.set_xlim((lo - zero) * 1000, (hi - zero) * 1000)
        return _svg(fig, "takeover")


def _percentile_lines(ax, marks: dict[str, float | None]) -> None:
    for name, value in marks.items():
        if value is not None:
            ax.axvline(value, color=COLOURS[name], lw=1.4, ls="--", label=f"{name} = {value:g} ms")


def _empty(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in this run", transform=ax.transAxes, ha="center",
            va="center", color=COLOURS["answer"])


def recovery_svg(recovery_ms: Sequence[float], marks: dict[str, float | None]) -> str:
    """How long the backup took per call (re-INVITE sent → 200 OK): a histogram with the
    published percentiles. Log-spaced bins when the times span over two decades."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(5.7, 3.3), layout="constrained")
        ax = fig.subplots()
        values = [v for v in recovery_ms if v > 0]
        if values:
            lo, hi = min(values), max(values)
            if hi / lo > 100:
                n = 50
                edges = [lo * (hi / lo) ** (i / n) for i in range(n + 1)]
                ax.set_xscale("log")
                _plain_log(ax.xaxis)
            else:
                edges = 50 if hi > lo else 1
            ax.hist(values, bins=edges, color=COLOURS["recovered"], alpha=0.85)
            _percentile_lines(ax, marks)
            ax.legend(loc="upper right")
        else:
            _empty(ax, "recovered call")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
        ax.set_title(f"Recovery time ({len(values):,} calls)")
        ax.set_xlabel("re-INVITE sent → 200 OK (ms)")
        ax.set_ylabel("calls")
        return _svg(fig, "recovery")


def lag_svg(lag_ms: Sequence[float], marks: dict[str, float | None]) -> str:
    """How long a dialog took to be on the wire to the backup (200 OK out → first BIN
    packet), as a CDF with the published percentiles."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(5.7, 3.3), layout="constrained")
        ax = fig.subplots()
        if lag_ms:
            xs, ys = cdf(lag_ms)
            ax.step(xs, ys, where="post", color=COLOURS["primary"], lw=1.6)
            if min(xs) > 0 and max(xs) / min(xs) > 100:
                ax.set_xscale("log")
                _plain_log(ax.xaxis)
            _percentile_lines(ax, marks)
            ax.legend(loc="lower right")
            ax.set_ylim(0, 1.02)
        else:
            _empty(ax, "replicated call")
        ax.set_title(f"Replication lag ({len(lag_ms):,} calls)")
        ax.set_xlabel("200 OK out of the VIP → first BIN packet to the backup (ms)")
        ax.set_ylabel("fraction of calls at or below")
        return _svg(fig, "lag")

