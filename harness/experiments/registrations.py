"""Registered users on a cluster: SIPp registers them through the VIP, answers their
calls at the contact they registered, and calls them.

    users = Users(cluster, user_names(3), workdir=tmp)
    users.register("refresh").wait(30)             # a REGISTER scenario, one SIPp call per user
    callee = users.answer()                         # their phones: basic_uas.xml at the contact
    summary = users.call().wait(30)                 # INVITE sip:<user>@VIP, found by lookup()
    callee.halt()

Why: registrations are the other half of what a backup must carry at failover (1.11
and 2.1 replicate them over BIN with usrloc). The users live on one client host
(``users``): their REGISTERs leave from it and every binding points back at it, where a
SIPp UAS answers; calls come from another (``dialer``), always through the VIP, so
they reach whichever node holds it. The proxy's side is the template's (settings
``usrloc.replicate``): ``save()`` for REGISTER, ``lookup()`` for an INVITE to the VIP.

The scenarios (``scenarios/<name>_uac.xml``, `REGISTRATIONS`) name the user
``[field0]``: one line of the injection file written here per SIPp call, in order.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from harness.cluster import Cluster
from harness.cluster.interfaces import ClientHost
from harness.experiments.calls import runner_options
from harness.instruments.sipp import (
    CALL_USER,
    REGISTRATIONS,
    SippError,
    SippProcess,
    SippUAC,
    SippUAS,
)

#: the client host the users live on (their REGISTERs leave from it, their calls arrive
#: there) and the one that calls them
USERS_HOST = "users"
DIALER_HOST = "dialer"
#: where the users' SIPp answers (every binding names it), where their REGISTERs leave
#: from, and where the dialer calls from
USER_PORT = 5080
REGISTER_PORT = 5090
DIALER_PORT = 5070
_runs = itertools.count(1)
_Proc = TypeVar("_Proc", bound=SippProcess)


class RegistrationError(SippError):
    """A REGISTER scenario the harness does not have, or users it cannot name."""


def user_names(count: int, prefix: str = "user") -> list[str]:
    """``user0001`` … : ``count`` distinct AORs, in the order SIPp registers them."""
    if count < 1:
        raise RegistrationError("at least one user is needed")
    width = max(4, len(str(count)))
    return [f"{prefix}{n:0{width}d}" for n in range(1, count + 1)]


class Users:
    """``names`` as users of ``cluster``: registered, answered and called with SIPp.

    Every SIPp started here is remembered; `stop` (or leaving the ``with`` block) ends
    whatever still runs. SIPp's files go to ``workdir``, one name per run.
    """

    def __init__(self, cluster: Cluster, names: Sequence[str], *, workdir: str | Path) -> None:
        if not names:
            raise RegistrationError("at least one user is needed")
        bad = [n for n in names if not n or any(c in n for c in ";\n\r@: <>")]
        if bad:
            raise RegistrationError(f"user name {bad[0]!r} cannot be a SIP user part here")
        self.cluster = cluster
        self.names = list(names)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        backend = cluster.backend
        self.host = backend.client(USERS_HOST)
        self.dialer = backend.client(DIALER_HOST)
        #: host:port every binding names, where `answer` listens
        self.contact_host = f"{self.host.ip}:{USER_PORT}"
        #: SIPp's injection file: SEQUENTIAL, one user per line, as SIPp reads [field0]
        self.injection = self.workdir / "users.csv"
        self.injection.write_text("SEQUENTIAL\n" + "".join(f"{n};\n" for n in self.names))
        self.started: list[SippProcess] = []

    def contact(self, name: str) -> str:
        """The contact `register` gives user ``name`` (``register`` / ``refresh`` scenarios)."""
        return f"sip:{name}@{self.contact_host}"

    @property
    def aor_host(self) -> str:
        """The AORs' host part: the VIP the REGISTERs are sent to."""
        return self.cluster.vip

    def register(self, scenario: str = "register", *, rate: float = 100.0,
                 keys: Mapping[str, str] | None = None, **options: object) -> SippUAC:
        """Run REGISTER scenario ``scenario`` once per user through the VIP; started.

        ``keys`` override the scenario's ``-key`` defaults (e.g. ``{"expires": "60"}``);
        ``options`` go to `SippUAC` (e.g. ``extra_args``).
        """
        if scenario not in REGISTRATIONS:
            raise RegistrationError(f"unknown REGISTER scenario {scenario!r} "
                                    f"(one of {', '.join(REGISTRATIONS)})")
        values = {**REGISTRATIONS[scenario].keys, **(keys or {}), "contact_host": self.contact_host}
        return self._start(SippUAC(
            scenario, self._vip(), self.host.ip, REGISTER_PORT, workdir=self.workdir,
            calls=len(self.names), rate=rate, name=f"{scenario}-{next(_runs)}-uac",
            extra_vars=values, **self._options(self.host, options, inject=True)))

    def answer(self, **options: object) -> SippUAS:
        """The users' phones: basic_uas.xml at their contact, answering every call; started."""
        return self._start(SippUAS("basic", self.host.ip, USER_PORT, workdir=self.workdir,
                                   name=f"users-{next(_runs)}-uas", **self._options(self.host, options)))

    def call(self, *, rate: float = 100.0, calls: int | None = None, **options: object) -> SippUAC:
        """Call the users in order (``calls``, default one each) through the VIP; started."""
        return self._start(SippUAC(
            CALL_USER, self._vip(), self.dialer.ip, DIALER_PORT, workdir=self.workdir,
            calls=len(self.names) if calls is None else calls, rate=rate,
            name=f"{CALL_USER}-{next(_runs)}-uac", **self._options(self.dialer, options, inject=True)))

    def stop(self) -> None:
        """End every SIPp started here that still runs."""
        for proc in self.started:
            if proc.running():
                try:
                    proc.halt()
                except SippError:
                    pass

    def __enter__(self) -> Users:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals -------------------------------------------------------------------
    def _vip(self) -> str:
        vip, port = self.cluster.sip_addr
        return f"{vip}:{port}"

    def _options(self, host: ClientHost, options: Mapping[str, object], *,
                  inject: bool = False) -> dict[str, object]:
        """Where SIPp runs, plus the caller's options; ``inject``: the users' file first."""
        out: dict[str, object] = {**runner_options(self.cluster.backend, host, self.workdir), **options}
        if inject:
            out["extra_args"] = ["-inf", str(self.injection), *options.get("extra_args", ())]  # type: ignore[misc]
        return out

    def _start(self, proc: _Proc) -> _Proc:
        self.started.append(proc)
        proc.start()
        return proc
