"""What every backend's builds share: the label rule and the ``V=PATH`` environment.

Every build is labelled with what its binary reports (``opensips -V``), never with
what the user hoped it was: a ``1.10.2=`` label on a binary that reports 1.10.5 is
refused, because every report would then blame 1.10.2 for 1.10.5's behaviour. A
private name ("1.10.5-patched") is kept as it is. Each backend kind resolves labels to
its own artifacts (``local.kind``: binaries; ``docker.kind``: images).
"""

from __future__ import annotations

import os

from harness.base.errors import UsageError
from harness.base.releases import ReleaseError, version_key

#: ``V=PATH,V=PATH``: the local binaries a pytest run may use (or --opensips-binary)
BINARIES_ENV = "HARNESS_OPENSIPS_BINARIES"


class BuildError(UsageError, ValueError):
    """A build that cannot be used as named (one line: which and why)."""


def check_label(label: str, reported: str, spec: str) -> None:
    """Refuse a release-number label that is not what the binary reports."""
    try:
        version_key(label)
    except ReleaseError:
        return  # a private name ("1.10.5-patched"): the report shows what it reports
    if label != reported:
        raise BuildError(f"{spec}: the binary reports {reported}, not {label} "
                         f"(name a private build anything but a release number)")


def env_binaries() -> list[str]:
    """The ``V=PATH`` specs in $HARNESS_OPENSIPS_BINARIES."""
    return [s.strip() for s in os.environ.get(BINARIES_ENV, "").split(",") if s.strip()]
