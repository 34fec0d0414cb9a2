"""Offline checks of the shared backend core and the docker backend's naming, labels and
command lines (no engine needed)."""

from __future__ import annotations

import ipaddress
import itertools
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.backends import core

ROOT = Path(__file__).resolve().parents[2]

pytest.importorskip("docker")
from harness.backends.docker import backend as docker_backend  # noqa: E402
from harness.backends.docker import engine, host_tools  # noqa: E402
from harness.backends.docker import node as docker_node  # noqa: E402
from harness.backends.docker.network import DockerNetwork  # noqa: E402
from harness.base.owner import start_time  # noqa: E402


def test_worker_index_parses_xdist_names() -> None:
    assert core.worker_index("gw0") == 0
    assert core.worker_index("gw17") == 17
    assert core.worker_index("") == 0
    assert core.worker_index("master") == 0
    odd = core.worker_index("someworker")
    assert odd == core.worker_index("someworker")  # stable


def test_subnets_of_workers_and_clusters_never_collide() -> None:
    seen: set[ipaddress.IPv4Network] = set()
    pool = ipaddress.IPv4Network(core.DEFAULT_POOL)
    for worker, seq in itertools.product(range(32), range(40)):
        net = core.derive_subnet(worker, seq, "run1")
        assert net.prefixlen == 24
        assert net.subnet_of(pool)
        assert net not in seen, (worker, seq)
        seen.add(net)


def test_subnet_depends_on_run_id_and_is_stable() -> None:
    a = core.derive_subnet(3, 0, "aaaa")
    assert a == core.derive_subnet(3, 0, "aaaa")
    others = {core.derive_subnet(3, 0, f"run{i}") for i in range(20)}
    assert len(others) > 10  # different runs start at different offsets


def test_subnet_wraps_inside_the_worker_block() -> None:
    first = core.derive_subnet(5, 0, "r")
    wrapped = core.derive_subnet(5, 256, "r")
    assert first == wrapped
    assert str(first).startswith("10.165.")


def test_subnet_stays_clear_of_host_and_default_bridge() -> None:
    for worker, seq in itertools.product(range(40), range(3)):
        net = core.derive_subnet(worker, seq, "x")
        assert not net.overlaps(ipaddress.IPv4Network("172.17.0.0/16"))
        assert not net.overlaps(ipaddress.IPv4Network("192.168.0.0/16"))


def test_custom_pool_and_prefix() -> None:
    net = core.derive_subnet(1, 2, "r", pool="10.50.0.0/16", prefix=26)
    assert net.prefixlen == 26
    assert net.subnet_of(ipaddress.IPv4Network("10.50.0.0/16"))
    with pytest.raises(ValueError):
        core.derive_subnet(0, 0, "r", pool="10.50.0.0/24", prefix=24)


def test_labels_name_run_kind_cluster_node() -> None:
    labels = engine.labels_for("node", "c1", "primary", run="abc")
    assert labels == {
        engine.RUN_LABEL: "abc",
        engine.KIND_LABEL: "node",
        engine.CLUSTER_LABEL: "c1",
        engine.NODE_LABEL: "primary",
        engine.OWNER_LABEL: f"{socket.gethostname()} {os.getpid()} {start_time(os.getpid())}",
    }
    assert not any(k.startswith("org.testcontainers") for k in labels)  # reserved there


def test_run_id_from_env_is_sanitised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(core, "_RUN_ID", None)
    monkeypatch.setenv("HARNESS_RUN_ID", "My_Run-42/xyz")
    assert core.run_id() == "myrun42xyz"
    monkeypatch.setattr(core, "_RUN_ID", None)
    monkeypatch.delenv("HARNESS_RUN_ID")
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "0123456789abcdef0123")
    assert core.run_id() == "0123456789ab"
    monkeypatch.setattr(core, "_RUN_ID", None)


def test_address_plan_layout() -> None:
    plan = DockerNetwork("c", subnet="10.99.7.0/24", run="r").addresses()
    assert plan == core.AddressPlan.of("10.99.7.0/24")
    assert plan.gateway == "10.99.7.1"
    assert plan.node_ip(0) == "10.99.7.10"
    assert plan.node_ip(1) == "10.99.7.11"
    assert plan.vip == "10.99.7.100"
    assert plan.client_ip(0) == "10.99.7.200"
    with pytest.raises(ValueError, match="node index 90 outside the plan"):
        plan.node_ip(90)  # would be the VIP
    with pytest.raises(ValueError, match="smaller than a /24"):
        core.AddressPlan.of("10.99.7.0/25")


def test_node_addresses_default_to_the_cluster_vip() -> None:
    net = DockerNetwork("c", subnet="10.99.7.0/24", run="r")
    node = docker_node.DockerNode("primary", net, net.addresses().node_ip(0), "cfg", bin_port=5062, mi_port=8080)
    a = node.addresses()
    assert (a.ip, a.sip_ip, a.bin_addr, a.mi_addr) == (
        "10.99.7.10", "10.99.7.100", ("10.99.7.10", 5062), ("10.99.7.10", 8080))
    assert not node.is_running()  # never started: no engine asked
    node.check_alive()  # not started: nothing to report


def test_death_report_reads_dockers_finish_time() -> None:
    when = docker_node._finished_at("2024-11-26T11:43:03.123456789Z")
    assert when == 1732621383.123456
    assert docker_node._finished_at("0001-01-01T00:00:00Z") is None  # never finished
    text = core.death_report("victim", "10.99.7.10", when, 137, "a\nb\n", " (OOM-killed)")
    assert text == (f"node victim (10.99.7.10) died at {core.clock(when)} (exit code 137) (OOM-killed); "
                    "last log lines:\na\nb")
    # in the nodes' log format and zone (UTC), whatever this machine's zone is
    assert core.clock(when) == "Nov 26 11:43:03.123 UTC"


def test_module_path_matches_the_image_install_prefix() -> None:
    script = ROOT / "containers" / "opensips" / "build-opensips.sh"
    assert "prefix=/usr/local" in script.read_text()
    assert docker_node.MODULE_PATH == "/usr/local/lib64/opensips/modules"
    assert docker_node.CONFIG_PATH.startswith("/usr/local/etc/opensips/")


def test_client_host_argv_runs_sipp_in_a_fresh_container(tmp_path: Path) -> None:
    host = docker_backend.DockerClientHost(
        "caller", "10.99.7.200", "osh-net", "img:1", (("k", "v"),), (str(tmp_path),))
    argv = host.argv(["sipp", "-v"], cwd=str(tmp_path))
    assert argv[:3] == ["docker", "run", "--rm"]
    assert "--init" in argv  # signals reach SIPp, zombies are reaped
    assert argv[argv.index("--ip") + 1] == "10.99.7.200"
    assert argv[argv.index("--network") + 1] == "osh-net"
    opts = argv[: argv.index("img:1")]
    assert opts.count("-v") == 1 and f"{tmp_path}:{tmp_path}" in opts  # cwd == mount: once
    assert argv[argv.index("-w") + 1] == str(tmp_path)
    assert "k=v" in argv
    assert argv[-3:] == ["img:1", "sipp", "-v"]


def test_host_capture_runs_commands_as_they_are() -> None:
    cap = host_tools.HostCapture("host", "10.99.7.1", "osh0123456789")
    assert cap.argv(["tcpdump", "-i", cap.ifname]) == ["tcpdump", "-i", "osh0123456789"]


def test_host_capture_without_root_runs_tcpdump_in_a_host_network_container(tmp_path: Path) -> None:
    cap = host_tools.HostCapture("host", "10.99.7.1", "osh0123456789", "img:1", "osh-net-capture0",
                                     (("k", "v"),))
    out = tmp_path / "c" / "capture.pcap"
    argv = cap.argv(["tcpdump", "-i", cap.ifname, "-w", str(out), "udp"])
    opts = argv[: argv.index("img:1")]
    assert argv[:3] == ["docker", "run", "--rm"] and "--init" in opts
    assert opts[opts.index("--network") + 1] == "host"
    assert {"NET_ADMIN", "NET_RAW"} <= {opts[i + 1] for i, a in enumerate(opts) if a == "--cap-add"}
    assert f"{out.parent}:{out.parent}" in opts and "k=v" in opts
    assert opts[opts.index("--name") + 1] == "osh-net-capture0"
    # -Z root: the file is written as root inside the mounted directory
    assert argv[argv.index("img:1") + 1:] == ["tcpdump", "-Z", "root", "-i", "osh0123456789",
                                              "-w", str(out), "udp"]


@pytest.mark.parametrize("mode, root, expected", [("container", True, True), ("host", False, False),
                                                  ("auto", False, True)])
def test_host_tools_placement(monkeypatch: pytest.MonkeyPatch, mode: str, root: bool, expected: bool) -> None:
    monkeypatch.setenv(host_tools.HOST_TOOLS_ENV, mode)
    monkeypatch.setattr(host_tools.os, "geteuid", lambda: 0 if root else 1000)
    assert host_tools.host_tools_in_container() is expected


# -- why the backend cannot run: each cause reads differently (issue 10, point 2) -------


class _Images:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, name: str) -> object:
        if self.error is not None:
            raise self.error
        return object()


class _Engine:
    """Stands in for docker.from_env(): ping answers, images.get raises what it is told."""

    def __init__(self, image_error: Exception | None = None, ping_error: Exception | None = None) -> None:
        self.images = _Images(image_error)
        self.ping_error = ping_error

    def ping(self) -> bool:
        if self.ping_error is not None:
            raise self.ping_error
        return True


def _reason(monkeypatch: pytest.MonkeyPatch, socket_problem: str | None, fake: _Engine) -> str | None:
    monkeypatch.setattr(engine, "engine_socket_problem", lambda: socket_problem)
    monkeypatch.setattr(engine, "client", lambda: fake)
    return engine.docker_backend_unavailable("img:1")


def test_unavailable_reasons_name_the_cause(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before, every images.get error (engine 500, a registry mix-up) read "not built"
    and a socket the user may not open read "start dockerd"."""
    from docker.errors import APIError, ImageNotFound

    sock = "/var/run/docker.sock"
    reasons = [
        _reason(monkeypatch, f"{sock}: Connection refused", _Engine()),
        _reason(monkeypatch, f"{sock}: Permission denied", _Engine()),
        _reason(monkeypatch, None, _Engine(image_error=ImageNotFound("No such image: img:1"))),
        _reason(monkeypatch, None, _Engine(image_error=APIError("500 Server Error: storage driver broken"))),
        _reason(monkeypatch, None, _Engine(ping_error=OSError("EOF from the engine"))),
        _reason(monkeypatch, None, _Engine()),
    ]
    assert reasons == [
        f"docker engine not reachable ({sock}: Connection refused): start dockerd or set DOCKER_HOST",
        f"docker engine socket not permitted ({sock}: Permission denied): "
        "add this user to the docker group or set DOCKER_HOST",
        "docker image img:1 not built: run `harness image build`",
        "docker engine could not look up image img:1 (500 Server Error: storage driver broken)",
        "docker engine not reachable (EOF from the engine): start dockerd or set DOCKER_HOST",
        None,
    ]
    assert all("\n" not in r for r in reasons if r)


def test_a_refusing_engine_socket_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A real unix socket nobody accepts on: the reason says refused, not "image not built"."""
    import socket

    path = tmp_path / "docker.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))  # bound, never listening: connect() is refused
        monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
        reason = engine.docker_backend_unavailable("img:1")
    assert reason == f"docker engine not reachable ({path}: Connection refused): start dockerd or set DOCKER_HOST"


# -- warm-up on docker judges a death by the latest start's log (issue 10, point 3) -------


class _Container:
    """A container whose log, like docker's, keeps the output of every start."""

    def __init__(self) -> None:
        self.status, self.log = "running", b"start 1\n"

    def reload(self) -> None:
        pass

    @property
    def attrs(self) -> dict[str, object]:
        return {"State": {"Status": self.status, "ExitCode": 255, "FinishedAt": "now"}}

    def logs(self, stdout: bool = True, stderr: bool = True) -> bytes:
        return self.log

    def start(self) -> None:
        self.status = "running"
        self.log += b"start 2\n"


class _Wrapped:
    def __init__(self, container: _Container) -> None:
        self.container = container

    def get_wrapped_container(self) -> _Container:
        return self.container


DEFECT_DEATH = (b"Nov 26 11:43:03 [42] ERROR:core:bin_receive_loop: recvfrom: [22] Invalid argument\n"
                b"Nov 26 11:43:03 [40] INFO:core:handle_sigs: child process 42 exited normally, status=255\n"
                b"Nov 26 11:43:03 [40] INFO:core:handle_sigs: terminating due to SIGCHLD\n")
OTHER_CRASH = (b"Nov 26 11:43:05 [40] INFO:core:handle_sigs: child process 42 exited by a signal 11\n"
               b"Nov 26 11:43:05 [40] INFO:core:handle_sigs: terminating due to SIGCHLD\n")


def test_warmup_reports_a_crash_after_an_earlier_defect_death(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first start dies of the known defect (restart: fine); the second dies of
    something else. Reading docker's whole log, the second death carried the first's
    signature and was restarted too; judged by its own start it is a NodeDied."""
    from harness.base.settings import load_settings
    from harness.cluster.interfaces import NodeDied
    from harness.cluster.warmup import WarmupStats, warm_up

    net = DockerNetwork("c", subnet="10.99.7.0/24", run="r")
    node = docker_node.DockerNode("backup", net, net.addresses().node_ip(1), "cfg")
    container = _Container()
    node._tc = _Wrapped(container)
    node._expect_down = False
    monkeypatch.setattr(node, "wait_ready", lambda timeout=None: None)
    fates = iter([DEFECT_DEATH, OTHER_CRASH])

    def send(packet: bytes, addr: tuple[str, int]) -> None:
        if container.status == "running" and packet.startswith(b"P4CK") and b"harness" in packet:
            death = next(fates, None)
            if death is None:  # later starts survive: the sentinel is answered
                container.log += (b"Nov 26 11:43:07 [42] ERROR:dialog:receive_binary_packet: "
                                  b"Invalid dialog binary packet command: 424242\n")
            else:
                container.log += death
                container.status = "exited"

    stats = WarmupStats()
    with pytest.raises(NodeDied, match="not of the known recvfrom defect") as info:
        warm_up(node, send, lambda: [42], load_settings(use_env=False), stats)
    assert "exited by a signal 11" in str(info.value)
    assert (stats.probed, stats.died) == (1, 1)
    assert node.current_logs() == "start 2\n" + OTHER_CRASH.decode()


class _NetContainer(_Container):
    """A container on a network, with a MAC, that records what is exec'd in it."""

    def __init__(self, network: str, mac: str) -> None:
        super().__init__()
        self.network, self.mac, self.execs, self.events = network, mac, [], []

    @property
    def attrs(self) -> dict[str, object]:
        return {"State": {"Status": self.status, "ExitCode": 137, "FinishedAt": "now"},
                "NetworkSettings": {"Networks": {self.network: {"MacAddress": self.mac}}}}

    def kill(self, signal: str) -> None:
        self.events.append(("kill", signal))
        self.status = "exited"

    def exec_run(self, cmd: list[str], stdout: bool = True, stderr: bool = True):
        self.execs.append(cmd)
        return SimpleNamespace(exit_code=0, output=b"")


def test_a_killed_node_stays_resolvable_on_its_siblings_until_it_starts_again() -> None:
    """docker kill removes the container's network namespace too: the backup's neighbour
    entry for it would fail and a 1.10 backup replicating to it blocks in sendto. Before
    the kill every running sibling pins the node's address to its MAC (as on a live host
    whose OpenSIPS crashed); a restart removes the pin. Stopped siblings are left alone."""
    net = DockerNetwork("c", subnet="10.99.7.0/24", run="r")
    net.name = "osh-r-w0-0-c"
    primary = docker_node.DockerNode("primary", net, "10.99.7.10", "cfg")
    backup = docker_node.DockerNode("backup", net, "10.99.7.11", "cfg")
    idle = docker_node.DockerNode("idle", net, "10.99.7.12", "cfg")
    boxes = {n: _NetContainer(net.name, f"02:42:0a:63:07:{i:02x}")
             for i, n in enumerate((primary, backup, idle), 10)}
    for node, box in boxes.items():
        node._tc, node._iface = _Wrapped(box), "eth0"
        node._expect_down = False
        node.siblings = lambda node=node: [n for n in boxes if n is not node]
    boxes[idle].status = "exited"
    primary.kill()
    pin = ["ip", "neigh", "replace", "10.99.7.10", "lladdr", "02:42:0a:63:07:0a", "dev", "eth0",
           "nud", "permanent"]
    assert boxes[backup].execs == [pin] and boxes[idle].execs == []
    assert boxes[primary].events == [("kill", "SIGKILL")]
    primary.wait_ready = lambda timeout=None: None  # type: ignore[method-assign]
    primary.start()
    assert boxes[backup].execs[-1] == ["ip", "neigh", "del", "10.99.7.10", "dev", "eth0"]
    primary.kill()  # pinned again, once
    assert boxes[backup].execs.count(pin) == 2
