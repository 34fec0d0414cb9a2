"""The pytest plugin tested like a plugin: inner pytest sessions via pytester."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]


LIVE_TEST = """
import pytest

@pytest.mark.live
def test_needs_a_cluster(opensips_cluster):
    opensips_cluster()
"""


def _no_backend(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No OpenSIPS binary, and a docker socket that refuses (bound, never listening)."""
    monkeypatch.setenv("OPENSIPS_BIN", "/nonexistent/opensips")
    path = tmp_path / "refusing.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    return path


def test_auto_skips_a_live_test_with_every_reason(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    path = _no_backend(monkeypatch, tmp_path)
    pytester.makepyfile(LIVE_TEST)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))
        result = pytester.runpytest("--strict-markers", "--opensips-backend", "auto", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines([f"*no OpenSIPS 1.10 to test against — docker: docker engine not reachable "
                                 f"({path}: Connection refused)*; local: *"])


def test_a_backend_asked_for_by_name_fails_with_its_reason(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Issue 10, point 2: before, --opensips-backend docker|local skipped like auto, so
    a gate told to test on Docker went green with no engine."""
    path = _no_backend(monkeypatch, tmp_path)
    pytester.makepyfile(LIVE_TEST)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))
        docker = pytester.runpytest("--strict-markers", "--opensips-backend", "docker")
    docker.assert_outcomes(errors=1)
    docker.stdout.fnmatch_lines([
        "--opensips-backend docker cannot run: no OpenSIPS 1.10 to test against — docker: "
        f"docker engine not reachable ({path}: Connection refused): start dockerd or set DOCKER_HOST"])
    local = pytester.runpytest("--strict-markers", "--opensips-backend", "local")
    local.assert_outcomes(errors=1)
    local.stdout.fnmatch_lines(["--opensips-backend local cannot run: "
                                "no OpenSIPS 1.10 to test against — local: *"])
    for result in (docker, local):  # one line, no traceback of the plugin's internals
        lines = result.stdout.lines
        start = next(i for i, ln in enumerate(lines) if "ERROR at setup of test_needs_a_cluster" in ln)
        end = next(i for i, ln in enumerate(lines) if "short test summary info" in ln)
        assert len(lines[start + 1:end]) == 1, lines[start:end]


def test_options_and_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(["*--opensips-backend*", "*--harness-artifacts*", "*--failover-calls*"])
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.live:*", "@pytest.mark.failover:*"])


def test_an_unknown_backend_is_refused_by_the_option(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_x():\n    pass\n")
    result = pytester.runpytest("--opensips-backend", "vagrant")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*invalid choice: 'vagrant'*"])
