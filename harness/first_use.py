"""Build a missing Docker image on first use, like a pull: for ``run``, ``up``, ``failover``.

Only when the docker backend is wanted (``docker``, or ``auto``, whose first choice it
is) and an engine answers. The build streams its progress after one line saying why
and how long it usually takes; ``--no-build`` skips it. Where the upstream release
cannot be downloaded and no ``--source`` tree is given, it stops with an ImageError
naming the exact command to run instead.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence

from harness import images
from harness.images import OPENSIPS_IMAGE, SIPP_IMAGE, ImageError, Progress

#: where the OpenSIPS build downloads upstream's release (see the Dockerfile's OPENSIPS_URL)
DOWNLOAD_HOST = ("github.com", 443)
#: what a user waits for the first time, measured on this project's CI machine
FIRST_BUILD_TIME = "about 3½ minutes on 2 cores"


def download_problem(host: tuple[str, int] = DOWNLOAD_HOST, timeout: float = 5.0) -> str | None:
    """Why the upstream release cannot be downloaded from here, or None when it can."""
    try:
        with socket.create_connection(host, timeout=timeout):
            return None
    except OSError as exc:
        return f"{host[0]}:{host[1]} unreachable ({exc.strerror or type(exc).__name__})"


def engine_images_missing(names: Sequence[str]) -> list[str] | None:
    """Which of ``names`` the engine lacks; None when no engine is reachable (nothing to build on)."""
    try:
        import docker  # noqa: F401  (the docker backend's library; absent: nothing to build on)
    except ImportError:
        return None
    if images.engine_socket_problem():
        return None
    try:
        return [name for name in names if not images.image_exists(name)]
    except ImageError:
        return None


def build_on_first_use(
    backend: str,
    *,
    no_build: bool = False,
    source: str | None = None,
    progress: Progress = print,
    tags: Mapping[str, str] | None = None,
    missing: Callable[[Sequence[str]], list[str] | None] | None = None,
    reachable: Callable[[], str | None] | None = None,
    build: Callable[..., dict[str, str]] | None = None,
) -> dict[str, str]:
    """Build the Docker images a command is about to need; {image: id} of what was built."""
    if backend not in ("docker", "auto") or no_build:
        return {}
    tags = dict(tags or {"opensips": OPENSIPS_IMAGE, "sipp": SIPP_IMAGE})
    absent = (missing or engine_images_missing)(list(tags.values()))
    if not absent:
        return {}
    which = tuple(what for what, tag in tags.items() if tag in absent)
    if source is None and "opensips" in which and (why := (reachable or download_problem)()):
        raise ImageError(f"docker image {tags['opensips']} is missing and OpenSIPS 1.10.5 cannot be "
                         f"downloaded ({why}): run `harness image build --source DIR` with an "
                         f"upstream 1.10.5 source tree (or pass --no-build)")
    progress(f"docker image {', '.join(absent)} missing: building it now, once "
             f"({FIRST_BUILD_TIME}; --no-build skips this)")
    started = time.monotonic()
    built = (build or images.build_images)(source, None, progress, which=which)
    progress(f"first-use build done in {time.monotonic() - started:.0f}s")
    return built
