"""pytest plugin: real OpenSIPS 1.10 clusters as fixtures (installed as ``opensips_harness``).

Fixtures (each small and overridable in your own conftest.py):

- ``harness_settings`` — the YAML settings (``harness/base/defaults.yaml`` + ``$HARNESS_SETTINGS``),
  with ``--opensips-config FILE`` (your own config template, checked once up front by
  harness.cluster.user_config) when given.
- ``opensips_backend`` — which backend runs OpenSIPS (``--opensips-backend``); with
  ``auto`` skips the test with the exact reason when none can, with a backend named
  explicitly fails (error) with that backend's reason.
- ``opensips_cluster`` — factory: ``opensips_cluster(("primary", "backup"), peer=True)``
  starts a cluster on its own network, captures its traffic, and tears it down after
  the test. On failure the capture, a decoded SIP/BIN ladder and every node's log are
  saved under ``--harness-artifacts`` and attached to the report (JUnit properties).
- ``bin_peer`` — the pybin peer of the most recent cluster started with ``peer=True``.
- ``sip_calls`` — factory running a SIPp scenario through a cluster.

Markers: ``live`` (needs OpenSIPS), ``failover``, and ``node_deaths_expected`` (teardown
otherwise fails a test after which a node of its clusters is found dead).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.backends import (
    BACKEND_CHOICES,
    BackendChoice,
    choose_backend,
    default_backend,
)
from harness.backends.builds import (
    BINARIES_ENV,
    BuildError,
    env_binaries,
    image_build,
    local_build,
    local_builds,
)
from harness.backends.clean import sweep_quietly
from harness.base.releases import BASELINE, Build, ReleaseError, expand_versions
from harness.base.settings import Settings, load_settings
from harness.cluster import Cluster, Destination
from harness.cluster.interfaces import Backend, NodeDied
from harness.cluster.user_config import UserConfigError, preflight
from harness.cluster.warmup import STATS
from harness.experiments.calls import CallPair
from harness.experiments.gate import PLUGIN_NAME, GatePlugin, observe
from harness.instruments.capture import (
    Capture,
    CaptureError,
    ladder_lines,
    render_ladder,
)
from harness.instruments.peer import BinPeer

_REPORT_KEY = pytest.StashKey[dict[str, pytest.TestReport]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("opensips", "OpenSIPS 1.10 harness")
    group.addoption("--opensips-backend", default=default_backend(),
                    choices=BACKEND_CHOICES,
                    help="how to run OpenSIPS for live tests (default: auto, or $HARNESS_BACKEND)")
    group.addoption("--opensips-config", default=None, metavar="FILE",
                    help="your own OpenSIPS config template for every cluster (see README)")
    group.addoption("--harness-artifacts", default=os.environ.get("HARNESS_ARTIFACTS", "artifacts"),
                    help="where failed live tests leave pcap, ladder and logs (default: artifacts)")
    group.addoption("--failover-calls", type=int,
                    default=int(os.environ.get("HARNESS_FAILOVER_CALLS", "200")),
                    help="concurrent calls in failover tests (default: 200; the paced test at size runs at least 1,000)")
    group.addoption("--harness-observed", metavar="FILE",
                    help="write what the live tests really ran against here (JSON; `harness run` reads it)")
    group.addoption("--opensips-version", action="append", default=[], metavar="V",
                    help="run the release-parametrized live tests (the behaviour checks) on release V "
                         "as primary and backup (repeatable, comma lists, `all`, `1.10`)")
    group.addoption("--opensips-pair", action="append", default=[], metavar="PRIMARY:BACKUP",
                    help="and on this mixed pair, e.g. 1.10.2:1.11.11 (repeatable)")
    group.addoption("--opensips-binary", action="append", default=[], metavar="V=PATH",
                    help=f"local backend: the binary of release V (repeatable; also ${BINARIES_ENV})")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "live: needs a real OpenSIPS 1.10 (skipped with the reason otherwise)")
    config.addinivalue_line("markers", "failover: kills a primary and measures the takeover")
    config.addinivalue_line("markers", "node_deaths_expected: the test judges node deaths itself, "
                            "so teardown does not fail on a node that died")
    if not config.pluginmanager.has_plugin(PLUGIN_NAME):
        config.pluginmanager.register(GatePlugin(), PLUGIN_NAME)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    """Keep each phase's report on the item, so fixture teardown knows if the test failed."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    item.stash.setdefault(_REPORT_KEY, {})[report.when] = report


def _failed(item: pytest.Item) -> bool:
    reports = item.stash.get(_REPORT_KEY, {})
    return any(r.failed for r in reports.values())


# -- warm-up tally (the 1.10.5 recvfrom defect), summed over xdist workers ------------

def pytest_sessionfinish(session: pytest.Session) -> None:
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["harness_warmup"] = (STATS.probed, STATS.died)
    elif STATS.probed:  # the controller (or a run without xdist): leave it for `harness run`
        artifacts = Path(session.config.getoption("--harness-artifacts"))
        artifacts.mkdir(parents=True, exist_ok=True)
        (artifacts / "warmup.json").write_text(json.dumps(
            {"probed": STATS.probed, "died": STATS.died, "summary": STATS.summary()}) + "\n")


def pytest_testnodedown(node: Any, error: Any) -> None:
    probed, died = getattr(node, "workeroutput", {}).get("harness_warmup", (0, 0))
    STATS.probed += probed
    STATS.died += died


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if STATS.probed:
        terminalreporter.write_sep("-", "OpenSIPS harness")
        terminalreporter.write_line(STATS.summary())


# -- releases: which builds the live tests run on ----------------------------------------

def release_pairs(config: pytest.Config) -> list[tuple[str, str]]:
    """(primary, backup) labels from --opensips-version / --opensips-pair; the baseline alone
    when neither is given, so the default suite stays what it was."""
    try:
        versions = expand_versions(config.getoption("--opensips-version")) \
            if config.getoption("--opensips-version") else []
    except ReleaseError as err:
        raise pytest.UsageError(f"--opensips-version: {err}") from None
    pairs = [(v, v) for v in versions]
    for item in config.getoption("--opensips-pair"):
        p, sep, b = item.partition(":")
        if not sep or not p or not b:
            raise pytest.UsageError(f"--opensips-pair {item!r}: expected PRIMARY:BACKUP, e.g. 1.10.2:1.11.11")
        pairs.append((p.strip(), b.strip()))
    return list(dict.fromkeys(pairs)) or [(BASELINE, BASELINE)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that asks for ``opensips_pair`` with the chosen pairs."""
    if "opensips_pair" in metafunc.fixturenames:
        pairs = release_pairs(metafunc.config)
        metafunc.parametrize("opensips_pair", pairs, indirect=True,
                             ids=[p if p == b else f"{p}>{b}" for p, b in pairs])


class _Builds:
    """Labels -> Builds for this session's backend, resolved on first use (and cached)."""

    def __init__(self, backend: str, config: pytest.Config) -> None:
        self.backend = backend
        self.cache: dict[str, Build] = {}
        self.specs = [*config.getoption("--opensips-binary"), *env_binaries()]

    def get(self, label: str) -> Build:
        if label not in self.cache:
            self.cache[label] = self._resolve(label)
        return self.cache[label]

    def _resolve(self, label: str) -> Build:
        if self.backend == "docker":
            return image_build(label)
        named = local_builds(self.specs)
        if label in named:
            return named[label]
        default = local_build(load_settings().opensips_binary())
        if default.label == label:
            return default
        raise BuildError(f"no local binary of release {label}: pass --opensips-binary {label}=PATH "
                         f"(or ${BINARIES_ENV}); the default binary reports {default.label}")


@pytest.fixture(scope="session")
def opensips_builds(request: pytest.FixtureRequest, opensips_backend: BackendChoice) -> _Builds:
    """Resolves release labels to this backend's builds (binaries or images)."""
    assert opensips_backend.name is not None
    return _Builds(opensips_backend.name, request.config)


@pytest.fixture
def opensips_pair(request: pytest.FixtureRequest, opensips_builds: _Builds) -> Any:
    """The (primary, backup) builds this test instance runs on (see --opensips-version)."""
    from harness.experiments.matrix.context import Pair

    primary, backup = getattr(request, "param", (BASELINE, BASELINE))
    try:
        return Pair(opensips_builds.get(primary), opensips_builds.get(backup))
    except BuildError as err:
        pytest.fail(str(err), pytrace=False)


# -- fixtures ---------------------------------------------------------------------------

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
def opensips_backend(request: pytest.FixtureRequest, harness_settings: Settings) -> BackendChoice:
    """The backend for live tests.

    ``auto`` skips with the reason when nothing can run OpenSIPS. A backend asked for
    by name fails instead: a gate told to test on Docker must not go green by skipping
    every live test because the engine or the image is missing.
    """
    wanted = request.config.getoption("--opensips-backend")
    choice = choose_backend(wanted, harness_settings)
    if choice.name is None:
        if wanted != "auto":
            pytest.fail(f"--opensips-backend {wanted} cannot run: {choice.reason}", pytrace=False)
        pytest.skip(choice.reason)
    sweep_quietly()  # leftovers of killed runs, before this session builds anything
    return choice


def _slug(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid).strip("_")[:120]


class _LiveCluster:
    """What the opensips_cluster factory started for one test, torn down in reverse."""

    def __init__(self, backend: Backend, workdir: Path) -> None:
        self.backend = backend
        self.workdir = workdir
        self.cluster: Cluster | None = None
        self.capture: Capture | None = None
        self.peer: BinPeer | None = None

    def evidence(self, dest: Path) -> list[tuple[str, str]]:
        """Save pcap, ladder and logs into ``dest``; return report sections."""
        dest.mkdir(parents=True, exist_ok=True)
        sections: list[tuple[str, str]] = []
        if self.cluster is None:
            return sections
        if self.capture is not None and self.capture.path.exists():
            pcap = dest / "capture.pcap"
            shutil.copy(self.capture.path, pcap)
            names = {a.ip: n for n, a in self.cluster.addresses.items()}
            names[self.cluster.vip] = "vip"
            names[self.backend.harness_ip] = "harness"
            try:
                ladder = render_ladder(ladder_lines(pcap), names)
            except Exception as err:  # evidence must never hide the real failure
                ladder = f"(ladder unavailable: {err})"
            (dest / "ladder.txt").write_text(ladder + "\n")
            sections.append(("SIP/BIN ladder", ladder))
        for name, node in self.cluster.nodes.items():
            try:
                text = node.logs()
            except Exception as err:
                text = f"(logs unavailable: {err})"
            (dest / f"{name}.log").write_text(text)
            tail = "\n".join(text.splitlines()[-40:])
            sections.append((f"{name} log (last 40 lines)", tail))
        return sections


@pytest.fixture
def opensips_cluster(request: pytest.FixtureRequest, opensips_backend: BackendChoice,
                     harness_settings: Settings, tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    """Factory: start a cluster (default primary + backup) that lives until the test ends.

    ``releases={"primary": "1.10.2", "backup": "1.11.11"}`` (node names or roles) runs
    those releases' builds; a test parametrized with ``opensips_pair`` gets its pair.
    """
    started: list[_LiveCluster] = []
    pair = request.getfixturevalue("opensips_pair") if "opensips_pair" in request.fixturenames else None

    def start(roles: Sequence[str] | Mapping[str, str] = ("primary", "backup"), *,
              settings: Mapping[str, Any] | Settings | None = None,
              replicate: Mapping[str, Iterable[Destination]] | None = None,
              extra_destinations: Iterable[Destination] = (),
              peer: bool = False, capture: bool = True, warmup: bool | None = None,
              releases: Mapping[str, str] | None = None) -> Cluster:
        artifacts: dict[str, str] = {}
        if pair is not None:
            artifacts = {"primary": pair.primary.artifact, "backup": pair.backup.artifact,
                         "standalone": pair.primary.artifact}
        if releases:
            builds: _Builds = request.getfixturevalue("opensips_builds")
            try:
                artifacts.update({k: builds.get(v).artifact for k, v in releases.items()})
            except BuildError as err:
                pytest.fail(str(err), pytrace=False)
        if isinstance(settings, Settings):
            effective = settings
        else:
            effective = harness_settings.with_overrides(settings) if settings else harness_settings
        backend = opensips_backend.factory()(effective)
        workdir = tmp_path / f"cluster{len(started)}"
        workdir.mkdir()
        live = _LiveCluster(backend, workdir)
        started.append(live)  # from here on, teardown owns it whatever happens next
        backend.open()
        if capture:
            # 64 MB of kernel buffer: with the 2 MB default tcpdump drops packets of
            # bursts such as 200 calls set up at once, and the evidence would lie.
            live.capture = Capture(backend.capture_host(), workdir / "capture.pcap",
                                   buffer_kib=65536)
            try:
                live.capture.start()
            except CaptureError as err:
                pytest.fail(f"cannot capture the cluster's traffic: {err}")
        extra = list(extra_destinations)
        if peer:
            live.peer = BinPeer((backend.harness_ip, 0),
                                socket_factory=lambda family: backend.socket(socket.SOCK_DGRAM)).start()
            extra.append(live.peer.address)
        named = Cluster.node_roles(roles)
        live.cluster = Cluster(backend, named, settings=effective, replicate=replicate,
                               extra_destinations=extra, warmup=warmup,
                               artifacts={k: v for k, v in artifacts.items()
                                          if k in named or k in named.values()})
        live.cluster.peer = live.peer
        if live.peer is not None:
            live.peer.cluster = live.cluster
        live.cluster.capture = live.capture
        live.cluster.start()
        observe(request.config, live.cluster.backend)
        return live.cluster

    yield start

    failed = _failed(request.node)
    died = [] if request.node.get_closest_marker("node_deaths_expected") else _deaths(started)
    if died and not failed:
        failed = True  # save the evidence of the crash too
    artifacts = Path(request.config.getoption("--harness-artifacts"))
    for index, live in enumerate(reversed(started)):
        try:
            if live.capture is not None:
                live.capture.stop()
            if failed:
                dest = artifacts / "failures" / _slug(request.node.nodeid) / f"cluster{index}"
                for title, text in live.evidence(dest):
                    request.node.add_report_section("teardown", title, text)
                request.node.user_properties.append(("artifacts", str(dest)))
        finally:
            if live.peer is not None:
                live.peer.close()
            if live.cluster is not None:
                live.cluster.close()
            else:
                live.backend.close()
    if died and not _failed(request.node):
        pytest.fail(f"a node died during the test: {died[0]}", pytrace=False)


def _deaths(started: Sequence[_LiveCluster]) -> list[str]:
    """Nodes that died while expected to run, checked once the test body is done.

    A test that never queries a node (e.g. one that only watches the pybin peer)
    would otherwise pass while the backup crashed on the packets it was sent.
    """
    died = []
    for live in started:
        if live.cluster is None or not live.cluster.nodes:
            continue
        try:
            for name, node in live.cluster.nodes.items():
                if node.is_running():
                    # one MI round trip: a node killed a moment ago may not be known
                    # dead yet (the local backend's watcher thread), but it cannot answer,
                    # and the MI client raises NodeDied as soon as the death is seen
                    try:
                        live.cluster.mi(name).ps()
                    except NodeDied:
                        raise
                    except Exception:
                        pass  # frozen on purpose, or busy: judged by check() below
            live.cluster.check()
        except NodeDied as err:
            died.append(str(err))
    return died


@pytest.fixture
def bin_peer(opensips_cluster: Callable[..., Cluster]) -> Callable[..., BinPeer]:
    """Factory: a primary + backup cluster that also replicates to a pybin peer; the peer."""

    def start(roles: Sequence[str] | Mapping[str, str] = ("primary", "backup"), **kwargs: Any) -> BinPeer:
        cluster = opensips_cluster(roles, peer=True, **kwargs)
        assert cluster.peer is not None
        return cluster.peer

    return start


@pytest.fixture
def sip_calls(tmp_path: Path) -> Iterator[Callable[..., CallPair]]:
    """Factory: ``sip_calls(cluster, "basic", calls=5)`` starts a SIPp callee and caller.

    Returns a started ``harness.experiments.calls.CallPair``; ``.wait(timeout)`` gives the caller's
    parsed results. Everything still running is stopped when the test ends.
    """
    pairs: list[CallPair] = []

    def start(cluster: Cluster, scenario: str = "basic", **options: object) -> CallPair:
        pair = CallPair(cluster, scenario, workdir=tmp_path / f"sipp{len(pairs)}", **options)
        pairs.append(pair)
        return pair.start()

    yield start
    for pair in pairs:
        pair.stop()
