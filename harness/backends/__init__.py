"""Two ways to run OpenSIPS, declared in one table, and the choice between them.

Each `BackendKind` says what its way can do (are node processes host pids? is a
release an image or a binary? are missing images built on first use?) and offers the
operations that differ (is it available here, make a backend, resolve a release label
to a build, run ``opensips -c``). Callers ask the table, never compare names, so a
third backend is one more row and one more ``kind`` module (httpx's transports and
asyncio's loop policies are chosen the same way).

``auto`` takes Docker when an engine answers and the OpenSIPS image exists, else the
local backend when an OpenSIPS binary and root are there, else nothing — with every
reason, so a skipped live test says exactly what was missing.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Literal

from harness.base.errors import UsageError

if TYPE_CHECKING:
    from harness.base.releases import Build
    from harness.base.settings import Settings
    from harness.cluster.interfaces import Backend, ConfigCheck

BACKEND_ENV = "HARNESS_BACKEND"


@dataclass(frozen=True)
class BackendKind:
    """One way to run OpenSIPS: what it can do, and its operations (in ``implementation``,
    imported on first use: the Docker one needs the docker libraries)."""

    name: str
    #: node processes are processes of this host: pids to signal, /proc to read
    host_pids: bool
    #: how a release's OpenSIPS is supplied: an image, or a binary (``V=PATH``)
    supplies: Literal["image", "binary"]
    #: builds a missing OpenSIPS image before first use, like a pull
    builds_on_first_use: bool
    #: what a cluster of this kind creates, as `harness clean` names it (what a killed
    #: run leaves behind)
    resources: tuple[str, ...]
    #: the module with unavailable / backend / build / builds / config_check
    implementation: str

    def capabilities(self) -> frozenset[str]:
        """The yes/no capabilities this kind has, by field name (what a check may need)."""
        return frozenset(name for name, has in (("host_pids", self.host_pids),
                                                ("builds_on_first_use", self.builds_on_first_use)) if has)

    def _impl(self) -> ModuleType:
        return importlib.import_module(self.implementation)

    def unavailable(self, settings: Settings | None = None) -> str | None:
        """Why this backend cannot run here (one line), or None when it can."""
        try:
            impl = self._impl()
        except ImportError as err:  # the docker libraries, without the harness extra
            return f"{self.name} backend: {err.name} is not installed (pip install 'pybin-opensips[harness]')"
        return impl.unavailable(settings)

    def backend(self, settings: Settings, build: Build | None = None) -> Backend:
        """A backend (one cluster's network) whose default OpenSIPS is ``build``'s."""
        return self._impl().backend(settings, build)

    def build(self, label: str, binaries: Sequence[str] = ()) -> Build:
        """The build of release ``label`` (an image, or a binary among ``binaries``)."""
        return self._impl().build(label, binaries)

    def builds(self, items: Iterable[str]) -> dict[str, Build]:
        """{label: Build} from what a user names: ``V=PATH`` specs, or versions / images."""
        return self._impl().builds(items)

    def config_check(self, settings: Settings) -> ConfigCheck:
        """How ``opensips -c`` runs a rendered config here."""
        return self._impl().config_check(settings)


#: every backend, in the order ``auto`` tries them
KINDS: dict[str, BackendKind] = {k.name: k for k in (
    BackendKind("docker", host_pids=False, supplies="image", builds_on_first_use=True,
                resources=("container", "network", "process"),
                implementation="harness.backends.docker.kind"),
    BackendKind("local", host_pids=True, supplies="binary", builds_on_first_use=False,
                resources=("directory", "namespace", "process"),
                implementation="harness.backends.local.kind"),
)}
#: what ``--backend`` / ``--opensips-backend`` accept, written once
BACKEND_CHOICES = ("auto", *KINDS)


def default_backend() -> str:
    """The backend asked for when no option says: $HARNESS_BACKEND, else auto."""
    return os.environ.get(BACKEND_ENV, "auto")


def kind(name: str) -> BackendKind:
    """The table's row for ``name``; a UsageError naming the choices otherwise."""
    try:
        return KINDS[name]
    except KeyError:
        raise UsageError(f"unknown backend {name!r} ({' or '.join(KINDS)})") from None


@dataclass(frozen=True)
class BackendChoice:
    """The backend to use (``kind`` None when none can run, with ``reason``)."""

    kind: BackendKind | None
    reason: str

    @property
    def name(self) -> str | None:
        return None if self.kind is None else self.kind.name

    def require(self) -> BackendKind:
        """The chosen kind; a UsageError with the reason when none can run."""
        if self.kind is None:
            raise UsageError(self.reason)
        return self.kind


def wanted_kinds(wanted: str) -> list[BackendKind]:
    """The kinds ``wanted`` (a BACKEND_CHOICES value) names: all of them for auto."""
    return list(KINDS.values()) if wanted == "auto" else [kind(wanted)]


def choose_backend(wanted: str = "auto", settings: Settings | None = None) -> BackendChoice:
    """Pick a backend; ``wanted`` is one of BACKEND_CHOICES."""
    if wanted not in BACKEND_CHOICES:
        return BackendChoice(None, f"unknown backend {wanted!r} (auto, {' or '.join(KINDS)})")
    reasons = []
    for k in wanted_kinds(wanted):
        reason = k.unavailable(settings)
        if reason is None:
            return BackendChoice(k, f"{k.name} backend available")
        reasons.append(f"{k.name}: {reason}")
    return BackendChoice(None, "no OpenSIPS to test against — " + "; ".join(reasons))
