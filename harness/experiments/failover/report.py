"""``report.html``: a failover run as a person looks at it, in one self-contained file.

    harness failover --calls 10000 --report DIR   →   DIR/report.html

The page holds the key figures, the run's timeline and the takeover zoomed
(`timeline` marks, `plots` draws), the recovery-time histogram and the replication-lag
CDF, and every key of the JSON the command prints (rendered generically, so keys added
later show up without touching this module). The pictures are inline SVG; the JSON is
embedded as data (``<script type="application/json" id="figures">``, which no browser
runs): nothing is loaded from elsewhere, so the file can be mailed or attached to CI.

A run that could not finish still gets a page: its error and what it saw (the failure
JSON), without pictures.
"""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from markupsafe import Markup

from harness.base.errors import HarnessError
from harness.base.resources import package_path
from harness.experiments.failover.result import FailoverResult

#: the key figures shown first, as cards: (JSON key, label, unit)
CARDS = (("calls", "calls", ""), ("lost", "lost", ""),
         ("service_gap_ms", "service gap", "ms"),
         ("recovery_ms_p50", "recovery p50", "ms"), ("recovery_ms_p95", "recovery p95", "ms"),
         ("recovery_ms_p99", "recovery p99", "ms"),
         ("replication_lag_ms_p50", "replication lag p50", "ms"),
         ("replication_lag_ms_p99", "replication lag p99", "ms"))
#: the published percentiles each picture marks: picture -> {mark name: JSON key}
PERCENTILES = {"recovery": {"p50": "recovery_ms_p50", "p95": "recovery_ms_p95",
                            "p99": "recovery_ms_p99"},
               "lag": {"p50": "replication_lag_ms_p50", "p99": "replication_lag_ms_p99"}}
REPORT = "report.html"


class ReportError(HarnessError):
    """The page could not be written (the run's figures were printed already)."""


@dataclass(frozen=True)
class Card:
    key: str
    label: str
    value: str
    unit: str
    bad: bool


def shown(value: Any) -> str:
    """A JSON value as the page shows it: strings as they are, the rest as JSON text."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def cards(figures: dict[str, Any]) -> list[Card]:
    """The key figures present in ``figures`` (a failure report may lack some)."""
    out = []
    for key, label, unit in CARDS:
        if key in figures:
            value = figures[key]
            out.append(Card(key, label, "n/a" if value is None else shown(value),
                            unit if value is not None else "", key == "lost" and bool(value)))
    return out


def pictures(result: FailoverResult) -> dict[str, Markup]:
    """The four SVGs of a judged run (matplotlib is imported only when a page is drawn)."""
    try:
        from harness.experiments.failover import plots
    except ImportError as err:  # an install older than the extra's matplotlib
        raise ReportError(f"drawing the report needs {err.name}, which comes with the harness "
                          "extra: pip install 'pybin-opensips[harness]'") from None
    from harness.experiments.failover.timeline import timeline_from

    if result.evidence is None:
        raise ValueError("a result without its evidence has no pictures")
    figures = result.to_json()
    tl = timeline_from(result.evidence)
    marks = {pic: {name: figures.get(key) for name, key in keys.items()}
             for pic, keys in PERCENTILES.items()}
    return {
        "timeline": Markup(plots.timeline_svg(tl)),
        "takeover": Markup(plots.takeover_svg(tl)),
        "recovery": Markup(plots.recovery_svg([s * 1000 for s in result.recovery_s.values()],
                                              marks["recovery"])),
        "lag": Markup(plots.lag_svg([s * 1000 for s in result.replication_lag_s.values()],
                                    marks["lag"])),
    }


def _environment() -> jinja2.Environment:
    folder = package_path("experiments", "failover")
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), autoescape=True,
                              undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


def render(figures: dict[str, Any], result: FailoverResult | None = None) -> str:
    """The page for ``figures`` (the JSON the command printed: a result's or a failure's);
    with ``result`` and its evidence, the pictures too."""
    error = figures.get("error")
    calls, lost = figures.get("calls"), figures.get("lost")
    mode = "SIGSTOP (frozen)" if figures.get("mode") == "freeze" else "SIGKILL"
    if error is not None:
        verdict, bad = f"failed at step {figures.get('step', '?')}", True
    else:
        verdict, bad = ("no call lost" if lost == 0 else f"{lost} lost"), bool(lost)
    title = f"Failover of {calls:,} calls" if isinstance(calls, int) else "Failover"
    backend = figures.get("backend") or "?"
    subtitle = f"{backend} backend; primary failed by {mode}"
    if figures.get("release_rate_asked") is not None:
        subtitle += f"; calls released at {figures['release_rate_asked']:g} requests/s through the backup"
    drawn = pictures(result) if result is not None and result.evidence is not None else None
    data = json.dumps(figures, ensure_ascii=False).replace("<", "\\u003c")
    return _environment().get_template("report.html.j2").render(
        title=title, verdict=verdict, bad=bad, subtitle=subtitle, error=error,
        cards=cards(figures), pictures=drawn,
        rows=[(key, shown(value)) for key, value in figures.items()],
        figures_json=Markup(data),
        made=_dt.datetime.now(_dt.timezone.utc).strftime("on %Y-%m-%d at %H:%M UTC"))


def write_report(out: Path, figures: dict[str, Any], result: FailoverResult | None = None) -> Path:
    """Write ``out/report.html`` (creating ``out``); its path."""
    page = render(figures, result)
    path = out / REPORT
    try:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as err:
        raise ReportError(f"cannot write {path}: {err.strerror or err}") from None
    return path
