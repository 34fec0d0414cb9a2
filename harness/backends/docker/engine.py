"""Access to the Docker engine, and cleanup of everything the harness created in it.

Every container and network carries the run id and its owner (``harness.base.owner``) as
labels: ``harness.backends.clean`` removes leftovers of owners that no longer exist (runs
killed before their ``finally`` ran), ``sweep()`` those of one run, an ``atexit`` hook
what this process created and did not remove (interrupts).
"""

from __future__ import annotations

import atexit
import os
import re
import threading
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

from harness.backends.core import run_id  # noqa: E402
from harness.backends.images import (  # noqa: E402
    OPENSIPS_IMAGE,
    engine_socket_problem,
    engine_socket_reason,
    first_line,
)
from harness.base.errors import HarnessError
from harness.base.owner import me  # noqa: E402

LABEL_PREFIX = "org.opensips-bin-harness"
RUN_LABEL = f"{LABEL_PREFIX}.run"
KIND_LABEL = f"{LABEL_PREFIX}.kind"
CLUSTER_LABEL = f"{LABEL_PREFIX}.cluster"
NODE_LABEL = f"{LABEL_PREFIX}.node"
#: ``host pid start`` of the process that created it (harness.base.owner)
OWNER_LABEL = f"{LABEL_PREFIX}.owner"


class DockerBackendError(HarnessError, RuntimeError):
    """The engine refused something (network, container) in a way a user must fix."""


_client_lock = threading.Lock()
_CLIENT: Any = None


def client() -> Any:
    """One docker SDK client per process (cheap to share, thread-safe enough)."""
    global _CLIENT
    with _client_lock:
        if _CLIENT is None:
            import docker

            _CLIENT = docker.from_env(timeout=120)
        return _CLIENT


def docker_backend_unavailable(image: str = OPENSIPS_IMAGE) -> str | None:
    """Why the docker backend cannot run here (one line), or None when it can.

    Each cause reads differently (engine refused, socket not permitted, image not
    built, image lookup failed), so an explicit ``--opensips-backend docker`` that
    fails says which one to fix.
    """
    try:
        import docker
        import testcontainers.core.container  # noqa: F401
    except ImportError as exc:
        return f"docker backend needs python packages 'docker' and 'testcontainers' ({exc.name} missing)"
    if problem := engine_socket_problem():
        return engine_socket_reason(problem)
    try:
        engine = client()
        engine.ping()
    except Exception as exc:
        return engine_socket_reason(first_line(exc))
    try:
        engine.images.get(image)
    except docker.errors.ImageNotFound:
        return f"docker image {image} not built: run `harness image build`"
    except Exception as exc:
        return f"docker engine could not look up image {image} ({first_line(exc)})"
    return None


def labels_for(kind: str, cluster: str | None = None, node: str | None = None,
               run: str | None = None) -> dict[str, str]:
    """Labels put on every container and network, so leftovers can be found."""
    labels = {RUN_LABEL: run or run_id(), KIND_LABEL: kind, OWNER_LABEL: str(me())}
    if cluster is not None:
        labels[CLUSTER_LABEL] = cluster
    if node is not None:
        labels[NODE_LABEL] = node
    return labels


def slug(text: str, limit: int = 24) -> str:
    """``text`` as a container/network name part."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", text)[:limit] or "x"


# ------------------------------------------------------------------- cleanup registry

_live_lock = threading.Lock()
_LIVE: dict[str, Callable[[], None]] = {}


def register(key: str, cleanup: Callable[[], None]) -> None:
    with _live_lock:
        _LIVE[key] = cleanup


def unregister(key: str) -> None:
    with _live_lock:
        _LIVE.pop(key, None)


@atexit.register
def _cleanup_at_exit() -> None:
    """Remove what this process created and did not remove (interrupted runs)."""
    with _live_lock:
        pending = list(_LIVE.items())
        _LIVE.clear()
    # containers before networks: a network with endpoints cannot be removed
    for _, cleanup in sorted(pending, key=lambda kv: not kv[0].startswith("container:")):
        quietly(cleanup)


def sweep(run: str | None = None) -> tuple[int, int]:
    """Remove harness containers and networks: of one run, or of every run if None.

    With None this also removes other live sessions' clusters: meant for a CLI
    cleanup, not for tests. Returns (containers removed, networks removed).
    """
    engine = client()
    label = f"{RUN_LABEL}={run}" if run else RUN_LABEL
    containers = 0
    for c in engine.containers.list(all=True, filters={"label": label}):
        try:
            c.remove(force=True, v=True)
            containers += 1
        except Exception:
            pass
    networks = 0
    for n in engine.networks.list(filters={"label": label}):
        try:
            n.remove()
            networks += 1
        except Exception:
            pass
    return containers, networks


def quietly(action: Callable[[], object]) -> None:
    """Run a cleanup step whose failure must not stop the next one."""
    try:
        action()
    except Exception:
        pass


def remove_by_name(name: str) -> None:
    """Remove a container by name if it exists (client and capture containers)."""
    quietly(lambda: client().containers.get(name).remove(force=True, v=True))
