"""Harness settings: YAML defaults plus per-run and per-test overrides.

Everything a test may want to vary about a cluster (ports, process counts, dialog
values, timeouts) lives here so configs and backends read one typed object instead of
scattered constants. `harness/base/defaults.yaml` holds the defaults; overrides are merged
key by key, so an override file or dict names only what it changes.

    s = load_settings()                                 # defaults (+ $HARNESS_SETTINGS)
    s = load_settings({"opensips": {"bin_children": 2}})
    s2 = s.with_overrides({"dialog": {"timeout": 30}})  # per test, s unchanged
"""

from __future__ import annotations

import copy
import dataclasses
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from harness.base.errors import HarnessError
from harness.base.resources import package_path

DEFAULTS_FILE = package_path("base", "defaults.yaml")
#: environment variable naming an override YAML file applied on top of the defaults
SETTINGS_ENV = "HARNESS_SETTINGS"


class SettingsError(HarnessError, ValueError):
    """A settings file or override is unreadable or names an unknown key."""


@dataclass(frozen=True)
class OpenSIPSSettings:
    """Which binary runs, with what arguments and how many BIN receivers."""

    binary: str | None = None
    module_path: str | None = None
    #: a user's own config template (harness.cluster.user_config), instead of opensips-cfg/'s
    config: str | None = None
    log_level: int = 3
    children: int = 2
    bin_children: int = 1
    #: `maxbuffer=`: the SO_RCVBUF ceiling 1.10 probes up to for every UDP socket, BIN too
    maxbuffer: int = 4194304
    #: `-m` (shared memory, MB) and `-M` (pkg memory per process, MB)
    shm_mb: int = 512
    pkg_mb: int = 16
    extra_args: tuple[str, ...] = ()

    def argv(self) -> list[str]:
        """The opensips arguments after `-F -E -f cfg`: memory sizes, then extra_args."""
        return ["-m", str(self.shm_mb), "-M", str(self.pkg_mb), *self.extra_args]


@dataclass(frozen=True)
class PortSettings:
    """The ports every node listens on (its own address for BIN and MI, the VIP for SIP)."""

    sip: int = 5060
    bin: int = 5062
    mi: int = 8080


@dataclass(frozen=True)
class DialogSettings:
    """What the config template puts in every dialog, so tests can expect it on the wire."""

    timeout: int = 7200
    default_timeout: int = 43200
    acct: str = "a|b#c\\d"
    profile_no_value: str = "inbound"
    profile_with_value: str = "caller"
    flag: int = 3
    hash_size: int = 4096
    match_mode: int = 1
    create_flags: str = "B"
    ping_interval: int = 30


@dataclass(frozen=True)
class TmSettings:
    """tm's timers (seconds); 0 leaves the release's default (fr_timer 30, wt_timer 5,
    fr_inv_timeout 120)."""

    #: final response timer of non-INVITE transactions (a BYE nobody answers)
    fr_timer: int = 0
    #: how long a transaction stays after its final reply (its end runs dialog callbacks)
    wt_timer: int = 0
    #: how long an INVITE waits for its final reply after a provisional one. Set, 1.11 and
    #: 2.1 nodes also set ``$T_fr_inv_timeout`` for every INVITE they relay: 1.11.0's
    #: reply_received arms that timer with the transaction's own value, which only the
    #: script sets (0 otherwise: the call is given up at the next tick; d244686dc5f)
    fr_inv_timeout: int = 0


@dataclass(frozen=True)
class UsrlocSettings:
    """Registrations (usrloc replication, 1.11 and 2.1): off unless a run asks for it, so
    the dialog-only template every 1.10 test compares exact values against stays as it is."""

    replicate: bool = False
    table: str = "location"
    timer_interval: int = 5
    min_expires: int = 0
    default_expires: int = 3600


@dataclass(frozen=True)
class ReplicationSettings:
    """Whether nodes accept replicated dialogs, and where else they send them."""

    accept: bool = True
    extra_destinations: tuple[str, ...] = ()


@dataclass(frozen=True)
class TimeoutSettings:
    """Deadlines, in seconds, for the harness's waits on a node."""

    #: process start until MI answers
    start: float = 15.0
    #: SIGTERM until exit (then SIGKILL)
    stop: float = 10.0
    #: one MI request
    mi: float = 2.0
    #: one warm-up probe until survival or death is observed
    warmup: float = 5.0


@dataclass(frozen=True)
class WarmupSettings:
    """The probe against the 1.10.5 recvfrom defect (harness.cluster.warmup)."""

    enabled: bool = True
    module: str = "harness-warmup"
    max_restarts: int = 20


@dataclass(frozen=True)
class NetworkSettings:
    """A pinned cluster subnet (None: derived per run and xdist worker)."""

    subnet: str | None = None


@dataclass(frozen=True)
class Settings:
    """All harness settings; immutable, derive variants with `with_overrides`."""

    opensips: OpenSIPSSettings = field(default_factory=OpenSIPSSettings)
    ports: PortSettings = field(default_factory=PortSettings)
    dialog: DialogSettings = field(default_factory=DialogSettings)
    tm: TmSettings = field(default_factory=TmSettings)
    usrloc: UsrlocSettings = field(default_factory=UsrlocSettings)
    replication: ReplicationSettings = field(default_factory=ReplicationSettings)
    timeouts: TimeoutSettings = field(default_factory=TimeoutSettings)
    warmup: WarmupSettings = field(default_factory=WarmupSettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)

    def with_overrides(self, overrides: Mapping[str, Any] | str | Path | None) -> Settings:
        """A copy with `overrides` (dict or YAML file path) merged in."""
        if overrides is None:
            return self
        merged = _deep_merge(self.to_dict(), _load_overrides(overrides), "")
        return _from_dict(Settings, merged, "")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (lists, not tuples) — the YAML shape, e.g. to dump for a report."""
        return _plain(dataclasses.asdict(self))

    def opensips_binary(self) -> str:
        """The binary to run: settings, then $OPENSIPS_BIN, then PATH."""
        return find_opensips_binary(self.opensips.binary)

    def module_path_for(self, binary: str) -> str:
        """Module directory: the configured one, else derived from the binary."""
        return self.opensips.module_path or derive_module_path(binary)


def find_opensips_binary(configured: str | None = None) -> str:
    """Locate the opensips binary or raise SettingsError with what was tried."""
    candidate = configured or os.environ.get("OPENSIPS_BIN")
    if candidate:
        path = Path(candidate)
        if path.is_file() and os.access(path, os.X_OK):
            return str(path.resolve())
        raise SettingsError(f"opensips binary {candidate!r} is not an executable file")
    found = shutil.which("opensips")
    if found:
        return str(Path(found).resolve())
    raise SettingsError("no opensips binary: set OPENSIPS_BIN or put opensips on PATH")


def derive_module_path(binary: str) -> str:
    """<prefix>/lib64/opensips/modules or <prefix>/lib/opensips/modules for <prefix>/sbin/opensips."""
    prefix = Path(binary).resolve().parent.parent
    candidates = [prefix / d / "opensips" / "modules" for d in ("lib64", "lib")]
    candidates += sorted(prefix.glob("lib/*-linux-gnu/opensips/modules"))
    for cand in candidates:
        if (cand / "dialog.so").is_file():
            return str(cand)
    tried = ", ".join(str(c) for c in candidates)
    raise SettingsError(f"no OpenSIPS modules next to {binary} (tried {tried}); "
                        "set opensips.module_path")


def load_settings(overrides: Mapping[str, Any] | str | Path | None = None, *,
                  use_env: bool = True) -> Settings:
    """Defaults file, then the $HARNESS_SETTINGS file (if `use_env`), then `overrides`."""
    base = _from_dict(Settings, _read_yaml(DEFAULTS_FILE), "")
    if use_env and os.environ.get(SETTINGS_ENV):
        base = base.with_overrides(Path(os.environ[SETTINGS_ENV]))
    return base.with_overrides(overrides)


# -- internals ---------------------------------------------------------------------

def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise SettingsError(f"cannot read settings file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise SettingsError(f"settings file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingsError(f"settings file {path} must hold a mapping at top level")
    return data


def _load_overrides(overrides: Mapping[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(overrides, (str, Path)):
        return _read_yaml(Path(overrides))
    return copy.deepcopy(dict(overrides))


def _deep_merge(base: dict[str, Any], over: Mapping[str, Any], where: str) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        path = f"{where}{key}"
        if key not in base:
            known = ", ".join(sorted(base))
            raise SettingsError(f"unknown setting {path!r} (known here: {known})")
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise SettingsError(f"setting {path!r} must be a mapping")
            out[key] = _deep_merge(base[key], value, path + ".")
        else:
            out[key] = value
    return out


def _from_dict(cls: type, data: Mapping[str, Any], where: str) -> Any:
    kwargs: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key, value in data.items():
        path = f"{where}{key}"
        if key not in fields:
            raise SettingsError(f"unknown setting {path!r} (known here: {', '.join(fields)})")
        default = _default_of(fields[key])
        if dataclasses.is_dataclass(default):
            if not isinstance(value, Mapping):
                raise SettingsError(f"setting {path!r} must be a mapping")
            kwargs[key] = _from_dict(type(default), value, path + ".")
        else:
            kwargs[key] = _coerce(value, default, path)
    return cls(**kwargs)


def _default_of(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _coerce(value: Any, default: Any, path: str) -> Any:
    """Check a leaf against its default's type; lists become tuples (frozen settings)."""
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"setting {path!r} must be a list")
        return tuple(str(v) for v in value)
    if value is None:
        return value
    if default is None:  # optional strings (paths, subnet)
        if not isinstance(value, str):
            raise SettingsError(f"setting {path!r} must be a string or null, not {value!r}")
        return value
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise SettingsError(f"setting {path!r} must be true or false, not {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise SettingsError(f"setting {path!r} must be an integer, not {value!r}")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SettingsError(f"setting {path!r} must be a number, not {value!r}")
        return float(value)
    if isinstance(default, str) and not isinstance(value, str):
        raise SettingsError(f"setting {path!r} must be a string, not {value!r}")
    return value


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
