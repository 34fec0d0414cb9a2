"""The ``harness`` command and the pytest plugin as installed entry points.

pybin installs without the harness's dependencies (the ``harness`` extra), yet the
wheel still declares both entry points. Without those dependencies the command says in
one line what to install, and the pytest plugin stays out of the way, so a user's own
pytest keeps working when only pybin is installed.
"""

from __future__ import annotations

import importlib.util
import sys

#: import names of the harness extra's distributions that every harness path imports
_NEEDED = {"jinja2": "jinja2", "yaml": "pyyaml", "pytest": "pytest", "xdist": "pytest-xdist"}
INSTALL_HINT = "pip install 'pybin-opensips[harness]'"


def missing_dependencies() -> list[str]:
    """Distributions of the harness extra that are not installed (empty when all are)."""
    return [dist for module, dist in _NEEDED.items() if importlib.util.find_spec(module) is None]


def main(argv: list[str] | None = None) -> int:
    """The ``harness`` console script."""
    if missing := missing_dependencies():
        print(f"harness: needs {', '.join(missing)}, which come with the harness extra: {INSTALL_HINT}",
              file=sys.stderr)
        return 2
    from harness.cli import main as cli_main

    return cli_main(argv)


if not missing_dependencies():  # the plugin's hooks and fixtures, under the entry point's name
    from harness.plugin import *  # noqa: E402,F401,F403
