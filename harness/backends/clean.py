"""Remove what harness runs left behind: containers, networks, namespaces, processes, dirs.

Why: a run killed with SIGKILL cleans nothing up, and its clusters keep subnets,
CPU and ports busy for every later run. Each run therefore starts with ``sweep()``
(leftovers of owners that no longer exist, see ``harness.base.owner``), and
``harness clean [--all]`` does the same on demand. ``--all`` also removes what live
runs and unlabelled (older) harness versions own, so it is for a machine nobody else
is testing on.

Each kind of resource is listed with its owner by one small function; which of them
to remove is decided in one place (``chosen``) so the rule is tested offline.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from harness.backends.docker import engine
from harness.backends.images import engine_socket_problem, first_line
from harness.backends.local import netns
from harness.backends.local.topology import NS_PREFIX, signal_pid, until_empty
from harness.base.owner import (
    PROC,
    Owner,
    ancestors,
    hostname,
    is_leftover,
    marked_processes,
    process_owner,
)

#: local work directories: ``harness-<namespace prefix>-…`` in the temp dir
DIR_PREFIX = "harness-"
log = logging.getLogger(__name__)

#: namespaces: ``hx<pid>t<start>x<seq>-<host>``; ``hx<pid>x<seq>-`` from older harnesses
NS_RE = re.compile(rf"^{NS_PREFIX}(\d+t\d+)x\d+-")
OLD_NS_RE = re.compile(rf"^{NS_PREFIX}(\d+)x\d+-")


@dataclass(frozen=True)
class Resource:
    """One thing the harness started, whom it belongs to, and how to remove it."""

    kind: str  # container, network, process, namespace, directory (removal order)
    name: str
    owner: Owner | None
    remove: Callable[[], None] = field(compare=False, repr=False)
    #: an older harness's namespace names only a pid: gone means gone
    pid_only: bool = False

    def line(self) -> str:
        return f"removed {self.kind} {self.name} (owner {self.owner or 'unknown'})"


@dataclass
class Outcome:
    removed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def chosen(resources: Iterable[Resource], *, everything: bool, host: str,
           proc: Path = PROC) -> list[Resource]:
    """The resources a sweep removes: all of them with ``everything``, else the leftovers."""
    def stale(r: Resource) -> bool:
        if r.pid_only and r.owner is not None:
            return not (proc / str(r.owner.pid)).exists()
        return is_leftover(r.owner, host, proc)

    return [r for r in resources if everything or stale(r)]


# -- what exists ------------------------------------------------------------------------

def docker_resources() -> list[Resource]:
    """Containers and networks carrying the harness's run label (raises if no engine)."""
    client = engine.client()
    found = []
    # ignore_removed: another run tearing its cluster down removes containers between
    # the engine's listing and the inspect of each; without it the whole listing fails
    for c in client.containers.list(all=True, filters={"label": engine.RUN_LABEL}, ignore_removed=True):
        owner = Owner.parse(c.labels.get(engine.OWNER_LABEL, ""))
        found.append(Resource("container", c.name, owner,
                              lambda c=c: c.remove(force=True, v=True)))
    for n in client.networks.list(filters={"label": engine.RUN_LABEL}):
        owner = Owner.parse((n.attrs.get("Labels") or {}).get(engine.OWNER_LABEL, ""))
        found.append(Resource("network", n.name, owner, n.remove))
    return found


def _kill_namespace(ns: str) -> None:
    for pid in netns.pids(ns):
        signal_pid(pid, signal.SIGKILL)
    until_empty(ns, 5)
    netns.delete(ns)
    if netns.exists(ns):
        raise OSError("ip netns del did not remove it")


def namespace_resources(host: str) -> list[Resource]:
    found = []
    for ns in netns.list_names():
        if m := NS_RE.match(ns):
            found.append(Resource("namespace", ns, Owner.from_tag(m.group(1), host),
                                  lambda ns=ns: _kill_namespace(ns)))
        elif m := OLD_NS_RE.match(ns):
            found.append(Resource("namespace", ns, Owner(host, int(m.group(1)), 0),
                                  lambda ns=ns: _kill_namespace(ns), pid_only=True))
    return found


def _kill(pid: int, owner: Owner) -> None:
    if process_owner(pid) == owner:  # not a reused pid since it was listed
        signal_pid(pid, signal.SIGKILL)


def process_resources(proc: Path = PROC) -> list[Resource]:
    """Processes carrying the owner marker, except this process and its ancestors."""
    mine = ancestors(os.getpid(), proc)
    found = []
    for pid, owner in sorted(marked_processes(proc).items()):
        if pid in mine:
            continue
        try:
            comm = (proc / str(pid) / "comm").read_text().strip()
        except OSError:
            comm = "?"
        found.append(Resource("process", f"{pid} ({comm})", owner,
                              lambda pid=pid, owner=owner: _kill(pid, owner)))
    return found


def directory_resources(host: str, tmp: Path | None = None) -> list[Resource]:
    tmp = tmp or Path(tempfile.gettempdir())
    found = []
    for d in sorted(tmp.glob(f"{DIR_PREFIX}{NS_PREFIX}*")):
        name = d.name[len(DIR_PREFIX):]
        if not d.is_dir():
            continue
        if m := NS_RE.match(name):
            found.append(Resource("directory", str(d), Owner.from_tag(m.group(1), host),
                                  lambda d=d: shutil.rmtree(d)))
        elif m := OLD_NS_RE.match(name):
            found.append(Resource("directory", str(d), Owner(host, int(m.group(1)), 0),
                                  lambda d=d: shutil.rmtree(d), pid_only=True))
    return found


# -- removing ---------------------------------------------------------------------------

ORDER = ("container", "network", "process", "namespace", "directory")


def remove(resources: Iterable[Resource], outcome: Outcome) -> None:
    """Remove in ORDER (a network with containers, a namespace with processes resist)."""
    for r in sorted(resources, key=lambda r: ORDER.index(r.kind)):
        try:
            r.remove()
        except Exception as exc:
            outcome.errors.append(f"could not remove {r.kind} {r.name}: {first_line(exc)}")
        else:
            outcome.removed.append(r.line())


def docker_reachable() -> str | None:
    """Why the engine cannot be asked (one line), or None."""
    try:
        import docker  # noqa: F401
    except ImportError:
        return "python package 'docker' not installed"
    if problem := engine_socket_problem():
        return problem
    try:
        engine.client().ping()
    except Exception as exc:
        return first_line(exc)
    return None


def sweep(*, everything: bool = False, docker: bool = True, local: bool = True) -> Outcome:
    """Remove leftovers of owners that no longer exist (or everything the harness labelled).

    A backend that cannot be asked (no engine; not root for namespaces) is skipped
    with a note: there is then nothing of it this process could remove anyway.
    """
    outcome, host, found = Outcome(), hostname(), []
    if docker:
        if (why := docker_reachable()) is None:
            try:
                found += docker_resources()
            except Exception as exc:
                outcome.errors.append(f"could not list docker containers and networks: {first_line(exc)}")
        else:
            outcome.notes.append(f"docker skipped: engine not reachable ({why})")
    if local:
        found += process_resources()
        if os.geteuid() == 0:
            found += namespace_resources(host)
        elif any(NS_RE.match(n) or OLD_NS_RE.match(n) for n in netns.list_names()):
            outcome.notes.append("namespaces skipped: removing them needs root")
        found += directory_resources(host)
    remove(chosen(found, everything=everything, host=host), outcome)
    return outcome


#: one sweep at a time on this machine: every run start sweeps, and parallel runs (xdist
#: workers, matrix jobs) would otherwise race each other over the same leftovers
SWEEP_LOCK = Path(tempfile.gettempdir()) / "harness-sweep.lock"
_in_process = threading.RLock()
_depth = 0
_lock_file: IO[bytes] | None = None


@contextlib.contextmanager
def sweep_lock(*, wait: bool = True) -> Iterator[bool]:
    """Hold the machine's sweep lock (flock on SWEEP_LOCK); re-entrant in one thread.

    Yields False without waiting when ``wait`` is false and another sweep holds it: a
    run-start sweep then skips, since the other sweep removes the same leftovers.
    ``harness clean`` waits."""
    global _depth, _lock_file
    if not _in_process.acquire(blocking=wait):
        yield False
        return
    try:
        if _depth == 0:
            _lock_file = open(SWEEP_LOCK, "ab")
            try:
                fcntl.flock(_lock_file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                _lock_file.close()
                _lock_file = None
                yield False
                return
        _depth += 1
        try:
            yield True
        finally:
            _depth -= 1
            if _depth == 0 and _lock_file is not None:
                _lock_file.close()  # closing drops the flock
                _lock_file = None
    finally:
        _in_process.release()


def sweep_quietly(**kw: bool) -> list[str]:
    """The run-start sweep: what it removed; never fails a run (errors become lines too).
    Skipped while another sweep runs (it removes the same leftovers).

    Each line is also logged (``harness.backends.clean``: removals at INFO, failures at
    WARNING), so a run whose start could not clear a leftover says why."""
    with sweep_lock(wait=False) as mine:
        if not mine:
            log.debug("run-start sweep skipped: another sweep holds %s", SWEEP_LOCK)
            return []
        try:
            outcome = sweep(**kw)
        except Exception as exc:  # a sweep must not stop the run it precedes
            log.warning("run-start sweep failed: %s", first_line(exc), exc_info=True)
            return [f"sweep failed: {first_line(exc)}"]
    for line in outcome.removed:
        log.info("run-start sweep: %s", line)
    for line in outcome.errors:
        log.warning("run-start sweep: %s", line)
    return outcome.removed + outcome.errors


def clean_command(everything: bool, say: Callable[[str], None], warn: Callable[[str], None]) -> int:
    """``harness clean [--all]``: one line per thing removed; 1 if anything resisted."""
    with sweep_lock():
        outcome = sweep(everything=everything)
    for line in outcome.removed:
        say(line)
    if not outcome.removed and not outcome.errors:
        say("nothing to remove")
    for line in outcome.notes + outcome.errors:
        warn(line)
    return 1 if outcome.errors else 0
