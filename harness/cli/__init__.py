"""The ``harness`` command: one module per subcommand, each with ``add_parser(sub)``.

    harness image base | build [--version V ...] [--source DIR [--unverified [--label NAME]]] [--base IMAGE]
    harness up [--backend auto|docker|local] [--settings FILE] [--config FILE] [--roles primary,backup] [--no-build]
    harness run [--backend ...] [--config FILE] [--artifacts DIR] [--allow-offline] [--no-build] [-- PYTEST-ARGS...]
    harness failover [--backend ...] [--settings FILE] [--config FILE] --calls N [--rate R] [--release-rate N] [--setup-timeout S] [--json] [--freeze] [--report DIR] [--registrations N] [--link FAULTS | --restart backup [--resync]] [--no-build]
    harness resync --mi HOST:PORT --to HOST:PORT [--create-flags B] [--page N] [--json]
    harness record [--backend ...] [--settings FILE] [--scenario NAME ...] [--out DIR]
    harness clean [--all]
    harness bench replication [--backends local,docker] [--bin-children 1,2,4] [--json]
    harness bench link [--backend ...] [--calls 1000] [--loss ...] [--reorder ...] [--delay ...] [--plot FILE] [--json]
    harness matrix --backend local --opensips V=PATH ... | --backend docker --versions LIST [--pairs all] [--json]
    harness matrix-html MATRIX.json [--out DIR]

up, run and failover build a missing Docker image on first use (harness.backends.first_use),
unless --no-build; --source DIR builds from a local OpenSIPS tree. Each command checks
what it was named (files, numbers) before it asks anything of the machine.

The work lives in the modules named per subcommand; these only parse, pick the
backend, and call it. Failures are one line on stderr: any `HarnessError` with its own
exit status (2: bad arguments or no backend; 1: the command ran and failed); `run`
also exits 6 when the suite passed but no live test ran or one was skipped
(harness.experiments.gate). Anything else is a harness bug, said with its class name.
"""

from __future__ import annotations

import argparse
import signal
import sys

from harness.base.errors import HarnessError
from harness.cli import bench, clean, failover, image, matrix, matrix_html, record, resync, run, up

#: the subcommand modules, in --help order
COMMANDS = (image, up, run, failover, resync, record, clean, bench, matrix, matrix_html)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="OpenSIPS 1.x BIN harness: images, "
                                     "a cluster to play with, failover figures, the corpus, the gate")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # SIGTERM (a CI job cancelled, `timeout`) stops a command the way Ctrl-C does: its
    # clusters are torn down, not left for `harness clean`
    try:
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread (an embedding program's): leave its signals alone
        previous = None
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130
    except HarnessError as err:
        for line in err.messages():
            print(f"harness: {line}", file=sys.stderr)
        return err.exit_status
    except Exception as err:  # not a traceback: the class says where to look
        print(f"harness: {type(err).__name__}: {err}", file=sys.stderr)
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
