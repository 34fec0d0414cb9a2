"""Who started a harness resource, and whether that process still exists.

Why: a run killed with SIGKILL (a cancelled CI job) runs no ``finally`` and no
``atexit``; what it started stays behind. Everything the harness starts therefore
carries its owner — host, pid and the pid's start time — so that a later run can
tell a leftover (owner gone) from another live run's resource (owner alive) without
asking anyone. The start time makes a reused pid count as gone: after a reboot or a
pid wrap-around a different process has that pid, with a different start time.

Where the owner is written: Docker containers and networks carry ``OWNER_LABEL``;
local namespaces and work directories carry ``pid`` and ``start`` in their names
(``name_tag``); processes the harness spawns (OpenSIPS, SIPp, tcpdump) carry
``OWNER_ENV`` in their environment, readable from ``/proc/PID/environ``.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path

#: environment variable every process the harness spawns carries: ``host pid start``
OWNER_ENV = "HARNESS_OWNER"
PROC = Path("/proc")

_TAG_RE = re.compile(r"(\d+)t(\d+)")


@dataclass(frozen=True)
class Owner:
    """A process: the host it ran on, its pid, its start time (clock ticks after boot)."""

    host: str
    pid: int
    start: int

    def __str__(self) -> str:
        return f"{self.host} {self.pid} {self.start}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        """``host pid start`` back to an Owner; None if it is not that (foreign label)."""
        parts = text.split()
        if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit():
            return None
        return cls(parts[0], int(parts[1]), int(parts[2]))

    @property
    def tag(self) -> str:
        """``<pid>t<start>``: the owner in a name (namespaces, directories are host-local)."""
        return f"{self.pid}t{self.start}"

    @classmethod
    def from_tag(cls, tag: str, host: str) -> Owner | None:
        m = _TAG_RE.fullmatch(tag)
        return cls(host, int(m.group(1)), int(m.group(2))) if m else None


def start_time(pid: int, proc: Path = PROC) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (start time in clock ticks after boot); None if no such pid.

    The command name (field 2) may hold spaces and parentheses, so fields are counted
    after its last ``)``.
    """
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return int(fields[19])  # fields[0] is field 3 (state)


def hostname() -> str:
    return socket.gethostname()


_ME: Owner | None = None


def me() -> Owner:
    """This process as an owner (cached; a forked child asks again)."""
    global _ME
    if _ME is None or _ME.pid != os.getpid():
        pid = os.getpid()
        _ME = Owner(hostname(), pid, start_time(pid) or 0)
    return _ME


def alive(owner: Owner, proc: Path = PROC) -> bool:
    """Does ``owner``'s process still run (same pid *and* same start time, and not a
    zombie: a killed runner whose parent has not reaped it yet is gone all the same)?"""
    return start_time(owner.pid, proc) == owner.start and state(owner.pid, proc) not in ("Z", "X")


def state(pid: int, proc: Path = PROC) -> str | None:
    """Field 3 of ``/proc/PID/stat`` (R, S, Z …); None if no such pid."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, NotADirectoryError):
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def is_leftover(owner: Owner | None, host: str, proc: Path = PROC) -> bool:
    """Should a sweep remove a resource with this owner?

    Only when the owner was on this host and its process is gone; a resource without
    an owner (another tool, an older harness) or owned on another host (a shared
    engine) is not ours to judge: ``harness clean --all`` removes those.
    """
    return owner is not None and owner.host == host and not alive(owner, proc)


def child_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a process the harness spawns: ``base`` (os.environ) + owner marker."""
    env = dict(os.environ if base is None else base)
    env[OWNER_ENV] = str(me())
    return env


def process_owner(pid: int, proc: Path = PROC) -> Owner | None:
    """The owner marker in ``/proc/PID/environ``, None without one (or unreadable, gone)."""
    try:
        environ = (proc / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = OWNER_ENV.encode() + b"="
    for entry in environ.split(b"\0"):
        if entry.startswith(prefix):
            return Owner.parse(entry[len(prefix):].decode(errors="replace"))
    return None


def marked_processes(proc: Path = PROC) -> dict[int, Owner]:
    """Every process carrying the owner marker, by pid."""
    found = {}
    for entry in proc.iterdir():
        if entry.name.isdigit() and (owner := process_owner(int(entry.name), proc)) is not None:
            found[int(entry.name)] = owner
    return found


def ancestors(pid: int, proc: Path = PROC) -> set[int]:
    """``pid`` and its parents up to init: a sweep never kills its own line."""
    line = set()
    while pid > 0 and pid not in line:
        line.add(pid)
        try:
            stat = (proc / str(pid) / "stat").read_text()
        except OSError:
            break
        pid = int(stat[stat.rindex(")") + 2:].split()[1])
    return line
