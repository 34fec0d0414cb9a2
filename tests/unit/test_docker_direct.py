"""harness.backends.docker.direct: a container's init and network namespace reached without
the engine. The primitives run for real on this host (a child process stands in for a
container's init); the node's failover path runs with them faked and an engine that
records every call, to show the kill and the VIP move make none."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.backends.docker import direct, vip_moves
from harness.backends.docker import node as docker_node
from harness.backends.docker.network import DockerNetwork

from test_docker_backend import _NetContainer, _Wrapped


def test_host_pid_only_for_a_process_whose_cgroup_names_the_container() -> None:
    cgroup = Path("/proc/self/cgroup").read_text().strip()
    piece = cgroup.rsplit("/", 1)[-1] or cgroup  # a part of our own cgroup's path stands in for an id
    me = os.getpid()
    ours = SimpleNamespace(id=piece, attrs={"State": {"Pid": me}})
    assert direct.host_pid(ours) == me
    assert direct.host_pid(SimpleNamespace(id="f00dfeed" * 8, attrs={"State": {"Pid": me}})) is None
    assert direct.host_pid(SimpleNamespace(id=piece, attrs={"State": {"Pid": 0}})) is None
    assert direct.host_pid(SimpleNamespace(attrs={})) is None


def test_kill_ends_a_process_and_a_zombie_counts_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert direct.alive(child.pid)
        assert direct.kill(child.pid, timeout=5)
        assert not direct.alive(child.pid)  # a zombie until we reap it: gone all the same
    finally:
        child.kill()
        child.wait()
    assert direct.kill(child.pid, timeout=1), "already gone: nothing to do"


@pytest.mark.skipif(not direct.enabled(), reason="needs root with nsenter")
def test_run_enters_the_network_namespace_of_a_pid() -> None:
    code, out = direct.run(os.getpid(), ["ip", "-o", "-4", "addr", "show"])
    assert code == 0 and " lo " in out and direct.interface_of(out, "127.0.0.1") == "lo"
    code, out = direct.run(2**22 + 7, ["ip", "link"])
    assert code != 0 and out


def test_the_switch_and_the_output_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(direct.DIRECT_ENV, "0")
    assert not direct.enabled()
    assert direct.interface_of("2: eth0@if9    inet 10.1.2.11/24 brd 10.1.2.255 scope global eth0\n",
                               "10.1.2.11") == "eth0"
    assert direct.interface_of("", "10.1.2.11") is None


class _Engine(_NetContainer):
    """A container whose every engine call is recorded (a direct failover makes none)."""

    def reload(self) -> None:
        self.events.append(("reload", ""))

    def kill(self, signal: str) -> None:
        self.events.append(("kill", signal))
        self.status = "exited"


def test_a_direct_failover_kills_pins_and_moves_the_vip_without_the_engine(
        monkeypatch: pytest.MonkeyPatch) -> None:
    net = DockerNetwork("c", subnet="10.99.7.0/24", run="r")
    net.name = "osh-r-w0-0-c"
    flushed: list[str] = []
    monkeypatch.setattr(net, "flush_neighbour", flushed.append)
    primary = docker_node.DockerNode("primary", net, "10.99.7.10", "cfg")
    backup = docker_node.DockerNode("backup", net, "10.99.7.11", "cfg")
    boxes = {primary: _Engine(net.name, "02:42:0a:63:07:0a"), backup: _Engine(net.name, "02:42:0a:63:07:0b")}
    for pid, (node, box) in enumerate(boxes.items(), 100):
        node._tc, node._iface, node._pid, node._expect_down = _Wrapped(box), "eth0", pid, False
        node.siblings = lambda node=node: [n for n in boxes if n is not node]
    ran: list[tuple[int, list[str]]] = []
    later: list[tuple[int, list[str]]] = []
    killed: list[int] = []
    alive = {100: True, 101: True}
    monkeypatch.setattr(direct, "run", lambda pid, argv: ran.append((pid, list(argv))) or (0, ""))
    monkeypatch.setattr(direct, "run_later", lambda pid, argv: later.append((pid, list(argv))))
    monkeypatch.setattr(direct, "alive", lambda pid: alive.get(pid, False))
    monkeypatch.setattr(direct, "kill", lambda pid, timeout: killed.append(pid) or alive.update({pid: False}) or True)

    primary.kill()
    primary.release_vip("10.99.7.100")  # dead: nothing to ask anyone
    vip_moves.take(backup, "10.99.7.100")

    assert killed == [100] and primary._pid is None
    assert not primary.is_running(), "dead at once, whatever the engine says for a moment"
    assert ran == [
        (101, ["ip", "neigh", "replace", "10.99.7.10", "lladdr", "02:42:0a:63:07:0a", "dev", "eth0",
               "nud", "permanent"]),
        (101, ["ip", "addr", "add", "10.99.7.100/32", "dev", "eth0"]),
        (101, ["arping", "-q", "-U", "-c", "1", "-I", "eth0", "10.99.7.100"]),
    ]
    assert later == [(101, ["arping", "-q", "-U", "-c", "2", "-w", "1", "-I", "eth0", "10.99.7.100"])]
    assert flushed == ["10.99.7.100"]
    assert boxes[primary].events == [] and boxes[backup].events == [], "no engine call on the way"
    assert boxes[primary].execs == [] and boxes[backup].execs == []


def test_without_a_host_pid_the_engine_path_is_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    net = DockerNetwork("c", subnet="10.99.7.0/24", run="r")
    net.name = "osh-r-w0-0-c"
    node = docker_node.DockerNode("primary", net, "10.99.7.10", "cfg")
    box = _Engine(net.name, "02:42:0a:63:07:0a")
    node._tc, node._iface, node._expect_down = _Wrapped(box), "eth0", False
    monkeypatch.setattr(direct, "run", lambda pid, argv: pytest.fail("no direct call without a pid"))
    node.kill()
    assert ("kill", "SIGKILL") in box.events


def test_a_start_after_a_direct_kill_waits_for_the_engine_to_see_the_exit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The warm-up restarts a node the recvfrom defect killed: killed directly, the engine
    still says "running" for a moment, which must not read as "already running"."""
    net = DockerNetwork("c", subnet="10.99.7.0/24", run="r")
    net.name = "osh-r-w0-0-c"
    node = docker_node.DockerNode("primary", net, "10.99.7.10", "cfg")
    box = _Engine(net.name, "02:42:0a:63:07:0a")
    lagging = iter(["running", "running"])

    def reload() -> None:  # the engine's view: two more looks before it sees the exit
        box.events.append(("reload", ""))
        box.status = next(lagging, "exited")

    box.reload = reload  # type: ignore[method-assign]
    box.start = lambda: setattr(box, "status", "running")  # type: ignore[attr-defined]
    node._tc, node._iface, node._pid, node._expect_down = _Wrapped(box), "eth0", 100, False
    monkeypatch.setattr(direct, "alive", lambda pid: True)
    monkeypatch.setattr(direct, "kill", lambda pid, timeout: True)
    monkeypatch.setattr(direct, "enabled", lambda: False)
    monkeypatch.setattr(node, "wait_ready", lambda timeout=None: None)
    node.kill()
    node.start()
    assert box.status == "running" and node.starts == 1
    assert box.events.count(("reload", "")) >= 3
