"""Network tools on the host side of a cluster's bridge: tcpdump and bridge tweaks.

Capturing on the bridge and changing it need CAP_NET_RAW / CAP_NET_ADMIN on the host,
i.e. root, while using Docker only needs the docker group (a CI runner's user, e.g.).
A container with ``--network host`` and those capabilities sees and changes the same
bridge, so without root the tools run in one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: where the host-side network tools run: ``host``, ``container`` or ``auto``
HOST_TOOLS_ENV = "HARNESS_DOCKER_HOST_TOOLS"


def host_tools_in_container() -> bool:
    """Run tcpdump / ``ip`` for the bridge in a helper container rather than on the host?

    ``auto`` uses one unless we are root with both tools installed;
    ``$HARNESS_DOCKER_HOST_TOOLS`` = host | container forces it.
    """
    mode = os.environ.get(HOST_TOOLS_ENV, "auto").strip().lower()
    if mode == "container":
        return True
    if mode == "host":
        return False
    return os.geteuid() != 0 or shutil.which("tcpdump") is None or shutil.which("ip") is None


def host_tool_argv(command: Sequence[str], image: str, *, name: str | None = None,
                   labels: dict[str, str] | None = None, mounts: Sequence[str] = ()) -> list[str]:
    """``command`` run in the host's network namespace by a throw-away ``image`` container.

    ``--init`` so that the SIGINT the docker CLI forwards reaches the tool (tcpdump
    flushes its file on SIGINT); ``mounts`` are bind-mounted at their own paths.
    """
    label_args = [a for k, v in (labels or {}).items() for a in ("--label", f"{k}={v}")]
    volumes = [a for m in dict.fromkeys(mounts) for a in ("-v", f"{m}:{m}")]
    named = ["--name", name] if name else []
    return ["docker", "run", "--rm", "-i", "--init", "--network", "host",
            "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW", *named, *label_args, *volumes,
            image, *command]


def run_host_tool(command: list[str], image: str | None) -> None:
    """Best effort: a bridge tweak that a missing privilege must not turn into an error."""
    argv = host_tool_argv(command, image) if image and host_tools_in_container() else command
    if shutil.which(argv[0]) is None:
        return
    try:
        subprocess.run(argv, capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        pass


@dataclass(frozen=True)
class HostCapture:
    """Where to capture every frame of a cluster: the host side of its bridge.

    With ``image`` the command (tcpdump) runs in a host-network helper container of
    that image, for hosts where the harness is not root (see
    :func:`host_tools_in_container`); the directory of its ``-w`` file is mounted.
    """

    name: str
    ip: str
    ifname: str
    image: str | None = None
    container_name: str | None = None
    labels: tuple[tuple[str, str], ...] = ()

    def argv(self, command: list[str], *, cwd: str | None = None) -> list[str]:
        if self.image is None:
            return list(command)
        mounts = []
        if "-w" in command and command.index("-w") + 1 < len(command):
            mounts.append(str(Path(command[command.index("-w") + 1]).resolve().parent))
        # -Z root: Debian's tcpdump would otherwise drop to its own user before opening
        # the file, which then lives in a directory only the harness's user may write
        tool = [command[0], "-Z", "root", *command[1:]] if command[:1] == ["tcpdump"] else list(command)
        return host_tool_argv(tool, self.image, name=self.container_name,
                              labels=dict(self.labels), mounts=mounts)
