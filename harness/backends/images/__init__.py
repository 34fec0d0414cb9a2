"""The harness's Docker images: what they are called, and whether the engine has them.

Building them is in this package's modules: `build` (the OpenSIPS and SIPp images,
through the Docker SDK's classic builder, so no ``docker`` CLI or buildx plugin is
needed), `source` (a release's source: pinned, verified, staged as the build context)
and `base_image` (a Debian base by debootstrap where no registry is reachable). Image
builds take minutes, so every step streams its output through ``progress``; failures
surface as one `ImageError` line (what broke and what to do).
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable
from typing import Any

from harness.base.errors import HarnessError
from harness.base.releases import BASELINE
from harness.base.resources import shipped

Progress = Callable[[str], Any]

#: where OpenSIPS images live; the tag is the release (or an unverified build's name)
OPENSIPS_REPO = "opensips-bin-harness/opensips"
#: what the images are called; the docker backend runs these by default
OPENSIPS_IMAGE = f"{OPENSIPS_REPO}:{BASELINE}"
SIPP_IMAGE = "opensips-bin-harness/sipp:latest"
DEFAULT_BASE = "debian:bookworm-slim"
DEFAULT_MIRROR = "http://deb.debian.org/debian"

#: label put on everything this module builds, so images can be recognised
IMAGE_LABEL = "org.opensips-bin-harness.image"
#: labels of an OpenSIPS image (set by the Dockerfile from its build arguments): the
#: release it was built as, and "true" only when its source matched that release's pin
VERSION_LABEL = "org.opensips-bin-harness.opensips-version"
VERIFIED_LABEL = "org.opensips-bin-harness.verified"
#: upstream's tag tarball of a release (its git-archive commit id is checked)
UPSTREAM_URL = "https://github.com/OpenSIPS/opensips/archive/refs/tags/{version}.tar.gz"
#: the recipe under containers/ that builds every 1.10.x, 1.11.x and 2.1.x release
OPENSIPS_RECIPE = "opensips"

CONTAINERS_DIR = shipped("containers")

# Build outputs that OpenSIPS's own .gitignore excludes anyway: not worth copying into
# the build context (the Dockerfile's verification ignores and then deletes them).
SOURCE_JUNK = ("*.o", "*.d", "*.so", ".git", "*.swp")
# The classic builder colours a step's stderr; progress lines are plain text.
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class ImageError(HarnessError, RuntimeError):
    """A build step failed; the message is one line a user can act on."""


def engine_socket_problem() -> str | None:
    """Why the local engine socket cannot be reached, or None (also for non-unix hosts).

    Checked with a plain socket first because the Docker SDK leaks its socket when the
    connect fails, which pytest (warnings as errors) reports as a ResourceWarning.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if not host.startswith("unix://"):
        return None
    path = host[len("unix://"):]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(path)
        except OSError as exc:
            return f"{path}: {exc.strerror or exc}"
    return None


def engine_socket_reason(problem: str) -> str:
    """One line for an engine socket that would not connect, naming what to do.

    A permission problem (socket there, user not in the docker group) and an engine
    that is not running (refused, or no socket at all) need different fixes.
    """
    if "permission denied" in problem.lower():
        return (f"docker engine socket not permitted ({problem}): "
                "add this user to the docker group or set DOCKER_HOST")
    return f"docker engine not reachable ({problem}): start dockerd or set DOCKER_HOST"


def client() -> Any:
    """A Docker SDK client that answered ping, else a one-line ImageError."""
    try:
        import docker  # imported late: `harness --help` must not need it
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImageError("python package 'docker' missing: pip install docker") from exc
    if problem := engine_socket_problem():
        raise ImageError(engine_socket_reason(problem))
    client = None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:
        if client is not None:
            client.close()
        raise ImageError(engine_socket_reason(first_line(exc))) from exc
    return client


def first_line(exc: BaseException) -> str:
    """First line of an exception, for one-line error messages."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def image_exists(name: str) -> bool:
    """True when the local engine has ``name`` (no pull attempted)."""
    import docker

    engine = client()
    try:
        engine.images.get(name)
        return True
    except docker.errors.ImageNotFound:
        return False
    finally:
        engine.close()


def opensips_image(name: str) -> str:
    """The image a release (or an unverified build's name) is built as."""
    return f"{OPENSIPS_REPO}:{name}"
