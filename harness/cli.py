"""The ``harness`` command: images, a cluster to play with, and the conformance gate.

    harness image base | build [--source DIR] [--base IMAGE]
    harness up [--backend auto|docker|local] [--roles primary,backup]
    harness run [--backend ...] [--artifacts DIR] [-- PYTEST-ARGS...]
    harness failover --calls N [--json]
    harness record [--out DIR]

Failures are one line on stderr with a non-zero exit status.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from harness.backends import choose_backend
from harness.cluster import Cluster

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = PROJECT_ROOT / "tests"


class HarnessCliError(Exception):
    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def say(line: str) -> None:
    print(line, flush=True)


def _backend_choice(wanted: str, settings: Any) -> Any:
    choice = choose_backend(wanted, settings)
    if choice.name is None:
        raise HarnessCliError(choice.reason)
    return choice


# -- up ------------------------------------------------------------------------------

def cmd_up(args: argparse.Namespace) -> int:
    from harness.cluster import Cluster
    from harness.settings import load_settings

    settings = load_settings(args.settings)
    choice = _backend_choice(args.backend, settings)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
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


# -- run (the conformance gate) -------------------------------------------------------

def cmd_run(args: argparse.Namespace) -> int:
    if not TESTS_DIR.is_dir():
        raise HarnessCliError(f"no test suite at {TESTS_DIR}: run harness from a checkout of the project")
    artifacts = Path(args.artifacts)
    artifacts.mkdir(parents=True, exist_ok=True)
    junit = artifacts / "junit.xml"
    (artifacts / "warmup.json").unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", str(TESTS_DIR), "-n", args.workers,
               "--opensips-backend", args.backend, "--harness-artifacts", str(artifacts),
               f"--junitxml={junit}", "-o", "junit_logging=all", *args.pytest_args]
    say("$ " + " ".join(command))
    started = time.monotonic()
    code = subprocess.call(command, cwd=PROJECT_ROOT)
    wall = time.monotonic() - started
    if not junit.exists():
        raise HarnessCliError(f"pytest wrote no JUnit report (exit {code})", code or 2)
    table = summary_table(junit, wall, artifacts / "warmup.json")
    (artifacts / "summary.md").write_text(table + "\n")
    say("")
    say(table)
    return code


def summary_table(junit: Path, wall: float, warmup: Path | None = None) -> str:
    """Markdown: totals per outcome, the recvfrom-defect tally, every test that did not pass."""
    root = ET.parse(junit).getroot()
    counts = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    rows = []
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        outcome, why = "passed", ""
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
                why = (el.get("message") or "").splitlines()[0][:160] if el.get("message") else ""
                break
        counts[outcome] += 1
        if outcome != "passed":
            rows.append(f"| {outcome} | `{name}` | {why.replace('|', '/')} |")
    lines = [
        "## OpenSIPS 1.10 BIN conformance",
        "",
        f"{counts['passed']} passed, {counts['failed']} failed, {counts['error']} errors, "
        f"{counts['skipped']} skipped in {wall:.0f}s",
    ]
    if warmup is not None and warmup.exists():
        lines += ["", json.loads(warmup.read_text())["summary"]]
    if rows:
        lines += ["", "| outcome | test | reason |", "|---|---|---|", *rows]
    return "\n".join(lines)


# -- image, failover, record: thin wrappers ---------------------------------------------

def cmd_image(args: argparse.Namespace) -> int:
    from harness.images import main as images_main

    return images_main(args.image_args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="harness", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def backend_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--backend", default=os.environ.get("HARNESS_BACKEND", "auto"),
                       choices=("auto", "docker", "local"), help="how to run OpenSIPS (default auto)")

    p = sub.add_parser("up", help="start a cluster, print its addresses, run until Ctrl-C")
    backend_flag(p)
    p.add_argument("--roles", default="primary,backup", help="comma-separated roles (default primary,backup)")
    p.add_argument("--settings", help="YAML file overriding harness/defaults.yaml")
    p.add_argument("--replicate-to", action="append", default=[], metavar="IP:PORT",
                   help="one more replicate_dialogs_to destination (repeatable), e.g. a "
                        "`pybin listen` on the harness address")
    p.set_defaults(func=cmd_up)

    p = sub.add_parser("run", help="the conformance gate: run the suite, write JUnit and a summary")
    backend_flag(p)
    p.add_argument("--artifacts", default="artifacts", help="JUnit, summary and failure captures go here")
    p.add_argument("-n", "--workers", default="auto", help="pytest-xdist workers (default auto)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, help="after --: passed to pytest")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("image", help="build the images (image build / image base)", add_help=False)
    p.add_argument("image_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_image)

    _add_optional(sub, "failover", "harness.failover")
    _add_optional(sub, "record", "harness.record")
    return parser


def _add_optional(sub: Any, name: str, module: str) -> None:
    """Subcommands whose module defines ``add_arguments(parser)`` and ``run(args) -> int``."""
    try:
        mod = __import__(module, fromlist=["run"])
    except ImportError:
        return
    p = sub.add_parser(name, help=(mod.__doc__ or "").splitlines()[0])
    mod.add_arguments(p)
    p.set_defaults(func=mod.run)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "pytest_args", None) and args.pytest_args[:1] == ["--"]:
        args.pytest_args = args.pytest_args[1:]
    try:
        return int(args.func(args))
    except HarnessCliError as err:
        print(f"harness: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt:
        return 130
    except Exception as err:  # one line, not a traceback; the class says where to look
        from harness.node import NodeDied

        if isinstance(err, NodeDied):
            print(f"harness: {err}", file=sys.stderr)
            return 1
        print(f"harness: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
