"""The local backend as the table (`harness.backends.KINDS`) sees it.

Its nodes are processes of this host (their pids can be signalled and read in /proc);
a release is supplied as a binary, ``V=PATH`` or the default one (``OPENSIPS_BIN`` /
``opensips`` on PATH); ``opensips -c`` runs that binary.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from harness.backends.builds import BINARIES_ENV, BuildError, check_label, env_binaries
from harness.backends.local.backend import LocalBackend, local_backend_unavailable
from harness.backends.local.node import binary_release
from harness.base.releases import Build
from harness.base.settings import Settings, load_settings
from harness.cluster.interfaces import ConfigCheck, ReleaseUnknown


def unavailable(settings: Settings | None) -> str | None:
    return local_backend_unavailable(settings)


def backend(settings: Settings, build: Build | None = None) -> LocalBackend:
    """A local backend whose default binary is ``build``'s (else the settings' one)."""
    if build is not None:
        settings = settings.with_overrides({"opensips": {"binary": build.artifact}})
    return LocalBackend(settings)


def local_build(spec: str) -> Build:
    """``V=PATH`` or ``PATH`` -> a Build labelled V (or the version the binary reports)."""
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
    check_label(label, reported, spec)
    return Build(label, str(Path(path).resolve()), reported, verified=False)


def builds(items: Iterable[str]) -> dict[str, Build]:
    """{label: Build} for several ``V=PATH`` specs; two binaries with one label are refused."""
    out: dict[str, Build] = {}
    for spec in items:
        build = local_build(spec)
        if build.label in out and out[build.label].artifact != build.artifact:
            raise BuildError(f"two binaries are labelled {build.label}: {out[build.label].artifact} "
                             f"and {build.artifact} (label one V=PATH)")
        out[build.label] = build
    return out


def build(label: str, binaries: Sequence[str] = ()) -> Build:
    """The binary of release ``label``: a ``V=PATH`` given (or in $HARNESS_OPENSIPS_BINARIES),
    else the default binary when it reports ``label``."""
    named = builds([*binaries, *env_binaries()])
    if label in named:
        return named[label]
    default = local_build(load_settings().opensips_binary())
    if default.label == label:
        return default
    raise BuildError(f"no local binary of release {label}: pass --opensips-binary {label}=PATH "
                     f"(or ${BINARIES_ENV}); the default binary reports {default.label}")


def config_check(settings: Settings) -> ConfigCheck:
    """``opensips -c`` with the binary the nodes would run."""
    binary = settings.opensips_binary()
    return ConfigCheck(module_path=settings.module_path_for(binary), where="the local binary",
                       argv=lambda cfg: [binary, "-c", "-f", str(cfg)])
