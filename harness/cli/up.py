"""``harness up``: a cluster to look at, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import threading
import time
from typing import Any

from harness import live
from harness.cli.common import (
    add_cluster_options,
    add_first_use_options,
    backend_for,
    check_arguments,
    first_use,
    say,
)
from harness.cluster import Cluster


def add_parser(sub: Any) -> None:
    p = sub.add_parser("up", help="start a cluster, print its addresses, run until Ctrl-C")
    p.set_defaults(func=cmd_up)
    add_cluster_options(p)
    p.add_argument("--roles", default="primary,backup", help="comma-separated roles (default primary,backup)")
    p.add_argument("--replicate-to", action="append", default=[], metavar="IP:PORT",
                   help="one more replicate_dialogs_to destination (repeatable), e.g. a "
                        "`pybin listen` on the harness address")
    add_first_use_options(p)


def cmd_up(args: argparse.Namespace) -> int:
    check_arguments(args)
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    Cluster.node_roles(roles)  # an unknown role is refused before anything starts
    first_use(args)
    kind, settings = backend_for(args, roles=tuple(roles))
    say(f"backend: {kind.name}")
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        say(f"starting {', '.join(roles)} and probing their BIN receivers (1.10.5 defect warm-up) …")
        started = time.monotonic()
        with live.start(kind, settings, roles, extra_destinations=args.replicate_to) as lc:
            say(f"cluster up in {time.monotonic() - started:.1f}s")
            for line in describe_cluster(lc.cluster):
                say(line)
            say("Ctrl-C to stop")
            try:
                while not stop.wait(0.5):
                    lc.cluster.check()  # a node dying is reported at once, with its log
            except KeyboardInterrupt:
                pass
            say("stopping …")
    except KeyboardInterrupt:
        say("interrupted, cleaning up …")
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
