"""Local backend against a real OpenSIPS 1.10 binary (network namespaces, needs root).

The end-to-end proof: a call through a primary/backup pair replicates over BIN (seen on
the hub bridge with tcpdump and decoded with pybin), the backup's dlg_list mirrors the
primary's, and after the primary is SIGKILLed and the VIP moved, the backup answers the
call's re-INVITE and BYE as in-dialog requests of the replicated dialog.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from _dialogs import backend_can_run
from _dialogs import wait_until as wait_for

from harness.backends.core import AddressPlan
from harness.backends.local import netns
from harness.backends.local.backend import LocalBackend, local_backend_unavailable
from harness.base.resources import shipped
from harness.cluster import Cluster
from harness.cluster.interfaces import NodeDied
from harness.experiments.compare import MI_TIMEOUT_SLACK
from harness.experiments.gate import observe
from harness.instruments.mi import MITimeout

DATA = shipped("scenarios")
_reason = local_backend_unavailable()  # includes sipp and tcpdump on the host
pytestmark = [pytest.mark.live, pytest.mark.backend_only("local")]


@pytest.fixture(autouse=True)
def _local_backend_runs(request: pytest.FixtureRequest) -> None:
    backend_can_run(request.config, "local", _reason)


@pytest.fixture
def backend(tmp_path: Path, request: pytest.FixtureRequest):
    b = LocalBackend(workdir=tmp_path)
    observe(request.config, b)  # the gate's summary names what these direct tests ran
    try:
        yield b
    finally:
        b.close()
        assert not [n for n in netns.list_names() if n.startswith(b.prefix)], "namespaces left"


def test_cluster_up_warm_and_torn_down(backend: LocalBackend) -> None:
    with Cluster(backend, close_backend=False) as c:
        assert all(n.is_running() for n in c.nodes.values())
        for name in ("primary", "backup"):
            stats = c.mi(name).get_statistics()
            assert stats["active_dialogs"] == 0 and stats["create_recv"] == 0
            # each restart was a death by the 1.10.5 recvfrom defect on the probe
            logs = c.nodes[name].logs()
            assert c.restarts[name] <= backend.settings.warmup.max_restarts
            assert logs.count("=== harness: start #") == c.restarts[name] + 1
            assert logs.count("bin_receive_loop: recvfrom: [22] Invalid argument") == c.restarts[name]
        plan = AddressPlan(backend.plan.subnet)  # the shared plan: same addresses on docker
        assert (c.addresses["primary"].ip, c.addresses["backup"].ip, c.vip, backend.harness_ip) == (
            plan.node_ip(0), plan.node_ip(1), plan.vip, plan.gateway)
        assert backend.client("caller").ip == plan.client_ip(0)
        # the release the binary itself reports, the same through node and backend
        assert c.nodes["primary"].release() == backend.release()
        assert backend.release().version == "1.10.5"
        addrs = netns.run(["ip", "-n", c.nodes["primary"].ns, "-4", "addr", "show", "eth0"])
        assert f"{c.vip}/" in addrs
        procs = c.mi("backup").ps()
        assert any(p.type == f"SIP receiver udp:{c.vip}:5060" for p in procs)
        ns = c.nodes["primary"].ns
    assert not netns.pids(ns)


def test_start_failure_tears_everything_down(backend: LocalBackend) -> None:
    # nodes render with their backend's module path (where the processes run), so the
    # bad path goes there; a settings override would not reach the config
    backend.module_path = "/nonexistent"
    backend.settings = backend.settings.with_overrides({"timeouts": {"start": 5}})
    with pytest.raises(NodeDied, match=r"node primary \(\S+\) died"):
        with Cluster(backend, close_backend=False):
            pass  # pragma: no cover
    assert not any(netns.pids(n.ns) for n in backend.nodes.values())


def test_crash_is_reported_as_node_died_not_timeout(backend: LocalBackend) -> None:
    with Cluster(backend, ["standalone"], close_backend=False) as c:
        node = c.nodes["standalone"]
        os.kill(node._proc.pid, signal.SIGKILL)  # a crash the harness did not ask for
        wait_for(lambda: not node.is_running(), 5, "the watcher to see the death")
        with pytest.raises(NodeDied, match=r"node standalone \(\S+\) died at \w{3} [ \d]\d \d\d:\d\d:\d\d\.\d{3} UTC \(exit code -9\)") as exc:
            c.mi("standalone").get_statistics()
        assert "last log lines" in str(exc.value)
        with pytest.raises(NodeDied):
            c.check()


def test_freeze_thaw_stop_start(backend: LocalBackend) -> None:
    with Cluster(backend, ["standalone"], close_backend=False) as c:
        node = c.nodes["standalone"]
        node.freeze()
        with pytest.raises(MITimeout):
            c.mi("standalone", timeout=0.3).get_statistics()
        node.thaw()
        assert c.mi("standalone").get_statistics()["active_dialogs"] == 0
        node.stop()
        assert not node.is_running() and not node.pids()
        c.check()  # a requested stop is not a death
        node.start()
        assert c.mi("standalone").ps()


class Call:
    """One SIPp call held open after ACK until `go()` (an INFO the UAC waits for)."""

    def __init__(self, backend: LocalBackend, vip: str, call_id: str) -> None:
        self.call_id = call_id
        self.caller = backend.client("caller")
        self.callee = backend.client("callee")
        self.backend = backend
        work = backend.workdir
        self.uas = subprocess.Popen(
            self.callee.argv(["sipp", "-sf", str(DATA / "proof_uas.xml"), "-i", self.callee.ip,
                              "-p", "5060", "-m", "1", "-nostdin", "-timeout", "60",
                              "-trace_err"]),
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.uac = subprocess.Popen(
            self.caller.argv(["sipp", f"{vip}:5060", "-sf", str(DATA / "proof_uac.xml"),
                              "-i", self.caller.ip, "-p", "5060", "-m", "1", "-nostdin",
                              "-timeout", "60", "-key", "callee_ip", self.callee.ip,
                              "-key", "callee_port", "5060", "-s", "bob",
                              "-cid_str", call_id, "-trace_err"]),
            cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def go(self) -> None:
        """Tell the UAC to send its re-INVITE and BYE."""
        b, c = self.backend, self.caller
        msg = (f"INFO sip:alice@{c.ip}:5060 SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP {b.harness_ip}:9;branch=z9hG4bKharnessgo\r\n"
               f"From: <sip:harness@{b.harness_ip}>;tag=go\r\nTo: <sip:alice@{c.ip}>\r\n"
               f"Call-ID: {self.call_id}\r\nCSeq: 1 INFO\r\nContent-Length: 0\r\n\r\n")
        with b.udp_socket() as s:
            s.sendto(msg.encode(), (c.ip, 5060))

    def finish(self, timeout: float = 20) -> tuple[int, int]:
        return self.uac.wait(timeout), self.uas.wait(timeout)

    def kill(self) -> None:
        for p in (self.uac, self.uas):
            if p.poll() is None:
                p.kill()
                p.wait()


class Tcpdump:
    """tcpdump on the hub bridge; --immediate-mode -U so SIGTERM loses nothing."""

    def __init__(self, backend: LocalBackend, path: Path) -> None:
        self.path = path
        self.log = path.with_suffix(".log")
        hub = backend.capture_host()
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                hub.argv(["tcpdump", "-i", hub.ifname, "--immediate-mode", "-U", "-n",
                          "-w", str(path), "udp"]),
                stdout=subprocess.DEVNULL, stderr=log)
        wait_for(lambda: "listening on" in self.log.read_text(), 10, "tcpdump to listen")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


def test_call_replicates_and_backup_answers_after_failover(backend: LocalBackend) -> None:
    from pybin.dialog import decode
    from pybin.pcap import read_datagrams

    call_id = "proof-1@harness"
    with Cluster(backend, close_backend=False) as c:
        pcap = backend.workdir / "proof.pcap"
        dump = Tcpdump(backend, pcap)
        call = Call(backend, c.vip, call_id)
        try:
            pmi, bmi = c.mi("primary"), c.mi("backup")
            # the ACK's "updated" reaches the backup: confirmed (4) there
            replica = wait_for(lambda: next((d for d in bmi.dlg_list() if d.state == 4), None),
                               10, "the confirmed dialog on the backup")
            (orig,) = pmi.dlg_list()
            assert replica.key == orig.key and replica.callid == call_id
            assert (replica.from_uri, replica.to_uri) == (orig.from_uri, orig.to_uri)
            assert replica.caller == orig.caller and replica.callee == orig.callee
            assert replica.caller.bind_addr == f"udp:{c.vip}:5060"
            assert replica.vars == orig.vars == {"acct": "a|b#c\\d"}
            assert sorted(replica.profiles) == sorted(orig.profiles) == [
                ("caller", "alice"), ("inbound", "")]
            assert replica.user_flags == orig.user_flags == 1 << 3
            # MI computes timeout from ticks at the instant it answers (PROTOCOL.md fact 7):
            # two nodes asked one after the other may differ by MI_TIMEOUT_SLACK
            assert abs(replica.timeout - orig.timeout) <= MI_TIMEOUT_SLACK
            assert replica.timestart == orig.timestart
            # 1.10.5 gives an accepted dialog its own h_id (hence dlg_match_mode 1)
            assert replica.h_entry == orig.h_entry
            pstats, bstats = pmi.get_statistics(), bmi.get_statistics()
            assert pstats["update_sent"] == 1 and bstats["update_recv"] == 1
            # "created" races the ACK's "updated" on 1.10.5: sent only if it wins
            assert pstats["create_sent"] == bstats["create_recv"] <= 1

            c.nodes["primary"].kill()
            c.failover()
            assert c.vip_owner == "backup"
            call.go()
            assert call.finish() == (0, 0), "re-INVITE or BYE not answered after failover"
            after = bmi.get_statistics()
            # the backup handled both as in-dialog requests of the replicated dialog
            assert after["update_sent"] == bstats["update_sent"] + 1  # re-INVITE cseq
            assert after["delete_sent"] == bstats["delete_sent"] + 1  # BYE
            assert after["active_dialogs"] == 0
            wait_for(lambda: not bmi.dlg_list(), 10, "the backup's dlg_list to empty")
        finally:
            call.kill()
            dump.stop()

        primary_ip = c.addresses["primary"].ip
        backup_ip = c.addresses["backup"].ip
        flows = [(d.src[0], d.dst[0], decode(d.data)) for d in read_datagrams(pcap)]
        to_backup = [int(m.command) for s, d, m in flows if (s, d) == (primary_ip, backup_ip)]
        to_primary = [int(m.command) for s, d, m in flows if (s, d) == (backup_ip, primary_ip)]
        assert to_backup in ([1, 2], [2])  # created (if it beat the ACK), updated
        assert to_primary == [2, 3]  # after failover: re-INVITE updated, BYE deleted
        assert all(m.call_id == call_id.encode() for _, _, m in flows)


def test_take_vip_gratuitous_arp_updates_clients(backend: LocalBackend) -> None:
    """GARP alone (no neighbour flush) moves a client's ARP entry to the new owner."""
    with Cluster(backend, close_backend=False) as c:
        caller = backend.client("caller")
        with netns.udp_socket(caller.ns, caller.ip, 0) as s:
            s.sendto(b"x", (c.vip, 5060))

        def vip_mac() -> str | None:
            out = netns.run(["ip", "-n", caller.ns, "neigh", "show", c.vip]).split()
            return out[out.index("lladdr") + 1] if "lladdr" in out else None

        primary_mac = netns.link_mac(c.nodes["primary"].ns, "eth0")
        backup_mac = netns.link_mac(c.nodes["backup"].ns, "eth0")
        wait_for(lambda: vip_mac() == primary_mac, 5, "the caller to resolve the VIP")
        c.nodes["primary"].release_vip(c.vip)
        c.nodes["backup"].take_vip(c.vip)  # no refresh_neighbours here
        wait_for(lambda: vip_mac() == backup_mac, 5, "the GARP to update the caller")
