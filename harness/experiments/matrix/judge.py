"""Judge one cell: a check's observation(s) on a pair against the baseline pair's.

Observations are compared key by key after flattening nested mappings
(``primary.stats.delete_sent``), so a difference names the one figure that moved and a
known difference explains exactly that figure with exactly its value. A cell is:

- ``same`` — every key equal to the baseline's;
- ``explained`` — it differs, and every differing key is pinned, at the value seen, by
  the one table entry that applies (`harness.experiments.matrix.known`);
- ``unexplained`` — a differing key no entry pins, or pins at another value;
- ``error`` — the check broke (on this pair or the baseline): nothing to compare;
- ``not run`` — the backend cannot run the check (never counted as passed);
- ``unstable`` — repeated (``--repeat``), the check observed different things.
Only ``same`` and ``explained`` pass.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

from harness.experiments.matrix.known import Known, explain
from harness.experiments.matrix.session import ERROR_KEY, NOT_RUN_KEY, STUCK_KEY

OUTCOMES = ("same", "explained", "unexplained", "error", "not run", "unstable")
PASSING = ("same", "explained")


def flatten(obs: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists and scalars stay as they are."""
    out: dict[str, Any] = {}
    for key, value in obs.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


@dataclass(frozen=True)
class Difference:
    key: str
    observed: Any
    baseline: Any
    #: the table entry that explains it (id), None while none does
    explained_by: str | None = None
    commit: str | None = None
    why: str | None = None
    #: the value the applying entry pins, when it is not the observed one
    entry_expected: Any = None


@dataclass
class Result:
    """One cell of the matrix: a check on a primary/backup pair."""

    primary: str
    backup: str
    check: str
    outcome: str
    observed: dict[str, Any]
    baseline: dict[str, Any]
    differences: list[Difference] = field(default_factory=list)
    #: every distinct observation of a repeated check, with how often it was seen
    seen: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def pair(self) -> str:
        return self.primary if self.primary == self.backup else f"{self.primary}>{self.backup}"

    @property
    def unexplained(self) -> list[Difference]:
        return [d for d in self.differences if d.explained_by is None]

    @property
    def passed(self) -> bool:
        return self.outcome in PASSING

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["differences"] = [asdict(d) for d in self.differences]
        return data

    def short(self) -> str:
        """The cell's text in matrix.md."""
        if self.outcome in ("same", "error", "not run"):
            return self.outcome
        if self.outcome == "unstable":
            return f"unstable ({len(self.seen)} observations)"
        first = (self.unexplained or self.differences)[0]
        more = f" +{len(self.differences) - 1}" if len(self.differences) > 1 else ""
        tag = first.explained_by or "unexplained"
        return f"{self.outcome}: {first.key} {_brief(first.observed)} ≠ {_brief(first.baseline)}{more} ({tag})"


def _brief(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    return text if len(text) <= 40 else text[:37] + "..."


def judge(check: str, primary: str, backup: str, observed: dict[str, Any],
          baseline: dict[str, Any], table: Sequence[Known], *,
          primary_version: str | None = None, backup_version: str | None = None) -> Result:
    """Compare ``observed`` (pair primary>backup) with ``baseline`` (the baseline pair's).

    ``*_version`` are the releases the builds report (ranges in the table are about
    those, not about a private build's label).
    """
    result = Result(primary, backup, check, "same", observed, baseline)
    if NOT_RUN_KEY in observed:
        result.outcome = "not run"
        return result
    if ERROR_KEY in observed or ERROR_KEY in baseline or NOT_RUN_KEY in baseline:
        result.outcome = "error"
        return result
    flat_obs, flat_base = flatten(observed), flatten(baseline)
    for key in sorted(set(flat_obs) | set(flat_base)):
        got, want = flat_obs.get(key, "(absent)"), flat_base.get(key, "(absent)")
        if got == want:
            continue
        why = explain(table, check, key, primary_version or primary, backup_version or backup, got)
        entry = why.entry
        result.differences.append(Difference(
            key, got, want, entry.id if why.explained and entry else None,
            entry.commit if entry else None, entry.why if entry else None, why.expected))
    if result.differences:
        result.outcome = "unexplained" if result.unexplained else "explained"
    return result


def unstable(check: str, primary: str, backup: str, observations: Sequence[dict[str, Any]],
             baseline: dict[str, Any]) -> Result | None:
    """An ``unstable`` cell when repeated observations differ (None when all are equal),
    with each distinct observation and how often it was seen. What stuck processes were
    doing (``STUCK_KEY``) is evidence beside an error, not part of what is compared."""
    distinct: list[tuple[str, dict[str, Any], int]] = []
    for obs in observations:
        text = json.dumps({k: v for k, v in obs.items() if k != STUCK_KEY}, sort_keys=True)
        for i, (t, o, n) in enumerate(distinct):
            if t == text:
                distinct[i] = (t, o, n + 1)
                break
        else:
            distinct.append((text, obs, 1))
    if len(distinct) <= 1:
        return None
    result = Result(primary, backup, check, "unstable", observations[0], baseline)
    result.seen = [{"times": n, "observed": o} for _, o, n in distinct]
    varying = sorted({k for _, o, _ in distinct for k, v in flatten(o).items()
                      if any(flatten(o2).get(k) != v for _, o2, _ in distinct)
                      and k.split(".", 1)[0] != STUCK_KEY})
    result.differences = [Difference(k, [flatten(o).get(k, "(absent)") for _, o, _ in distinct],
                                     flatten(baseline).get(k, "(absent)")) for k in varying]
    return result
