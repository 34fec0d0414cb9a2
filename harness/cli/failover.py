"""``harness failover``: N held calls, the primary failed, the backup's figures; with
``--registrations N``, N users registered before and called through the backup after."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from harness import live
from harness.base.errors import UsageError
from harness.cli.common import (
    add_cluster_options,
    add_first_use_options,
    backend_for,
    check_arguments,
    first_use,
    progress,
    say,
)
from harness.cluster.user_config import UserConfigError
from harness.experiments.failover import (
    DEFAULT_RELEASE_RATE,
    FailoverError,
    FailoverResult,
    failure_json,
    run_failover,
)
from harness.experiments.failover.registrations import RegistrationPhase
from pybin.relay import Impairment, ImpairmentError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("failover", help="fail a primary over to its backup under N held calls; figures")
    p.set_defaults(func=cmd_failover)
    add_cluster_options(p)
    p.add_argument("--calls", type=int, default=200, help="concurrent calls (default 200)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--rate", type=float, default=200.0, help="call setup rate, calls/s (default 200)")
    p.add_argument("--release-rate", type=float, default=DEFAULT_RELEASE_RATE,
                   help="in-dialog requests/s after the failover: re-INVITE + BYE per call, "
                        f"paced (default {DEFAULT_RELEASE_RATE:g})")
    p.add_argument("--setup-timeout", type=float, metavar="S",
                   help="seconds the calls may take to be set up (default derived from --calls and --rate)")
    p.add_argument("--freeze", action="store_true",
                   help="SIGSTOP the primary (a hung node) instead of SIGKILL")
    p.add_argument("--link", metavar="FAULTS",
                   help="replicate primary → backup through a seeded, logged relay with these "
                        "faults, e.g. loss=0.02,reorder=0.01,seed=7 (pybin relay's keys); the JSON "
                        "then predicts every lost call and checks the prediction")
    p.add_argument("--restart", choices=["backup"],
                   help="restart the backup while the calls are held, then fail the primary: "
                        "what the backup lacks, for how long, and the predicted losses")
    p.add_argument("--resync", action="store_true",
                   help="with --restart: send the primary's live dialogs (MI dlg_list) to the "
                        "restarted backup as created, then compare them field by field")
    p.add_argument("--workdir", help="keep capture and SIPp logs here (default: a temp dir, "
                                     "removed unless calls were lost)")
    p.add_argument("--report", metavar="DIR",
                   help="also write DIR/report.html: the run's timeline, recovery histogram and "
                        "replication-lag CDF beside its figures, in one self-contained file")
    p.add_argument("--registrations", type=int, default=0, metavar="N",
                   help="register N users through the primary before the kill and call each through "
                        "the backup after it (usrloc replication: OpenSIPS 1.11 or 2.1)")
    add_first_use_options(p)


def cmd_failover(args: argparse.Namespace) -> int:
    """Run the scenario; a run that cannot finish still reports what it saw.

    With --json that is one JSON object with an ``error`` key (the one-line cause) and
    the figures seen so far (`harness.experiments.failover.FAILURE_KEYS`), exit 1 (2 for bad
    arguments or no backend); without, one line on stderr. Never a traceback.
    """
    if args.calls < 1 or args.rate <= 0 or args.release_rate <= 0 or (
            args.setup_timeout is not None and args.setup_timeout <= 0):
        raise UsageError("--calls must be at least 1, --rate, --release-rate and --setup-timeout positive")
    if args.report is not None and Path(args.report).exists() and not Path(args.report).is_dir():
        raise UsageError(f"--report {args.report}: not a directory")
    if args.registrations < 0:
        raise UsageError("--registrations must be 0 or more")
    link = _link(args.link)
    if args.resync and not args.restart:
        raise UsageError("--resync needs --restart backup")
    if link and args.restart:
        raise UsageError("--link and --restart are separate runs: choose one")
    keep = args.workdir is not None
    # under the temp dir: the docker backend mounts it into SIPp containers
    workdir = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="harness-failover-"))
    seen: dict[str, object] = {"step": "start", "calls": args.calls,
                               "mode": "freeze" if args.freeze else "kill", "artifacts": str(workdir)}
    try:
        check_arguments(args)
        first_use(args)
        kind, settings = (backend_for(args, {"usrloc": {"replicate": True}}) if args.registrations
                          else backend_for(args))
        seen["backend"] = kind.name
        progress(f"failover: backend {kind.name}; starting primary + backup (BIN warm-up) …")
        # the live witness: a pybin peer both nodes also replicate to, configured first,
        # so the proof of each recovered call does not hang on packets to the dead primary
        with live.start(kind, settings, ("primary", "backup"), peer="first", workdir=workdir,
                        link=link) as lc:
            for relay in lc.links.values():
                progress(f"failover: {relay.describe()}")
            registrations = RegistrationPhase(
                lc.cluster, args.registrations, workdir=workdir, rate=args.rate,
                progress=lambda line: progress(f"failover: {line}")) if args.registrations else None
            if registrations is not None:
                seen["step"] = "registrations"
                registrations.register()
            result = run_failover(lc.cluster, args.calls, workdir=workdir, rate=args.rate,
                                  release_rate=args.release_rate, mode=str(seen["mode"]),
                                  setup_timeout=args.setup_timeout, witness=lc.peer,
                                  link=next(iter(lc.links.values()), None),
                                  restart=bool(args.restart), resync=args.resync,
                                  progress=lambda line: progress(f"failover: {line}"))
            if registrations is not None:
                seen["step"] = "calls to registered users"
                registrations.call()
            seen["step"] = "stop"
    except (UsageError, UserConfigError) as err:  # no backend or image (exit 2), a bad --config
        if not keep:  # (exit 1): said as main() says them, and as JSON too when asked
            shutil.rmtree(workdir, ignore_errors=True)
        if args.json:
            say(json.dumps(failure_json(str(err), **{**seen, "artifacts": None})))
        raise
    except Exception as err:
        report = failure_json(err, **{**seen, **(err.seen if isinstance(err, FailoverError) else {})})
        progress(f"failover: artifacts kept in {workdir}")
        if args.json:
            say(json.dumps(report))
        else:
            print(f"harness: failover failed ({report['step']}): {report['error']}", file=sys.stderr)
        if args.report is not None:
            _report(Path(args.report), report)
        return 1
    reg = registrations.result if registrations is not None else None
    lost = bool(result.lost or (reg is not None and reg.lost))
    surprises = bool(result.unexpected_lost or result.unexpected_survivors)
    keep = keep or lost or bool(result.capture_drops or result.timed_out or surprises)
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
        result.workdir = None
    if result.capture_drops:
        progress(f"failover: warning: tcpdump dropped {result.capture_drops} packets; figures may be off")
    if keep:
        progress(f"failover: artifacts kept in {workdir}")
    figures = {**result.to_json(), **({"registrations": reg.to_json()} if reg else {})}
    if args.json:
        say(json.dumps(figures))
    else:
        say("\n".join([result.table(), *(reg.lines() if reg else [])]))
    if args.report is not None:
        _report(Path(args.report), figures, result)
    if result.predicted_lost is not None:  # a fault run passes when the prediction held
        return 1 if surprises or result.timed_out or (reg is not None and reg.lost) else 0
    return 1 if lost else 0


def _report(out: Path, figures: dict[str, object], result: FailoverResult | None = None) -> None:
    """report.html, after the figures are printed (a page that cannot be written loses
    nothing already said); matplotlib is imported only here."""
    from harness.experiments.failover.report import write_report

    progress("failover: drawing the report …")
    progress(f"failover: report: {write_report(out, figures, result)}")


def _link(text: str | None) -> dict[str, Impairment] | None:
    """``--link FAULTS`` → the primary → backup link's Impairment (bad text: exit 2)."""
    if text is None:
        return None
    try:
        return {"primary>backup": Impairment.parse(text)}
    except ImpairmentError as err:
        raise UsageError(f"--link {text}: {err}") from None
