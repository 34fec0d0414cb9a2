"""``harness image build`` / ``harness image base``: the Docker images."""

from __future__ import annotations

import argparse
from typing import Any

from harness.backends.images import DEFAULT_BASE, OPENSIPS_REPO
from harness.backends.images.base_image import make_base_image
from harness.backends.images.build import build_images
from harness.base.releases import BASELINE
from harness.cli.common import check_arguments, say


def add_parser(sub: Any) -> None:
    image = sub.add_parser("image", help="build the images (image build / image base)")
    images = image.add_subparsers(dest="image_command", required=True)
    p = images.add_parser("build", help=f"build the OpenSIPS (default {BASELINE}) and SIPp images")
    p.set_defaults(func=cmd_image_build)
    p.add_argument("--version", action="append", metavar="V",
                   help=f"OpenSIPS release(s) to build, each as {OPENSIPS_REPO}:V: repeatable or "
                   f"comma-separated, or all, 1.10, 1.11, 2.1 (default {BASELINE}; with --source, the "
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


def cmd_image_build(args: argparse.Namespace) -> int:
    check_arguments(args)
    which = (args.only,) if args.only else ("opensips", "sipp")
    for tag in build_images(args.source, args.base, say, which=which, no_cache=args.no_cache,
                            versions=args.version, unverified=args.unverified, label=args.label):
        say(f"built {tag}")
    return 0


def cmd_image_base(args: argparse.Namespace) -> int:
    make_base_image(args.name, args.mirror, say, suite=args.suite)
    return 0
