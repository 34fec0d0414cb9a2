"""`harness image build --version/--source/--unverified/--label`: which images, from what,
checked how (offline: the engine is never asked, no image is built)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import pytest

import harness.backends.images.build as images_build
import harness.backends.images.source as images_source
from harness import cli
from harness.backends import images
from harness.backends.docker import image_info as docker_node
from harness.backends.images import ImageError
from harness.backends.images.source import OpenSIPSBuild, plan_opensips_builds
from harness.base import releases
from harness.cluster.interfaces import Release

MAKEFILE_DEFS = """\
# main binary name
MAIN_NAME=opensips

#version number
VERSION = 1
PATCHLEVEL = 11
SUBLEVEL = 11
EXTRAVERSION =

RELEASE=$(VERSION).$(PATCHLEVEL).$(SUBLEVEL)$(EXTRAVERSION)
VERSIONTYPE = $(shell if [ -d ".svn" ]; then echo svn; fi)
"""


def _tree(root: Path, version: str = "1.11.11") -> Path:
    major, minor, sub = version.split(".")
    (root / "modules" / "dialog").mkdir(parents=True)
    (root / "Makefile").write_text("all:\n")
    (root / "Makefile.defs").write_text(
        MAKEFILE_DEFS.replace("PATCHLEVEL = 11", f"PATCHLEVEL = {minor}")
        .replace("SUBLEVEL = 11", f"SUBLEVEL = {sub}").replace("VERSION = 1", f"VERSION = {major}"))
    (root / "bin_interface.c").write_text("int x;\n")
    return root


# -- Makefile.defs ------------------------------------------------------------------------

def test_makefile_defs_version() -> None:
    assert images_source.makefile_defs_version(MAKEFILE_DEFS) == "1.11.11"
    assert images_source.makefile_defs_version("VERSION=1\nPATCHLEVEL=10\nSUBLEVEL=2\n") == "1.10.2"
    assert images_source.makefile_defs_version(
        "VERSION = 1\nPATCHLEVEL = 10\nSUBLEVEL = 5\nEXTRAVERSION = -dev # local\n") == "1.10.5"
    # upstream's tag 1.10.0 is "beta" by its Makefile.defs, and still release 1.10.0
    assert images_source.makefile_defs_version(
        "VERSION = 1\nPATCHLEVEL = 10\nSUBLEVEL = 0\nEXTRAVERSION = beta\n") == "1.10.0"

    # 2.x names the numbers otherwise (2.1.5's Makefile.defs, with its VERSIONTYPE line)
    assert images_source.makefile_defs_version(
        "VERSION_MAJOR = 2\nVERSION_MINOR = 1\nVERSION_SUBMINOR = 5\nVERSION_BUILD =\n"
        "VERSIONTYPE = $(shell if [ -d \".svn\" ]; then echo svn; fi)\n") == "2.1.5"


def test_makefile_defs_without_a_version_is_one_line() -> None:
    with pytest.raises(ImageError) as info:
        images_source.makefile_defs_version("VERSION = 1\nPATCHLEVEL = 10\n", "src/Makefile.defs")
    assert str(info.value) == ("src/Makefile.defs has no numeric SUBLEVEL line: cannot tell which "
                               "release the tree is (pass --version)")
    with pytest.raises(ImageError, match="no numeric VERSION_SUBMINOR line"):
        images_source.makefile_defs_version("VERSION_MAJOR = 2\nVERSION_MINOR = 1\n")


def test_source_version_reads_the_trees_makefile_defs(tmp_path: Path) -> None:
    assert images_source.source_version(_tree(tmp_path / "s", "1.10.3")) == "1.10.3"
    with pytest.raises(ImageError, match="cannot read"):
        images_source.source_version(tmp_path)


# -- which releases -----------------------------------------------------------------------

def test_default_is_the_baseline_image_as_today() -> None:
    (build,) = plan_opensips_builds()
    assert build.tag == images.OPENSIPS_IMAGE == "opensips-bin-harness/opensips:1.10.5"
    assert build.verified and build.source is None
    assert build.buildargs == {
        "OPENSIPS_VERSION": "1.10.5",
        "OPENSIPS_COMMIT": "5229dcba3c500d6a9fcafa88672b4b2ca70c078e",
        "OPENSIPS_TREE": "72f51f009d8c2b5809bc83c6e88cbd216a70b582",
        "OPENSIPS_URL": "https://github.com/OpenSIPS/opensips/archive/refs/tags/1.10.5.tar.gz",
        "OPENSIPS_VERIFIED": "true",
    }


@pytest.mark.parametrize("version", releases.known_versions())
def test_every_pinned_release_gets_its_pin_and_tag(version: str) -> None:
    (build,) = plan_opensips_builds([version])
    commit, tree = releases.UPSTREAM[version]
    assert build.tag == f"opensips-bin-harness/opensips:{version}"
    assert (build.buildargs["OPENSIPS_COMMIT"], build.tree) == (commit, tree)
    assert build.buildargs["OPENSIPS_URL"].endswith(f"/refs/tags/{version}.tar.gz")


@pytest.mark.parametrize(("spec", "expected"), [
    (["1.11.11"], ["1.11.11"]),
    (["1.10.4,1.10.0", "1.11.11"], ["1.10.0", "1.10.4", "1.11.11"]),
    (["1.11.11", "1.11.11"], ["1.11.11"]),
    (["1.10"], [f"1.10.{n}" for n in range(6)]),
    (["1.11"], [f"1.11.{n}" for n in range(12)]),
    (["2.1"], [f"2.1.{n}" for n in range(6)]),
    (["2.1.5,1.11.11"], ["1.11.11", "2.1.5"]),
    (["all"], releases.known_versions()),
])
def test_version_specs(spec: list[str], expected: list[str]) -> None:
    assert [b.version for b in plan_opensips_builds(spec)] == expected


def test_unknown_version_is_one_line_listing_the_pinned_ones() -> None:
    with pytest.raises(ImageError) as info:
        plan_opensips_builds(["1.10.9"])
    text = str(info.value)
    assert "\n" not in text and "no pinned upstream release '1.10.9'" in text
    assert "1.10.0, 1.10.1" in text and "1.11.11, 2.1.0" in text and text.endswith("2.1.5)")
    with pytest.raises(ImageError, match="not a release number"):
        plan_opensips_builds(["latest"])
    with pytest.raises(ImageError, match="no pinned release on branch 1.12"):
        plan_opensips_builds(["1.12"])


# -- --source -----------------------------------------------------------------------------

def test_source_without_version_takes_the_makefile_defs_version_and_says_so(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    (build,) = plan_opensips_builds(None, src)
    assert (build.version, build.tag, build.verified, build.source) == (
        "1.11.11", "opensips-bin-harness/opensips:1.11.11", True, src)
    assert build.tree == releases.UPSTREAM["1.11.11"][1]
    assert build.note == f"no --version given: {src}/Makefile.defs says 1.11.11"


def test_source_with_its_version(tmp_path: Path) -> None:
    (build,) = plan_opensips_builds(["1.11.11"], _tree(tmp_path / "src"))
    assert build.note is None and build.verified and build.version == "1.11.11"


def test_source_of_another_release_is_refused_in_one_line(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", "1.10.5")
    with pytest.raises(ImageError) as info:
        plan_opensips_builds(["1.11.11"], src)
    assert str(info.value) == (f"{src} is 1.10.5 by its Makefile.defs, not 1.11.11: pass --version "
                               "1.10.5, or --unverified to build the tree as it is")


def test_source_of_an_unpinned_release_points_at_unverified(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", "1.12.0")
    with pytest.raises(ImageError, match=r"no pinned upstream release '1.12.0'.*pass --unverified"):
        plan_opensips_builds(None, src)


def test_one_source_tree_is_one_release(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="one tree: give it one --version, not 2"):
        plan_opensips_builds(["1.10.5,1.11.11"], _tree(tmp_path / "src"))


def test_a_source_that_is_no_opensips_tree(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match="does not look like an OpenSIPS source tree"):
        plan_opensips_builds(None, tmp_path)


# -- --unverified / --label ---------------------------------------------------------------

def test_unverified_default_name_and_no_pin(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src", "1.10.5")
    (build,) = plan_opensips_builds(None, src, unverified=True)
    assert build.tag == "opensips-bin-harness/opensips:1.10.5-unverified"
    assert not build.verified and build.version == "1.10.5"
    assert build.buildargs["OPENSIPS_VERIFIED"] == "false" and build.tree == ""


def test_unverified_with_a_label_and_an_unpinned_version(tmp_path: Path) -> None:
    (build,) = plan_opensips_builds(None, _tree(tmp_path / "src", "1.12.0"), unverified=True,
                                    label="mine_2024.1")
    assert build.tag == "opensips-bin-harness/opensips:mine_2024.1" and build.version == "1.12.0"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"label": "x"}, "--label names an unverified build"),
    ({"unverified": True}, "--unverified needs --source DIR"),
])
def test_unverified_options_need_their_partners(kwargs: dict, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        plan_opensips_builds(None, None, **kwargs)


@pytest.mark.parametrize(("label", "message"), [
    ("a/b", "is not a docker tag"),
    ("-x", "is not a docker tag"),
    ("1.10.5", "is a release's name"),
])
def test_bad_labels(tmp_path: Path, label: str, message: str) -> None:
    with pytest.raises(ImageError, match=message):
        plan_opensips_builds(None, _tree(tmp_path / "src"), unverified=True, label=label)


# -- the CLI's plumbing -------------------------------------------------------------------

def test_cli_passes_every_option(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                 tmp_path: Path) -> None:
    seen: list[tuple] = []

    def fake(source, base, progress, **kw):
        seen.append((source, base, kw))
        return {"opensips-bin-harness/opensips:x": "sha256:1"}

    monkeypatch.setattr("harness.cli.image.build_images", fake)
    assert cli.main(["image", "build", "--version", "1.10.0,1.10.1", "--version", "1.11.11",
                     "--only", "opensips"]) == 0
    assert cli.main(["image", "build", "--source", str(tmp_path), "--unverified", "--label", "x"]) == 0
    assert cli.main(["image", "build"]) == 0
    assert seen == [
        (None, None, {"which": ("opensips",), "no_cache": False,
                      "versions": ["1.10.0,1.10.1", "1.11.11"], "unverified": False, "label": None}),
        (str(tmp_path), None, {"which": ("opensips", "sipp"), "no_cache": False, "versions": None,
                      "unverified": True, "label": "x"}),
        (None, None, {"which": ("opensips", "sipp"), "no_cache": False, "versions": None,
                      "unverified": False, "label": None}),
    ]
    assert capsys.readouterr().out.count("built opensips-bin-harness/opensips:x") == 3


def test_cli_unknown_version_exits_non_zero_in_one_line_before_the_engine(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(images_build, "client", lambda: pytest.fail("engine asked"))
    assert cli.main(["image", "build", "--version", "1.10.9"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("harness: no pinned upstream release '1.10.9' (pinned: 1.10.0, ")


def test_cli_builds_each_release_in_turn(monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Through the real build_images: each plan reaches the engine with its own arguments."""
    calls: list[tuple[str, dict[str, str], list[str]]] = []

    class Images:
        def get(self, name):
            return SimpleNamespace(id="sha256:" + "0" * 64)

    fake_client = SimpleNamespace(images=Images(), close=lambda: None)

    def fake_build(client, ctx, tag, buildargs, progress, *, no_cache=False):
        calls.append((tag, buildargs, sorted(p.name for p in ctx.iterdir())))
        return "sha256:" + "1" * 64

    monkeypatch.setattr(images_build, "client", lambda: fake_client)
    monkeypatch.setattr(images_build, "_docker_build", fake_build)
    assert cli.main(["image", "build", "--version", "1.11", "--version", "1.10.5",
                     "--only", "opensips"]) == 0
    tags = [tag for tag, _, _ in calls]
    assert tags == [images.opensips_image(v) for v in ["1.10.5", *(f"1.11.{n}" for n in range(12))]]
    for tag, args, files in calls:
        version = tag.rsplit(":", 1)[1]
        assert args["OPENSIPS_VERSION"] == version and args["BASE_IMAGE"] == "debian:bookworm-slim"
        assert args["OPENSIPS_TREE"] == releases.UPSTREAM[version][1]
        assert "Dockerfile" in files and "opensips-src" in files
    out = capsys.readouterr().out
    assert "== [1/13] building opensips-bin-harness/opensips:1.10.5 (1.10.5, verified against " \
           "the pinned tree)" in out
    assert "== [13/13] opensips-bin-harness/opensips:1.11.11 built" in out


# -- the tree check before the build ------------------------------------------------------

def _git_tree_of(directory: Path) -> str:
    env = {"GIT_DIR": str(directory.parent / "probe.git"), "GIT_WORK_TREE": str(directory),
           "GIT_INDEX_FILE": str(directory.parent / "probe.index"),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(directory.parent)}
    subprocess.run(["git", "init", "-q"], env=env, check=True)
    subprocess.run(["git", "add", "-A", "-f"], env=env, check=True)
    return subprocess.run(["git", "write-tree"], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def git() -> None:
    if shutil.which("git") is None:
        pytest.skip("git not installed")


def _plan(src: Path, tree: str, verified: bool = True) -> OpenSIPSBuild:
    return OpenSIPSBuild("1.11.11", images.opensips_image("1.11.11"), verified, src,
                         {"OPENSIPS_TREE": tree if verified else ""})


def test_check_source_accepts_the_pinned_tree(tmp_path: Path, git: None) -> None:
    src = _tree(tmp_path / "src")
    said: list[str] = []
    images_source.check_source(src, _plan(src, _git_tree_of(src)), said.append)
    assert said and said[-1].startswith("opensips source verified: git tree ")


def test_check_source_refuses_one_changed_file_in_one_line(tmp_path: Path, git: None) -> None:
    src = _tree(tmp_path / "src")
    pinned = _git_tree_of(src)
    (src / "bin_interface.c").write_text("int x = 1;\n")
    with pytest.raises(ImageError) as info:
        images_source.check_source(src, _plan(src, pinned), lambda line: None, original=Path("/my/tree"))
    text = str(info.value)
    assert "\n" not in text
    assert text.startswith("/my/tree is not upstream 1.11.11 (OpenSIPS source tree is ")
    assert text.endswith(f", pinned {pinned}): refused; pass --unverified [--label NAME] to build "
                         "a patched tree as it is")


def test_check_source_unverified_records_the_tree(tmp_path: Path, git: None) -> None:
    src = _tree(tmp_path / "src")
    (src / "bin_interface.c").write_text("int patched;\n")
    said: list[str] = []
    images_source.check_source(src, _plan(src, "", verified=False), said.append)
    assert said[-1].startswith("opensips source NOT verified (unverified build): git tree ")


def test_verify_tree_keeps_tracked_html_that_gitignore_ignores(tmp_path: Path, git: None) -> None:
    """1.11's .gitignore says *.html, yet its tags track examples/web_im/*.html."""
    src = _tree(tmp_path / "src")
    (src / ".gitignore").write_text("*.o\n*.html\n/opensips\n")
    (src / "examples").mkdir()
    (src / "examples" / "send_im.html").write_text("<html/>\n")
    pinned = _git_tree_of(src)  # every file: what the tag holds
    script = images.CONTAINERS_DIR / "opensips" / "verify-tree.sh"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    pristine = tmp_path / "pristine"
    shutil.copytree(src, pristine)
    ok = subprocess.run(["sh", str(script), str(pristine), pinned, "true"], capture_output=True,
                        text=True, env=clean)
    assert ok.returncode == 0, ok.stderr
    (src / "main.o").write_bytes(b"\0")  # built in place: reading 2, html kept
    (src / "opensips").write_bytes(b"\0")
    ok = subprocess.run(["sh", str(script), str(src), pinned, "true"], capture_output=True,
                        text=True, env=clean)
    assert ok.returncode == 0, ok.stderr
    assert (src / "examples" / "send_im.html").is_file() and not (src / "main.o").exists()
    bad = subprocess.run(["sh", str(script), str(src), pinned, "maybe"], capture_output=True,
                         text=True, env=clean)
    assert bad.returncode == 2 and "VERIFIED must be true or false" in bad.stderr


# -- what an image is, for reports --------------------------------------------------------

@pytest.mark.parametrize(("image", "label"), [
    ("opensips-bin-harness/opensips:1.11.11", "1.11.11"),
    ("opensips-bin-harness/opensips:mine", "mine"),
    ("registry:5000/team/opensips", "registry:5000/team/opensips"),
    ("opensips", "opensips"),
])
def test_image_label(image: str, label: str) -> None:
    assert docker_node.image_label(image) == label


@pytest.mark.parametrize(("labels", "verified"), [
    ({images.VERIFIED_LABEL: "true", images.VERSION_LABEL: "1.11.11"}, True),
    ({images.VERIFIED_LABEL: "false", images.VERSION_LABEL: "1.11.11"}, False),
    (None, False),  # an image the user built some other way
])
def test_image_build_reads_the_label_and_asks_the_binary(monkeypatch: pytest.MonkeyPatch,
                                                         labels: dict | None, verified: bool) -> None:
    fake = SimpleNamespace(images=SimpleNamespace(get=lambda name: SimpleNamespace(labels=labels)))
    monkeypatch.setattr(docker_node, "client", lambda: fake)
    monkeypatch.setattr(docker_node, "image_release",
                        lambda image: Release("1.11.11", "opensips 1.11.11-notls", image, "sha256:x"))
    build = docker_node.image_build.__wrapped__("opensips-bin-harness/opensips:x")
    assert build == releases.Build("x", "opensips-bin-harness/opensips:x", "1.11.11", verified)
