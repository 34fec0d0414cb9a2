"""``harness record``: the recorded corpus (harness.experiments.record)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.base.errors import UsageError
from harness.cli.common import add_cluster_options, backend_for, check_arguments
from harness.experiments.record import (
    DEFAULT_CALLS,
    DEFAULT_SUBNET,
    default_out,
    record_corpus,
)
from harness.instruments.sipp import SCENARIOS


def add_parser(sub: Any) -> None:
    p = sub.add_parser("record", help="record every scenario through a live primary/backup pair")
    p.set_defaults(func=cmd_record)
    add_cluster_options(p)
    p.add_argument("--out", default=None,
                   help="corpus directory; one sub-directory per scenario (default: the checkout's "
                        "tests/corpus/recorded, else ./corpus)")
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), metavar="NAME",
                   help=f"record only this scenario (repeatable; default all: {', '.join(SCENARIOS)})")
    p.add_argument("--calls", type=int, default=DEFAULT_CALLS,
                   help=f"calls per scenario (default {DEFAULT_CALLS}; keep the corpus small)")
    p.add_argument("--subnet", default=DEFAULT_SUBNET,
                   help=f"cluster subnet, pinned for repeatable addresses (default {DEFAULT_SUBNET})")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per scenario's calls (default 60)")


def cmd_record(args: argparse.Namespace) -> int:
    if args.calls < 1:
        raise UsageError("--calls must be at least 1")
    check_arguments(args)
    kind, settings = backend_for(args, {"network": {"subnet": args.subnet}} if args.subnet else None)
    scenarios = list(dict.fromkeys(args.scenario or SCENARIOS))
    record_corpus(kind, settings, Path(args.out) if args.out else default_out(), scenarios,
                  calls=args.calls, timeout=args.timeout)
    return 0
