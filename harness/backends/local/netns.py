"""Linux network-namespace plumbing for the local backend: iproute2 and in-namespace sockets.

Kept apart so the topology and the process supervision read without iproute2 noise.
Sockets are created *inside* a namespace by a short-lived thread that joined it with
setns(2): the socket stays in that namespace, so the test process talks to nodes
without any address or route appearing in the host's own namespace.
"""

from __future__ import annotations

import ctypes
import json
import os
import socket
import struct
import subprocess
import threading
from pathlib import Path
from typing import Callable, TypeVar

from harness.base.errors import HarnessError

T = TypeVar("T")
NETNS_DIR = Path("/run/netns")
_CLONE_NEWNET = 0x40000000


class NetnsError(HarnessError, RuntimeError):
    """An iproute2 / namespace operation failed; the message is the one-line cause."""


def run(argv: list[str], *, check: bool = True, timeout: float = 20.0) -> str:
    """Run a short plumbing command, returning stdout; one-line error on failure."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except FileNotFoundError:
        raise NetnsError(f"{argv[0]} not found (install iproute2)") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(argv)} did not finish within {timeout:.0f}s") from None
    if check and proc.returncode != 0:
        err = (proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}")
        raise NetnsError(f"{' '.join(argv)}: {err.splitlines()[-1]}")
    return proc.stdout


def exists(ns: str) -> bool:
    return (NETNS_DIR / ns).exists()


def add(ns: str) -> None:
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])


def pids(ns: str) -> list[int]:
    """Every process living in namespace `ns` (a node's main and all its children)."""
    if not exists(ns):
        return []
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in out.split()]


def delete(ns: str) -> None:
    if exists(ns):
        run(["ip", "netns", "del", ns], check=False)


def list_names() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Call fn() in a thread that joined namespace `ns`; return its result.

    Namespace membership is per thread, so the caller's own thread is never moved.
    """
    result: list[T] = []
    error: list[BaseException] = []

    def body() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(NETNS_DIR / ns, os.O_RDONLY)
            try:
                if libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise NetnsError(f"setns({ns}): {os.strerror(err)}")
            finally:
                os.close(fd)
            result.append(fn())
        except BaseException as exc:  # handed to the caller's thread
            error.append(exc)

    t = threading.Thread(target=body, name=f"netns-{ns}", daemon=True)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]


def udp_socket(ns: str, ip: str, port: int = 0) -> socket.socket:
    """A UDP socket bound to ip:port inside namespace `ns`."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.bind((ip, port))
        except OSError:
            s.close()
            raise
        return s
    return in_netns(ns, make)


def link_mac(ns: str, ifname: str) -> str:
    data = json.loads(run(["ip", "-n", ns, "-j", "link", "show", "dev", ifname]))
    return data[0]["address"]


def send_garp(ns: str, ifname: str, ip: str, count: int = 2) -> None:
    """Broadcast gratuitous ARP (request and reply forms) for `ip` from ns/ifname.

    Done with an AF_PACKET socket so no arping binary is needed.
    """
    mac = bytes.fromhex(link_mac(ns, ifname).replace(":", ""))
    ipb = socket.inet_aton(ip)
    bcast = b"\xff" * 6

    def frame(op: int) -> bytes:
        eth = bcast + mac + struct.pack("!H", 0x0806)
        target_mac = b"\x00" * 6 if op == 1 else bcast
        arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + ipb + target_mac + ipb
        return eth + arp

    def send() -> None:
        with socket.socket(socket.AF_PACKET, socket.SOCK_RAW) as s:
            s.bind((ifname, 0))
            for _ in range(count):
                s.send(frame(1))
                s.send(frame(2))
    in_netns(ns, send)
