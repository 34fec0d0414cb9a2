"""The link bench's curve: lost calls against loss, reordering and delay, observed beside
predicted, one panel per axis (matplotlib, drawn off-screen, PNG or SVG by the file's
suffix)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the report's type only: the bench imports this module, not the reverse
    from harness.experiments.bench.link import LinkReport

LABELS = {"loss": "loss (% of datagrams)", "reorder": "reordered (% of datagrams)",
          "delay": "delay (ms, jitter ± half of it)"}


def plot_link(report: LinkReport, path: Path) -> Path:
    """Draw ``report`` into ``path``; returns it."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file, wherever the bench runs
    import matplotlib.pyplot as plt

    axes = list(dict.fromkeys(p.axis for p in report.points))  # in the order they were run
    fig, panels = plt.subplots(1, max(1, len(axes)), figsize=(4.2 * max(1, len(axes)), 3.6),
                               squeeze=False, sharey=True)
    for panel, axis in zip(panels[0], axes):
        points = sorted((p for p in report.points if p.axis == axis and p.error is None),
                        key=lambda p: p.value)
        x = [p.percent for p in points]
        panel.plot(x, [p.predicted_lost for p in points], "-x", color="tab:blue", label="predicted")
        panel.plot(x, [p.lost for p in points], "o", color="tab:red", fillstyle="none",
                   markersize=9, label="observed")
        missed = [p for p in points if not p.agrees]
        if missed:
            panel.plot([p.percent for p in missed], [p.lost for p in missed], "x", color="black",
                       markersize=10, label="prediction missed")
        panel.set_xlabel(LABELS[axis])
        panel.grid(True, alpha=0.3)
    # one scale for every panel (they share it): the most lost or predicted anywhere
    top = max([p.lost or 0 for p in report.points] + [p.predicted_lost or 0 for p in report.points] + [1])
    panels[0][0].set_ylim(-0.05 * top, 1.15 * top)
    panels[0][0].set_ylabel(f"lost of {report.calls} held calls")
    panels[0][0].legend(loc="upper left")
    fig.suptitle(f"failover through an impaired replication link ({report.backend}, seed {report.seed})",
                 fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
