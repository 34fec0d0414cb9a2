"""The Docker backend as the table (`harness.backends.KINDS`) sees it.

Its nodes live in containers (their pids are the container's, not this host's); a
release is supplied as an image, ``opensips-bin-harness/opensips:V`` (verified when its
recipe checked the source against the pinned tree) or an image named in full; missing
images are built on first use; ``opensips -c`` runs in a throw-away container.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.backends.builds import BuildError, check_label
from harness.backends.docker.backend import DockerBackend
from harness.backends.docker.engine import client, docker_backend_unavailable
from harness.backends.docker.image_info import image_build as build_of_image
from harness.backends.docker.node import MODULE_PATH
from harness.backends.images import OPENSIPS_IMAGE, OPENSIPS_REPO
from harness.base.releases import UPSTREAM, Build, ReleaseError, expand_versions
from harness.base.settings import Settings
from harness.cluster.interfaces import ConfigCheck


def unavailable(settings: Settings | None) -> str | None:
    return docker_backend_unavailable()


def backend(settings: Settings, build: Build | None = None) -> DockerBackend:
    """A Docker backend whose default image is ``build``'s (else the baseline's)."""
    return DockerBackend(settings, image=build.artifact) if build else DockerBackend(settings)


def image_for(version: str) -> str:
    return f"{OPENSIPS_REPO}:{version}"


def build(label: str, binaries: Iterable[str] = ()) -> Build:
    """The Build of image ``opensips-bin-harness/opensips:<label>``; BuildError if missing."""
    name = image_for(label)
    try:
        client().images.get(name)
    except Exception:
        how = (f"harness image build --version {label}" if label in UPSTREAM
               else f"harness image build --source DIR --unverified --label {label}")
        raise BuildError(f"no image {name}: build it with `{how}`") from None
    found = build_of_image(name)
    check_label(label, found.reported, name)
    return Build(label, name, found.reported, found.verified)


def builds(items: Iterable[str]) -> dict[str, Build]:
    """{label: Build} for ``1.10.0,1.10.5`` / ``all`` / ``1.10`` (pinned), private labels of
    ``opensips-bin-harness/opensips`` images, or whole image names (``acme/opensips:x``,
    an image you built FROM ours: it needs our entrypoint and tools), labelled by tag."""
    out: dict[str, Build] = {}
    for item in (i.strip() for text in items for i in text.split(",") if i.strip()):
        if "/" in item:
            found = own_image_build(item)
            out[found.label] = found
            continue
        try:
            labels = expand_versions(item)
        except ReleaseError:
            labels = [item]  # a private label, e.g. 1.10.5-patched
        for label in labels:
            out[label] = build(label)
    return out


def own_image_build(name: str) -> Build:
    """The Build of an image named in full. Verified only when it *is* our verified image
    of the release it reports (same image id): an image built FROM ours inherits our
    ``verified`` label, whatever it changed."""
    engine = client()
    try:
        image_id = engine.images.get(name).id
    except Exception:
        raise BuildError(f"no image {name} on this engine") from None
    found = build_of_image(name)
    check_label(found.label, found.reported, name)
    try:
        ours = engine.images.get(image_for(found.reported)).id
    except Exception:
        ours = None
    return Build(found.label, name, found.reported, found.verified and image_id == ours)


def config_check(settings: Settings, image: str = OPENSIPS_IMAGE) -> ConfigCheck:
    """``opensips -c`` in a throw-away container of ``image`` (no network)."""
    def argv(cfg: object) -> list[str]:
        return ["docker", "run", "--rm", "--network", "none", "-v", f"{cfg}:/etc/opensips-check.cfg:ro",
                image, "opensips", "-c", "-f", "/etc/opensips-check.cfg"]
    return ConfigCheck(module_path=MODULE_PATH, where=f"a throw-away {image} container", argv=argv)
