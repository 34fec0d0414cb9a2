"""The OpenSIPS releases the harness knows, and how one is named, pinned and compared.

Upstream tags 1.10.0 … 1.10.5, 1.11.0 … 1.11.11 and 2.1.0 … 2.1.5 (the whole 1.x BIN
family: 2.2 moved BIN to TCP) are pinned here by the commit a GitHub tag tarball
records (``git get-tar-commit-id``, the tag's commit) and the git tree its files hash
to (``git write-tree``, the tag's ``^{tree}``): an image built "as release V" is
refused unless its source is exactly that tree. None of these tags has a
``.gitattributes`` or a submodule, so ``git archive`` output, and therefore upstream's
tarball, holds exactly the tagged files.

A *build* is what actually runs: an upstream release verified against its pin, or
anything else (a patched tree, a private binary) labelled unverified, always with
the version the binary itself reports.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.base.errors import UsageError
from pybin.rules import in_range as _in_range
from pybin.rules import version_key as _version_key

#: the release every other one is compared with
BASELINE = "1.10.5"

#: version -> (commit, tree) of upstream's tag
UPSTREAM: dict[str, tuple[str, str]] = {
    "1.10.0": ("70d280148d508b151308b4a7142d14a18ab873db", "5d5aad6d6f28c098fb7c5711d8453c76d3ea52d4"),
    "1.10.1": ("5d2b9a7673f0353a15c357a295edbb1c243e4936", "eba0dc3862bda3415cd7eaa8607d84e15c9d3a18"),
    "1.10.2": ("c49b06e192e349faa4b1f4f40813bff4093d1308", "319de74ba9c5c76cb2aafafb6dbbcec903fbad25"),
    "1.10.3": ("13a3a4c63d3271c952972202957ab2ff8fc4a89a", "895e72de29a15094f46181dce54898f9d95d7bb7"),
    "1.10.4": ("2a01e72cbbfb7725d867d05b65e0c10824ad41dc", "b39a9569d08c6565e9c16a7ee58b52c051433d8b"),
    "1.10.5": ("5229dcba3c500d6a9fcafa88672b4b2ca70c078e", "72f51f009d8c2b5809bc83c6e88cbd216a70b582"),
    "1.11.0": ("7346457372c84a04fbe8863e6152e9dba758cda3", "8988eb6b19bcd6522c1fb9801673941770d99294"),
    "1.11.1": ("fd4d3a7a97a966d8af9f6f5dfda1868d7e107ac0", "fff8947c14920b198ffdc0105e6a1196c58dcd00"),
    "1.11.2": ("ed698c5a85d6ecda70b244ae9c5717bd9c2024af", "4cdc24ed48622db7d0f715819d48cb0cedc45fa5"),
    "1.11.3": ("dee7da400f1104027baad0e7d1cdc63b989707c7", "ac864d76e392a6972a0f46a24d599e9b8e2ec618"),
    "1.11.4": ("1534035df4242b8a74cd5af7dbc5bdefa26445d7", "0a3d58dab5733eb16efe4746223baf5cb1449cb4"),
    "1.11.5": ("fc1a2eb7978ac6aac2714a1a0a5a25c7959bb1d6", "8dd793263a50f929625ee406eb10163f16babaf9"),
    "1.11.6": ("af0bfbfbd0782c955970d6c4d87e5cf9fb6a652a", "4992be65a79988adfb5e9019fd856ff45bd87211"),
    "1.11.7": ("8cea14e17e13bb8a73741594a29e8de586234e0f", "6f3a749a3e3f1363e3b63218c72dc2d2f81b7457"),
    "1.11.8": ("e885a77f4add62de4d24b5f4a64a5fecfc4ed73e", "7850d545b00ca62b8cddce733822047eed946bf6"),
    "1.11.9": ("5f61644fa7f94c061d932a823ac75afebb6c630f", "5819cfe829aa453b14a1027e648622fdef0a955d"),
    "1.11.10": ("7b0189be53c02587d310a2c8390bcb0b4a180e87", "40560308b51289ae16897c75e7c9dc1b15682e86"),
    "1.11.11": ("4ec29c3101c5ba9bb4ec0b62cc12a114034d7138", "1b7f2059c2945c3026da06aff859bfc495c25616"),
    "2.1.0": ("b365aedda92e65de275a82b36c67131a723aa630", "d6e4f75733eefee3badf372cb880c739363fafe7"),
    "2.1.1": ("31a3132297f1a65f211e9f54951b4d7cda0084c9", "5cc08302396459d3e682f7f318124d5d22a6f4a6"),
    "2.1.2": ("bb3743934ca1385648f95f2e119c8e6a15685983", "019397382d20ee28e1ad7527afd3e6a54526a1b5"),
    "2.1.3": ("18671984451f038f056e984cb971c049f402f682", "382709164e42fa7387cf5b01b71f378b7c2fe8fc"),
    "2.1.4": ("121e8bfe4283f1b41ab55ed51772f5d734bc6466", "b9209ef237fa2b6a94b66bb2f240cd102c1b91c7"),
    "2.1.5": ("33f78e7a72b372664941e7ab24f5d38a4f58ab27", "7d87b235a2896097c213f58bdeb477bf25f33dee"),
}

class ReleaseError(UsageError, ValueError):
    """A version or release range the harness cannot use (one line, says what is valid)."""


def version_key(version: str) -> tuple[int, int, int]:
    """``"1.10.2"`` -> (1, 10, 2), for ordering and ranges; ReleaseError when not x.y.z.
    (pybin's backup rules own the parsing; harness only names the error.)"""
    try:
        return _version_key(version)
    except ValueError as exc:
        raise ReleaseError(str(exc)) from None


def family(version: str) -> str:
    """``"1.11.4"`` -> ``"1.11"``: the branch whose config language the node speaks."""
    major, minor, _ = version_key(version)
    return f"{major}.{minor}"


#: the branches whose usrloc module replicates registrations over this BIN
#: (``replicate_contacts_to``, ``modules/usrloc/ureplication.c``): 1.10 has no such
#: module user, 2.2 moved replication to the clusterer module on a new BIN
USRLOC_REPLICATION_FAMILIES = ("1.11", "2.1")


def replicates_usrloc(version: str) -> bool:
    """Whether release ``version`` can replicate registrations (1.11 and 2.1; not 1.10)."""
    return family(version) in USRLOC_REPLICATION_FAMILIES


def known_versions() -> list[str]:
    """Every pinned upstream release, oldest first."""
    return sorted(UPSTREAM, key=version_key)


def pin(version: str) -> tuple[str, str]:
    """(commit, tree) of upstream tag ``version``; ReleaseError naming the pinned ones."""
    try:
        return UPSTREAM[version]
    except KeyError:
        raise ReleaseError(f"no pinned upstream release {version!r} "
                           f"(pinned: {', '.join(known_versions())})") from None


def expand_versions(spec: str | list[str]) -> list[str]:
    """``"all"``, ``"1.10"`` (a branch), ``"1.10.0,1.10.5"`` or a list -> versions, oldest first."""
    items = spec.split(",") if isinstance(spec, str) else [p for s in spec for p in s.split(",")]
    out: list[str] = []
    for item in (i.strip() for i in items):
        if not item:
            continue
        if item == "all":
            chosen = known_versions()
        elif re.fullmatch(r"\d+\.\d+", item):
            chosen = [v for v in known_versions() if family(v) == item]
            if not chosen:
                raise ReleaseError(f"no pinned release on branch {item}")
        else:
            version_key(item)
            chosen = [item]
        out.extend(v for v in chosen if v not in out)
    return sorted(out, key=version_key)


def in_range(version: str, spec: str) -> bool:
    """Whether ``version`` is in ``spec``: ``"1.10.0-1.10.2"``, ``"1.11.7+"`` (the rest of
    that branch only), ``"1.10.3"``, or several joined by commas (pybin.rules.in_range)."""
    try:
        return _in_range(version, spec)
    except ValueError as exc:
        raise ReleaseError(str(exc)) from None


@dataclass(frozen=True)
class Build:
    """One OpenSIPS that can run: what it is called, where it is, and what it claims to be.

    ``label`` names it in reports and test ids (a pinned version, or the user's name for
    a private build); ``reported`` is what ``opensips -V`` says; ``verified`` is true only
    for an image whose source matched the pinned upstream tree.
    """

    label: str
    #: a binary path (local backend) or an image name (docker backend)
    artifact: str
    reported: str
    verified: bool = False

    @property
    def version(self) -> str:
        """The release the binary reports: the one whose rules and config apply."""
        return self.reported

    def describe(self) -> str:
        how = "verified upstream tree" if self.verified else "unverified"
        same = "" if self.label == self.reported else f", reports {self.reported}"
        return f"{self.label} ({how}{same}: {self.artifact})"
