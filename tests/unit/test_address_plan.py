"""Both backends give the same cluster the same addresses (offline).

The recorded corpus, failover figures and ladders name addresses; they must not
depend on the backend. The engine, namespaces and binary checks are stubbed out: what
is compared is each backend's own allocation code.
"""

from __future__ import annotations

import pytest

from harness.backends.local import backend as local_backend
from harness.backends.local.topology import Topology
from harness.base.settings import load_settings

pytest.importorskip("docker")
from harness.backends.docker import backend as docker_backend  # noqa: E402


@pytest.fixture
def settings():
    return load_settings({"network": {"subnet": "10.99.7.0/24"},
                          "opensips": {"binary": "/bin/true", "module_path": "/m"}}, use_env=False)


def cluster_addresses(backend) -> dict[str, str]:
    """What a primary/backup cluster with a caller and a callee gets, in Cluster's order."""
    nodes = {n: backend.node_addresses(n) for n in ("primary", "backup")}
    assert backend.node_addresses("primary") == nodes["primary"]  # asking again changes nothing
    return {"harness": backend.harness_ip, "vip": backend.vip,
            **{n: f"{a.ip} bin {a.bin_port} mi {a.mi_port} sip {a.sip_ip}:{a.sip_port}"
               for n, a in nodes.items()},
            "caller": backend.client("caller").ip, "callee": backend.client("callee").ip}


def test_docker_and_local_allocate_alike(settings, monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setattr(docker_backend, "docker_backend_unavailable", lambda image: None)
    monkeypatch.setattr(docker_backend.DockerBackend, "open", lambda self: None)
    monkeypatch.setattr(local_backend, "local_backend_unavailable", lambda s: None)
    monkeypatch.setattr(Topology, "open", lambda self: None)
    monkeypatch.setattr(Topology, "add_host", lambda self, name, ip: f"{self.prefix}-{name}")

    docker = cluster_addresses(docker_backend.DockerBackend(settings))
    local = cluster_addresses(local_backend.LocalBackend(settings, workdir=tmp_path))
    assert docker == local == {
        "harness": "10.99.7.1", "vip": "10.99.7.100",
        "primary": "10.99.7.10 bin 5062 mi 8080 sip 10.99.7.100:5060",
        "backup": "10.99.7.11 bin 5062 mi 8080 sip 10.99.7.100:5060",
        "caller": "10.99.7.200", "callee": "10.99.7.201",
    }
