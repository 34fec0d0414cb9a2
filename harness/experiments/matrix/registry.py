"""The behaviour checks, by name: what each observes, what it needs, where it runs.

A check runs one experiment in a `PairSession` and returns an *observation*: a flat
``{key: JSON value}`` of what it saw, once the behaviour it provoked is over
(`harness.experiments.matrix.complete`). It asserts nothing; `judge` compares it with
the baseline pair's. Keys start with who showed the behaviour (``primary.``,
``backup.``, ``nodes.``, ``calls.``), so a known difference can say whose release
causes it.

``needs`` names the `BackendKind` capabilities a check cannot do without (e.g.
``host_pids``: it signals node processes); on a backend without them the check is
*not run*, which the report lists and never counts as passed. ``features`` names what
both releases of a pair must have (`FEATURES`: usrloc replication, which 1.10 lacks);
a pair without is *not run* too. ``baseline`` is the release whose own pair a check is
compared with when the matrix's baseline (1.10.5) cannot run it: the usrloc checks
compare with 1.11.11.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from harness.base.errors import UsageError
from harness.base.releases import ReleaseError, replicates_usrloc

if TYPE_CHECKING:
    from harness.backends import BackendKind
    from harness.experiments.matrix.session import PairSession

Observation = dict[str, Any]
Run = Callable[["PairSession"], Observation]


@dataclass(frozen=True)
class Check:
    """One named experiment; ``covers`` says in one sentence what it shows."""

    name: str
    covers: str
    run: Run
    #: capabilities of the backend kind the check needs (`BackendKind` field names)
    needs: tuple[str, ...] = ()
    #: what both releases of the pair must have (`FEATURES` names)
    features: tuple[str, ...] = ()
    #: the release whose own pair this check is compared with (None: the matrix's)
    baseline: str | None = None

    def missing(self, kind: BackendKind) -> list[str]:
        """The capabilities ``kind`` lacks for this check (empty: it can run)."""
        return [n for n in self.needs if n not in kind.capabilities()]

    def lacking(self, versions: Sequence[str]) -> list[str]:
        """``"1.10.5 has no usrloc replication"`` for each feature a release lacks."""
        out = []
        for feature in self.features:
            has = FEATURES[feature]
            out += [f"{v} has no {feature}" for v in dict.fromkeys(versions) if not _has(has, v)]
        return out


def _has(feature: Callable[[str], bool], version: str) -> bool:
    try:
        return feature(version)
    except ReleaseError:  # a private label's build reports no release: it may have it
        return True


#: release features a check may need on both nodes: name -> does release V have it
FEATURES: dict[str, Callable[[str], bool]] = {"usrloc replication": replicates_usrloc}


CHECKS: dict[str, Check] = {}


def check(name: str, covers: str, *, needs: Sequence[str] = (), features: Sequence[str] = (),
          baseline: str | None = None) -> Callable[[Run], Run]:
    """Register ``fn`` as check ``name`` (names are unique: a clash is a bug)."""
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ValueError(f"check {name!r}: unknown feature {unknown[0]!r}")

    def register(fn: Run) -> Run:
        if name in CHECKS:
            raise ValueError(f"check {name!r} registered twice")
        CHECKS[name] = Check(name, covers, fn, tuple(needs), tuple(features), baseline)
        return fn
    return register


class MatrixError(UsageError, ValueError):
    """The matrix cannot run as asked (no baseline build, an unknown check...)."""


#: the modules that register checks, in the order their checks run: those sharing the
#: pair's cluster first, failover (it kills the primary) after them, then those that
#: start clusters of their own
MODULES = ("checks_sip", "checks_flags", "checks_backup", "checks_usrloc", "checks_failover",
           "checks_hostile")


def register_all() -> None:
    """Import every module that registers checks (they register on import)."""
    for name in MODULES:
        importlib.import_module(f"harness.experiments.matrix.{name}")


def ordered() -> list[str]:
    """Registered check names in run order: by `MODULES`, then as each module defines them."""
    register_all()
    index = {name: i for i, name in enumerate(CHECKS)}
    return sorted(CHECKS, key=lambda n: (MODULES.index(CHECKS[n].run.__module__.rsplit(".", 1)[-1]),
                                         index[n]))


def select_checks(patterns: Sequence[str] | None) -> list[str]:
    """Check names matching any glob in ``patterns`` (all when None), in registry order."""
    names = ordered()
    if not patterns:
        return names
    chosen = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    if not chosen:
        raise MatrixError(f"no check matches {', '.join(patterns)} (checks: {', '.join(names)})")
    return chosen
