"""What an OpenSIPS image is, asked of the engine: the release it reports, its label,
and whether its build verified the source (`harness.base.releases.Build`)."""

from __future__ import annotations

import functools

from harness.backends.docker.engine import client
from harness.backends.images import VERIFIED_LABEL
from harness.base.releases import Build
from harness.cluster.interfaces import Release, parse_release


@functools.cache
def image_release(image: str) -> Release:
    """What ``opensips -V`` says in ``image`` (asked once per image and process)."""
    engine = client()
    out = engine.containers.run(image, ["opensips", "-V"], remove=True,
                                stdout=True, stderr=True).decode("utf-8", "replace")
    return parse_release(out, image, str(engine.images.get(image).id))


def image_label(image: str) -> str:
    """What reports call an image: its tag (``…/opensips:1.11.11`` -> ``1.11.11``), else its name."""
    repo, sep, tag = image.rpartition(":")
    return tag if sep and "/" not in tag and not repo.endswith("sha256") else image


@functools.cache
def image_build(image: str) -> Build:
    """The :class:`~harness.base.releases.Build` an OpenSIPS image is, for reports.

    ``label`` is the image's tag, ``reported`` what ``opensips -V`` in it says, and
    ``verified`` is true only when the image carries the verified label that its build
    sets after the source matched the release's pinned upstream tree (`harness image
    build`); an image built any other way is unverified.
    """
    labels = client().images.get(image).labels or {}
    verified = labels.get(VERIFIED_LABEL) == "true"
    return Build(image_label(image), image, image_release(image).version, verified)
