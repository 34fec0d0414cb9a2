"""Where the harness finds what it ships: config templates, container recipes, SIPp
scenarios, settings, the known-differences table, the conformance suite.

Every file the harness reads at run time is found here, nowhere else, so an installed
wheel works like a checkout. Two kinds:

- **Top-level folders** of the project (`SHIPPED`: ``containers/``, ``opensips-cfg/``,
  ``scenarios/``), where the design puts them so a person finds them at once. The
  wheel carries them inside the package as ``harness/_shipped/<folder>`` (setup.py's
  build step copies them there); from a checkout (an editable install) they are read
  where they are. `shipped` looks in that order.
- **Package data** next to the code that reads it (``base/defaults.yaml``,
  ``experiments/matrix/known-differences.yaml``, ``conformance/``): `package_path`.

Real paths, because the consumers hand them to tools outside Python (jinja's
FileSystemLoader, the Docker build context, SIPp); wheels install unpacked.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from harness.base.errors import HarnessError

#: top-level folders the wheel carries as harness/_shipped/<name>
SHIPPED = ("containers", "opensips-cfg", "scenarios")
#: where the wheel puts them inside the package
SHIPPED_IN_PACKAGE = "_shipped"


class ShippedDataMissing(HarnessError, FileNotFoundError):
    """A file the harness ships is not where it must be (a broken install)."""


def _package_root() -> Path:
    return Path(str(files("harness")))


def package_path(*parts: str) -> Path:
    """A file or directory shipped inside the ``harness`` package, e.g.
    ``package_path("base", "defaults.yaml")``."""
    path = _package_root().joinpath(*parts)
    if not path.exists():
        raise ShippedDataMissing(f"harness package data missing: {path} (a broken install?)")
    return path


def shipped(folder: str, *parts: str) -> Path:
    """A file or directory of a top-level shipped folder (`SHIPPED`), e.g.
    ``shipped("scenarios", "basic_uac.xml")``: the wheel's copy, else the checkout's."""
    if folder not in SHIPPED:
        raise ValueError(f"{folder!r} is not a shipped folder ({', '.join(SHIPPED)})")
    candidates = [_package_root() / SHIPPED_IN_PACKAGE / folder]
    if (root := checkout_root()) is not None:
        candidates.append(root / folder)
    for base in candidates:
        if base.is_dir():
            path = base.joinpath(*parts)
            if not path.exists():
                raise ShippedDataMissing(f"harness data missing: {path} (a broken install?)")
            return path
    raise ShippedDataMissing(f"harness data folder {folder}/ missing: looked in "
                             f"{', '.join(str(c) for c in candidates)} (a broken install?)")


def checkout_root() -> Path | None:
    """The project checkout this package runs from (editable install), else None."""
    root = _package_root().resolve().parent
    pyproject = root / "pyproject.toml"
    if (root / "tests").is_dir() and pyproject.is_file() and 'name = "pybin-opensips"' in pyproject.read_text():
        return root
    return None


def suite_paths() -> tuple[list[Path], Path | None]:
    """What ``harness run`` hands to pytest, and the checkout to run it from (or None).

    In a checkout: the whole suite (``tests/`` and the conformance checks), run from the
    checkout so its pytest settings apply. Installed: the conformance checks alone.
    """
    root = checkout_root()
    conformance = package_path("conformance")
    if root is not None:
        return [root / "tests", conformance], root
    return [conformance], None
