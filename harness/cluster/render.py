"""Render OpenSIPS 1.x configs (1.10, 1.11, 2.1) from the opensips-cfg/ templates.

One function, `render_config`, used by every backend so a primary started in a
network namespace and one started in a container run the same script:

    from harness.cluster.render import render_config
    text = render_config("primary", settings, node_addresses,
                         replicate_to=["10.0.0.3:5062"], module_path="/usr/lib64/opensips/modules")

`node` is a `harness.cluster.interfaces.NodeAddresses` (its `ip` carries BIN and MI, its `sip_ip`
is the cluster's virtual IP). Ports come from `node`, everything else from settings.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import jinja2

from harness.base.errors import HarnessError
from harness.base.releases import BASELINE, family, replicates_usrloc
from harness.base.resources import shipped
from harness.base.settings import Settings, SettingsError
from harness.cluster.interfaces import NodeAddresses

TEMPLATE_DIR = shipped("opensips-cfg")
TEMPLATE_NAME = "opensips.cfg.j2"
ROLES = ("primary", "backup", "standalone")


#: Every variable a config template sees: (name, what it holds). The one table behind
#: the README's placeholder list, harness.cluster.user_config's docstring and render_config's
#: context (a test checks the three agree), so docs and code cannot drift.
PLACEHOLDERS: tuple[tuple[str, str], ...] = (
    ("role", "`primary`, `backup` or `standalone`"),
    ("name", "the node's name (for log_name, comments)"),
    ("vip", "the cluster's virtual IP: listen for SIP here (`listen=udp:{{ vip }}:{{ sip_port }}`)"),
    ("sip_port", "the SIP port on the VIP"),
    ("node_ip", "the node's own address, where BIN and MI live"),
    ("bin_port", "the node's BIN port"),
    ("bin_listen", "`node_ip:bin_port`, the value for `bin_listen=`"),
    ("mi_port", "the node's MI (mi_datagram) UDP port"),
    ("mi_socket", "`udp:node_ip:mi_port`, the mi_datagram `socket_name` the harness sends MI to"),
    ("replicate_to", "list of `ip:port` BIN destinations (its peers); empty for standalone"),
    ("accept", "true when the node must accept replicated dialogs (primary and backup)"),
    ("module_path", "directory of dialog.so etc. as the OpenSIPS process sees it (for `mpath=`)"),
    ("release", "the node's OpenSIPS release: `release.version` (e.g. `1.11.11`, what its binary "
                "reports) and `release.family` (`1.10`, `1.11` or `2.1`), for settings that differ between branches"),
    ("s", "the harness settings (harness/base/defaults.yaml), e.g. `{{ s.dialog.timeout }}`"),
)


@dataclass(frozen=True)
class TemplateRelease:
    """What a template knows of the node's release: enough to pick branch-specific lines.

    1.11 removed dialog's ``timeout_avp`` (the ``$DLG_timeout`` variable replaced it)
    and 2.1 made transports modules (``proto_udp.so``, no ``disable_tcp``), so one
    template serves every release only if it can ask which branch it is on.
    """

    version: str

    @property
    def family(self) -> str:
        return family(self.version)

    def __str__(self) -> str:
        return self.version


class RenderError(HarnessError, ValueError):
    """The inputs cannot make a valid config (unknown role, bad address...)."""


def cfg_string(value: object) -> str:
    """Escape a value for a double-quoted OpenSIPS cfg string (backslash and quote)."""
    text = str(value)
    if any(c in text for c in "\r\n\0"):
        raise RenderError(f"value {text!r} cannot sit in an OpenSIPS cfg string")
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _environment(directory: Path = TEMPLATE_DIR) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(directory)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["cfg_string"] = cfg_string
    return env


def _dest(value: str | tuple[str, int]) -> str:
    if isinstance(value, tuple):
        host, port = value
    else:
        host, _, port_s = value.rpartition(":")
        if not host or not port_s.isdigit():
            raise RenderError(f"replication destination {value!r} is not ip:port")
        port = int(port_s)
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise RenderError(f"replication destination {value!r}: {host!r} is not an IPv4 address") from None
    if not 0 < int(port) < 65536:
        raise RenderError(f"replication destination {value!r}: bad port")
    return f"{host}:{int(port)}"


def render_config(role: str, settings: Settings, node: NodeAddresses, *,
                  replicate_to: Iterable[str | tuple[str, int]] = (),
                  module_path: str | None = None, template: str | Path | None = None,
                  release: str = BASELINE) -> str:
    """The opensips.cfg text for `node` playing `role`.

    replicate_to: BIN destinations ("ip:port" or (ip, port)) for primary/backup;
    settings.replication.extra_destinations are appended. Ignored for standalone.
    module_path: where dialog.so lives *as seen by the process* (it differs between
    the host and a container); default settings.opensips.module_path.
    template: a user's Jinja template (default settings.opensips.config, else ours);
    it sees the PLACEHOLDERS and nothing else, undefined names are errors.
    release: the version the node's binary reports; picks branch-specific lines.
    settings.usrloc.replicate on a release without usrloc replication (1.10) is refused.
    """
    if role not in ROLES:
        raise RenderError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
    if settings.usrloc.replicate and not replicates_usrloc(release):
        raise RenderError(f"node {node.name} runs OpenSIPS {release}, which cannot replicate "
                          f"registrations (usrloc replication came with 1.11): turn settings "
                          f"usrloc.replicate off or run 1.11 / 2.1")
    mpath = module_path or settings.opensips.module_path
    if not mpath:
        raise SettingsError("module path unknown: pass module_path= or set opensips.module_path")
    for label, addr in (("node ip", node.ip), ("virtual IP", node.sip_ip)):
        try:
            ipaddress.IPv4Address(addr)
        except ValueError:
            raise RenderError(f"{label} {addr!r} is not an IPv4 address") from None
    dests: list[str] = []
    if role != "standalone":
        for d in [*replicate_to, *settings.replication.extra_destinations]:
            norm = _dest(d)
            if norm == f"{node.ip}:{node.bin_port}":
                raise RenderError(f"node {node.name} would replicate to itself ({norm})")
            if norm not in dests:
                dests.append(norm)
    values = dict(
        role=role,
        name=node.name,
        vip=node.sip_ip,
        sip_port=node.sip_port,
        node_ip=node.ip,
        bin_port=node.bin_port,
        bin_listen=f"{node.ip}:{node.bin_port}",
        mi_port=node.mi_port,
        mi_socket=f"udp:{node.ip}:{node.mi_port}",
        replicate_to=dests,
        accept=settings.replication.accept and role != "standalone",
        module_path=cfg_string(mpath),
        release=TemplateRelease(release),
        s=settings,
    )
    # only what the table documents reaches a template (KeyError: a row with no value)
    context = {name: values[name] for name, _ in PLACEHOLDERS}
    user = template or settings.opensips.config
    if not user:
        return _environment().get_template(TEMPLATE_NAME).render(context)
    path = Path(user)
    try:
        return _environment(path.parent).get_template(path.name).render(context)
    except jinja2.TemplateNotFound:
        raise RenderError(f"config {path.name}: no such file") from None
    except jinja2.TemplateSyntaxError as err:
        raise RenderError(f"config {path.name}: line {err.lineno}: {err.message}") from None
    except jinja2.UndefinedError as err:
        raise RenderError(f"config {path.name}: {err.message}: not a placeholder the harness "
                          f"defines ({', '.join(n for n, _ in PLACEHOLDERS)})") from None
