"""Which releases the live tests run on: ``--opensips-version`` / ``--opensips-pair``
parametrize every test that asks for ``opensips_pair``, and every test that asks for
``usrloc_pair`` with those of them that replicate registrations (1.11, 2.1; 1.11.11
when none does); labels resolve to builds of the session's backend kind (images or
``V=PATH`` binaries). A usrloc test whose build is not here is skipped, saying which
and how to give it, and marked ``optional_release`` so that skip does not fail the gate."""

from __future__ import annotations

import pytest

from harness.backends import BackendKind
from harness.backends.builds import BuildError
from harness.base.releases import (
    BASELINE,
    Build,
    ReleaseError,
    expand_versions,
    replicates_usrloc,
)
from harness.experiments.matrix.session import Pair

#: the pair the usrloc tests run on when no release option names one that has usrloc
#: replication: the newest 1.11, the branch most 1.10 users upgrade to
USRLOC_DEFAULT = ("1.11.11", "1.11.11")


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


def _has_usrloc(label: str) -> bool:
    try:
        return replicates_usrloc(label)
    except ReleaseError:  # a private label: its release is known only once resolved
        return False


def usrloc_pairs(config: pytest.Config) -> list[tuple[str, str]]:
    """The release pairs whose both releases replicate registrations, else `USRLOC_DEFAULT`."""
    given = release_pairs(config) if (config.getoption("--opensips-version")
                                      or config.getoption("--opensips-pair")) else []
    return [(p, b) for p, b in given if _has_usrloc(p) and _has_usrloc(b)] or [USRLOC_DEFAULT]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that asks for ``opensips_pair`` (or ``usrloc_pair``) with the
    chosen pairs."""
    for name, pairs_of in (("opensips_pair", release_pairs), ("usrloc_pair", usrloc_pairs)):
        if name in metafunc.fixturenames:
            pairs = pairs_of(metafunc.config)
            metafunc.parametrize(name, pairs, indirect=True,
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


def optional_builds(request: pytest.FixtureRequest, labels: dict[str, str], why: str) -> dict[str, Build]:
    """{role: Build} for {role: label}; the test is skipped, saying which build is missing
    and how to give it, when one is not here (the test must be marked ``optional_release``:
    then that skip does not fail `harness run`'s gate)."""
    if request.node.get_closest_marker("optional_release") is None:
        raise pytest.UsageError(f"{request.node.nodeid}: optional builds need the optional_release marker")
    builds: Builds = request.getfixturevalue("opensips_builds")
    out: dict[str, Build] = {}
    for role, label in labels.items():
        try:
            out[role] = builds.get(label)
        except BuildError as err:
            pytest.skip(f"{why} needs a {label} build, which is not here: {err}")
    return out


@pytest.fixture
def usrloc_pair(request: pytest.FixtureRequest) -> Pair:
    """The (primary, backup) builds a usrloc test instance runs on (1.11 or 2.1 both);
    skipped when they are not here."""
    primary, backup = request.param if hasattr(request, "param") else USRLOC_DEFAULT
    found = optional_builds(request, {"primary": primary, "backup": backup}, "usrloc replication")
    for build in found.values():
        if not replicates_usrloc(build.version):
            pytest.skip(f"{build.describe()} has no usrloc replication (1.11 and 2.1 have)")
    return Pair(found["primary"], found["backup"])


@pytest.fixture
def opensips_pair(request: pytest.FixtureRequest, opensips_builds: Builds) -> Pair:
    """The (primary, backup) builds this test instance runs on (see --opensips-version)."""
    primary, backup = request.param if hasattr(request, "param") else (BASELINE, BASELINE)
    try:
        return Pair(opensips_builds.get(primary), opensips_builds.get(backup))
    except BuildError as err:
        pytest.fail(str(err), pytrace=False)


