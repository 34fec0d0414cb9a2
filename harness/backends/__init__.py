"""Two ways to run OpenSIPS behind one interface, and the choice between them.

``auto`` takes Docker when an engine answers and the OpenSIPS image exists, else the
local backend when an OpenSIPS 1.10 binary and root are there, else nothing — with
every reason, so a skipped live test says exactly what was missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from harness.base.settings import Settings
from harness.cluster.interfaces import Backend

BACKENDS = ("docker", "local")
#: what ``--backend`` / ``--opensips-backend`` accept, written once
BACKEND_CHOICES = ("auto", *BACKENDS)
BACKEND_ENV = "HARNESS_BACKEND"


def default_backend() -> str:
    """The backend asked for when no option says: $HARNESS_BACKEND, else auto."""
    return os.environ.get(BACKEND_ENV, "auto")


@dataclass(frozen=True)
class BackendChoice:
    """The backend to use (``name`` None when none can run, with ``reason``)."""

    name: str | None
    reason: str

    def factory(self) -> Callable[[Settings], Backend]:
        """The backend's class: ``choice.factory()(settings)`` is one cluster's backend."""
        if self.name == "docker":
            from harness.backends.docker.backend import DockerBackend

            return DockerBackend
        if self.name == "local":
            from harness.backends.local.backend import LocalBackend

            return LocalBackend
        raise RuntimeError(f"no OpenSIPS backend: {self.reason}")


def _docker_reason() -> str | None:
    try:
        from harness.backends.docker.engine import docker_backend_unavailable
    except ImportError as err:  # testcontainers not installed
        return f"docker backend: {err.name} is not installed (pip install -e '.[docker]')"
    return docker_backend_unavailable()


def _local_reason(settings: Settings | None) -> str | None:
    from harness.backends.local.backend import local_backend_unavailable

    return local_backend_unavailable(settings)


def choose_backend(wanted: str = "auto", settings: Settings | None = None) -> BackendChoice:
    """Pick a backend; ``wanted`` is one of BACKEND_CHOICES."""
    if wanted not in BACKEND_CHOICES:
        return BackendChoice(None, f"unknown backend {wanted!r} (auto, docker or local)")
    reasons = []
    for name in BACKENDS if wanted == "auto" else (wanted,):
        reason = _docker_reason() if name == "docker" else _local_reason(settings)
        if reason is None:
            return BackendChoice(name, f"{name} backend available")
        reasons.append(f"{name}: {reason}")
    return BackendChoice(None, "no OpenSIPS 1.10 to test against — " + "; ".join(reasons))
