"""Reading a stuck node's processes: /proc states and CPU, gdb's stacks."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.base.wait import wait_until
from harness.instruments import processes

GDB_OUTPUT = """\
Attaching to process 412
fm_malloc (qm=0x7f0000000000, size=64) at mem/f_malloc.c:340
340\tmem/f_malloc.c: No such file or directory.
PROCESS 412
#0  fm_remove_free (qm=0x7f0000000000, n=0x7f0000001000) at mem/f_malloc.c:180
#1  fm_malloc (qm=0x7f0000000000, size=64) at mem/f_malloc.c:340
#2  0x00005555555a1b2c in shm_malloc (size=64) at mem/shm_mem.h:220
#3  0x00007ffff7a1b2c3 in __GI___clock_nanosleep@GLIBC_2.2.5 (clock_id=0) at nanosleep.c:71
#4  0x000055f0c4f924af in ?? ()
[Inferior 1 (process 412) detached]
PROCESS 413
No stack.
PROCESS 414
#0  0x00007ffff7b1c2d3 in __libc_recvfrom (fd=7, buf=0x1, len=65535) at recvfrom.c:27
#1  0x0000555555600000 in udp_rcv_loop () at udp_server.c:500
"""


def test_gdb_stacks_are_read_per_process_innermost_first() -> None:
    stacks = processes.parse_stacks(GDB_OUTPUT)
    assert stacks == {
        412: ["fm_remove_free", "fm_malloc", "shm_malloc", "__GI___clock_nanosleep@GLIBC_2.2.5", "??"],
        413: [],
        414: ["__libc_recvfrom", "udp_rcv_loop"],
    }
    deep = "PROCESS 1\n" + "".join(f"#{i}  0x1 in f{i} (x=1) at a.c:1\n" for i in range(20))
    assert processes.parse_stacks(deep)[1] == [f"f{i}" for i in range(processes.FRAMES)]


def test_one_gdb_attaches_to_every_pid_in_turn() -> None:
    args = processes._gdb_script([7, 9])
    assert args[:3] == ["gdb", "-nx", "-batch"]
    steps = [args[i + 1] for i in range(len(args)) if args[i] == "-ex"]
    assert steps[2:] == ["attach 7", "echo PROCESS 7\\n", "bt", "detach",
                         "attach 9", "echo PROCESS 9\\n", "bt", "detach"]


def test_a_line_per_process() -> None:
    stuck = processes.ProcessState(412, "R", 0.98, "", ["fm_malloc", "shm_malloc"])
    assert stuck.text() == "pid 412 R cpu 98%: fm_malloc < shm_malloc"
    assert processes.ProcessState(413, "S", 0.0, "hrtimer_nanosleep").text() == "pid 413 S cpu 0%: hrtimer_nanosleep"
    assert processes.ProcessState(414, "S", 0.0, "").text() == "pid 414 S cpu 0%: ?"


@pytest.fixture
def spinner_and_sleeper() -> Iterator[tuple[int, int]]:
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    sleep = subprocess.Popen([sys.executable, "-c", "import time; print(flush=True); time.sleep(600)"],
                             stdout=subprocess.PIPE)
    try:
        assert sleep.stdout is not None and sleep.stdout.readline() == b"\n"  # started: what follows is its sleep
        wait_until(lambda: Path(f"/proc/{sleep.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "S",
                   timeout=10, what="the sleeper to sleep")
        yield spin.pid, sleep.pid
    finally:
        for p in (spin, sleep):
            p.kill()
            p.wait()
        assert sleep.stdout is not None
        sleep.stdout.close()


def test_a_spinning_process_runs_and_a_sleeping_one_waits(spinner_and_sleeper: tuple[int, int]) -> None:
    spin, sleep = spinner_and_sleeper
    found = {p.pid: p for p in processes.snapshot([spin, sleep, 2 ** 22 + 1], with_stacks=False)}
    assert sorted(found) == [spin, sleep]  # a pid that does not exist is left out
    assert found[spin].state == "R" and found[spin].cpu > 0
    assert (found[sleep].state, found[sleep].cpu, found[sleep].frames) == ("S", 0.0, [])


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")
def test_gdb_finds_a_sleeping_process_in_its_sleep(spinner_and_sleeper: tuple[int, int]) -> None:
    _, sleep = spinner_and_sleeper
    (state,) = processes.snapshot([sleep])
    assert any("nanosleep" in f or "select" in f for f in state.frames), state.frames


def test_without_gdb_there_are_no_stacks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes.shutil, "which", lambda name: None)
    assert processes.stacks([1]) == {}
    assert processes.stacks([]) == {}
