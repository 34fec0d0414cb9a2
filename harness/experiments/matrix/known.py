"""The table of known differences between releases: data, one entry per upstream change.

Each entry of ``known-differences.yaml`` says which observation keys of which checks a
release range changes, whose release it is (the primary's or the backup's: the node
whose code makes the difference), optionally the value it produces, the upstream commit
that explains it and one sentence. An entry is added only once the matrix has shown the
difference on a real build *and* the commit has been read in upstream's history; a
difference without an entry is reported as unexplained, never hidden.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness.base.errors import HarnessError
from harness.base.releases import ReleaseError, in_range, version_key
from harness.base.resources import package_path

TABLE = package_path("experiments", "matrix", "known-differences.yaml")
ROLES = ("primary", "backup")


class KnownTableError(HarnessError, ValueError):
    """The table itself is malformed (one line naming the entry and the problem)."""


@dataclass(frozen=True)
class Known:
    """One upstream change and the observations it explains."""

    #: globs of check names, e.g. ``("sip.*",)``
    checks: tuple[str, ...]
    #: globs of (flattened) observation keys, e.g. ``primary.stats.delete_sent``
    keys: tuple[str, ...]
    #: whose release decides it: "primary" or "backup"
    role: str
    #: releases that behave this way, e.g. ``1.10.0-1.10.2,1.11.0-1.11.2``
    releases: str
    commit: str
    why: str
    #: the value the difference produces, when the entry pins it (None: any value)
    observed: Any = None

    def explains(self, check: str, key: str, primary: str, backup: str, observed: Any) -> bool:
        """Whether this entry accounts for ``key`` of ``check`` differing on the pair."""
        if not any(fnmatch.fnmatchcase(check, c) for c in self.checks):
            return False
        if not any(fnmatch.fnmatchcase(key, k) for k in self.keys):
            return False
        version = primary if self.role == "primary" else backup
        try:
            if not in_range(version, self.releases):
                return False
        except ReleaseError:
            return False  # a private label that is no release number: nothing is known
        return self.observed is None or self.observed == observed


def load(path: Path = TABLE) -> list[Known]:
    """The table, validated: every entry names a check, keys, a role, a range and a commit."""
    try:
        raw = yaml.safe_load(path.read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise KnownTableError(f"{path.name}: {str(exc).splitlines()[0]}") from None
    if not isinstance(raw, list):
        raise KnownTableError(f"{path.name}: expected a list of entries")
    out = []
    for i, entry in enumerate(raw, 1):
        where = f"{path.name} entry {i}"
        if not isinstance(entry, dict):
            raise KnownTableError(f"{where}: not a mapping")
        missing = [k for k in ("check", "keys", "role", "releases", "commit", "why") if k not in entry]
        if missing:
            raise KnownTableError(f"{where}: missing {', '.join(missing)}")
        unknown = set(entry) - {"check", "keys", "role", "releases", "commit", "why", "observed"}
        if unknown:
            raise KnownTableError(f"{where}: unknown field {sorted(unknown)[0]!r}")
        if entry["role"] not in ROLES:
            raise KnownTableError(f"{where}: role must be primary or backup, not {entry['role']!r}")
        commit = str(entry["commit"])
        if len(commit) != 40 or any(c not in "0123456789abcdef" for c in commit):
            raise KnownTableError(f"{where}: commit must be a full 40-hex upstream commit id")
        for part in str(entry["releases"]).split(","):
            for bound in part.strip().rstrip("+").split("-"):
                try:
                    version_key(bound)
                except ReleaseError as exc:
                    raise KnownTableError(f"{where}: releases: {exc}") from None
        keys = entry["keys"] if isinstance(entry["keys"], list) else [entry["keys"]]
        checks = entry["check"] if isinstance(entry["check"], list) else [entry["check"]]
        out.append(Known(tuple(str(c) for c in checks), tuple(str(k) for k in keys), entry["role"],
                         str(entry["releases"]), commit, " ".join(str(entry["why"]).split()),
                         entry.get("observed")))
    return out


def explain(table: list[Known], check: str, key: str, primary: str, backup: str,
            observed: Any) -> Known | None:
    """The first entry that explains ``key`` differing, or None."""
    return next((k for k in table if k.explains(check, key, primary, backup, observed)), None)
