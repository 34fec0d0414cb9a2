"""Upstream defects that kill, stall or starve a release's node at random: named beside the
cells where such a node died, stalled or logged its mark, never counted as explained.

A difference between releases is pinned by an entry of ``known-differences.yaml`` at
the exact value it shows. A node that dies under the matrix's ordinary load is not
such a difference: when it dies, and what the check had seen by then, is chance, so
no value can be pinned and the cell stays ``error``, ``unstable`` or ``unexplained``
and fails the run. What the reader still needs is the cause: an entry of
``known-defects.yaml`` names the release, the commit that broke it, the commit that
fixes it and the function, and `named` finds the cells where a node of that release
died, so the report can say "a 1.11.0 primary died: shm-malloc-unlocked" instead of
leaving a crash to look like a harness fault. A defect may also list the ``frames``
(functions) a process stuck by it is found in: when a check's deadline passed, the
session read the node's processes (``STUCK_KEY``), and a process of such a release
found in one of them names the defect too ("a 1.11.0 primary was stuck in fm_malloc");
and ``logs``, patterns of the log lines it causes, found among what a check recorded of
a node's log ("a 1.11.0 backup logged ...: no more share memory").
The name is a pointer, not a proof: any death of such a node counts, so a failing cell
whose node a hostile datagram killed (``robustness``) would be named too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.base.releases import ReleaseError, in_range
from harness.base.resources import package_path
from harness.experiments.matrix.judge import PASSING, Result, flatten
from harness.experiments.matrix.known import (
    ROLES,
    KnownTableError,
    check_commit,
    check_releases,
    read_entries,
)
from harness.experiments.matrix.session import ERROR_KEY, STUCK_KEY

DEFECTS = package_path("experiments", "matrix", "known-defects.yaml")
FIELDS = ("id", "releases", "commit", "fixed_by", "fixed_in", "function", "why")
OPTIONAL = ("frames", "logs")
#: how a check broken by `harness.backends.core`'s NodeDied reads:
#: "NodeDied: node primary (10.0.0.1) died at ..."
_DIED = re.compile(r"NodeDied: node (\w+) ")


@dataclass(frozen=True)
class Defect:
    """One upstream defect: the releases it is in, what broke it, what fixes it."""

    id: str
    #: release range (``1.11.0``, ``1.11.0-1.11.2``) whose nodes have it
    releases: str
    commit: str
    fixed_by: str
    fixed_in: str
    #: ``file:function`` the commit breaks
    function: str
    why: str
    #: functions a process stuck by the defect is found in (a stack's frame names)
    frames: tuple[str, ...] = ()
    #: patterns (regular expressions, any case) of node log lines the defect causes
    logs: tuple[str, ...] = ()

    def has(self, version: str) -> bool:
        try:
            return in_range(version, self.releases)
        except ReleaseError:  # a private label that is no release number
            return False


@dataclass(frozen=True)
class Named:
    """A cell where a node of a release with a defect died, stalled or logged its mark."""

    check: str
    primary: str
    backup: str
    role: str
    release: str
    defect: Defect
    #: what happened to the node: ``died``, or ``was stuck in fm_malloc (pid 412)``
    how: str = "died"

    def to_json(self) -> dict[str, str]:
        return {"check": self.check, "primary": self.primary, "backup": self.backup,
                "role": self.role, "release": self.release, "defect": self.defect.id, "text": self.text()}

    def text(self) -> str:
        d = self.defect
        return (f"a {self.release} {self.role} {self.how}: upstream defect `{d.id}` "
                f"({d.function}, commit {d.commit[:10]}; fixed by {d.fixed_by[:10]} in {d.fixed_in})")


def load(path: Path = DEFECTS) -> list[Defect]:
    """The defects, validated (one-line KnownTableError naming the entry)."""
    return read_entries(path, _entry)


def _entry(entry: Any, where: str) -> Defect:
    if not isinstance(entry, dict):
        raise KnownTableError(f"{where}: not a mapping")
    if missing := [k for k in FIELDS if k not in entry]:
        raise KnownTableError(f"{where}: missing {', '.join(missing)}")
    if unknown := sorted(set(entry) - set(FIELDS) - set(OPTIONAL)):
        raise KnownTableError(f"{where}: unknown field {unknown[0]!r}")
    where = f"{where} ({entry['id']})"
    frames = entry.get("frames", [])
    if not isinstance(frames, list) or not all(isinstance(f, str) and f.isidentifier() for f in frames):
        raise KnownTableError(f"{where}: frames must be a list of function names")
    logs = entry.get("logs", [])
    if not isinstance(logs, list) or not all(isinstance(x, str) for x in logs):
        raise KnownTableError(f"{where}: logs must be a list of patterns")
    for pattern in logs:
        try:
            re.compile(pattern)
        except re.error as err:
            raise KnownTableError(f"{where}: logs pattern {pattern!r}: {err}") from None
    return Defect(str(entry["id"]), check_releases(entry["releases"], where),
                  check_commit(entry["commit"], where), check_commit(entry["fixed_by"], where, "fixed_by"),
                  check_releases(entry["fixed_in"], where), str(entry["function"]),
                  " ".join(str(entry["why"]).split()), tuple(frames), tuple(logs))


def _observations(result: Result) -> list[dict[str, Any]]:
    """Every observation of the cell: each distinct one of a repeated cell, else its one."""
    return [s["observed"] for s in result.seen] or [result.observed]


def died(result: Result) -> list[str]:
    """The roles whose node died in any of the cell's observations (every repeat of an
    unstable cell): ``nodes.alive.<role>`` false, or the check's error a NodeDied."""
    observations = _observations(result)
    roles: set[str] = set()
    for obs in observations:
        flat = flatten(obs)
        roles.update(role for role in ROLES if flat.get(f"nodes.alive.{role}") is False)
        if match := _DIED.match(str(obs.get(ERROR_KEY, ""))):
            roles.add(match.group(1))
    return [role for role in ROLES if role in roles]


def stuck_in(result: Result, frames: Sequence[str]) -> list[tuple[str, str]]:
    """(role, ``was stuck in fm_malloc (pid 412)``) for each role with a process found
    in one of ``frames`` when a deadline passed (the session's ``STUCK_KEY`` lines:
    ``pid 412 R cpu 98%: fm_malloc < shm_malloc``), in any repeat; the innermost such
    frame of the first such process."""
    if not frames:
        return []
    observations = _observations(result)
    found: dict[str, str] = {}
    for obs in observations:
        for node, lines in (obs.get(STUCK_KEY) or {}).items():
            role = next((r for r in ROLES if str(node).startswith(r)), None)
            if role is None or role in found:
                continue
            for line in lines:
                head, _, stack = str(line).partition(": ")
                hit = next((f for f in stack.split(" < ") if f in frames), None)
                if hit is not None:
                    found[role] = f"was stuck in {hit} ({' '.join(head.split()[:2])})"
                    break
    return [(role, found[role]) for role in ROLES if role in found]


def logged(result: Result, patterns: Sequence[str]) -> list[tuple[str, str]]:
    """(role, ``logged "ERROR:tm:relay_reply: no more share memory"``) for each role
    whose recorded log lines (any string under a ``<role>.`` key of the observation, in
    any repeat) match one of ``patterns``; the first such line."""
    if not patterns:
        return []
    found_re = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
    observations = _observations(result)
    found: dict[str, str] = {}
    for obs in observations:
        for key, value in flatten(obs).items():
            role = key.split(".", 1)[0]
            if role not in ROLES or role in found:
                continue
            for line in value if isinstance(value, list) else [value]:
                if isinstance(line, str) and found_re.search(line):
                    found[role] = f'logged "{line[:100]}"'
                    break
    return [(role, found[role]) for role in ROLES if role in found]


def named(results: Iterable[Result], versions: Mapping[str, str],
          defects: Sequence[Defect]) -> list[Named]:
    """Every failing cell where a node of a release with a defect died, was found stuck
    in one of the defect's ``frames``, or logged a line its ``logs`` match. ``versions``:
    each build label's release (what the binary reports)."""
    out = []
    for r in results:
        if r.outcome in PASSING or r.outcome == "not run":
            continue
        dead = died(r)
        for d in defects:
            hits = [(role, "died") for role in dead]
            for role, how in stuck_in(r, d.frames) + logged(r, d.logs):
                if role not in {h[0] for h in hits}:
                    hits.append((role, how))
            for role, how in hits:
                label = r.primary if role == "primary" else r.backup
                release = versions.get(label, label)
                if d.has(release):
                    out.append(Named(r.check, r.primary, r.backup, role, release, d, how))
    return out
