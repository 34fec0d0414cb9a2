"""A user's own OpenSIPS config, checked before any node starts (``--config FILE``).

Users want to know whether *their* routing script replicates and fails over, so the
harness renders their Jinja template instead of ours (harness.cluster.render). A template
that cannot work must be refused up front, in one line per missing piece, rather than
after a cluster started and a failover lost every call. `check_user_config` does:

1. render the template for each role with documentation addresses (192.0.2.0/24):
   an undefined placeholder is one line naming it;
2. read the rendered text with a small parser (comments, both quote styles, module
   names in any case) and name what replication and the harness need but lack:
   SIP on the VIP, dialog and mi_datagram loaded, MI on ``mi_socket``, BIN on
   ``bin_listen``, a primary replicating to its backup, a backup accepting
   replicated dialogs;
3. confirm with ``opensips -c`` — the local binary, or a throw-away container of the
   image on the docker backend (no network); where neither exists it says so.

The placeholders a template sees (from harness.cluster.render.PLACEHOLDERS):

"""

from __future__ import annotations

import re
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from harness.base.errors import HarnessError
from harness.base.settings import Settings, SettingsError
from harness.cluster.interfaces import ConfigCheck, NodeAddresses
from harness.cluster.render import PLACEHOLDERS, RenderError, render_config
from harness.instruments import node_log


def placeholder_table() -> str:
    """The Markdown table of placeholders, for the README and this docstring."""
    rows = [f"| `{{{{ {name} }}}}` | {meaning} |" for name, meaning in PLACEHOLDERS]
    return "\n".join(["| placeholder | holds |", "|---|---|", *rows])


__doc__ = (__doc__ or "") + placeholder_table() + "\n"

#: documentation addresses (RFC 5737) the template is rendered with for the checks
SAMPLE_VIP = "192.0.2.100"
SAMPLE_IPS = {"primary": "192.0.2.10", "backup": "192.0.2.11", "standalone": "192.0.2.12"}


class UserConfigError(HarnessError, ValueError):
    """The user's config cannot run a cluster; `lines` are the one-line reasons."""

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = list(lines)
        super().__init__("\n".join(self.lines))

    def messages(self) -> list[str]:
        return self.lines


# -- the parser -----------------------------------------------------------------------

_STRING = r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''
_VALUE = rf"{_STRING}|[^\s,()]+"
_LOADMODULE = re.compile(rf"\bloadmodule\s+({_STRING})", re.I)
_MODPARAM = re.compile(rf"\bmodparam\s*\(\s*({_STRING})\s*,\s*({_STRING})\s*,\s*({_VALUE})\s*\)", re.I)
_GLOBAL = re.compile(r"^\s*(bin_listen|listen|mpath)\s*=\s*(\S+)", re.I | re.M)


def strip_comments(text: str) -> str:
    """`text` without ``#`` line and ``/* */`` block comments; quoted strings kept whole."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i:j + 1])
            i = j + 1
        elif c == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            skipped = text[i:n if end < 0 else end + 2]
            out.append("\n" * skipped.count("\n"))
            i = n if end < 0 else end + 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _unquote(token: str) -> str:
    if token[:1] in "\"'" and token[-1:] == token[:1] and len(token) >= 2:
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


@dataclass
class ParsedConfig:
    """What the checks need from a rendered config: modules, modparams, globals."""

    modules: set[str] = field(default_factory=set)
    #: (module pattern lower-cased, parameter lower-cased, value)
    modparams: list[tuple[str, str, str]] = field(default_factory=list)
    globals: dict[str, list[str]] = field(default_factory=dict)

    def params(self, module: str, name: str) -> list[str]:
        """Values given to `module`'s parameter `name` (modparam's module may be a regex)."""
        return [v for m, p, v in self.modparams if p == name.lower() and _matches(m, module)]


def _matches(pattern: str, module: str) -> bool:
    if pattern == module:
        return True
    try:
        return re.fullmatch(pattern, module) is not None
    except re.error:
        return False


def parse_config(text: str) -> ParsedConfig:
    """Modules (``dialog`` for ``loadmodule "/x/Dialog.so"``), modparams and globals."""
    clean = strip_comments(text)
    parsed = ParsedConfig()
    for m in _LOADMODULE.finditer(clean):
        name = _unquote(m.group(1)).rsplit("/", 1)[-1].lower()
        parsed.modules.add(name[:-3] if name.endswith(".so") else name)
    for m in _MODPARAM.finditer(clean):
        parsed.modparams.append((_unquote(m.group(1)).lower(), _unquote(m.group(2)).lower(),
                                 _unquote(m.group(3))))
    for m in _GLOBAL.finditer(clean):
        parsed.globals.setdefault(m.group(1).lower(), []).append(_unquote(m.group(2)))
    return parsed


def _sip_socket(value: str) -> tuple[str, int] | None:
    """(ip, port) of a UDP ``listen=`` value (``udp:ip:port``, ``ip:port``, ``ip``), else None."""
    proto, _, rest = value.partition(":")
    if proto.lower() not in ("udp", "tcp", "tls", "sctp"):
        proto, rest = "udp", value
    host, _, port = rest.partition(":")
    if proto.lower() != "udp" or (port and not port.isdigit()):
        return None
    return host, int(port or 5060)


def _truthy(value: str) -> bool:
    return value.strip().lower() not in ("0", "", "no", "off", "false")


def missing_pieces(text: str, role: str, node: NodeAddresses, peers: Iterable[str] = ()) -> list[str]:
    """One phrase per thing `role`'s rendered `text` lacks for replication and the harness."""
    cfg = parse_config(text)
    missing = []
    if "dialog" not in cfg.modules:
        missing.append('the dialog module is not loaded (loadmodule "dialog.so" is missing)')
    if "mi_datagram" not in cfg.modules:
        missing.append('the harness cannot reach MI (loadmodule "mi_datagram.so" is missing)')
    sockets = cfg.params("mi_datagram", "socket_name")
    want_mi = f"udp:{node.ip}:{node.mi_port}"
    if not sockets:
        missing.append('the harness cannot reach MI (modparam("mi_datagram", "socket_name", '
                       '"{{ mi_socket }}") is missing)')
    elif sockets[-1] != want_mi:
        missing.append(f"the {role}'s MI listens on {sockets[-1]}, the harness sends MI to "
                       f"{want_mi} (use \"{{{{ mi_socket }}}}\")")
    sip = [_sip_socket(v) for v in cfg.globals.get("listen", [])]
    if (node.sip_ip, node.sip_port) not in sip:
        missing.append(f"the {role} does not listen for SIP on the VIP "
                       f"(listen=udp:{{{{ vip }}}}:{{{{ sip_port }}}} is missing)")
    bins = cfg.globals.get("bin_listen", [])
    want_bin = f"{node.ip}:{node.bin_port}"
    if not bins:
        missing.append(f"the {role} has no BIN receiver (bin_listen={{{{ bin_listen }}}} is missing)")
    elif bins[-1] != want_bin:
        missing.append(f"the {role}'s BIN receiver is on {bins[-1]}, its peers replicate to "
                       f"{want_bin} (use bin_listen={{{{ bin_listen }}}})")
    dests = cfg.params("dialog", "replicate_dialogs_to")
    if role == "primary":
        if not dests:
            missing.append('the primary does not replicate dialogs (modparam("dialog", '
                           '"replicate_dialogs_to", "{{ dest }}") for each of replicate_to is missing)')
        else:
            absent = [p for p in peers if p not in dests]
            if absent:
                missing.append(f"the primary does not replicate to its backup {', '.join(absent)} "
                               f"(it replicates to {', '.join(dests)}; loop over {{{{ replicate_to }}}})")
    if role == "backup":
        accepts = cfg.params("dialog", "accept_replicated_dialogs")
        if not accepts or not _truthy(accepts[-1]):
            missing.append('the backup does not accept replicated dialogs (modparam("dialog", '
                           '"accept_replicated_dialogs", 1) is missing)')
    return missing


# -- the whole check --------------------------------------------------------------------

def sample_node(role: str, settings: Settings) -> NodeAddresses:
    """The addresses a template is rendered with for the checks (documentation range)."""
    p = settings.ports
    return NodeAddresses(role, SAMPLE_IPS[role], p.bin, p.mi, SAMPLE_VIP, p.sip)


def render_samples(settings: Settings, roles: Iterable[str], module_path: str) -> dict[str, str]:
    """{role: rendered text} with primary and backup replicating to each other."""
    ha = [r for r in ("primary", "backup") if r in roles]
    out = {}
    for role in dict.fromkeys(roles):
        node = sample_node(role, settings)
        peers = [f"{SAMPLE_IPS[r]}:{settings.ports.bin}" for r in ha if r != role]
        out[role] = render_config(role, settings, node, replicate_to=peers if role in ha else (),
                                  module_path=module_path)
    return out


def check_user_config(settings: Settings, roles: Iterable[str], check: ConfigCheck | None) -> str:
    """Raise UserConfigError naming what is missing; else return how `-c` confirmed it.

    check: how the chosen backend runs ``opensips -c`` (its kind's ``config_check``), or
    None where nothing can run it: the returned note says so.
    """
    path = settings.opensips.config
    if not path:
        return "no user config"
    shown = Path(path).name
    roles = list(dict.fromkeys(roles))
    module_path = check.module_path if check else settings.opensips.module_path or "/usr/lib64/opensips/modules"
    try:
        texts = render_samples(settings, roles, module_path)
    except (RenderError, SettingsError) as err:
        raise UserConfigError([str(err)]) from None
    lines = []
    for role, text in texts.items():
        peers = [f"{SAMPLE_IPS['backup']}:{settings.ports.bin}"] if role == "primary" and "backup" in roles else []
        lines += [f"config {shown}: {m}" for m in
                  missing_pieces(text, role, sample_node(role, settings), peers)]
    if lines:
        raise UserConfigError(dict.fromkeys(lines))
    if check is None:
        return f"config {shown}: renders and replicates; opensips -c not run (no binary or image here)"
    for role, text in texts.items():
        problem = opensips_check(text, check)
        if problem:
            raise UserConfigError([f"config {shown}: opensips -c refuses the rendered {role} config: {problem}"])
    return f"config {shown}: renders, replicates and passes opensips -c ({check.where}) for {', '.join(roles)}"


def opensips_check(text: str, check: ConfigCheck) -> str | None:
    """None when ``opensips -c`` accepts `text`, else its first error line, trimmed."""
    with tempfile.TemporaryDirectory(prefix="harness-usercfg-") as tmp:
        cfg = Path(tmp) / "opensips.cfg"
        cfg.write_text(text)
        cfg.chmod(0o644)
        argv = check.argv(cfg)
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            return f"could not run {argv[0]}: {err}"
    if proc.returncode == 0:
        return None
    return first_error(proc.stdout + proc.stderr) or f"exit status {proc.returncode}"


def first_error(log: str) -> str | None:
    """``line 32: failed to load module`` from OpenSIPS's -c output (its first error)."""
    for record in node_log.errors(log):
        if record.module != "core":
            continue
        msg = record.text.strip()
        where = re.search(r"parse error in config file \S+, (line \d+)[^:]*: (.*)", msg)
        return f"{where.group(1)}: {where.group(2)}" if where else msg
    return None
