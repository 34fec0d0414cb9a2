"""The table of known differences between releases: data, one entry per upstream change
and check group, each pinning exactly what it explains.

An entry of ``known-differences.yaml`` names the checks it is about, the releases that
behave so (for the primary's role, the backup's, or both: the node whose code makes the
difference), the upstream commit, the function it changes and one paragraph quoting
it, and **the exact value of every observation key it explains** (``observed``). A
difference is explained only by the one entry that applies to the cell and pins that
key, and only when the value is exactly the pinned one: anything else — another
count, a missing packet, a node that dies instead of logging — is unexplained. Two
entries that could pin the same key of the same cell make the table invalid: `load`
refuses it, so the first matching entry can never win by accident.

An entry is added only once the matrix has shown the difference on a real build *and*
the commit has been read in upstream's history.
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from harness.base.errors import HarnessError
from harness.base.releases import UPSTREAM, ReleaseError, in_range, version_key
from harness.base.resources import package_path

TABLE = package_path("experiments", "matrix", "known-differences.yaml")
ROLES = ("primary", "backup")
FIELDS = ("id", "checks", "primary", "backup", "commit", "function", "why", "observed")


class KnownTableError(HarnessError, ValueError):
    """The table itself is malformed or ambiguous (one line naming the entries)."""


@dataclass(frozen=True)
class Known:
    """One upstream change and the exact observations it explains."""

    id: str
    #: globs of check names, e.g. ``("sip.*",)``
    checks: tuple[str, ...]
    #: release ranges per role (``1.10.0-1.10.2,1.11.0-1.11.2``, ``1.11.7+``); a role
    #: without one is any release
    primary: str | None
    backup: str | None
    commit: str
    #: ``file:function`` the commit changes
    function: str
    why: str
    #: flattened observation key -> the exact value the releases show
    observed: dict[str, Any] = field(default_factory=dict)

    def applies(self, check: str, primary: str, backup: str) -> bool:
        """Whether this entry is about ``check`` on the pair primary>backup (releases as
        the builds report them; a private label that is no release number matches none)."""
        if not any(fnmatch.fnmatchcase(check, c) for c in self.checks):
            return False
        for rng, version in ((self.primary, primary), (self.backup, backup)):
            if rng is None:
                continue
            try:
                if not in_range(version, rng):
                    return False
            except ReleaseError:
                return False
        return True


@dataclass(frozen=True)
class Explanation:
    """How one differing key stands against the table."""

    explained: bool
    #: the entry that applies to the cell and pins the key (None: no entry does)
    entry: Known | None = None
    #: what the entry pins, when it is not what was observed
    expected: Any = None


def explain(table: Sequence[Known], check: str, key: str, primary: str, backup: str,
            observed: Any) -> Explanation:
    """The one entry that applies to the cell and pins ``key``, and whether the
    observed value is exactly its value."""
    entries = [k for k in table if key in k.observed and k.applies(check, primary, backup)]
    if not entries:
        return Explanation(False)
    if len(entries) > 1:  # load() refuses such tables; a hand-made list may not
        raise KnownTableError(f"entries {', '.join(k.id for k in entries)} all pin {key} of {check}")
    entry = entries[0]
    if entry.observed[key] == observed:
        return Explanation(True, entry)
    return Explanation(False, entry, entry.observed[key])


def load(path: Path = TABLE, checks: Iterable[str] | None = None) -> list[Known]:
    """The table, validated: every field there and well formed, every entry pinning at
    least one key, no two entries pinning one key of one cell (``checks``: the check
    names to test that against; default every registered check)."""
    out = read_entries(path, _entry)
    if checks is None:
        from harness.experiments.matrix.registry import CHECKS, register_all
        register_all()
        checks = list(CHECKS)
    refuse_overlaps(out, list(checks))
    return out


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


_Entry = TypeVar("_Entry", bound=_HasId)


def read_entries(path: Path, parse: Callable[[Any, str], _Entry]) -> list[_Entry]:
    """A YAML list of entries, each made by ``parse(raw, where)``, no id used twice;
    KnownTableError (one line naming the file and entry) otherwise. The table of known
    differences and the file of known defects (`harness.experiments.matrix.defects`)
    are both read so."""
    try:
        raw = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise KnownTableError(f"{path.name}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, list):
        raise KnownTableError(f"{path.name}: expected a list of entries")
    out = [parse(entry, f"{path.name} entry {i}") for i, entry in enumerate(raw, 1)]
    ids = [e.id for e in out]
    if dup := sorted({i for i in ids if ids.count(i) > 1}):
        raise KnownTableError(f"{path.name}: entry id {dup[0]!r} used twice")
    return out


def check_commit(value: Any, where: str, name: str = "commit") -> str:
    """``value`` as a full upstream commit id; KnownTableError naming ``where`` otherwise."""
    commit = str(value)
    if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
        raise KnownTableError(f"{where}: {name} must be a full 40-hex upstream commit id")
    return commit


def check_releases(spec: Any, where: str) -> str:
    """``spec`` as a release range (``1.10.0-1.10.2,1.11.7+``) whose every bound is a
    release number; KnownTableError naming ``where`` otherwise."""
    for part in str(spec).split(","):
        for bound in part.strip().rstrip("+").split("-"):
            try:
                version_key(bound)
            except ReleaseError as exc:
                raise KnownTableError(f"{where}: {exc}") from None
    return str(spec)


def _entry(entry: Any, where: str) -> Known:
    if not isinstance(entry, dict):
        raise KnownTableError(f"{where}: not a mapping")
    missing = [k for k in ("id", "checks", "commit", "function", "why", "observed") if k not in entry]
    if missing:
        raise KnownTableError(f"{where}: missing {', '.join(missing)}")
    if unknown := sorted(set(entry) - set(FIELDS)):
        raise KnownTableError(f"{where}: unknown field {unknown[0]!r}")
    where = f"{where} ({entry['id']})"
    if "primary" not in entry and "backup" not in entry:
        raise KnownTableError(f"{where}: name the releases of the primary, the backup or both")
    commit = check_commit(entry["commit"], where)
    for role in ROLES:
        check_releases(entry.get(role, "0.0.0"), f"{where}: {role}")
    observed = entry["observed"]
    if not isinstance(observed, dict) or not observed:
        raise KnownTableError(f"{where}: observed must map each key it explains to its exact value")
    checks = entry["checks"] if isinstance(entry["checks"], list) else [entry["checks"]]
    return Known(str(entry["id"]), tuple(str(c) for c in checks),
                 str(entry["primary"]) if "primary" in entry else None,
                 str(entry["backup"]) if "backup" in entry else None,
                 commit, str(entry["function"]), " ".join(str(entry["why"]).split()),
                 {str(k): v for k, v in observed.items()})


def _releases(rng: str | None) -> set[str]:
    """The pinned releases a role's range holds (every one when the entry names none)."""
    versions = set(UPSTREAM)
    return versions if rng is None else {v for v in versions if in_range(v, rng)}


def refuse_overlaps(table: Sequence[Known], checks: Sequence[str]) -> None:
    """KnownTableError when two entries could both pin one key of one cell: a check
    both match, a pinned release of each role both apply to, a key both pin."""
    roles = {k.id: (_releases(k.primary), _releases(k.backup)) for k in table}
    for a, b in itertools.combinations(table, 2):
        keys = sorted(set(a.observed) & set(b.observed))
        if not keys:
            continue
        primary = roles[a.id][0] & roles[b.id][0]
        backup = roles[a.id][1] & roles[b.id][1]
        if not primary or not backup:
            continue
        for check in checks:
            if any(fnmatch.fnmatchcase(check, c) for c in a.checks) and \
                    any(fnmatch.fnmatchcase(check, c) for c in b.checks):
                p, q = min(primary, key=version_key), min(backup, key=version_key)
                raise KnownTableError(
                    f"entries {a.id} and {b.id} both pin {keys[0]} of {check} on "
                    f"{p}>{q}: narrow one (a cell's key has one explanation)")
