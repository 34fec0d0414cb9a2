"""``harness bench replication``: the replication rate a real backup takes without loss;
``harness bench link``: lost calls against the replication link's faults."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.backends import BACKEND_CHOICES, default_backend, kind
from harness.base.errors import UsageError
from harness.base.settings import load_settings
from harness.cli.common import backend_for, check_arguments, progress, say


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="capacity figures: the replication rate a real backup takes without "
                                     "loss (replication); lost calls against the link's faults (link)")
    p.set_defaults(func=cmd_bench)
    p.add_argument("what", choices=["replication", "link"], help="what to measure")
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
    link = p.add_argument_group("link", "harness bench link: a failover per point, through a relay")
    link.add_argument("--backend", default=default_backend(), choices=BACKEND_CHOICES,
                      help="how to run OpenSIPS (default auto, or $HARNESS_BACKEND)")
    link.add_argument("--calls", type=int, default=1000, help="held calls per point (default 1,000)")
    link.add_argument("--loss", default="0,0.1,0.5,1,2,5", help="loss rates, %% (default 0,0.1,0.5,1,2,5)")
    link.add_argument("--reorder", default="1,5,20", help="reorder rates, %% (default 1,5,20)")
    link.add_argument("--delay", default="5,20,100", help="delays, ms, each ± half of it (default 5,20,100)")
    link.add_argument("--seed", type=int, default=7, help="the relay's seed at every point (default 7)")
    link.add_argument("--plot", default="link-bench.png", metavar="FILE",
                      help="the curve, PNG or SVG by suffix (default link-bench.png; '' for none)")


def int_list(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"{what} must be comma-separated integers, not {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{what} must name at least one positive integer, not {text!r}")
    return values


def cmd_bench(args: argparse.Namespace) -> int:
    if args.what == "link":
        return cmd_link(args)
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


def cmd_link(args: argparse.Namespace) -> int:
    """Lost calls against the link's faults; exit 1 when a point failed or its prediction missed."""
    from harness.experiments.bench.link import point_values, run_link_bench

    check_arguments(args)
    if args.calls < 1:
        raise UsageError("--calls must be at least 1")
    axes = {"loss": point_values(args.loss, "--loss"), "reorder": point_values(args.reorder, "--reorder"),
            "delay": point_values(args.delay, "--delay")}
    if not any(axes.values()):
        raise UsageError("--loss, --reorder and --delay name no point")
    plot = Path(args.plot) if args.plot else None
    if plot is not None and plot.suffix.lower() not in (".png", ".svg"):
        raise UsageError(f"--plot {args.plot}: a .png or .svg file")
    args.config = None  # the link bench runs the harness's own config
    kind, settings = backend_for(args)
    report = run_link_bench(kind, settings, calls=args.calls, seed=args.seed, axes=axes, plot=plot,
                            progress=lambda line: progress(f"bench link: {line}"))
    say(report.to_json() if args.json else report.table())
    return 0 if all(p.agrees for p in report.points) else 1
