"""Judge one observation against the baseline's: same, differs (and why), or error.

Observations are compared key by key after flattening nested mappings
(``primary.stats.delete_sent``), so a difference names the one figure that moved
and a known difference can explain exactly that figure.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from harness.experiments.matrix.known import Known, explain

#: the key an observation carries when the check could not run to the end
ERROR_KEY = "error"


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
    #: the upstream commit that explains it, None while nobody has
    explained_by: str | None = None
    why: str | None = None


@dataclass
class Result:
    """One cell of the matrix: a check on a primary/backup pair."""

    primary: str
    backup: str
    check: str
    #: same | differs | error
    outcome: str
    observed: dict[str, Any]
    baseline: dict[str, Any]
    explained_by: str | None = None
    differences: list[Difference] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def pair(self) -> str:
        return self.primary if self.primary == self.backup else f"{self.primary}>{self.backup}"

    @property
    def unexplained(self) -> list[Difference]:
        return [d for d in self.differences if d.explained_by is None]

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["differences"] = [asdict(d) for d in self.differences]
        return data

    def short(self) -> str:
        """The cell's text in matrix.md: ``same``, ``differs: key obs (commit)``, ``error``."""
        if self.outcome == "same":
            return "same"
        if self.outcome == "error":
            return "error"
        first = self.differences[0]
        more = f" +{len(self.differences) - 1}" if len(self.differences) > 1 else ""
        tag = first.explained_by[:10] if first.explained_by else "unexplained"
        return f"differs: {first.key} {_brief(first.observed)} ≠ {_brief(first.baseline)}{more} ({tag})"


def _brief(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def judge(check: str, primary: str, backup: str, observed: dict[str, Any],
          baseline: dict[str, Any], table: list[Known], *,
          primary_version: str | None = None, backup_version: str | None = None) -> Result:
    """Compare ``observed`` (pair primary>backup) with ``baseline`` (the baseline pair's).

    ``*_version`` are the releases the builds report (ranges in the table are about
    those, not about a private build's label). A check that failed, on the pair or on
    the baseline, is an error: there is nothing to compare.
    """
    result = Result(primary, backup, check, "same", observed, baseline)
    if ERROR_KEY in observed or ERROR_KEY in baseline:
        result.outcome = "error"
        return result
    flat_obs, flat_base = flatten(observed), flatten(baseline)
    for key in sorted(set(flat_obs) | set(flat_base)):
        got, want = flat_obs.get(key, "(absent)"), flat_base.get(key, "(absent)")
        if got == want:
            continue
        known = explain(table, check, key, primary_version or primary, backup_version or backup, got)
        result.differences.append(Difference(key, got, want, known.commit if known else None,
                                             known.why if known else None))
    if result.differences:
        result.outcome = "differs"
        commits = [d.explained_by for d in result.differences]
        result.explained_by = commits[0] if all(commits) else None
    return result
