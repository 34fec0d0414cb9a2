"""Which releases the live tests run on: ``--opensips-version`` / ``--opensips-pair``
parametrize every test that asks for ``opensips_pair``; labels resolve to builds of the
session's backend kind (images or ``V=PATH`` binaries)."""

from __future__ import annotations

import pytest

from harness.backends import BackendKind
from harness.backends.builds import BuildError
from harness.base.releases import BASELINE, Build, ReleaseError, expand_versions
from harness.experiments.matrix.session import Pair


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


class Builds:
    """Labels -> Builds for this session's backend kind, resolved on first use (and cached)."""

    def __init__(self, kind: BackendKind, config: pytest.Config) -> None:
        self.kind = kind
        self.cache: dict[str, Build] = {}
        self.binaries = list(config.getoption("--opensips-binary"))

    def get(self, label: str) -> Build:
        if label not in self.cache:
            self.cache[label] = self.kind.build(label, self.binaries)
        return self.cache[label]


@pytest.fixture(scope="session")
def opensips_builds(request: pytest.FixtureRequest, opensips_backend: BackendKind) -> Builds:
    """Resolves release labels to this backend's builds (binaries or images)."""
    return Builds(opensips_backend, request.config)


@pytest.fixture
def opensips_pair(request: pytest.FixtureRequest, opensips_builds: Builds) -> Pair:
    """The (primary, backup) builds this test instance runs on (see --opensips-version)."""
    primary, backup = request.param if hasattr(request, "param") else (BASELINE, BASELINE)
    try:
        return Pair(opensips_builds.get(primary), opensips_builds.get(backup))
    except BuildError as err:
        pytest.fail(str(err), pytrace=False)


