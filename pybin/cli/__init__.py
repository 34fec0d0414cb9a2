"""The ``pybin`` command line: decode captures, encode and send JSON lines, listen live,
relay with faults, ship the Wireshark dissector.

One module per subcommand (``decode``, ``encode`` with ``send``, ``listen``,
``relay``, ``dissector``), each with
``add_parser(sub)``; `COMMANDS` lists them in ``--help`` order, and `main` turns a
`CliError` into one line on stderr and its exit status.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from .. import __version__
from ..textio import summary_line  # noqa: F401  kept for callers of pybin.cli.summary_line
from . import decode, dissector, encode, listen, relay
from .common import CliError, parse_hostport  # noqa: F401  the package's public names

#: the subcommand modules, in --help order
COMMANDS = (decode, encode, listen, relay, dissector)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pybin", description="OpenSIPS 1.x Binary Internal Interface tools")
    parser.add_argument("--version", action="version", version=f"pybin {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    parser.error = _one_line_error  # type: ignore[method-assign]
    return parser


def _one_line_error(message: str) -> NoReturn:
    """An unknown option or a missing command: one line, exit 2 (``--help`` has the usage)."""
    print(f"pybin: {message} (pybin --help, pybin COMMAND --help)", file=sys.stderr)
    raise SystemExit(2)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except CliError as err:
        sys.stdout.flush()
        print(f"pybin: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `head`) went away: not an error, and nothing left to say.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
