"""``harness matrix-html``: matrix.html from a matrix.json, without running anything.

    harness matrix-html docs/matrix/matrix.json --out DIR

The page (`harness.experiments.matrix.html`) colours each cell by outcome and links each
difference to its explanation. Exit 2 when the file cannot be read as a matrix.json or
--out is no directory, 1 when the page cannot be written.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from harness.base.errors import UsageError
from harness.experiments.matrix.html import NotAMatrix, write_html


def add_parser(sub: Any) -> None:
    p = sub.add_parser("matrix-html", help="draw matrix.html (cells coloured by outcome, "
                                           "differences linked to their explanation) from a matrix.json")
    p.set_defaults(func=cmd_matrix_html)
    p.add_argument("matrix_json", metavar="MATRIX.json", help="what `harness matrix` wrote")
    p.add_argument("--out", default=".", metavar="DIR", help="where matrix.html goes (default: .)")


def cmd_matrix_html(args: argparse.Namespace) -> int:
    source, out = Path(args.matrix_json), Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: not a directory")
    try:
        matrix = json.loads(source.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{source}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"{source}: cannot read it: {getattr(err, 'strerror', None) or err}") from None
    except json.JSONDecodeError as err:
        raise UsageError(f"{source}: not JSON ({err.msg} at line {err.lineno})") from None
    try:
        path = write_html(matrix, out)
    except NotAMatrix as err:
        raise UsageError(f"{source}: {err}") from None
    print(f"matrix-html: {path}", file=sys.stderr)
    return 0
