"""The pytest plugin tested like a plugin: inner pytest sessions via pytester."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]


def test_live_test_skips_with_the_exact_reason(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENSIPS_BIN", "/nonexistent/opensips")
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.live
        def test_needs_a_cluster(opensips_cluster):
            opensips_cluster()
        """
    )
    result = pytester.runpytest("--strict-markers", "--opensips-backend", "local", "-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no OpenSIPS 1.10 to test against — local: *"])


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
