"""Missing Docker images are built on first use by run/up/failover, never silently wrong."""

from __future__ import annotations

import pytest

import harness.backends.images.build as images_build
from harness.backends import first_use, images
from harness.backends.first_use import build_on_first_use
from harness.backends.images import OPENSIPS_IMAGE, SIPP_IMAGE, ImageError
from harness.base.errors import UsageError
from harness.cli import main


class FakeBuild:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, source, base, progress, *, which, versions=None):
        self.calls.append((source, base, which, versions))
        progress("Step 1/9 : FROM debian:bookworm-slim")
        return {OPENSIPS_IMAGE: "sha256:new"}


def _never(*_a, **_k):
    raise AssertionError("must not be called")


def test_the_local_backend_never_builds():
    assert build_on_first_use("local", missing=_never, build=_never) == {}


def test_no_build_skips_even_when_missing():
    assert build_on_first_use("docker", no_build=True, missing=_never, build=_never) == {}


def test_no_engine_means_nothing_to_build_on():
    assert build_on_first_use("auto", missing=lambda names: None, build=_never) == {}


def test_present_images_are_not_rebuilt():
    assert build_on_first_use("docker", missing=lambda names: [], build=_never) == {}


def test_a_missing_image_is_built_with_progress_and_the_reason():
    said: list[str] = []
    build = FakeBuild()
    built = build_on_first_use("auto", progress=said.append, missing=lambda names: [OPENSIPS_IMAGE],
                               reachable=lambda: None, build=build)
    assert built == {OPENSIPS_IMAGE: "sha256:new"}
    assert build.calls == [(None, None, ("opensips",), ["1.10.5"])]
    assert said[0] == (f"docker image {OPENSIPS_IMAGE} missing: building it now, once "
                       "(about 3½ minutes on 2 cores; --no-build skips this)")
    assert said[1] == "Step 1/9 : FROM debian:bookworm-slim"
    assert said[2].startswith("first-use build done in ") and said[2].endswith("s")


def test_without_download_or_source_it_names_the_command_to_run():
    with pytest.raises(ImageError) as info:
        build_on_first_use("docker", missing=lambda names: [OPENSIPS_IMAGE, SIPP_IMAGE],
                           reachable=lambda: "github.com:443 unreachable (Network is unreachable)",
                           build=_never)
    assert str(info.value) == (
        f"docker image {OPENSIPS_IMAGE} is missing and OpenSIPS 1.10.5 cannot be downloaded "
        "(github.com:443 unreachable (Network is unreachable)): run `harness image build "
        "--source DIR` with an upstream 1.10.5 source tree (or pass --no-build)")


def test_a_source_tree_replaces_the_download():
    build = FakeBuild()
    build_on_first_use("docker", source="/src/opensips-1.10.5", progress=lambda line: None,
                       missing=lambda names: [OPENSIPS_IMAGE, SIPP_IMAGE], reachable=_never, build=build)
    assert build.calls == [("/src/opensips-1.10.5", None, ("opensips", "sipp"), ["1.10.5"])]


def test_the_engine_check_is_real_and_names_only_what_is_missing():
    """Against the running engine, with a tag nobody builds (the real images stay untouched)."""
    absent = first_use.engine_images_missing(["opensips-bin-harness-test/opensips:never-built"])
    if absent is None:
        pytest.skip("no Docker engine reachable")
    assert absent == ["opensips-bin-harness-test/opensips:never-built"]


@pytest.mark.parametrize("command", [["run", "--backend", "docker"], ["up", "--backend", "docker"],
                                     ["failover", "--backend", "docker", "--calls", "1"]])
def test_each_command_stops_in_one_line_when_nothing_can_be_downloaded(command, monkeypatch, capsys):
    monkeypatch.setattr(first_use, "engine_images_missing", lambda names: [OPENSIPS_IMAGE])
    monkeypatch.setattr(first_use, "download_problem", lambda: "github.com:443 unreachable (timed out)")
    code = main(command)
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1
    assert "run `harness image build --source DIR`" in err
    assert err.startswith("harness") and f"docker image {OPENSIPS_IMAGE} is missing" in err


def test_each_command_builds_through_the_same_helper(monkeypatch, capsys, tmp_path):
    build = FakeBuild()
    monkeypatch.setattr(first_use, "engine_images_missing", lambda names: [OPENSIPS_IMAGE])
    monkeypatch.setattr(first_use, "download_problem", lambda: None)
    monkeypatch.setattr(images_build, "build_images", build)

    def stop(*args, **kwargs):  # where the command would ask the machine for its backend
        raise UsageError("no backend asked in an offline test")

    monkeypatch.setattr("harness.cli.up.backend_for", stop)
    settings = tmp_path / "s.yaml"
    settings.write_text("{}\n")
    code = main(["up", "--backend", "docker", "--settings", str(settings)])
    captured = capsys.readouterr()
    assert build.calls == [(None, None, ("opensips",), ["1.10.5"])]
    assert f"docker image {OPENSIPS_IMAGE} missing: building it now, once" in captured.out
    assert (code, captured.err) == (2, "harness: no backend asked in an offline test\n")


def test_a_wrong_path_is_refused_before_any_build(monkeypatch, capsys):
    """Cheap argument errors come first: nothing is built (or asked of an engine) for a
    command whose settings file does not exist."""
    build = FakeBuild()
    monkeypatch.setattr(first_use, "engine_images_missing", lambda names: [OPENSIPS_IMAGE])
    monkeypatch.setattr(images_build, "build_images", build)
    code = main(["up", "--backend", "docker", "--settings", "/nonexistent.yaml"])
    assert (code, capsys.readouterr().err) == (2, "harness: --settings /nonexistent.yaml: no such file\n")
    assert build.calls == []


def test_a_missing_image_of_another_release_is_built_as_that_release():
    build = FakeBuild()
    wanted = images.opensips_image("1.11.11")
    asked: list[list[str]] = []

    def missing(names):
        asked.append(list(names))
        return [wanted]

    build_on_first_use("docker", versions=["1.10.5", "1.11.11"], progress=lambda line: None,
                       missing=missing, reachable=lambda: None, build=build)
    assert asked == [[OPENSIPS_IMAGE, wanted, SIPP_IMAGE]]
    assert build.calls == [(None, None, ("opensips",), ["1.11.11"])]


def test_only_sipp_missing_builds_no_opensips():
    build = FakeBuild()
    build_on_first_use("docker", versions=["1.11.11"], progress=lambda line: None,
                       missing=lambda names: [SIPP_IMAGE], reachable=_never, build=build)
    assert build.calls == [(None, None, ("sipp",), None)]


def test_the_offline_message_names_the_missing_release():
    with pytest.raises(ImageError) as info:
        build_on_first_use("docker", versions=["1.11.11"],
                           missing=lambda names: [images.opensips_image("1.11.11")],
                           reachable=lambda: "github.com:443 unreachable (timed out)", build=_never)
    assert str(info.value).startswith(
        "docker image opensips-bin-harness/opensips:1.11.11 is missing and OpenSIPS 1.11.11 "
        "cannot be downloaded")
    assert "upstream 1.11.11 source tree" in str(info.value)
