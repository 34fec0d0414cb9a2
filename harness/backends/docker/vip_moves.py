"""What a failover moves on the Docker backend: the VIP from node to node, and a dead
node's address pinned on its siblings.

Each step is a network command in a container (`DockerNode.net`): its ``ip``/``arping``
through ``nsenter`` where the harness can reach the container directly (`harness.backends.docker.direct`: no engine round trip on the failover's path),
else ``docker exec``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.backends.docker import direct
from harness.backends.docker.engine import DockerBackendError

if TYPE_CHECKING:  # the node calls these with itself
    from harness.backends.docker.node import DockerNode


def take(node: DockerNode, vip: str) -> None:
    """Add the VIP to the node's interface and announce it (gratuitous ARP)."""
    iface = node.interface()
    code, out = node.net(["ip", "addr", "add", f"{vip}/32", "dev", iface])
    if code != 0 and "File exists" not in out:
        raise DockerBackendError(f"{node.name}: cannot add {vip}: {out.strip()}")
    # -U: unsolicited ARP (sender = target = vip), updating every neighbour's cache;
    # directly, one now and two more (1 s apart) that nobody waits for
    arping = ["arping", "-q", "-U", "-c", "2", "-w", "1", "-I", iface, vip]
    if node._pid is not None:
        direct.run(node._pid, ["arping", "-q", "-U", "-c", "1", "-I", iface, vip])
        direct.run_later(node._pid, arping)
    else:
        node.exec(arping, check=False)
    node.network.flush_neighbour(vip)


def release(node: DockerNode, vip: str) -> None:
    """Drop the VIP (no-op if the node was stopped or killed, or does not hold it)."""
    if node._expect_down or node.state().get("Status") != "running":
        return
    iface = node.interface()
    code, out = node.net(["ip", "addr", "del", f"{vip}/32", "dev", iface])
    if code != 0 and "Cannot assign" not in out:
        raise DockerBackendError(f"{node.name}: cannot remove {vip}: {out.strip()}")


def mac(node: DockerNode) -> str | None:
    """The node's MAC on the cluster network (from the engine's last inspect)."""
    c = node.container
    networks = ((c.attrs or {}).get("NetworkSettings") or {}).get("Networks") or {} if c else {}
    return (networks.get(node.network.name) or {}).get("MacAddress") or None


def pin(node: DockerNode) -> None:
    """A permanent neighbour entry ``ip -> mac`` for ``node`` on every running sibling
    (best effort), before it is killed (`DockerNode.kill` says why)."""
    address = mac(node)
    if not address:
        return
    for other in node.siblings():
        up = direct.alive(other._pid) if other._pid is not None else other.is_running()
        if other is node or not up:
            continue
        code, _ = other.net(["ip", "neigh", "replace", node.ip, "lladdr", address, "dev",
                             other.interface(), "nud", "permanent"])
        if code == 0 and other not in node._pinned_on:
            node._pinned_on.append(other)


def unpin(node: DockerNode) -> None:
    """Remove the entries `pin` made (the restarted node answers ARP itself)."""
    pinned, node._pinned_on = node._pinned_on, []
    for other in pinned:
        if other.is_running():
            other.net(["ip", "neigh", "del", node.ip, "dev", other.interface()])
