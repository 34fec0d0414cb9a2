"""A node's container reached without the engine, where the harness runs on the engine's host.

Every ``docker exec`` and ``docker kill`` is a round trip through the engine (an exec is
created, started and inspected; a kill is signalled, then the state polled), tens to
hundreds of milliseconds each under load, and a failover makes several: pinning the dead
node's address on its siblings, the kill, adding the VIP on the backup, its gratuitous
ARP. That was most of the Docker backend's 348–421 ms service gap.

Where the harness runs as root on the engine's host, a container's init is a process of
this host (the engine's ``State.Pid``) and its network namespace is
``/proc/<pid>/ns/net``: the harness SIGKILLs the init itself (the kernel then kills
every other process of the container's pid namespace, as ``docker kill`` does) and runs
the container's own ``ip`` and ``arping`` in its network and mount namespaces
(``nsenter --net --mount``: the image's binaries, not the host's — a host's ``arping``
may be another program with other options, as on this project's machine). The engine
path stays the fallback — not root, no ``nsenter`` on the host, an engine on another
machine (the pid is then not ours: ``/proc/<pid>/cgroup`` does not name the
container), or ``HARNESS_DOCKER_DIRECT=0``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from harness.base.wait import WaitTimeout, wait_until

#: ``0`` (or no/off/false) keeps every operation on the engine
DIRECT_ENV = "HARNESS_DOCKER_DIRECT"
TOOLS = ("nsenter",)
#: how long a command inside a namespace may take (they take milliseconds)
COMMAND_TIMEOUT = 5.0


def enabled() -> bool:
    """Root, ``nsenter`` on the host, and not switched off."""
    if os.environ.get(DIRECT_ENV, "1").strip().lower() in ("0", "no", "off", "false"):
        return False
    return os.geteuid() == 0 and all(shutil.which(tool) for tool in TOOLS)


def host_pid(container: Any) -> int | None:
    """The container's init as a process of this host, or None where it is not one (a
    remote engine, another pid namespace, not running). ``container.attrs`` must be fresh."""
    pid = ((container.attrs or {}).get("State") or {}).get("Pid") or 0
    cid = getattr(container, "id", None)
    if pid <= 0 or not cid:
        return None
    try:
        cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return None
    return pid if cid in cgroup else None


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def run(pid: int, argv: Sequence[str]) -> tuple[int, str]:
    """``argv`` in the network and mount namespaces of ``pid`` (the container's own
    binaries, as ``docker exec`` would run them); (exit code, output)."""
    try:
        proc = subprocess.run(["nsenter", f"--target={pid}", "--net", "--mount", *argv], capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT, check=False)
    except (OSError, subprocess.SubprocessError) as err:
        return 255, str(err)
    return proc.returncode, proc.stdout + proc.stderr


def run_later(pid: int, argv: Sequence[str]) -> None:
    """``run`` on a thread of its own, nobody waiting (a repeated gratuitous ARP)."""
    threading.Thread(target=run, args=(pid, list(argv)), name="nsenter", daemon=True).start()


def kill(pid: int, timeout: float) -> bool:
    """SIGKILL the container's init and wait until it is gone (its namespace's other
    processes die with it: the kernel kills them before the init is released); False
    when it outlived ``timeout``."""
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    try:
        wait_until(lambda: not alive(pid), timeout=timeout, interval=0.001,
                   what=f"process {pid} to end after SIGKILL")
    except WaitTimeout:
        return False
    return True


def interface_of(ip_addr_output: str, ip: str) -> str | None:
    """The interface holding ``ip`` in ``ip -o -4 addr show`` output."""
    for line in ip_addr_output.splitlines():
        parts = line.split()
        if len(parts) > 3 and parts[3].split("/")[0] == ip:
            return parts[1].rstrip(":").split("@")[0]
    return None
