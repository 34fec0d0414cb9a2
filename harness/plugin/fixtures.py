"""The plugin's fixtures: settings, the backend kind, clusters (through `harness.live.start`)
and SIPp calls."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness import live
from harness.backends import BackendKind, choose_backend
from harness.backends.builds import BuildError
from harness.backends.clean import sweep_quietly
from harness.base.settings import Settings, load_settings
from harness.cluster import Cluster, Destination
from harness.cluster.user_config import UserConfigError
from harness.experiments.calls import CallPair
from harness.experiments.failover.result import FailoverResult
from harness.experiments.gate import observe
from harness.instruments.capture import CaptureError
from harness.live import LiveCluster, PeerPlace, preflight
from harness.plugin.evidence import deaths, failed, save_evidence, save_failover_report, slug
from harness.plugin.releases import Builds
from pybin.relay import Impairment


@pytest.fixture(scope="session")
def harness_settings(request: pytest.FixtureRequest) -> Settings:
    """Settings for every cluster; a refused --opensips-config fails each live test with its lines."""
    config = request.config.getoption("--opensips-config")
    try:
        settings, _ = preflight(load_settings(), config, ("primary", "backup", "standalone"),
                                request.config.getoption("--opensips-backend"))
    except UserConfigError as err:
        refused = str(err)
    else:
        return settings
    pytest.fail(refused, pytrace=False)  # outside `except`: no "during handling" chain


@pytest.fixture(scope="session")
def opensips_backend(request: pytest.FixtureRequest, harness_settings: Settings) -> BackendKind:
    """The backend kind for live tests.

    ``auto`` skips with the reason when nothing can run OpenSIPS. A backend asked for
    by name fails instead: a gate told to test on Docker must not go green by skipping
    every live test because the engine or the image is missing.
    """
    wanted = request.config.getoption("--opensips-backend")
    choice = choose_backend(wanted, harness_settings)
    if choice.kind is None:
        if wanted != "auto":
            pytest.fail(f"--opensips-backend {wanted} cannot run: {choice.reason}", pytrace=False)
        pytest.skip(choice.reason)
    sweep_quietly()  # leftovers of killed runs, before this session builds anything
    return choice.kind


@pytest.fixture
def opensips_cluster(request: pytest.FixtureRequest, opensips_backend: BackendKind,
                     harness_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., LiveCluster]]:
    """Factory: start a cluster (default primary + backup) that lives until the test ends.

    ``releases={"primary": "1.10.2", "backup": "1.11.11"}`` (node names or roles) runs
    those releases' builds; a test parametrized with ``opensips_pair`` gets its pair.
    ``link={"primary>backup": Impairment.parse("loss=0.02,seed=7")}`` puts a seeded,
    logged relay in that replication path (`harness.instruments.link`).
    Returns the `harness.live.LiveCluster`: ``.cluster``, ``.peer``, ``.capture``, ``.links``.
    """
    started: list[LiveCluster] = []
    pair = request.getfixturevalue("opensips_pair") if "opensips_pair" in request.fixturenames else None
    stack = contextlib.ExitStack()

    def start(roles: Sequence[str] | Mapping[str, str] = ("primary", "backup"), *,
              settings: Mapping[str, Any] | Settings | None = None,
              replicate: Mapping[str, Iterable[Destination]] | None = None,
              extra_destinations: Iterable[Destination] = (),
              peer: bool | PeerPlace = False, capture: bool = True, warmup: bool | None = None,
              releases: Mapping[str, str] | None = None,
              link: Mapping[str, Impairment | str] | None = None) -> LiveCluster:
        artifacts: dict[str, str] = {}
        if pair is not None:
            artifacts = {"primary": pair.primary.artifact, "backup": pair.backup.artifact,
                         "standalone": pair.primary.artifact}
        if releases:
            builds: Builds = request.getfixturevalue("opensips_builds")
            try:
                artifacts.update({k: builds.get(v).artifact for k, v in releases.items()})
            except BuildError as err:
                pytest.fail(str(err), pytrace=False)
        if isinstance(settings, Settings):
            effective = settings
        else:
            effective = harness_settings.with_overrides(settings) if settings else harness_settings
        named = Cluster.node_roles(roles)
        workdir = tmp_path / f"cluster{len(started)}"
        try:
            lc = stack.enter_context(live.start(
                opensips_backend, effective, named, workdir=workdir, replicate=replicate,
                extra_destinations=extra_destinations, peer=peer, capture=capture, warmup=warmup,
                link=link, artifacts={k: v for k, v in artifacts.items() if k in named or k in named.values()}))
        except CaptureError as err:
            pytest.fail(f"cannot capture the cluster's traffic: {err}")
        started.append(lc)
        observe(request.config, lc.backend)
        return lc

    with stack:
        yield start
        is_failed = failed(request.node)
        died = [] if request.node.get_closest_marker("node_deaths_expected") else deaths(started)
        if died and not is_failed:
            is_failed = True  # save the evidence of the crash too
        artifacts_dir = Path(request.config.getoption("--harness-artifacts"))
        for index, lc in enumerate(reversed(started)):
            if lc.capture is not None:
                lc.capture.stop()
            if is_failed:
                dest = artifacts_dir / "failures" / slug(request.node.nodeid) / f"cluster{index}"
                for title, text in save_evidence(lc, dest):
                    request.node.add_report_section("teardown", title, text)
                request.node.user_properties.append(("artifacts", str(dest)))
    if died and not failed(request.node):
        pytest.fail(f"a node died during the test: {died[0]}", pytrace=False)


@pytest.fixture
def failover_report(request: pytest.FixtureRequest) -> Iterator[Callable[[FailoverResult], FailoverResult]]:
    """Hand it a failover's result: ``result = failover_report(run_failover(...))`` returns
    it unchanged; if the test then fails, the run's report.html (timeline, recovery
    histogram, replication-lag CDF, figures) is saved under ``--harness-artifacts`` beside
    the capture and logs, and its path attached to the report."""
    kept: list[FailoverResult] = []

    def keep(result: FailoverResult) -> FailoverResult:
        kept.append(result)
        return result

    yield keep
    if kept and failed(request.node):
        dest = Path(request.config.getoption("--harness-artifacts")) / "failures" / slug(request.node.nodeid)
        for index, result in enumerate(kept):
            saved = save_failover_report(result, dest / f"failover{index}")
            request.node.add_report_section("teardown", "failover report", saved)
            request.node.user_properties.append(("failover_report", saved))


@pytest.fixture
def sip_calls(tmp_path: Path) -> Iterator[Callable[..., CallPair]]:
    """Factory: ``sip_calls(cluster, "basic", calls=5)`` starts a SIPp callee and caller.

    Returns a started ``harness.experiments.calls.CallPair``; ``.wait(timeout)`` gives the
    caller's parsed results. Everything still running is stopped when the test ends.
    """
    pairs: list[CallPair] = []

    def start(cluster: Cluster, scenario: str = "basic", **options: object) -> CallPair:
        pair = CallPair(cluster, scenario, workdir=tmp_path / f"sipp{len(pairs)}", **options)
        pairs.append(pair)
        return pair.start()

    yield start
    for pair in pairs:
        pair.stop()
