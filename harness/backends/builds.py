"""Name the OpenSIPS builds a run uses: ``V=PATH`` binaries (local) or version images (docker).

Every build is labelled with what its binary reports (``opensips -V``), never with
what the user hoped it was: a ``1.10.2=`` label on a binary that reports 1.10.5 is
refused, because every report would then blame 1.10.2 for 1.10.5's behaviour. A
local binary is always *unverified* (nothing says which tree it came from); an image
is verified when its recipe checked the source against the pinned upstream tree.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from harness.backends.images import OPENSIPS_REPO as IMAGE_REPO
from harness.base.releases import (
    UPSTREAM,
    Build,
    ReleaseError,
    expand_versions,
    version_key,
)
from harness.base.settings import Settings
from harness.cluster.interfaces import Backend, ReleaseUnknown

#: ``V=PATH,V=PATH``: the local binaries a pytest run may use (or --opensips-binary)
BINARIES_ENV = "HARNESS_OPENSIPS_BINARIES"


class BuildError(ValueError):
    """A build that cannot be used as named (one line: which and why)."""


def image_for(version: str) -> str:
    return f"{IMAGE_REPO}:{version}"


def local_build(spec: str) -> Build:
    """``V=PATH`` or ``PATH`` -> a Build labelled V (or the version the binary reports)."""
    from harness.backends.local.node import binary_release

    label, sep, path = spec.partition("=")
    if not sep:
        label, path = "", spec
    path = os.path.expanduser(path)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise BuildError(f"{spec}: {path} is not an executable opensips binary")
    try:
        reported = binary_release(str(Path(path).resolve())).version
    except (ReleaseUnknown, OSError) as exc:
        raise BuildError(f"{spec}: {exc}") from None
    label = label.strip() or reported
    _check_label(label, reported, spec)
    return Build(label, str(Path(path).resolve()), reported, verified=False)


def _check_label(label: str, reported: str, spec: str) -> None:
    try:
        version_key(label)
    except ReleaseError:
        return  # a private name ("1.10.5-patched"): the report shows what it reports
    if label != reported:
        raise BuildError(f"{spec}: the binary reports {reported}, not {label} "
                         f"(name a private build anything but a release number)")


def local_builds(specs: Iterable[str]) -> dict[str, Build]:
    """{label: Build} for several ``V=PATH`` specs; two builds with one label are refused."""
    out: dict[str, Build] = {}
    for spec in specs:
        build = local_build(spec)
        if build.label in out and out[build.label].artifact != build.artifact:
            raise BuildError(f"two binaries are labelled {build.label}: {out[build.label].artifact} "
                             f"and {build.artifact} (label one V=PATH)")
        out[build.label] = build
    return out


def image_build(version: str) -> Build:
    """The Build of image ``opensips-bin-harness/opensips:<version>``; BuildError if missing."""
    from harness.backends.docker.engine import client
    from harness.backends.docker.node import image_build as build_of_image

    name = image_for(version)
    try:
        client().images.get(name)
    except Exception:
        how = (f"harness image build --version {version}" if version in UPSTREAM
               else f"harness image build --source DIR --unverified --label {version}")
        raise BuildError(f"no image {name}: build it with `{how}`") from None
    build = build_of_image(name)
    _check_label(version, build.reported, name)
    return Build(version, name, build.reported, build.verified)


def docker_builds(versions: str | Sequence[str]) -> dict[str, Build]:
    """{label: Build} for ``1.10.0,1.10.5`` / ``all`` / ``1.10`` (pinned), private labels of
    ``opensips-bin-harness/opensips`` images, or whole image names (``acme/opensips:x``,
    an image you built FROM ours: it needs our entrypoint and tools), labelled by tag."""
    items = versions.split(",") if isinstance(versions, str) else list(versions)
    out: dict[str, Build] = {}
    for item in (i.strip() for i in items if i.strip()):
        if "/" in item:
            build = own_image_build(item)
            out[build.label] = build
            continue
        try:
            labels = expand_versions(item)
        except ReleaseError:
            labels = [item]  # a private label, e.g. 1.10.5-patched
        for label in labels:
            out[label] = image_build(label)
    return out


def own_image_build(name: str) -> Build:
    """The Build of an image named in full. Verified only when it *is* our verified image
    of the release it reports (same image id): an image built FROM ours inherits our
    ``verified`` label, whatever it changed."""
    from harness.backends.docker.engine import client
    from harness.backends.docker.node import image_build as build_of_image

    engine = client()
    try:
        image_id = engine.images.get(name).id
    except Exception:
        raise BuildError(f"no image {name} on this engine") from None
    build = build_of_image(name)
    _check_label(build.label, build.reported, name)
    try:
        ours = engine.images.get(image_for(build.reported)).id
    except Exception:
        ours = None
    return Build(build.label, name, build.reported, build.verified and image_id == ours)


def backend_factory(backend: str, default: Build) -> Callable[[Settings], Backend]:
    """A backend class bound to ``default`` as its own binary or image (nodes may differ)."""
    if backend == "local":
        from harness.backends.local.backend import LocalBackend

        return lambda s: LocalBackend(s.with_overrides({"opensips": {"binary": default.artifact}}))
    from harness.backends.docker.backend import DockerBackend

    return lambda s: DockerBackend(s, image=default.artifact)


def env_binaries() -> list[str]:
    """The ``V=PATH`` specs in $HARNESS_OPENSIPS_BINARIES."""
    return [s.strip() for s in os.environ.get(BINARIES_ENV, "").split(",") if s.strip()]
