"""``harness clean``: what killed runs left behind (harness.backends.clean)."""

from __future__ import annotations

from typing import Any

from harness.backends.clean import clean_command
from harness.cli.common import progress, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("clean", help="remove what killed runs left behind (containers, networks, "
                                     "namespaces, processes)")
    p.set_defaults(func=lambda a: clean_command(a.all, say, progress))
    p.add_argument("--all", action="store_true",
                   help="remove everything the harness labelled, also of live runs and of unknown owners")
