"""The ``harness`` command: every subcommand's arguments and wiring, in one place.

    harness image base | build [--version V ...] [--source DIR [--unverified [--label NAME]]] [--base IMAGE]
    harness up [--backend auto|docker|local] [--settings FILE] [--config FILE] [--roles primary,backup] [--no-build]
    harness run [--backend ...] [--config FILE] [--artifacts DIR] [--allow-offline] [--no-build] [-- PYTEST-ARGS...]
    harness failover [--backend ...] [--settings FILE] [--config FILE] --calls N [--rate R] [--release-rate N] [--setup-timeout S] [--json] [--freeze] [--no-build]

up, run and failover build a missing Docker image on first use (harness.backends.first_use),
unless --no-build; --source DIR builds from a local OpenSIPS tree.
    harness record [--backend ...] [--settings FILE] [--scenario NAME ...] [--out DIR]
    harness clean [--all]
    harness bench replication [--backends local,docker] [--bin-children 1,2,4] [--json]
    harness matrix --backend local --opensips V=PATH ... | --backend docker --versions LIST [--pairs all] [--json]

The work lives in the modules named per subcommand; this one only parses, picks the
backend, and turns failures into one line on stderr with a non-zero exit status
(2: bad arguments or no backend; 1: the command ran and failed; `run` also 6: the
suite passed but no live test ran or one was skipped, see harness.experiments.gate).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness.backends import (
    BACKEND_CHOICES,
    BackendChoice,
    choose_backend,
    default_backend,
)
from harness.backends.clean import clean_command
from harness.backends.first_use import build_on_first_use
from harness.backends.images import (
    DEFAULT_BASE,
    OPENSIPS_REPO,
    ImageError,
    build_images,
    make_base_image,
)
from harness.base.releases import BASELINE
from harness.base.settings import SETTINGS_ENV, Settings, SettingsError, load_settings
from harness.cluster import Cluster
from harness.cluster.interfaces import NodeDied
from harness.cluster.user_config import UserConfigError, preflight
from harness.experiments.failover import (
    DEFAULT_RELEASE_RATE,
    FailoverError,
    failure_json,
    run_failover,
    witness,
    witness_topology,
)
from harness.experiments.gate import EXIT_NOT_LIVE, GateError, run_gate
from harness.experiments.matrix.cli import MatrixUsage
from harness.experiments.record import (
    DEFAULT_CALLS,
    DEFAULT_OUT,
    DEFAULT_SUBNET,
    RecordError,
    record_corpus,
)
from harness.instruments.sipp import SCENARIOS

#: failures whose message is written for a person: shown as they are
EXPLAINED = (NodeDied, FailoverError, RecordError, GateError, SettingsError, ImageError)

Command = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """Bad arguments, or nothing to run OpenSIPS with: exit status 2."""


def say(line: str) -> None:
    print(line, flush=True)


def progress(line: str) -> None:
    print(f"harness: {line}", file=sys.stderr, flush=True)


# -- shared options -----------------------------------------------------------------------

def add_cluster_options(parser: argparse.ArgumentParser) -> None:
    """--backend, --settings, --config: how every cluster-starting subcommand runs OpenSIPS."""
    parser.add_argument("--backend", default=default_backend(),
                        choices=BACKEND_CHOICES, help="how to run OpenSIPS (default auto, or $HARNESS_BACKEND)")
    parser.add_argument("--settings", help="YAML file overriding harness/base/defaults.yaml")
    parser.add_argument("--config", metavar="FILE", help="your own OpenSIPS config: a Jinja template "
                        "using the README's placeholders, checked before any node starts")


def add_first_use_options(parser: argparse.ArgumentParser) -> None:
    """--no-build and --source: the commands that build a missing Docker image on first use."""
    parser.add_argument("--no-build", action="store_true",
                        help="never build a missing Docker image on first use")
    parser.add_argument("--source", metavar="DIR",
                        help="OpenSIPS 1.10.5 source tree for a first-use image build (air-gapped)")


def first_use(args: argparse.Namespace) -> None:
    """Build a missing Docker image before the command needs it (harness.backends.first_use)."""
    try:
        build_on_first_use(args.backend, no_build=args.no_build, source=args.source, progress=say)
    except ImageError as err:  # nothing to run OpenSIPS with
        raise UsageError(str(err)) from None


def backend_for(args: argparse.Namespace, overrides: dict[str, object] | None = None,
                roles: tuple[str, ...] = ("primary", "backup")) -> tuple[BackendChoice, Settings]:
    """The settings (file, overrides, --config) and the backend that can run them.

    A --config template is checked here, before any node starts (harness.cluster.user_config).
    """
    settings = load_settings(args.settings).with_overrides(overrides)
    settings, note = preflight(settings, args.config, roles, args.backend)
    choice = choose_backend(args.backend, settings)
    if choice.name is None:
        raise UsageError(choice.reason)
    if note:
        progress(note)
    return choice, settings


# -- up ----------------------------------------------------------------------------------

def cmd_up(args: argparse.Namespace) -> int:
    first_use(args)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    choice, settings = backend_for(args, roles=tuple(roles))
    say(f"backend: {choice.name}")
    backend = choice.factory()(settings)
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        say("creating the cluster network …")
        backend.open()
        cluster = Cluster(backend, roles, settings=settings, extra_destinations=args.replicate_to)
        say(f"starting {', '.join(roles)} and probing their BIN receivers (1.10.5 defect warm-up) …")
        started = time.monotonic()
        with cluster:
            say(f"cluster up in {time.monotonic() - started:.1f}s")
            for line in describe_cluster(cluster):
                say(line)
            say("Ctrl-C to stop")
            try:
                while not stop.wait(0.5):
                    cluster.check()  # a node dying is reported at once, with its log
            except KeyboardInterrupt:
                pass
            say("stopping …")
    except KeyboardInterrupt:
        say("interrupted, cleaning up …")
        backend.close()
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    return 0


def describe_cluster(cluster: Cluster) -> list[str]:
    """What a user needs to reach the cluster: VIP, each node's BIN and MI, how to get in."""
    lines = [f"  SIP (virtual IP)   udp:{cluster.vip}:{cluster.settings.ports.sip}  (on {cluster.vip_owner})"]
    for name, addr in cluster.addresses.items():
        restarts = cluster.restarts.get(name, 0)
        note = f", restarted {restarts}x by the recvfrom defect" if restarts else ""
        lines.append(f"  {name:<18} BIN {addr.ip}:{addr.bin_port}  MI udp:{addr.ip}:{addr.mi_port}"
                     f"  replicates to {', '.join(cluster.destinations(name)) or 'nobody'}{note}")
    lines.append(f"  harness address    {cluster.backend.harness_ip}")
    lines += [f"  {node.describe()}" for node in cluster.nodes.values()]
    lines += [f"  {line}" for line in cluster.backend.describe()]
    return lines


# -- run, image ---------------------------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    if args.settings:  # the suite's plugin reads it, in every xdist worker
        os.environ[SETTINGS_ENV] = str(Path(args.settings).resolve())
    pytest_args = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    if args.config:  # refused here in one line, not once per live test
        settings, note = preflight(load_settings(args.settings), args.config,
                                   ("primary", "backup", "standalone"), args.backend)
        progress(note)
        pytest_args = ["--opensips-config", str(settings.opensips.config), *pytest_args]
    first_use(args)
    return run_gate(args.backend, Path(args.artifacts), args.workers, pytest_args, say,
                    allow_offline=args.allow_offline)


def cmd_image_build(args: argparse.Namespace) -> int:
    which = (args.only,) if args.only else ("opensips", "sipp")
    for tag in build_images(args.source, args.base, say, which=which, no_cache=args.no_cache,
                            versions=args.version, unverified=args.unverified, label=args.label):
        say(f"built {tag}")
    return 0


def cmd_image_base(args: argparse.Namespace) -> int:
    make_base_image(args.name, args.mirror, say, suite=args.suite)
    return 0


# -- failover -----------------------------------------------------------------------------

def cmd_failover(args: argparse.Namespace) -> int:
    """Run the scenario; a run that cannot finish still reports what it saw.

    With --json that is one JSON object with an ``error`` key (the one-line cause) and
    the figures seen so far (`harness.experiments.failover.FAILURE_KEYS`), exit 1 (2 for bad
    arguments or no backend); without, one line on stderr. Never a traceback.
    """
    if args.calls < 1 or args.rate <= 0 or args.release_rate <= 0 or (
            args.setup_timeout is not None and args.setup_timeout <= 0):
        raise UsageError("--calls must be at least 1, --rate, --release-rate and --setup-timeout positive")
    keep = args.workdir is not None
    # under the temp dir: the docker backend mounts it into SIPp containers
    workdir = Path(args.workdir) if keep else Path(tempfile.mkdtemp(prefix="harness-failover-"))
    seen: dict[str, object] = {"step": "start", "calls": args.calls,
                               "mode": "freeze" if args.freeze else "kill", "artifacts": str(workdir)}
    try:
        first_use(args)
        choice, settings = backend_for(args)
        seen["backend"] = choice.name
        progress(f"failover: backend {choice.name}; starting primary + backup (BIN warm-up) …")
        backend = choice.factory()(settings)
        try:
            backend.open()
            # the live witness: a pybin peer both nodes also replicate to, so the proof of
            # each recovered call does not hang on packets to the dead primary
            # (harness.experiments.failover.witness)
            peer = witness(backend)
        except BaseException:
            backend.close()
            raise
        try:
            with Cluster(backend, ("primary", "backup"), settings=settings,
                         replicate=witness_topology(peer)) as cluster:
                cluster.peer = peer
                result = run_failover(cluster, args.calls, workdir=workdir, rate=args.rate,
                                      release_rate=args.release_rate, mode=str(seen["mode"]),
                                      setup_timeout=args.setup_timeout,
                                      progress=lambda line: progress(f"failover: {line}"))
                seen["step"] = "stop"
        finally:
            peer.close()
    except (UsageError, UserConfigError) as err:  # no backend or image (exit 2), a bad --config
        if not keep:  # (exit 1): said as main() says them, and as JSON too when asked
            shutil.rmtree(workdir, ignore_errors=True)
        if args.json:
            say(json.dumps(failure_json(str(err), **{**seen, "artifacts": None})))
        raise
    except Exception as err:
        report = failure_json(err, **{**seen, **getattr(err, "seen", {})})
        progress(f"failover: artifacts kept in {workdir}")
        if args.json:
            say(json.dumps(report))
        else:
            print(f"harness: failover failed ({report['step']}): {report['error']}", file=sys.stderr)
        return 1
    keep = keep or bool(result.lost or result.capture_drops or result.timed_out)
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
        result.workdir = None
    if result.capture_drops:
        progress(f"failover: warning: tcpdump dropped {result.capture_drops} packets; figures may be off")
    if keep:
        progress(f"failover: artifacts kept in {workdir}")
    say(json.dumps(result.to_json()) if args.json else result.table())
    return 1 if result.lost else 0


# -- record -------------------------------------------------------------------------------

def cmd_record(args: argparse.Namespace) -> int:
    if args.calls < 1:
        raise UsageError("--calls must be at least 1")
    choice, settings = backend_for(args, {"network": {"subnet": args.subnet}} if args.subnet else None)
    scenarios = list(dict.fromkeys(args.scenario or SCENARIOS))
    record_corpus(choice, settings, Path(args.out), scenarios, calls=args.calls, timeout=args.timeout)
    return 0


# -- bench ------------------------------------------------------------------------------

def _int_list(text: str, what: str) -> list[int]:
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

    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in backends if b not in ("local", "docker")]
    if not backends or unknown:
        raise UsageError(f"--backends takes local and/or docker, not {args.backends!r}")
    if args.start <= 0 or args.ceiling < args.start:
        raise UsageError("--start must be positive and --ceiling at least --start")
    children = _int_list(args.bin_children, "--bin-children")
    settings = load_settings(args.settings)
    report = run_replication_bench(backends, settings, children, start=args.start, ceiling=args.ceiling,
                                   refine=args.refine, memory_dialogs=args.memory_dialogs,
                                   sip=not args.no_sip, progress=lambda line: progress(f"bench: {line}"))
    say(report.to_json() if args.json else report.table())
    return 0 if any(c.capacity for c in report.configs) else 1


# -- the parser ---------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description="OpenSIPS 1.10 BIN harness: images, "
                                     "a cluster to play with, failover figures, the corpus, the gate")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Command, help: str, **kw: bool) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help, **kw)
        p.set_defaults(func=func)
        return p

    image = sub.add_parser("image", help="build the images (image build / image base)")
    images = image.add_subparsers(dest="image_command", required=True)
    p = images.add_parser("build", help=f"build the OpenSIPS (default {BASELINE}) and SIPp images")
    p.set_defaults(func=cmd_image_build)
    p.add_argument("--version", action="append", metavar="V",
                   help=f"OpenSIPS release(s) to build, each as {OPENSIPS_REPO}:V: repeatable or "
                   f"comma-separated, or all, 1.10, 1.11 (default {BASELINE}; with --source, the "
                   "tree's Makefile.defs)")
    p.add_argument("--source", metavar="DIR", help="OpenSIPS source tree instead of the download, "
                   "verified against the release's pinned git tree")
    p.add_argument("--unverified", action="store_true", help="build a patched or private --source "
                   "tree as it is, labelled unverified (no tree check)")
    p.add_argument("--label", metavar="NAME", help=f"image tag of an --unverified build: "
                   f"{OPENSIPS_REPO}:NAME (default <its version>-unverified)")
    p.add_argument("--base", metavar="IMAGE", help=f"base image (default {DEFAULT_BASE})")
    p.add_argument("--only", choices=("opensips", "sipp"), help="build one image only")
    p.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    p = images.add_parser("base", help="make a Debian base image with debootstrap + docker import")
    p.set_defaults(func=cmd_image_base)
    p.add_argument("--name", default=DEFAULT_BASE, help=f"image name (default {DEFAULT_BASE})")
    p.add_argument("--mirror", help="Debian mirror URL (default: the host's apt mirror)")
    p.add_argument("--suite", default="bookworm")

    p = command("up", cmd_up, "start a cluster, print its addresses, run until Ctrl-C")
    add_cluster_options(p)
    p.add_argument("--roles", default="primary,backup", help="comma-separated roles (default primary,backup)")
    p.add_argument("--replicate-to", action="append", default=[], metavar="IP:PORT",
                   help="one more replicate_dialogs_to destination (repeatable), e.g. a "
                        "`pybin listen` on the harness address")
    add_first_use_options(p)

    p = command("run", cmd_run, "the conformance gate: run the suite, write JUnit and a summary")
    add_cluster_options(p)
    p.add_argument("--artifacts", default="artifacts", help="JUnit, summary and failure captures go here")
    p.add_argument("-n", "--workers", default="auto", help="pytest-xdist workers (default auto)")
    p.add_argument("--allow-offline", action="store_true",
                   help=f"exit 0 even when no live test ran or some were skipped "
                        f"(otherwise exit {EXIT_NOT_LIVE} with the reason)")
    add_first_use_options(p)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: passed to pytest")

    p = command("failover", cmd_failover, "fail a primary over to its backup under N held calls; figures")
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
    p.add_argument("--workdir", help="keep capture and SIPp logs here (default: a temp dir, "
                                     "removed unless calls were lost)")
    add_first_use_options(p)

    p = command("record", cmd_record, "record every scenario through a live primary/backup pair")
    add_cluster_options(p)
    p.add_argument("--out", default=str(DEFAULT_OUT),
                   help="corpus directory; one sub-directory per scenario (default tests/corpus/recorded)")
    p.add_argument("--scenario", action="append", choices=sorted(SCENARIOS), metavar="NAME",
                   help=f"record only this scenario (repeatable; default all: {', '.join(SCENARIOS)})")
    p.add_argument("--calls", type=int, default=DEFAULT_CALLS,
                   help=f"calls per scenario (default {DEFAULT_CALLS}; keep the corpus small)")
    p.add_argument("--subnet", default=DEFAULT_SUBNET,
                   help=f"cluster subnet, pinned for repeatable addresses (default {DEFAULT_SUBNET})")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds per scenario's calls (default 60)")
    p = command("clean", lambda a: clean_command(a.all, say, progress),
                "remove what killed runs left behind (containers, networks, namespaces, processes)")
    p.add_argument("--all", action="store_true",
                   help="remove everything the harness labelled, also of live runs and of unknown owners")

    p = command("bench", cmd_bench, "capacity figures: the replication rate a real backup takes without loss")
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

    from harness.experiments.matrix.cli import add_parser as add_matrix

    add_matrix(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (UsageError, MatrixUsage) as err:
        print(f"harness: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except UserConfigError as err:  # one line per missing piece
        for line in err.lines:
            print(f"harness: {line}", file=sys.stderr)
        return 1
    except EXPLAINED as err:
        print(f"harness: {err}", file=sys.stderr)
        return 1
    except Exception as err:  # not a traceback: the class says where to look
        print(f"harness: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
