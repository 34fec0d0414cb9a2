"""``harness record``: the recorded corpus (harness.experiments.record; with
``--registrations``, the usrloc corpus: harness.experiments.record_usrloc)."""

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
from harness.experiments.record_usrloc import DEFAULT_USERS, record_usrloc
from harness.instruments.sipp import REGISTRATIONS, SCENARIOS


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
    p.add_argument("--registrations", action="store_true",
                   help=f"record the usrloc corpus instead: every REGISTER scenario ({', '.join(REGISTRATIONS)}) "
                        "through one 1.11/2.1 pair, into <out>/usrloc/<release>/")
    p.add_argument("--users", type=int, default=DEFAULT_USERS,
                   help=f"with --registrations: users per REGISTER scenario (default {DEFAULT_USERS})")


def cmd_record(args: argparse.Namespace) -> int:
    if args.calls < 1:
        raise UsageError("--calls must be at least 1")
    if args.users < 1:
        raise UsageError("--users must be at least 1")
    if args.registrations and args.scenario:
        raise UsageError("--scenario names dialog scenarios; --registrations records every REGISTER one")
    check_arguments(args)
    kind, settings = backend_for(args, {"network": {"subnet": args.subnet}} if args.subnet else None)
    if args.registrations:
        record_usrloc(kind, settings, (Path(args.out) if args.out else default_out()) / "usrloc",
                      users=args.users, timeout=args.timeout)
        return 0
    scenarios = list(dict.fromkeys(args.scenario or SCENARIOS))
    record_corpus(kind, settings, Path(args.out) if args.out else default_out(), scenarios,
                  calls=args.calls, timeout=args.timeout)
    return 0
