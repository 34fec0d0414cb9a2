"""Offline checks of the docker backend's naming, subnets and labels (no engine needed)."""

from __future__ import annotations

import ipaddress
import itertools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

docker_backend = pytest.importorskip("harness.backends.docker")


def test_worker_index_parses_xdist_names() -> None:
    assert docker_backend.worker_index("gw0") == 0
    assert docker_backend.worker_index("gw17") == 17
    assert docker_backend.worker_index("") == 0
    assert docker_backend.worker_index("master") == 0
    odd = docker_backend.worker_index("someworker")
    assert odd == docker_backend.worker_index("someworker")  # stable


def test_subnets_of_workers_and_clusters_never_collide() -> None:
    seen: set[ipaddress.IPv4Network] = set()
    pool = ipaddress.IPv4Network(docker_backend.DEFAULT_POOL)
    for worker, seq in itertools.product(range(32), range(40)):
        net = docker_backend.derive_subnet(worker, seq, "run1")
        assert net.prefixlen == 24
        assert net.subnet_of(pool)
        assert net not in seen, (worker, seq)
        seen.add(net)


def test_subnet_depends_on_run_id_and_is_stable() -> None:
    a = docker_backend.derive_subnet(3, 0, "aaaa")
    assert a == docker_backend.derive_subnet(3, 0, "aaaa")
    others = {docker_backend.derive_subnet(3, 0, f"run{i}") for i in range(20)}
    assert len(others) > 10  # different runs start at different offsets


def test_subnet_wraps_inside_the_worker_block() -> None:
    first = docker_backend.derive_subnet(5, 0, "r")
    wrapped = docker_backend.derive_subnet(5, 256, "r")
    assert first == wrapped
    assert str(first).startswith("10.165.")


def test_subnet_stays_clear_of_host_and_default_bridge() -> None:
    for worker, seq in itertools.product(range(40), range(3)):
        net = docker_backend.derive_subnet(worker, seq, "x")
        assert not net.overlaps(ipaddress.IPv4Network("172.17.0.0/16"))
        assert not net.overlaps(ipaddress.IPv4Network("192.168.0.0/16"))


def test_custom_pool_and_prefix() -> None:
    net = docker_backend.derive_subnet(1, 2, "r", pool="10.50.0.0/16", prefix=26)
    assert net.prefixlen == 26
    assert net.subnet_of(ipaddress.IPv4Network("10.50.0.0/16"))
    with pytest.raises(ValueError):
        docker_backend.derive_subnet(0, 0, "r", pool="10.50.0.0/24", prefix=24)


def test_labels_name_run_kind_cluster_node() -> None:
    labels = docker_backend.labels_for("node", "c1", "primary", run="abc")
    assert labels == {
        docker_backend.RUN_LABEL: "abc",
        docker_backend.KIND_LABEL: "node",
        docker_backend.CLUSTER_LABEL: "c1",
        docker_backend.NODE_LABEL: "primary",
    }
    assert not any(k.startswith("org.testcontainers") for k in labels)  # reserved there


def test_run_id_from_env_is_sanitised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(docker_backend, "_RUN_ID", None)
    monkeypatch.setenv("HARNESS_RUN_ID", "My_Run-42/xyz")
    assert docker_backend.run_id() == "myrun42xyz"
    monkeypatch.setattr(docker_backend, "_RUN_ID", None)
    monkeypatch.delenv("HARNESS_RUN_ID")
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "0123456789abcdef0123")
    assert docker_backend.run_id() == "0123456789ab"
    monkeypatch.setattr(docker_backend, "_RUN_ID", None)


def test_network_address_layout() -> None:
    net = docker_backend.DockerNetwork("c", subnet="10.99.7.0/24", run="r")
    assert net.gateway == "10.99.7.1"
    assert net.node_ip(0) == "10.99.7.10"
    assert net.node_ip(1) == "10.99.7.11"
    assert net.vip == "10.99.7.100"
    assert net.tool_ip(0) == "10.99.7.200"


def test_node_addresses_default_to_the_cluster_vip() -> None:
    net = docker_backend.DockerNetwork("c", subnet="10.99.7.0/24", run="r")
    node = docker_backend.DockerNode("primary", net, net.node_ip(0), "cfg", bin_port=5062, mi_port=8080)
    a = node.addresses()
    assert (a.ip, a.sip_ip, a.bin_addr, a.mi_addr) == (
        "10.99.7.10", "10.99.7.100", ("10.99.7.10", 5062), ("10.99.7.10", 8080))
    assert not node.is_running()  # never started: no engine asked
    node.check_alive()  # not started: nothing to report


def test_config_may_be_a_function_of_the_addresses() -> None:
    net = docker_backend.DockerNetwork("c", subnet="10.99.7.0/24", run="r")
    node = docker_backend.DockerNode("b", net, net.node_ip(1), lambda a: f"bin_listen={a.ip}:{a.bin_port}")
    assert node.config_text() == "bin_listen=10.99.7.11:5062"


def test_module_path_matches_the_image_install_prefix() -> None:
    script = ROOT / "containers" / "opensips-1.10" / "build-opensips.sh"
    assert "prefix=/usr/local" in script.read_text()
    assert docker_backend.MODULE_PATH == "/usr/local/lib64/opensips/modules"
    assert docker_backend.CONFIG_PATH.startswith("/usr/local/etc/opensips/")


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
    cap = docker_backend.HostCapture("host", "10.99.7.1", "osh0123456789")
    assert cap.argv(["tcpdump", "-i", cap.ifname]) == ["tcpdump", "-i", "osh0123456789"]


def test_host_capture_without_root_runs_tcpdump_in_a_host_network_container(tmp_path: Path) -> None:
    cap = docker_backend.HostCapture("host", "10.99.7.1", "osh0123456789", "img:1", "osh-net-capture0",
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
    monkeypatch.setenv(docker_backend.HOST_TOOLS_ENV, mode)
    monkeypatch.setattr(docker_backend.os, "geteuid", lambda: 0 if root else 1000)
    assert docker_backend.host_tools_in_container() is expected
