"""harness bench link, offline: the points it runs, the table, the JSON, the curve, the
exit status; each failover faked (the live runs are the README's figures)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness import cli
from harness.base.errors import UsageError
from harness.experiments.bench import link as bench
from harness.experiments.bench.plot import plot_link
from harness.experiments.failover import FailoverError


def fake_result(lost: int, predicted: int, unexpected: int = 0) -> SimpleNamespace:
    causes = {f"c{i}": ["#1 created: drop", "#2 updated: drop"] for i in range(lost - 1)}
    if lost:
        causes["lone"] = ["#9 updated: drop", "the primary sent no created (...)"]
    return SimpleNamespace(lost=lost, predicted_lost=predicted, unexpected_lost=["x"] * unexpected,
                           unexpected_survivors=[], lost_causes=causes, service_gap_ms=12.5,
                           prediction_figures={"relay_sent": 1990, "link_delay_ms_p50": 0.03,
                                               "link_delay_ms_p99": 1.2})


@pytest.fixture
def faked(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    runs: list[dict[str, object]] = []

    @contextlib.contextmanager
    def start(kind, settings, roles, **kw):
        runs.append({"link": kw["link"]["primary>backup"].describe()})
        yield SimpleNamespace(cluster="cluster", peer="peer", links={"primary>backup": "relay"})

    def run_failover(cluster, calls, **kw):
        assert kw["link"] == "relay" and kw["witness"] == "peer"
        text = runs[-1]["link"]
        if text.startswith("loss=0.05"):
            return fake_result(4, 4)
        if text.startswith("reorder"):
            raise FailoverError("only 3 of 10 calls were set up")
        return fake_result(0, 0)

    monkeypatch.setattr(bench.live, "start", start)
    monkeypatch.setattr(bench, "run_failover", run_failover)
    return runs


def test_every_point_is_a_failover_through_its_own_link(faked, tmp_path: Path) -> None:
    kind = SimpleNamespace(name="local")
    lines: list[str] = []
    report = bench.run_link_bench(kind, None, calls=10, seed=7,  # type: ignore[arg-type]
                                  axes={"loss": [0.0, 0.05], "reorder": [0.2], "delay": [20.0]},
                                  plot=tmp_path / "curve.png", progress=lines.append)
    assert [r["link"] for r in faked] == ["seed=7", "loss=0.05,seed=7", "reorder=0.2,seed=7",
                                          "delay=20±10,seed=7"]
    loss = report.points[1]
    assert (loss.lost, loss.predicted_lost, loss.lost_both, loss.lost_lone_updated) == (4, 4, 3, 1)
    assert loss.agrees and loss.percent == 5.0 and loss.relay_sent == 1990
    assert report.points[2].error == "only 3 of 10 calls were set up" and not report.points[2].agrees
    assert lines[0].startswith("point 1/4: 10 calls through a link with seed=7")
    table = report.table()
    assert "loss=0.05,seed=7" in table and "failed: only 3 of 10" in table
    assert json.loads(report.to_json())["points"][1]["lost"] == 4
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_svg_curve_marks_a_missed_prediction(tmp_path: Path) -> None:
    report = bench.LinkReport("local", 1000, 7, points=[
        bench.LinkPoint("loss", 0.0, "seed=7", 1000, 0, 0, 0, 0, 0, 0),
        bench.LinkPoint("loss", 0.05, "loss=0.05,seed=7", 1000, 5, 4, 1, 0, 4, 1)])
    path = plot_link(report, tmp_path / "c.svg")
    text = path.read_text()
    assert text.lstrip().startswith("<?xml") and "prediction missed" in text


def test_point_values_are_percent_or_ms() -> None:
    assert bench.point_values("0,0.1,5", "--loss") == [0.0, 0.001, 0.05]
    assert bench.point_values("5,20", "--delay") == [5.0, 20.0]
    assert bench.point_values("", "--reorder") == []
    for text in ("x", "-1", "101"):
        with pytest.raises(UsageError):
            bench.point_values(text, "--loss")


@pytest.mark.parametrize("argv, message", [
    (["--loss", "", "--reorder", "", "--delay", ""], "name no point"),
    (["--plot", "curve.pdf"], "--plot curve.pdf: a .png or .svg file"),
    (["--calls", "0"], "--calls must be at least 1"),
    (["--loss", "abc"], "--loss must be comma-separated numbers"),
])
def test_bad_arguments_are_one_line_and_exit_2(capsys, argv: list[str], message: str) -> None:
    assert cli.main(["bench", "link", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
