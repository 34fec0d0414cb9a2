"""``harness run``: the conformance gate (harness.experiments.gate)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from harness.base.settings import SETTINGS_ENV, load_settings
from harness.cli.common import (
    add_cluster_options,
    add_first_use_options,
    check_arguments,
    first_use,
    progress,
    say,
)
from harness.experiments.gate import EXIT_NOT_LIVE, run_gate
from harness.live import preflight


def add_parser(sub: Any) -> None:
    p = sub.add_parser("run", help="the conformance gate: run the suite, write JUnit and a summary")
    p.set_defaults(func=cmd_run)
    add_cluster_options(p)
    p.add_argument("--artifacts", default="artifacts", help="JUnit, summary and failure captures go here")
    p.add_argument("-n", "--workers", default="auto", help="pytest-xdist workers (default auto)")
    p.add_argument("--allow-offline", action="store_true",
                   help=f"exit 0 even when no live test ran or some were skipped "
                        f"(otherwise exit {EXIT_NOT_LIVE} with the reason)")
    p.add_argument("--allow-partial", action="store_true",
                   help="exit 0 when live tests ran but some were skipped or a category of check "
                        "(byte-exact, parity, robustness, failover, behaviour) ran none")
    add_first_use_options(p)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: passed to pytest")


def cmd_run(args: argparse.Namespace) -> int:
    check_arguments(args)
    if args.settings:  # the suite's plugin reads it, in every xdist worker
        os.environ[SETTINGS_ENV] = str(Path(args.settings).resolve())
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    first_use(args)
    if args.config:  # refused here in one line, not once per live test
        settings, note = preflight(load_settings(args.settings), args.config,
                                   ("primary", "backup", "standalone"), args.backend)
        progress(note)
        pytest_args = ["--opensips-config", str(settings.opensips.config), *pytest_args]
    return run_gate(args.backend, Path(args.artifacts), args.workers, pytest_args, say,
                    allow_offline=args.allow_offline, allow_partial=args.allow_partial)
