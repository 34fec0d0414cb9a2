"""``harness bench replication``: the replication rate a real backup takes without loss."""

from __future__ import annotations

import argparse
from typing import Any

from harness.backends import kind
from harness.base.errors import UsageError
from harness.base.settings import load_settings
from harness.cli.common import check_arguments, progress, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="capacity figures: the replication rate a real backup takes without loss")
    p.set_defaults(func=cmd_bench)
    p.add_argument("what", choices=["replication"], help="what to measure")
    p.add_argument("--settings", help="YAML file overriding harness/base/defaults.yaml")
    p.add_argument("--backends", default="local,docker", help="comma-separated (default local,docker)")
    p.add_argument("--bin-children", default="1,2,4", help="BIN receivers per backup to try (default 1,2,4)")
    p.add_argument("--start", type=float, default=2000.0, help="first offered rate, packets/s (default 2000)")
    p.add_argument("--ceiling", type=float, default=64000.0,
                   help="highest offered rate, packets/s (default 64000)")
    p.add_argument("--refine", type=int, default=2, help="bisections after the first loss (default 2)")
    p.add_argument("--memory-dialogs", type=int, default=2000,
                   help="dialogs held to measure shm per dialog (default 2000; 0 skips)")
    p.add_argument("--no-sip", action="store_true", help="skip the SIPp-fed primary -> backup run")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, not {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{what} must name at least one positive integer, not {text!r}")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.experiments.bench.replication import (
        run_replication_bench,  # pybin/SIPp load only here
    )

    check_arguments(args)
    kinds = [kind(b.strip()) for b in args.backends.split(",") if b.strip()]
    if not kinds:
        raise UsageError(f"--backends names no backend: {args.backends!r}")
    if args.start <= 0 or args.ceiling < args.start:
        raise UsageError("--start must be positive and --ceiling at least --start")
    children = int_list(args.bin_children, "--bin-children")
    settings = load_settings(args.settings)
    report = run_replication_bench(kinds, settings, children, start=args.start, ceiling=args.ceiling,
                                   refine=args.refine, memory_dialogs=args.memory_dialogs,
                                   sip=not args.no_sip, progress=lambda line: progress(f"bench: {line}"))
    say(report.to_json() if args.json else report.table())
    return 0 if any(c.capacity for c in report.configs) else 1
