"""``pybin relay LISTEN DEST``: forward datagrams with seeded, logged faults.

Every datagram read on LISTEN goes on to DEST from the relay's own socket, with the
faults given (``pybin.relay``: the decisions depend only on ``--seed`` and the input,
never on timing). It runs until Ctrl-C / SIGTERM, ``--count`` datagrams or
``--timeout`` seconds, and then prints its counters on stderr. After ``--count`` or
``--timeout`` the datagrams still held leave on their own schedule first; after a
signal they leave at once (marked ``at_close`` in the log).

Bad arguments are one line on stderr and exit status 2, like every other failure.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from typing import Any, NoReturn

from ..errors import PybinError
from .common import EXIT_BAD_INPUT, EXIT_IO, CliError, byte_order, order_flag, parse_hostport


def _listen_address(value: str) -> tuple[str, int]:
    """Like ``parse_hostport``, but port 0 is allowed: the kernel picks, stderr says which."""
    from ..endpoint import EndpointError, parse_address

    try:
        return parse_address(value)
    except EndpointError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "relay",
        help="forward datagrams from LISTEN to DEST with seeded faults (loss, reorder, delay ...)",
        description="Forward every datagram from LISTEN to DEST, with seeded faults; "
        "P is a probability per datagram (0 to 1).",
    )
    p.add_argument("listen", type=_listen_address, metavar="LISTEN", help="HOST:PORT to read (port 0: any free port)")
    p.add_argument("dest", type=parse_hostport, metavar="DEST", help="HOST:PORT to send to")
    faults = p.add_argument_group("faults (applied in this order)")
    faults.add_argument("--loss", metavar="P", help="drop the datagram")
    faults.add_argument("--truncate", metavar="P", help="cut it short at a seeded length (checksum recomputed)")
    faults.add_argument("--corrupt", metavar="P", help="flip one byte after the header (checksum left as it was)")
    faults.add_argument("--duplicate", metavar="P", help="send it twice")
    faults.add_argument("--reorder", metavar="P", help="hold it until --reorder-by later datagrams have arrived")
    faults.add_argument("--reorder-by", metavar="N", help="later datagrams a reordered one waits for (default 3)")
    faults.add_argument("--reorder-timeout", metavar="MS",
                        help="longest a reordered datagram waits when the stream stops (default 1000)")
    faults.add_argument("--delay", metavar="MS[±J]",
                        help="delay every selected datagram by MS, ± a uniform jitter J (write ± as +- or ~ too)")
    faults.add_argument("--seed", metavar="N", help="same seed + same input = same decisions (default 0)")
    select = p.add_argument_group("which datagrams the faults may touch (default: all)")
    select.add_argument("--only", action="append", metavar="CMD",
                        help="dialog packets of these commands: created, updated, deleted (repeat, or a|b)")
    select.add_argument("--calls", metavar="FILE", help="dialog packets of the Call-IDs in FILE, one per line")
    p.add_argument("--log", metavar="FILE", help="one JSON line per datagram read ('-': stdout)")
    p.add_argument("--count", type=int, metavar="N", help="stop after reading N datagrams")
    p.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--stats", action="store_true", help="datagrams per kind and action, on stderr at the end")
    order_flag(p)
    p.set_defaults(func=cmd_relay)
    p.error = _one_line_error  # type: ignore[method-assign]


def _one_line_error(message: str) -> NoReturn:
    print(f"pybin relay: {message}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_INPUT)


def read_calls(path: str) -> frozenset[bytes]:
    """Call-IDs, one per line; blank lines and ``#`` comments are skipped."""
    try:
        with open(path, "rb") as lines:
            calls = {line.strip() for line in lines}
    except OSError as err:
        raise CliError(f"--calls {path}: {err.strerror or err}", EXIT_IO) from None
    calls = {c for c in calls if c and not c.startswith(b"#")}
    if not calls:
        raise CliError(f"--calls {path}: no Call-ID in the file")
    return frozenset(calls)


def impairment_from(args: argparse.Namespace) -> Any:
    """The options as one Impairment (one-line CliError for a bad value)."""
    from ..relay.impairment import Impairment, ImpairmentError, _integer, _number, parse_commands, parse_delay

    values: dict[str, Any] = {}
    try:
        for name in ("loss", "duplicate", "reorder", "corrupt", "truncate", "reorder_timeout"):
            if getattr(args, name) is not None:
                values[name] = _number(getattr(args, name), "--" + name.replace("_", "-"))
        for name in ("reorder_by", "seed"):
            if getattr(args, name) is not None:
                values[name] = _integer(getattr(args, name), "--" + name.replace("_", "-"))
        if args.delay is not None:
            values["delay"], values["jitter"] = parse_delay(args.delay)
        if args.only:
            values["only"] = parse_commands("|".join(args.only))
        if args.calls is not None:
            values["calls"] = read_calls(args.calls)
        return Impairment(**values)
    except ImpairmentError as err:
        raise CliError(str(err)) from None


def cmd_relay(args: argparse.Namespace) -> int:
    impairment = impairment_from(args)
    if args.count is not None and args.count < 1:
        raise CliError(f"--count {args.count}: at least 1")
    if args.timeout is not None and not args.timeout > 0:
        raise CliError(f"--timeout {args.timeout:g}: must be positive")
    return asyncio.run(_relay(args, impairment))


async def _relay(args: argparse.Namespace, impairment: Any) -> int:
    from ..endpoint import _show
    from ..relay import Relay

    log: Any = args.log
    if log == "-":
        log = sys.stdout
    relay = Relay(args.listen, args.dest, impairment, log=log, byte_order=byte_order(args),
                  limit=args.count, tally=args.stats)
    loop = asyncio.get_running_loop()
    interrupted = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, interrupted.set)
    try:
        await relay.start()
    except PybinError as err:
        raise CliError(str(err), EXIT_IO) from None
    try:
        print(f"relaying {_show(relay.address)} → {_show(relay.dest)} ({impairment.describe()})",
              file=sys.stderr, flush=True)
        stops = [asyncio.ensure_future(interrupted.wait())]
        if args.count is not None:
            stops.append(asyncio.ensure_future(relay.wait_received(args.count)))
        _, pending = await asyncio.wait(stops, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        relay.stop_receiving()
        if not interrupted.is_set():
            drained = asyncio.ensure_future(relay.drain())
            signalled = asyncio.ensure_future(interrupted.wait())
            await asyncio.wait([drained, signalled], return_when=asyncio.FIRST_COMPLETED)
            drained.cancel()
            signalled.cancel()
    finally:
        await relay.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        print(f"relay: {relay.counters.summary()}", file=sys.stderr, flush=True)
        if relay.tally is not None:
            for (kind, action), n in sorted(relay.tally.items()):
                print(f"stats: {kind}: {action} {n}", file=sys.stderr)
    return 0
