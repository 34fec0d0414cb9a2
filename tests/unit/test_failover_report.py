"""report.html offline: the timeline's marks from a synthetic run's evidence, the page's
figures against the JSON, self-containment, the failure page, ``--report`` and the
plugin's evidence on failure. (How Chromium shows the page: test_pages_in_chromium.)"""

from __future__ import annotations

import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.experiments.failover.errors import failure_json
from harness.experiments.failover.report import CARDS, render, shown, write_report
from harness.experiments.failover.result import result_from
from harness.experiments.failover.timeline import BUCKET_S, cdf, per_bucket, timeline_from

sys.path.insert(0, str(Path(__file__).parent))
from _failover_evidence import (  # noqa: E402
    FIRST_ANSWER,
    KILL,
    KILL_SENT,
    LAST_ANSWER,
    T0,
    VIP_MOVED,
    recovery_ms,
    synthetic_evidence,
)

pytest_plugins = ["pytester"]
N = 120


@pytest.fixture(scope="module")
def result():
    return result_from(synthetic_evidence(N))


@pytest.fixture(scope="module")
def page(result) -> str:
    return render(result.to_json(), result)


class Elements(HTMLParser):
    """Every start tag with its attributes, and the value cell's text of each ``data-key`` row."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.keyed: dict[str, list[str]] = {}
        self._key: str | None = None
        self._in_value = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "tr" and dict(attrs).get("data-key"):
            self._key = dict(attrs)["data-key"]
            self.keyed[self._key] = []

        self._in_value = self._in_value or (tag == "td" and self._key is not None)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._key = None
        if tag == "td":
            self._in_value = False

    def handle_data(self, data: str) -> None:
        if self._key is not None and self._in_value:
            self.keyed[self._key].append(data)


def parsed(html: str) -> Elements:
    p = Elements()
    p.feed(html)
    return p


# -- the timeline ------------------------------------------------------------------------

def test_the_timeline_marks_come_from_the_evidence() -> None:
    ev = synthetic_evidence(N)
    tl = timeline_from(ev)
    assert (tl.kill_at, tl.vip_moved_at) == (T0 + KILL, T0 + VIP_MOVED)
    assert (tl.kill_started_at, tl.zero, tl.signal) == (T0 + KILL_SENT, T0 + KILL_SENT, "SIGKILL")
    assert tl.gap is not None
    assert (tl.gap.last_before, tl.gap.first_after) == (T0 + LAST_ANSWER, T0 + FIRST_ANSWER)
    assert len(tl.held) == len(tl.ended) == len(tl.recoveries) == N
    assert [r.ms for r in tl.recoveries] == pytest.approx([recovery_ms(i) for i in range(N)], abs=1e-3)
    assert (len(tl.bin_sent["primary"]), len(tl.bin_sent["backup"])) == (N, 2 * N)
    # every answer of the VIP: N x (initial 200, re-INVITE 200, BYE 200) + the probes
    probes = sum(1 for k in range(300) if not LAST_ANSWER < round(9.0 + 0.005 * k, 3) < FIRST_ANSWER) + 1
    assert len(tl.answers) == 3 * N + probes
    lo, hi = tl.takeover
    assert (lo - T0, hi - T0) == pytest.approx((KILL_SENT - 0.1, VIP_MOVED + 0.3), abs=1e-6)
    # from the first call's 200 OK out of the VIP to the prober's last answer
    assert tl.span == pytest.approx((T0 + 0.002, T0 + 9.0 + 0.005 * 299), abs=1e-6)


def test_the_result_keeps_its_evidence_and_the_vip_move() -> None:
    ev = synthetic_evidence(5)
    r = result_from(ev)
    assert r.evidence is ev and r.evidence.vip_moved_at == T0 + VIP_MOVED
    assert r.evidence.kill_started_at == T0 + KILL_SENT
    assert "evidence" not in r.to_json() and "evidence" not in repr(r)


def test_per_bucket_counts_each_time_once() -> None:
    times = [0.0, 0.004, 0.0099, 0.010, 0.025, 0.030, 0.5]
    assert per_bucket(times, 0.0, 0.030) == [3, 1, 1, 1]
    assert per_bucket(times, 0.001, 0.012) == [3, 0]  # 0.0 before the start is not counted
    assert per_bucket([], 0.0, 0.0) == [0] and BUCKET_S == 0.010
    with pytest.raises(ValueError):
        per_bucket(times, 1.0, 0.0)


def test_cdf_is_the_fraction_at_or_below() -> None:
    assert cdf([3.0, -1.0, 2.0, 2.0]) == ([-1.0, 2.0, 2.0, 3.0], [0.25, 0.5, 0.75, 1.0])
    assert cdf([]) == ([], [])


# -- the page ----------------------------------------------------------------------------

def test_every_json_key_is_shown_as_the_json_says(result, page: str) -> None:
    figures = result.to_json()
    rows = parsed(page).keyed
    assert list(rows) == list(figures)
    assert {k: "".join(v) for k, v in rows.items()} == {k: shown(v) for k, v in figures.items()}
    embedded = re.search(r'<script type="application/json" id="figures">(.*?)</script>', page, re.S)
    assert embedded is not None and json.loads(embedded.group(1)) == figures


def test_the_key_figures_are_the_jsons(result, page: str) -> None:
    figures = result.to_json()
    cards = dict(re.findall(r'data-key="(\w+)">\s*<div class="label">[^<]*</div>\s*'
                            r'<div class="value">([^<]*)', page))
    assert list(cards) == [key for key, _, _ in CARDS]
    assert {k: v.strip() for k, v in cards.items()} == {k: shown(figures[k]) for k in cards}
    assert (figures["calls"], figures["lost"], figures["service_gap_ms"]) == (N, 0, 41.0)


def test_the_pictures_are_inline_svg_marked_with_the_published_percentiles(result, page: str) -> None:
    figures = result.to_json()
    for name in ("timeline", "takeover", "recovery", "lag"):
        assert re.search(rf'<figure id="{name}">\s*<svg ', page), name
    assert page.count("<svg ") == 4
    for key, mark in (("recovery_ms_p50", "p50"), ("recovery_ms_p95", "p95"),
                      ("recovery_ms_p99", "p99"), ("replication_lag_ms_p99", "p99")):
        assert f"{mark} = {figures[key]:g} ms" in page
    assert f"service gap {figures['service_gap_ms']:.1f} ms" in page
    # the marks, from the SIGKILL: the kill took 15 ms, the move 36 ms more
    for mark in ("SIGKILL sent to the primary (+0.0 ms)", "the proxy's last answer (+5.0 ms)",
                 "primary gone, VIP move starts (+15.0 ms)", "the backup's first answer (+46.0 ms)",
                 "VIP move done, neighbours told (+51.0 ms)"):
        assert mark in page
    # the SVGs' ids are salted per figure: none is defined twice in the document
    ids = [a["id"] for _, a in parsed(page).tags if a.get("id")]
    assert len(ids) == len(set(ids))


def test_the_page_loads_nothing_from_elsewhere_and_runs_nothing(page: str) -> None:
    tags = parsed(page).tags
    scripts = [a for t, a in tags if t == "script"]
    assert scripts == [{"type": "application/json", "id": "figures"}]  # data, never run
    assert [t for t, _ in tags if t in ("link", "img", "iframe", "object", "embed")] == []
    assert [a for _, a in tags if "src" in a] == []
    # the SVGs refer to their own parts only (markers, clip paths)
    assert {a["xlink:href"][:1] for _, a in tags if "xlink:href" in a} == {"#"}
    assert not re.search(r"url\(\s*['\"]?(?!#)", page)  # no style sheet fetches anything


def test_keys_added_later_are_shown_without_touching_the_report(result) -> None:
    figures = {**result.to_json(), "link_faults": {"loss": 0.1}, "resync_ms": None}
    rows = parsed(render(figures)).keyed
    assert "".join(rows["link_faults"]) == '{"loss": 0.1}' and "".join(rows["resync_ms"]) == "null"


def test_a_run_that_could_not_finish_gets_a_page_with_what_it_saw(tmp_path: Path) -> None:
    figures = failure_json("only 10 of 200 calls were set up", step="setup", calls=200, backend="local")
    path = write_report(tmp_path / "out", figures)
    page = path.read_text()
    assert path == tmp_path / "out" / "report.html"
    assert "<svg" not in page and "only 10 of 200 calls were set up" in page
    assert "failed at step setup" in page
    assert list(parsed(page).keyed) == list(figures)


def test_a_report_that_cannot_be_written_is_one_line(result, tmp_path: Path) -> None:
    from harness.experiments.failover.report import ReportError

    (tmp_path / "file").write_text("")
    with pytest.raises(ReportError, match=r"cannot write .*file/report.html"):
        write_report(tmp_path / "file", result.to_json(), result)


def test_report_is_an_option_checked_before_anything_runs(tmp_path: Path, capsys) -> None:
    from harness.cli import build_parser, main

    assert build_parser().parse_args(["failover", "--report", "out"]).report == "out"
    assert build_parser().parse_args(["failover"]).report is None
    (tmp_path / "file").write_text("")
    assert main(["failover", "--report", str(tmp_path / "file")]) == 2
    assert capsys.readouterr().err == f"harness: --report {tmp_path / 'file'}: not a directory\n"


def test_a_failed_failover_test_leaves_its_report(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """The plugin's ``failover_report``: the page joins the evidence of a failed test only."""
    pytester.makepyfile(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from _failover_evidence import synthetic_evidence
        from harness.experiments.failover.result import result_from

        def test_fails(failover_report):
            result = failover_report(result_from(synthetic_evidence(20)))
            assert result.lost == 1

        def test_passes(failover_report):
            assert failover_report(result_from(synthetic_evidence(20))).lost == 0
    """)
    artifacts = tmp_path / "artifacts"
    run = pytester.runpytest("--strict-markers", "--harness-artifacts", str(artifacts))
    run.assert_outcomes(passed=1, failed=1)
    pages = sorted(artifacts.rglob("report.html"))
    assert [p.relative_to(artifacts).parts[0::2] for p in pages] == [("failures", "failover0")]
    assert "test_fails" in str(pages[0]) and pages[0].read_text().count("<svg ") == 4
    run.stdout.fnmatch_lines(["*failover report*", f"*{pages[0]}*"])
