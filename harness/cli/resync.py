"""``harness resync``: a running primary's live dialogs sent to a 1.x backup as ``created``."""

from __future__ import annotations

import argparse
import json
import socket
from typing import Any

from harness.base.errors import HarnessError, UsageError
from harness.cli.common import progress, say
from harness.experiments.resync import PAGE, resync
from harness.instruments.mi import MIClient
from pybin.resync import MI_CANNOT_GIVE, flags_for


def add_parser(sub: Any) -> None:
    p = sub.add_parser("resync", help="send a primary's live dialogs (MI dlg_list_ctx) to a 1.x "
                                      "backup as created: what a restarted backup lacks")
    p.set_defaults(func=cmd_resync)
    p.add_argument("--mi", required=True, metavar="HOST:PORT",
                   help="the primary's mi_datagram socket (modparam socket_name)")
    p.add_argument("--to", required=True, metavar="HOST:PORT", help="the backup's bin_listen")
    p.add_argument("--create-flags", default="", metavar="LETTERS",
                   help="the create_dialog() flags of the primary's script (B, P, p): MI does not "
                        "show a dialog's flags (default: none)")
    p.add_argument("--page", type=int, default=PAGE, help=f"dialogs per MI request (default {PAGE})")
    p.add_argument("--timeout", type=float, default=2.0, help="seconds per MI request (default 2)")
    p.add_argument("--json", action="store_true", help="print one JSON object")


def address(text: str, option: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"{option} {text}: write it HOST:PORT")
    return host.strip("[]"), int(port)


def cmd_resync(args: argparse.Namespace) -> int:
    """Read, send, report; the backup builds each dialog it lacks and ignores the others."""
    mi_addr, dest = address(args.mi, "--mi"), address(args.to, "--to")
    if args.page < 1 or args.timeout <= 0:
        raise UsageError("--page must be at least 1 and --timeout positive")
    try:
        flags = flags_for(args.create_flags)
    except ValueError as err:
        raise UsageError(f"--create-flags: {err}") from None
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        report = resync(MIClient(mi_addr, timeout=args.timeout, name=args.mi),
                        lambda data, addr: sock.sendto(data, addr), dest, flags=flags, page=args.page)
    except OSError as err:
        raise HarnessError(f"resync: {err.strerror or err}") from None
    finally:
        sock.close()
    progress(report.summary())
    if args.json:
        say(json.dumps({**report.to_json(), "to": args.to, "flags": flags,
                        "not_from_mi": sorted(MI_CANNOT_GIVE)}))
    else:
        for cid, why in list(report.skipped.items())[:10]:
            say(f"skipped {cid}: {why}")
    return 0
