"""matrix.html offline, from the committed matrix.json files: every cell coloured by its
outcome, every difference linked to its explanation, outcomes it does not know shown by
name, and ``harness matrix-html``'s one-line errors. (In Chromium: test_pages_in_chromium.)"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.experiments.matrix.html import (
    UPSTREAM_COMMIT,
    NotAMatrix,
    anchor,
    kind_of,
    render,
    write_html,
)

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ROOT / "docs" / "matrix" / "matrix.json"
MATRICES = [LOCAL, ROOT / "docs" / "matrix" / "docker" / "matrix.json"]


class Page(HTMLParser):
    """The grid's cells (attributes, link), every id, every in-page link, explanations."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict[str, str | None]] = []
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.explained_by: list[str] = []  # hrefs of the differences' explanation links
        self.external: list[str] = []
        self.tags: list[str] = []
        self._cell: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if a.get("id"):
            self.ids.add(str(a["id"]))
        if tag == "td" and "data-check" in a:
            self._cell = a
            self.cells.append(a)
        if tag == "a" and a.get("href"):
            href = str(a["href"])
            (self.links if href.startswith("#") else self.external).append(href)
            if a.get("class") == "explained-by":
                self.explained_by.append(href)
            if self._cell is not None:
                self._cell["link"] = href

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None


def page_of(matrix: dict) -> tuple[str, Page]:
    html = render(matrix)
    p = Page()
    p.feed(html)
    return html, p


@pytest.fixture(scope="module")
def local() -> dict:
    return json.loads(LOCAL.read_text())


@pytest.mark.parametrize("path", MATRICES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_cell_is_coloured_as_the_json_counts_it(path: Path) -> None:
    matrix = json.loads(path.read_text())
    _, page = page_of(matrix)
    pairs, checks = len(matrix["pairs"]), len(matrix["checks"])
    assert len(page.cells) == pairs * checks == matrix["summary"]["cells"]
    kinds = Counter(c["data-kind"] for c in page.cells)
    assert kinds == Counter(kind_of(r) for r in matrix["results"])
    s = matrix["summary"]
    assert sum(kinds.values()) == s["cells"] and kinds["same"] == s["same"]
    assert all(c["class"] == c["data-kind"] for c in page.cells)


def test_each_difference_links_to_its_explanation(local: dict) -> None:
    html, page = page_of(local)
    differing = [r for r in local["results"] if kind_of(r) == "explained"]
    # every differing cell links to its own section, which exists
    linked = {c["link"] for c in page.cells if c["data-kind"] == "explained"}
    assert linked == {"#" + anchor("cell", r["check"], r["primary"], r["backup"]) for r in differing}
    assert {link[1:] for link in page.links} <= page.ids  # no in-page link leads nowhere
    # one explanation link per explained difference (an unexplained cell's explained
    # keys included), to the entry of its commit
    diffs = [d for r in local["results"] if kind_of(r) in ("explained", "unexplained")
             for d in r["differences"] if d["explained_by"]]
    assert page.explained_by == ["#" + anchor("known", d["explained_by"]) for d in diffs]
    commit_of = {d["explained_by"]: d.get("commit") or d["explained_by"] for d in diffs}
    for name, commit in commit_of.items():
        entry = html[html.index(f'id="{anchor("known", name)}"'):]
        entry = entry[:entry.index("</div>")]
        assert UPSTREAM_COMMIT.format(commit) in entry
        for why in {d["why"] for d in diffs if d["explained_by"] == name}:
            escaped = (why.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                       .replace("'", "&#39;").replace('"', "&#34;"))
            assert escaped in entry
    assert set(page.external) == {UPSTREAM_COMMIT.format(c) for c in commit_of.values()}


def test_outcomes_it_does_not_know_are_shown_by_name(local: dict) -> None:
    matrix = copy.deepcopy(local)
    first, second, third = matrix["results"][:3]
    first["outcome"] = "flaky"
    second.update(outcome="differs", explained_by=None,
                  differences=[{"key": "backup.h_id", "observed": 1, "baseline": 2}])
    third.update(outcome="error", observed={"error": "backup died: SIGSEGV"})
    del matrix["results"][3]  # that cell is now missing: n/a
    html, page = page_of(matrix)
    by_cell = {(c["data-check"], c["data-pair"]): c for c in page.cells}
    assert by_cell[(first["check"], first["primary"])]["data-kind"] == "other"
    assert by_cell[(first["check"], first["primary"])]["data-outcome"] == "flaky"
    assert re.search(r'<span class="swatch other">flaky</span>', html)
    assert by_cell[(second["check"], second["primary"])]["data-kind"] == "unexplained"
    assert by_cell[(third["check"], third["primary"])]["data-kind"] == "error"
    assert "backup died: SIGSEGV" in html and '<span class="unexpl-text">unexplained</span>' in html
    assert Counter(c["data-kind"] for c in page.cells)["na"] == 1
    assert kind_of({"outcome": "n/a"}) == "na" and kind_of({}) == "other"


def test_unstable_and_not_run_cells_have_their_colour_and_their_words(local: dict) -> None:
    matrix = copy.deepcopy(local)
    first, second = matrix["results"][:2]
    first.update(outcome="unstable", seen=[{"times": 2, "observed": {}}, {"times": 1, "observed": {}}],
                 differences=[{"key": "primary.stats.delete_sent", "observed": [3, 6], "baseline": 3,
                               "explained_by": None}])
    second.update(outcome="not run", observed={"not run": "the docker backend cannot pause a node"})
    html, page = page_of(matrix)
    by_cell = {(c["data-check"], c["data-pair"]): c for c in page.cells}
    assert by_cell[(first["check"], first["primary"])]["data-kind"] == "unstable"
    assert by_cell[(second["check"], second["primary"])]["data-kind"] == "notrun"
    assert "took each of these values in the repeats" in html and "<code>[3, 6]</code>" in html
    assert "the docker backend cannot pause a node" in html
    assert by_cell[(second["check"], second["primary"])]["link"][1:] in page.ids


def test_the_page_loads_nothing_from_elsewhere(local: dict) -> None:
    html, page = page_of(local)
    assert not {"script", "link", "img", "iframe", "object", "embed"} & set(page.tags)
    assert not re.search(r"url\(|@import|src=", html)


@pytest.mark.parametrize("bad", [{}, {"results": {}}, {"results": [1]}, []])
def test_what_is_no_matrix_is_refused(bad: object) -> None:
    with pytest.raises(NotAMatrix):
        render(bad)  # type: ignore[arg-type]


def test_the_command_writes_the_page_or_says_why_not(tmp_path: Path, capsys) -> None:
    from harness.cli import main

    assert main(["matrix-html", str(LOCAL), "--out", str(tmp_path / "out")]) == 0
    assert capsys.readouterr().err == f"matrix-html: {tmp_path / 'out' / 'matrix.html'}\n"
    assert (tmp_path / "out" / "matrix.html").read_text() == render(json.loads(LOCAL.read_text()))
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "list.json").write_text("[]")
    for args, line in (
            ([str(tmp_path / "none.json")], f"{tmp_path / 'none.json'}: no such file"),
            ([str(tmp_path / "bad.json")], f"{tmp_path / 'bad.json'}: not JSON (Expecting property "
                                           "name enclosed in double quotes at line 1)"),
            ([str(tmp_path / "list.json")], f"{tmp_path / 'list.json'}: not a matrix.json object: "
                                            "it has no list of results"),
            ([str(LOCAL), "--out", str(tmp_path / "bad.json")], f"--out {tmp_path / 'bad.json'}: "
                                                                "not a directory")):
        assert main(["matrix-html", *args]) == 2
        assert capsys.readouterr().err == f"harness: {line}\n"


def test_write_html_takes_the_object_and_a_folder(local: dict, tmp_path: Path) -> None:
    path = write_html(local, tmp_path / "a" / "b")
    assert path == tmp_path / "a" / "b" / "matrix.html" and path.read_text().startswith("<!DOCTYPE html>")
