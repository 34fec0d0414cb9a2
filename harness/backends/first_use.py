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
from collections.abc import Callable, Sequence

import harness.backends.images.build as images_build
from harness.backends import images
from harness.backends.images import SIPP_IMAGE, ImageError, Progress, opensips_image
from harness.base.releases import BASELINE

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
    versions: Sequence[str] | None = None,
    missing: Callable[[Sequence[str]], list[str] | None] | None = None,
    reachable: Callable[[], str | None] | None = None,
    build: Callable[..., dict[str, str]] | None = None,
) -> dict[str, str]:
    """Build the Docker images a command is about to need; {image: id} of what was built.

    ``versions``: the OpenSIPS releases it will run (default the baseline, 1.10.5); a
    missing ``opensips-bin-harness/opensips:V`` is built as release V.
    """
    if backend not in ("docker", "auto") or no_build:
        return {}
    wanted = list(dict.fromkeys(versions or [BASELINE]))
    opensips = {opensips_image(v): v for v in wanted}
    absent = (missing or engine_images_missing)([*opensips, SIPP_IMAGE])
    if not absent:
        return {}
    todo = [v for image, v in opensips.items() if image in absent]
    which = (*(("opensips",) if todo else ()), *(("sipp",) if SIPP_IMAGE in absent else ()))
    if source is None and todo and (why := (reachable or download_problem)()):
        images_ = ", ".join(opensips_image(v) for v in todo)
        names = ", ".join(todo)
        raise ImageError(f"docker image {images_} is missing and OpenSIPS {names} cannot be "
                         f"downloaded ({why}): run `harness image build --source DIR` with an "
                         f"upstream {names} source tree (or pass --no-build)")
    progress(f"docker image {', '.join(absent)} missing: building it now, once "
             f"({FIRST_BUILD_TIME}; --no-build skips this)")
    started = time.monotonic()
    built = (build or images_build.build_images)(source, None, progress, which=which,
                                           versions=todo or None)
    progress(f"first-use build done in {time.monotonic() - started:.0f}s")
    return built
