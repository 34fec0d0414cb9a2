"""A check whose deadline passes keeps what the nodes' processes were doing then, and a
release's defect found on their stacks is named beside the cell."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.backends import KINDS
from harness.base.releases import Build
from harness.base.settings import load_settings
from harness.base.wait import wait_until
from harness.experiments.matrix import defects
from harness.experiments.matrix import session as session_module
from harness.experiments.matrix.complete import Incomplete
from harness.experiments.matrix.judge import judge, unstable
from harness.experiments.matrix.registry import CHECKS, Check
from harness.experiments.matrix.report import to_markdown
from harness.experiments.matrix.runner import MatrixRun
from harness.experiments.matrix.session import ERROR_KEY, STUCK_KEY, Pair, PairSession

NOT_OVER = "Incomplete: not over after 60 s: primary: 1 transaction(s) still in tm"
OK = {"calls.successful": 3}


class _Node:
    def __init__(self, pids: list[int] | None) -> None:
        self.pids = pids

    def opensips_pids(self) -> list[int] | None:
        return self.pids


@pytest.fixture
def sleeper() -> Iterator[int]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; print(flush=True); time.sleep(600)"],
                            stdout=subprocess.PIPE)
    assert proc.stdout is not None
    try:
        assert proc.stdout.readline() == b"\n"  # started: what follows is its sleep
        wait_until(lambda: Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "S",
                   timeout=10, what="the sleeper to sleep")
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, nodes: dict[str, _Node], exc: Exception) -> dict[str, Any]:
    """Run a check that starts a cluster of its own (``nodes``) and raises ``exc``."""
    cluster = type("Cluster", (), {"nodes": nodes})()

    @contextlib.contextmanager
    def start(*args: object, **kw: object) -> Iterator[object]:
        yield type("LC", (), {"cluster": cluster})()

    monkeypatch.setattr(session_module.live, "start", start)
    monkeypatch.setattr(session_module, "up_long_enough", lambda lc: None)
    monkeypatch.setattr(session_module.processes, "stacks",
                        lambda pids: {pid: ["fm_remove_free", "fm_malloc", "shm_malloc"] for pid in pids})

    def check(session: PairSession) -> dict:
        session.fresh()
        raise exc

    CHECKS["test.stuck"] = Check("test.stuck", "stalls", check)
    build = Build("1.11.0", "/nonexistent/opensips", "1.11.0")
    try:
        with PairSession(KINDS["local"], load_settings(use_env=False), Pair(build, build), tmp_path) as s:
            return s.run("test.stuck")
    finally:
        CHECKS.pop("test.stuck")


def test_a_passed_deadline_keeps_each_nodes_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        sleeper: int) -> None:
    obs = _run(tmp_path, monkeypatch, {"primary": _Node([sleeper]), "backup": _Node(None)},
               Incomplete("not over after 60 s: primary: 1 transaction(s) still in tm"))
    assert obs == {ERROR_KEY: NOT_OVER,
                   STUCK_KEY: {"primary": [f"pid {sleeper} S cpu 0%: fm_remove_free < fm_malloc < shm_malloc"]}}


def test_other_errors_and_invisible_processes_keep_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          sleeper: int) -> None:
    assert _run(tmp_path, monkeypatch, {"primary": _Node([sleeper])}, RuntimeError("bad reply")) == {
        ERROR_KEY: "RuntimeError: bad reply"}
    assert _run(tmp_path, monkeypatch, {"primary": _Node(None)}, Incomplete("not over")) == {
        ERROR_KEY: "Incomplete: not over"}


def _stuck(pid: int, *frames: str, node: str = "primary") -> dict[str, Any]:
    return {ERROR_KEY: NOT_OVER, STUCK_KEY: {node: [f"pid {os.getpid()} S cpu 0%: hrtimer_nanosleep",
                                                    f"pid {pid} R cpu 97%: " + " < ".join(frames)]}}


def test_repeats_that_differ_only_in_the_processes_are_one_error() -> None:
    same = [_stuck(10, "fm_malloc"), _stuck(11, "fm_free"), _stuck(12, "lock_get")]
    assert unstable("sip.basic", "1.11.0", "1.11.0", same, OK) is None
    moved = unstable("sip.basic", "1.11.0", "1.11.0", [OK, _stuck(10, "fm_malloc"), OK], OK)
    assert moved is not None and [d.key for d in moved.differences] == ["calls.successful", "error"]


def test_a_process_in_the_defects_frames_names_it_and_elsewhere_does_not() -> None:
    table = defects.load()
    versions = {"1.11.0": "1.11.0", "1.11.1": "1.11.1", "1.10.5": "1.10.5"}
    cells = [
        judge("sip.basic", "1.11.0", "1.10.5", _stuck(412, "fm_remove_free", "fm_malloc", "shm_malloc"), OK, []),
        judge("sip.basic", "1.10.5", "1.11.0", _stuck(413, "fm_malloc", node="backup"), OK, []),
        judge("sip.cancel", "1.11.0", "1.11.0", _stuck(414, "udp_rcv_loop"), OK, []),   # not the allocator
        judge("sip.bye", "1.11.1", "1.11.1", _stuck(415, "fm_malloc"), OK, []),          # fixed there
        judge("sip.basic", "1.10.5", "1.11.0", _stuck(416, "fm_malloc"), OK, []),        # the 1.10.5 primary
    ]
    named = defects.named(cells, versions, table)
    assert [(n.check, n.primary, n.backup, n.role, n.how) for n in named] == [
        ("sip.basic", "1.11.0", "1.10.5", "primary", "was stuck in fm_remove_free (pid 412)"),
        ("sip.basic", "1.10.5", "1.11.0", "backup", "was stuck in fm_malloc (pid 413)")]
    assert named[0].text().startswith(
        "a 1.11.0 primary was stuck in fm_remove_free (pid 412): upstream defect `shm-malloc-unlocked`")


def test_matrix_md_lists_the_processes_under_the_error() -> None:
    builds = {v: Build(v, f"/b/{v}", v) for v in ("1.10.5", "1.11.0")}
    run = MatrixRun("1.10.5", builds, [("1.10.5", "1.10.5"), ("1.11.0", "1.11.0")], ["sip.basic"],
                    "local", repeat=1, started=0.0, seconds=60.0)
    run.results = [judge("sip.basic", "1.10.5", "1.10.5", OK, OK, []),
                   judge("sip.basic", "1.11.0", "1.11.0", _stuck(412, "fm_malloc", "shm_malloc"), OK, [])]
    md = to_markdown(run)
    assert (f"- sip.basic on 1.11.0: {NOT_OVER} — a 1.11.0 primary was stuck in fm_malloc (pid 412): "
            "upstream defect `shm-malloc-unlocked`") in md
    assert (f"  - primary's processes at the deadline: `pid {os.getpid()} S cpu 0%: hrtimer_nanosleep`; "
            "`pid 412 R cpu 97%: fm_malloc < shm_malloc`") in md
    assert "a node of a release with a named upstream defect died, stalled or logged its mark" in md


def test_processes_that_cannot_be_read_say_so_and_the_error_stays(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    def unreadable(pids: object) -> list:
        raise PermissionError("ptrace: Operation not permitted")
    monkeypatch.setattr(session_module.processes, "snapshot", unreadable)
    assert _run(tmp_path, monkeypatch, {"primary": _Node([1])}, Incomplete("not over")) == {
        ERROR_KEY: "Incomplete: not over",
        STUCK_KEY: {"?": ["could not read the processes: PermissionError: ptrace: Operation not permitted"]}}


def test_matrix_md_lists_the_processes_of_an_unstable_cells_stalled_repeat() -> None:
    """A stall in one repeat of three makes the cell unstable, not error: its processes
    are listed under the Unstable line all the same."""
    builds = {v: Build(v, f"/b/{v}", v) for v in ("1.10.5", "1.11.0")}
    run = MatrixRun("1.10.5", builds, [("1.10.5", "1.10.5"), ("1.11.0", "1.11.0")], ["sip.basic"],
                    "local", repeat=3, started=0.0, seconds=60.0)
    moved = unstable("sip.basic", "1.11.0", "1.11.0", [OK, _stuck(412, "fm_free"), OK], OK)
    assert moved is not None
    run.results = [judge("sip.basic", "1.10.5", "1.10.5", OK, OK, []), moved]
    lines = to_markdown(run).split("## Unstable", 1)[1].split("\n## ", 1)[0].strip().splitlines()
    assert lines[0].startswith("- sip.basic on 1.11.0: `calls.successful` took")
    assert lines[0].endswith("— a 1.11.0 primary was stuck in fm_free (pid 412): upstream defect "
                             "`shm-malloc-unlocked` (mem/shm_mem.h:shm_malloc, commit 56b325be0a; "
                             "fixed by 84d919faf0 in 1.11.1)")
    assert lines[1:] == [f"  - primary's processes at the deadline: `pid {os.getpid()} S cpu 0%: "
                         "hrtimer_nanosleep`; `pid 412 R cpu 97%: fm_free`"]
