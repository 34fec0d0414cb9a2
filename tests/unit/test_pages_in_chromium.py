"""report.html and matrix.html as a person sees them: loaded in headless Chromium.

Each page must load without a console error or warning, an uncaught exception, a
failed load or a request for anything but itself; its SVGs must be drawn (present and
with a size on the screen); and the figures a person reads on it must be the JSON's.
The report comes from a synthetic run's evidence (no OpenSIPS needed), the matrix from
the committed docs/matrix/matrix.json. A deliberately broken page shows the checks see
what they look for. Skipped, with the reason, where Chromium is not installed (.ci/run
installs Debian's package where it can).
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path


from harness.experiments.failover.report import CARDS, shown, write_report
from harness.experiments.failover.result import result_from
from harness.experiments.matrix.html import CLASSES, UPSTREAM_COMMIT, kind_of, write_html

sys.path.insert(0, str(Path(__file__).parent))
from _chromium import Page, needs_chromium  # noqa: E402
from _failover_evidence import synthetic_evidence  # noqa: E402

pytestmark = needs_chromium
MATRIX = Path(__file__).resolve().parents[2] / "docs" / "matrix" / "matrix.json"

#: what a person reads: the key figure cards, the figures table, the pictures' sizes
READ_REPORT = """JSON.stringify({
  cards: Object.fromEntries([...document.querySelectorAll('#key-figures .card')].map(
    c => [c.dataset.key, c.querySelector('.value').firstChild.textContent.trim()])),
  rows: Object.fromEntries([...document.querySelectorAll('#figures-table tr')].map(
    r => [r.dataset.key, r.querySelector('td').innerText])),
  svgs: [...document.querySelectorAll('figure > svg')].map(s => {
    const b = s.getBoundingClientRect();
    return [s.parentElement.id, Math.round(b.width), Math.round(b.height),
            s.querySelectorAll('path').length];
  }),
  legends: [...document.querySelectorAll('svg text')].map(t => t.textContent),
  embedded: JSON.parse(document.getElementById('figures').textContent),
})"""

READ_MATRIX = """JSON.stringify({
  cells: [...document.querySelectorAll('#matrix td')].map(td => [
    td.dataset.kind, getComputedStyle(td).backgroundColor, td.innerText.trim()]),
  links: [...document.querySelectorAll('a[href^="#"]')].map(a => a.getAttribute('href')),
  targets_missing: [...document.querySelectorAll('a[href^="#"]')].filter(
    a => !document.getElementById(a.getAttribute('href').slice(1))).length,
  commits: [...document.querySelectorAll('.explanation h3 a')].map(a => a.href),
  legend: Object.fromEntries([...document.querySelectorAll('#legend li')].map(
    li => [li.dataset.kind, li.querySelector('.count').innerText])),
})"""


def test_the_failover_report_as_chromium_shows_it(tmp_path: Path) -> None:
    result = result_from(synthetic_evidence(150))
    figures = result.to_json()
    path = write_report(tmp_path / "report", figures, result)
    with Page(path, tmp_path / "profile") as page:
        seen = json.loads(page.evaluate(READ_REPORT))
        assert page.problems == []
        assert page.requested == [path.resolve().as_uri()]
    # the four pictures are there and drawn: as wide as the page lets them, not empty
    assert [name for name, *_ in seen["svgs"]] == ["timeline", "takeover", "recovery", "lag"]
    for name, width, height, paths in seen["svgs"]:
        assert width > 400 and height > 200 and paths > 10, (name, width, height, paths)
    # the key figures and every row of the table read as the JSON says
    assert seen["cards"] == {key: shown(figures[key]) for key, _, _ in CARDS}
    assert seen["rows"] == {key: shown(value) for key, value in figures.items()}
    assert seen["embedded"] == figures
    # the pictures' legends carry the published percentiles and the gap
    legends = set(seen["legends"])
    assert {f"p50 = {figures['recovery_ms_p50']:g} ms", f"p95 = {figures['recovery_ms_p95']:g} ms",
            f"p99 = {figures['recovery_ms_p99']:g} ms",
            f"p99 = {figures['replication_lag_ms_p99']:g} ms",
            f"service gap {figures['service_gap_ms']:.1f} ms"} <= legends


def test_the_matrix_page_as_chromium_shows_it(tmp_path: Path) -> None:
    matrix = json.loads(MATRIX.read_text())
    path = write_html(matrix, tmp_path / "matrix")
    with Page(path, tmp_path / "profile", width=1400, height=1000) as page:
        seen = json.loads(page.evaluate(READ_MATRIX))
        assert page.problems == []
        assert page.requested == [path.resolve().as_uri()]
    expected = Counter(kind_of(r) for r in matrix["results"])
    kinds = Counter(kind for kind, _, _ in seen["cells"])
    assert kinds == expected
    assert seen["legend"] == {kind: str(expected.get(kind, 0)) for kind in CLASSES}
    # one colour per outcome, as the browser paints it
    colours = {kind: {colour for k, colour, _ in seen["cells"] if k == kind} for kind in kinds}
    assert all(len(c) == 1 for c in colours.values()) and len({min(c) for c in colours.values()}) == len(kinds)
    # an explained cell shows how many differences it has
    differs = [len(r["differences"]) for r in matrix["results"] if kind_of(r) == "explained"]
    assert sorted(int(text.split()[-1]) for kind, _, text in seen["cells"] if kind == "explained") \
        == sorted(differs)
    assert seen["targets_missing"] == 0 and len(seen["links"]) > len(differs)
    # one explanation per entry, each linked to its upstream commit
    entries = {d["explained_by"]: d.get("commit") or d["explained_by"]
               for r in matrix["results"] for d in r["differences"] if d.get("explained_by")}
    assert sorted(seen["commits"]) == sorted(UPSTREAM_COMMIT.format(c) for c in entries.values())


def test_the_checks_see_a_broken_page(tmp_path: Path) -> None:
    """The same checks on a page with every fault they look for: each is reported."""
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><head><title>x</title>'
                      '<link rel="stylesheet" href="http://example.invalid/style.css"></head>'
                      '<body><img src="missing.png"><script>console.error("boom");'
                      'throw new Error("thrown")</script></body></html>')
    with Page(broken, tmp_path / "profile") as page:
        problems = "\n".join(page.problems)
        assert len(page.requested) == 3
    for expected in ("console.error: boom", "exception: Error: thrown", "missing.png",
                     "example.invalid"):
        assert expected in problems
