"""Offline checks of the image recipes and of harness.backends.images' plumbing."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import harness.backends.images.base_image as images_base_image
import harness.backends.images.build as images_build
import harness.backends.images.source as images_source
from harness import cli
from harness.backends import images

ROOT = Path(__file__).resolve().parents[2]
OPENSIPS = ROOT / "containers" / "opensips"
SIPP = ROOT / "containers" / "sipp"

#: git tree and commit of upstream tag 1.10.5 (`git rev-parse 1.10.5^{tree}`)
TAG_TREE = "72f51f009d8c2b5809bc83c6e88cbd216a70b582"
TAG_COMMIT = "5229dcba3c500d6a9fcafa88672b4b2ca70c078e"


def _arg(dockerfile: str, name: str) -> str:
    m = re.search(rf"^ARG {name}=(.*)$", dockerfile, re.MULTILINE)
    assert m, f"ARG {name} missing"
    return m.group(1).strip().strip('"')


def test_opensips_dockerfile_pins_and_verifies_the_release() -> None:
    text = (OPENSIPS / "Dockerfile").read_text()
    assert _arg(text, "BASE_IMAGE") == "debian:bookworm-slim"
    assert _arg(text, "OPENSIPS_TREE") == TAG_TREE
    assert _arg(text, "OPENSIPS_COMMIT") == TAG_COMMIT
    assert _arg(text, "OPENSIPS_URL") == (
        "https://github.com/OpenSIPS/opensips/archive/refs/tags/1.10.5.tar.gz")
    assert _arg(text, "CC_EXTRA_OPTS") == "-fcommon -fgnu89-inline"
    assert "verify-tree.sh" in text and '"${OPENSIPS_TREE}" "${OPENSIPS_VERIFIED}"' in text
    runtime = text[text.rindex("FROM "):]
    # the label says what the build stage checked: the same argument drives both
    assert _arg(text, "OPENSIPS_VERIFIED") == "true" and "ARG OPENSIPS_VERIFIED" in runtime
    assert 'org.opensips-bin-harness.verified="${OPENSIPS_VERIFIED}"' in runtime
    assert 'org.opensips-bin-harness.opensips-version="${OPENSIPS_VERSION}"' in runtime
    assert images.VERIFIED_LABEL in runtime and images.VERSION_LABEL in runtime
    # BASE_IMAGE must be declared before the first FROM to be usable in FROM lines
    assert text.index("ARG BASE_IMAGE") < text.index("FROM ")
    assert text.count("FROM ${BASE_IMAGE}") == 2  # multi-stage: build + runtime


def test_runtime_has_the_tools_and_runs_in_the_foreground() -> None:
    text = (OPENSIPS / "Dockerfile").read_text()
    runtime = text[text.rindex("FROM "):]
    for pkg in ("iproute2", "iputils-arping", "tcpdump"):
        assert pkg in runtime
    cmd = re.search(r"^CMD (.*)$", runtime, re.MULTILINE)
    assert cmd and '"-F"' in cmd.group(1) and '"-E"' in cmd.group(1)
    assert '"-D"' not in cmd.group(1)  # 1.10's no-fork mode starts no BIN receivers
    assert "gcc" not in runtime  # compilers stay in the build stage


def test_no_buildkit_only_syntax() -> None:
    for df in (OPENSIPS / "Dockerfile", SIPP / "Dockerfile"):
        text = df.read_text()
        assert "--mount" not in text and "<<" not in text and "# syntax" not in text


def test_sipp_dockerfile() -> None:
    text = (SIPP / "Dockerfile").read_text()
    assert _arg(text, "BASE_IMAGE") == "debian:bookworm-slim"
    for pkg in ("sip-tester", "iproute2", "tcpdump"):
        assert pkg in text


def test_scripts_are_executable_posix_sh() -> None:
    for script in ("fetch-source.sh", "verify-tree.sh", "build-opensips.sh", "entrypoint.sh"):
        path = OPENSIPS / script
        assert path.stat().st_mode & 0o111, f"{script} not executable"
        assert path.read_text().startswith("#!/bin/sh\n")
        assert "set -eu" in path.read_text()


def test_no_source_or_machine_paths_in_recipes() -> None:
    for path in [*OPENSIPS.iterdir(), *SIPP.iterdir()]:
        if path.is_file():
            text = path.read_text()
            # no path of the machine the recipes were written on
            assert not re.search(r"/(opt|work)/", text), path
    assert not (OPENSIPS / "opensips-src").exists() or not any((OPENSIPS / "opensips-src").iterdir())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n", "http://mirror.example/debian"),
        ("deb [arch=amd64] http://m.example/debian bookworm main\n", "http://m.example/debian"),
        ("URIs: http://deb.debian.org/debian-security\n", images.DEFAULT_MIRROR),
        ("deb https://deb.nodesource.com/node_20.x nodistro main\n", images.DEFAULT_MIRROR),
    ],
)
def test_host_mirror(tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "x.sources"
    f.write_text(text)
    assert images_base_image.host_mirror([f]) == expected


def _fake_source(root: Path) -> Path:
    (root / "modules" / "dialog").mkdir(parents=True)
    (root / "Makefile").write_text("all:\n")
    (root / "Makefile.defs").write_text("VERSION = 1\nPATCHLEVEL = 10\nSUBLEVEL = 5\nEXTRAVERSION =\n")
    (root / "bin_interface.c").write_text("int x;\n")
    (root / "action.o").write_bytes(b"\0")
    (root / ".git").mkdir()
    return root


def test_stage_context_with_local_source(tmp_path: Path) -> None:
    src = _fake_source(tmp_path / "src")
    assert images_source.looks_like_opensips_source(src) is None
    ctx = images_source.stage_context("opensips", src, tmp_path / "ctx")
    assert (ctx / "Dockerfile").is_file()
    assert (ctx / "opensips-src" / "bin_interface.c").is_file()
    assert not (ctx / "opensips-src" / "action.o").exists()  # build junk not shipped
    assert not (ctx / "opensips-src" / ".git").exists()


def test_stage_context_without_source_has_empty_dir(tmp_path: Path) -> None:
    ctx = images_source.stage_context("opensips", None, tmp_path)
    assert (ctx / "opensips-src").is_dir() and not any((ctx / "opensips-src").iterdir())


def test_not_a_source_tree(tmp_path: Path) -> None:
    assert "does not look like" in (images_source.looks_like_opensips_source(tmp_path) or "")
    assert "not a directory" in (images_source.looks_like_opensips_source(tmp_path / "nope") or "")


def test_image_build_reports_one_line_when_engine_is_unreachable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    pytest.importorskip("docker")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no.sock")
    assert cli.main(["image", "build"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("harness: docker engine not reachable")
    assert "Traceback" not in err[0]


def test_image_build_rejects_a_bad_source_dir(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    called = []
    monkeypatch.setattr(images_build, "client", lambda: called.append(1))
    assert cli.main(["image", "build", "--source", str(tmp_path)]) == 1
    assert "does not look like an OpenSIPS source tree" in capsys.readouterr().err
    assert not called  # checked before asking the engine


def _git_tree_of(directory: Path) -> str:
    """The tree id git gives a directory (what verify-tree.sh pins)."""
    import subprocess

    env = {"GIT_DIR": str(directory.parent / "probe.git"), "GIT_WORK_TREE": str(directory),
           "PATH": "/usr/bin:/bin:/usr/local/bin", "HOME": str(directory.parent)}
    subprocess.run(["git", "init", "-q"], env=env, check=True)
    subprocess.run(["git", "add", "-A"], env=env, check=True)
    return subprocess.run(["git", "write-tree"], env=env, check=True, capture_output=True,
                          text=True).stdout.strip()


def test_verify_tree_accepts_the_pinned_tree_and_cleans_build_junk(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("git") is None:
        pytest.skip("git not installed")
    tree = tmp_path / "src"
    (tree / "modules").mkdir(parents=True)
    (tree / "Makefile").write_text("all:\n")
    (tree / "modules" / "x.c").write_text("int x;\n")
    (tree / ".gitignore").write_text("*.o\n/opensips\n")
    pinned = _git_tree_of(tree)
    (tree / "modules" / "x.o").write_bytes(b"\0")  # stale build output in a local tree
    (tree / "opensips").write_bytes(b"\0")
    script = OPENSIPS / "verify-tree.sh"
    # Run with the caller's GIT_DIR pointing at a decoy repository: the script must
    # ignore it, or `git init` re-initialises the decoy (and marks it bare).
    # (Run from `git rebase --exec`, this test inherits git's own GIT_* variables.)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    decoy = tmp_path / "decoy.git"
    subprocess.run(["git", "init", "-q", "--bare", str(decoy)], check=True, env=clean)
    subprocess.run(["git", "--git-dir", str(decoy), "config", "core.bare", "false"], check=True,
                   env=clean)
    env = {**clean, "GIT_DIR": str(decoy), "GIT_INDEX_FILE": str(tmp_path / "decoy.index")}
    ok = subprocess.run(["sh", str(script), str(tree), pinned], capture_output=True, text=True,
                        env=env)
    assert ok.returncode == 0, ok.stderr
    assert "verified" in ok.stdout
    assert not (tree / "modules" / "x.o").exists() and not (tree / "opensips").exists()
    assert not (tree / ".git").exists()
    decoy_bare = subprocess.run(["git", "--git-dir", str(decoy), "config", "core.bare"],
                                capture_output=True, text=True, env=clean).stdout.strip()
    assert not (tmp_path / "decoy.index").exists()
    assert decoy_bare == "false"
    (tree / "Makefile").write_text("all:\n\techo tampered\n")
    bad = subprocess.run(["sh", str(script), str(tree), pinned], capture_output=True, text=True)
    assert bad.returncode == 1 and "pinned" in bad.stderr
