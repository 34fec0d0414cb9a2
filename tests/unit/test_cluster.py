"""Cluster logic with a fake backend: names, topology, VIP moves, teardown (offline)."""

from __future__ import annotations

import socket

import pytest

from harness.base.settings import load_settings
from harness.cluster import Cluster, ClusterError
from harness.cluster.interfaces import NodeAddresses, NodeDied, Release, ZeroedPid


class FakeNode:
    def __init__(self, name, config, addresses, log, fail_start=False):
        self.name, self.config, self._addr, self.log = name, config, addresses, log
        self.running, self.fail_start = False, fail_start

    def start(self):
        if self.fail_start:
            raise RuntimeError(f"{self.name} cannot start")
        self.running = True
        self.log.append(("start", self.name))

    def stop(self):
        self.running = False

    def kill(self):
        self.running = False
        self.log.append(("kill", self.name))

    def freeze(self): ...
    def thaw(self): ...

    def is_running(self):
        return self.running

    def addresses(self):
        return self._addr

    def logs(self):
        return ""

    def current_logs(self):
        return ""

    def check_alive(self):
        if self.fail_start == "died":
            raise NodeDied(f"node {self.name} (10.1.2.11) died at 12:00:00.000 (exit code 255)")

    def death_report(self):
        return None

    def describe(self):
        return f"{self.name}: fake at {self._addr.ip}"

    def release(self):
        return Release("1.10.5", "opensips 1.10.5-notls (x86_64/linux)")

    def mi(self, timeout=None):
        raise AssertionError("no MI in offline tests")

    def bin_receiver_activity(self, pid):
        return None

    #: what the backend sees of the node's processes (None: it cannot see them)
    processes = None

    def opensips_pids(self):
        return self.processes

    def take_vip(self, vip):
        self.log.append(("take", self.name))

    def release_vip(self, vip):
        self.log.append(("release", self.name))


class FakeBackend:
    name = "fake"
    vip = "10.1.2.100"
    harness_ip = "10.1.2.1"
    module_path = "/m"

    def __init__(self, fail=()):
        self.settings = load_settings(use_env=False)
        self.log: list[tuple[str, str]] = []
        self.fail = fail
        self.nodes: dict[str, FakeNode] = {}
        self._n = 10
        self._planned: dict[str, NodeAddresses] = {}

    def open(self):
        self.log.append(("open", ""))

    def close(self):
        self.log.append(("close", ""))

    def node_addresses(self, name):
        """By a plan, as the interface says: the same name gets the same address."""
        if name not in self._planned:
            self._n += 1
            self._planned[name] = NodeAddresses(name, f"10.1.2.{self._n}", 5062, 8080, self.vip, 5060)
        return self._planned[name]

    def create_node(self, name, config, addresses, artifact=None):
        self.nodes[name] = FakeNode(name, config, addresses, self.log, name in self.fail)
        self.nodes[name].artifact = artifact
        return self.nodes[name]

    def module_path_for(self, artifact=None):
        return "/m" if artifact is None else f"/m/{artifact}"

    def udp_socket(self, port=0):
        return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def socket(self, kind=socket.SOCK_STREAM):
        return socket.socket(socket.AF_INET, kind)

    def refresh_neighbours(self, ip):
        self.log.append(("refresh", ip))

    def describe(self):
        return ["fake network"]

    def release(self, artifact=None):
        version = {"old": "1.10.2", "new": "1.11.11"}.get(artifact, "1.10.5")
        return Release(version, f"opensips {version}-notls (x86_64/linux)", artifact or "")

    def client(self, name):
        raise AssertionError("no clients in offline tests")

    def capture_host(self):
        raise AssertionError("no capture in offline tests")


def test_default_pair_replicates_both_ways_plus_extras():
    b = FakeBackend()
    with Cluster(b, extra_destinations=[7000, ("10.1.2.50", 7001)], warmup=False) as c:
        assert c.destinations("primary") == ["10.1.2.12:5062", "10.1.2.1:7000", "10.1.2.50:7001"]
        assert c.destinations("backup") == ["10.1.2.11:5062", "10.1.2.1:7000", "10.1.2.50:7001"]
        assert 'modparam("dialog", "replicate_dialogs_to", "10.1.2.12:5062")' in b.nodes["primary"].config
        assert c.vip_owner == "primary" and c.sip_addr == ("10.1.2.100", 5060)
        c.failover()
        assert c.vip_owner == "backup"
    assert b.log[-1] == ("close", "")
    assert ("release", "primary") in b.log and ("refresh", "10.1.2.100") in b.log
    assert b.log.index(("release", "primary")) < b.log.index(("take", "backup"))


def test_first_destinations_come_before_the_nodes_own_peers():
    """The failover witness is configured first: 1.10 prepends each replicate_dialogs_to,
    so what is configured first is sent to last (harness.live.start(peer="first"))."""
    with Cluster(FakeBackend(), first_destinations=[("10.1.2.1", 40000)], extra_destinations=[7000],
                 warmup=False) as c:
        assert c.destinations("primary") == ["10.1.2.1:40000", "10.1.2.12:5062", "10.1.2.1:7000"]
        assert c.destinations("backup") == ["10.1.2.1:40000", "10.1.2.11:5062", "10.1.2.1:7000"]
        primary = c.backend.nodes["primary"].config
        assert primary.index('"10.1.2.1:40000"') < primary.index('"10.1.2.12:5062"')


def test_names_roles_and_custom_topology():
    b = FakeBackend()
    c = Cluster(b, ["standalone", "standalone"], warmup=False)
    assert c.roles == {"standalone": "standalone", "standalone2": "standalone"}
    c = Cluster(b, {"a": "primary", "b": "backup", "c": "backup"},
                replicate={"a": ["b", "10.9.9.9:5062"]}, warmup=False)
    c.start()
    assert c.destinations("a") == ["10.1.2.12:5062", "10.9.9.9:5062"]
    assert c.destinations("c") == ["10.1.2.11:5062", "10.1.2.12:5062"]
    with pytest.raises(ClusterError, match="unknown role"):
        Cluster(b, ["leader"])
    with pytest.raises(ClusterError, match="unknown node"):
        Cluster(b, replicate={"nobody": []})


def test_enter_tears_down_when_start_fails():
    b = FakeBackend(fail=("backup",))
    with pytest.raises(RuntimeError, match="backup cannot start"):
        with Cluster(b, warmup=False):
            pass  # pragma: no cover
    assert b.log[-1] == ("close", "")


def test_failover_without_backup_is_an_error():
    with Cluster(FakeBackend(), ["standalone"], warmup=False) as c:
        assert c.vip_owner == "standalone"
        with pytest.raises(ClusterError, match="no backup"):
            c.failover()


def test_check_reports_the_node_that_died():
    b = FakeBackend()
    with Cluster(b, warmup=False) as c:
        c.check()  # all alive: nothing raised
        b.nodes["backup"].fail_start = "died"
        with pytest.raises(NodeDied, match=r"node backup \(10\.1\.2\.11\) died"):
            c.check()


def test_each_node_runs_its_own_artifact_with_a_config_for_its_release() -> None:
    """A mixed cluster: the backup's config is rendered for 1.11 ($DLG_timeout, no
    timeout_avp), the primary's for 1.10, each from its own module directory."""
    backend = FakeBackend()
    cluster = Cluster(backend, artifacts={"primary": "old", "backup": "new"}, warmup=False)
    cluster.start()
    primary, backup = backend.nodes["primary"], backend.nodes["backup"]
    assert (primary.artifact, backup.artifact) == ("old", "new")
    assert 'modparam("dialog", "timeout_avp"' in primary.config
    assert 'mpath="/m/old"' in primary.config and "OpenSIPS 1.10.2" in primary.config
    assert 'modparam("dialog", "timeout_avp"' not in backup.config
    assert "$DLG_timeout = " in backup.config and 'mpath="/m/new"' in backup.config


def test_artifacts_for_an_unknown_node_are_refused() -> None:
    with pytest.raises(ClusterError, match="unknown node or role 'standby'"):
        Cluster(FakeBackend(), artifacts={"standby": "new"})


def test_bin_receiver_pids_wait_past_a_receiver_listed_without_one() -> None:
    """MI may answer before the receivers are forked (a 2.1 node listed none), and lists
    a process not yet started with pid 0: returned to a caller that signals it, that pid
    would be the caller's own process group."""
    from harness.instruments.mi_replies import ProcessEntry

    answers = [[ProcessEntry(1, 9, "MI Datagram")],
               [ProcessEntry(2, 0, "BIN receiver udp:10.1.2.11:5062")],
               [ProcessEntry(2, 41, "BIN receiver udp:10.1.2.11:5062"), ProcessEntry(3, 42, "timer")]]

    class MI:
        def ps(self):
            return answers.pop(0) if len(answers) > 1 else answers[0]

    cluster = Cluster(FakeBackend(), ["primary", "backup"], warmup=False)
    cluster.mi = lambda name, timeout=None: MI()  # type: ignore[method-assign]
    assert cluster.bin_receiver_pids("primary") == [41]
    answers[:] = [[ProcessEntry(2, 0, "BIN receiver udp:10.1.2.11:5062")]]
    with pytest.raises(ZeroedPid, match=r"primary: MI ps lists 1 of 1 BIN receivers with pids after 0.2 s: "
                                           r"\[\(0, 'BIN receiver udp:10.1.2.11:5062'\)\]; a pid "
                                           r"still 0 is the race of 2.1.0-2.1.1's internal_fork"):
        cluster.bin_receiver_pids("primary", timeout=0.2)
    answers[:] = [[]]  # none listed at all: no pid was zeroed, no race is named
    with pytest.raises(ClusterError) as none:
        cluster.bin_receiver_pids("primary", timeout=0.2)
    assert str(none.value).endswith("after 0.2 s: []")


def test_a_receiver_left_at_pid_0_names_2_1_0s_internal_fork_race() -> None:
    """2.1.0-2.1.1 zero a child's pid after fork(), so MI may list a BIN receiver (and
    others: two or three zeros were seen) with pid 0 for good. Where the backend sees
    the node's processes and all have started, that is known at once; elsewhere after
    the deadline. Either way the error names the race (the warm-up restarts the node)."""
    from harness.instruments.mi_replies import ProcessEntry

    listing = [ProcessEntry(0, 30, "attendant"), ProcessEntry(1, 0, "SIP receiver udp:10.1.2.10:5060"),
               ProcessEntry(2, 0, "BIN receiver udp:10.1.2.10:5062"), ProcessEntry(3, 33, "timer")]

    class MI:
        def ps(self):
            return listing

    cluster = Cluster(FakeBackend(), ["primary", "backup"], warmup=False)
    cluster.start()
    cluster.mi = lambda name, timeout=None: MI()  # type: ignore[method-assign]
    cluster.nodes["primary"].processes = [30, 31, 32, 33]
    with pytest.raises(ZeroedPid, match=r"once all 4 processes run \(pids \[30, 31, 32, 33\]\); a pid still 0 "
                                        r"is the race of 2.1.0-2.1.1's internal_fork"):
        cluster.bin_receiver_pids("primary", timeout=30)  # at once, not after 30 s
    cluster.nodes["primary"].processes = [30, 31, 33]  # one not started yet: wait, then say so
    with pytest.raises(ZeroedPid, match=r"after 0.2 s: .*; MI ps pids \[0, 0, 30, 33\], "
                                        r"the node's processes \[30, 31, 33\]$"):
        cluster.bin_receiver_pids("primary", timeout=0.2)
    cluster.nodes["primary"].processes = None  # Docker: MI's pids are the container's
    with pytest.raises(ZeroedPid, match="the node's processes unseen by this backend$"):
        cluster.bin_receiver_pids("primary", timeout=0.2)
