"""What a stuck node's processes are doing: their state, the CPU they use, their stacks.

When a check's deadline passes while the node still answers (a 1.11.0 primary whose
transaction timers stopped, say), the cell is an error, and the reader's question is
whose fault it is: the harness waited for the wrong thing, or a process of the node is
stuck — spinning in its allocator, waiting for a lock nobody releases. Without a look at
the processes at that moment the answer is gone with the cluster. `snapshot` reads
``/proc`` for each of the node's OpenSIPS processes twice, `SAMPLE_S` apart (state, the
share of a CPU it used in between, the kernel function it sleeps in) and, when ``gdb``
is on PATH, the function names on each process's stack (one gdb for all of them, so a
node's dozen processes cost one start-up).

Works where the harness sees the node's processes (the local backend: the same host,
the same pid namespace); elsewhere `Node.opensips_pids` is None and there is nothing
to read.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: how long the two /proc readings are apart: long enough to tell a spinning process
#: (close to 100 % of a CPU) from one that sleeps
SAMPLE_S = 0.5
#: gdb's budget for all of a node's stacks (attaching stops each process briefly)
STACKS_S = 30.0
#: frames kept per stack (the innermost ones say where it is stuck)
FRAMES = 8
_TICK = os.sysconf("SC_CLK_TCK")
#: ``#3  0x00005555 in fm_malloc (qm=...) at mem/f_malloc.c:340`` or ``#0  fm_malloc (...``
_FRAME = re.compile(r"^#\d+\s+(?:0x[0-9a-f]+ in )?([\w.:<>~@?]+) \(")
_ATTACHED = re.compile(r"^PROCESS (\d+)$")


@dataclass
class ProcessState:
    pid: int
    #: /proc state letter: R running, S sleeping, D uninterruptible, T stopped, Z zombie
    state: str
    #: the share of one CPU used during the sample (1.0 = spinning)
    cpu: float
    #: the kernel function it sleeps in ("" while it runs)
    wchan: str
    #: function names, innermost first ([] without gdb)
    frames: list[str] = field(default_factory=list)

    def text(self) -> str:
        """``pid 412 R cpu 98%: fm_malloc < shm_malloc < build_cell`` — one line."""
        where = " < ".join(self.frames) or self.wchan or "?"
        return f"pid {self.pid} {self.state} cpu {round(self.cpu * 100)}%: {where}"


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, utime + stime in ticks); None once the process is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # the command name may hold spaces
    return fields[0], int(fields[11]) + int(fields[12])


def _wchan(pid: int) -> str:
    try:
        text = Path(f"/proc/{pid}/wchan").read_text().strip()
    except OSError:
        return ""
    return "" if text == "0" else text


def parse_stacks(output: str) -> dict[int, list[str]]:
    """gdb's output for `_gdb_script` -> {pid: function names, innermost first}."""
    stacks: dict[int, list[str]] = {}
    current: list[str] | None = None
    for line in output.splitlines():
        line = line.strip()
        if m := _ATTACHED.match(line):
            current = stacks.setdefault(int(m.group(1)), [])
        elif current is not None and (m := _FRAME.match(line)) and len(current) < FRAMES:
            current.append(m.group(1))
    return stacks


def _gdb_script(pids: Sequence[int]) -> list[str]:
    """gdb arguments: attach to each pid in turn, print a marker and its stack, detach."""
    args = ["gdb", "-nx", "-batch", "-ex", "set pagination off", "-ex", "set confirm off"]
    for pid in pids:
        args += ["-ex", f"attach {pid}", "-ex", f"echo PROCESS {pid}\\n", "-ex", "bt", "-ex", "detach"]
    return args


def stacks(pids: Sequence[int], timeout: float = STACKS_S) -> dict[int, list[str]]:
    """Each process's stack (function names); {} without gdb or when gdb fails."""
    if not pids or shutil.which("gdb") is None:
        return {}
    try:
        done = subprocess.run(_gdb_script(pids), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (subprocess.TimeoutExpired, OSError):
        return {}
    return parse_stacks(done.stdout)


def snapshot(pids: Sequence[int], sample: float = SAMPLE_S, with_stacks: bool = True) -> list[ProcessState]:
    """The processes' states now (module docstring); processes gone meanwhile are left out."""
    first = {pid: s for pid in pids if (s := _stat(pid)) is not None}
    start = time.monotonic()
    time.sleep(sample)  # a CPU share needs two readings some time apart
    elapsed = time.monotonic() - start
    out = []
    for pid, (_, ticks) in first.items():
        now = _stat(pid)
        if now is None:
            continue
        out.append(ProcessState(pid, now[0], round((now[1] - ticks) / _TICK / elapsed, 2), _wchan(pid)))
    if with_stacks:
        found = stacks([p.pid for p in out])
        for p in out:
            p.frames = found.get(p.pid, [])
    return out
