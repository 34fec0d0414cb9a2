"""What every ``harness`` subcommand shares: output, the cluster options, first use, the backend."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness.backends import (
    BACKEND_CHOICES,
    BackendKind,
    choose_backend,
    default_backend,
)
from harness.backends.first_use import build_on_first_use
from harness.backends.images import ImageError
from harness.base.errors import UsageError
from harness.base.settings import Settings, load_settings
from harness.cluster.user_config import UserConfigError
from harness.live import preflight


def say(line: str) -> None:
    print(line, flush=True)


def progress(line: str) -> None:
    print(f"harness: {line}", file=sys.stderr, flush=True)


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


def check_arguments(args: argparse.Namespace) -> None:
    """What a command was named, checked before anything is asked of the machine (an
    engine, an image build): a wrong path is the cheapest error to report."""
    if getattr(args, "settings", None) and not Path(args.settings).is_file():
        raise UsageError(f"--settings {args.settings}: no such file")
    if getattr(args, "config", None) and not Path(args.config).is_file():
        raise UserConfigError([f"config {args.config}: no such file"])
    if getattr(args, "source", None) and not Path(args.source).is_dir():
        raise UsageError(f"--source {args.source}: no such directory")


def first_use(args: argparse.Namespace) -> None:
    """Build a missing Docker image before the command needs it (harness.backends.first_use)."""
    try:
        build_on_first_use(args.backend, no_build=args.no_build, source=args.source, progress=say)
    except ImageError as err:  # nothing to run OpenSIPS with
        raise UsageError(str(err)) from None


def backend_for(args: argparse.Namespace, overrides: dict[str, object] | None = None,
                roles: tuple[str, ...] = ("primary", "backup")) -> tuple[BackendKind, Settings]:
    """The settings (file, overrides, --config) and the backend kind that can run them.

    A --config template is checked here, before any node starts (harness.cluster.user_config).
    """
    settings = load_settings(args.settings).with_overrides(overrides)
    settings, note = preflight(settings, args.config, roles, args.backend)
    kind = choose_backend(args.backend, settings).require()
    if note:
        progress(note)
    return kind, settings
