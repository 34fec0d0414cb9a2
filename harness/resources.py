"""Where the harness finds what it ships: config templates, container recipes, the suite.

Everything the harness reads at run time lives inside the ``harness`` package and is
found through ``importlib.resources``, so an installed wheel works as well as a
checkout. Only the full test suite (unit and corpus tests besides the conformance
checks) is looked up in the checkout, when there is one.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_path(*parts: str) -> Path:
    """A directory or file shipped in the ``harness`` package, as a real path.

    Real paths because the consumers hand them on to tools outside Python (jinja's
    FileSystemLoader, the Docker build context, SIPp); wheels install unpacked.
    """
    path = Path(str(files("harness").joinpath(*parts)))
    if not path.exists():
        raise FileNotFoundError(f"harness package data missing: {path} (a broken install?)")
    return path


def checkout_root() -> Path | None:
    """The project checkout this package runs from (editable install), else None."""
    root = Path(str(files("harness"))).resolve().parent
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
