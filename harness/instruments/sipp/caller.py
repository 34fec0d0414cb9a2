"""The caller side of SIPp: places calls through the cluster, holds them, releases them.

Holding calls: with ``hold=True`` the caller scenario's ``<!--HOLD-->`` marker becomes
``<log HELD>`` + ``<recvCmd>``. SIPp then listens on a TCP "twin" socket (3PCC,
``-3pcc ip:port``); `SippUAC.release` sends one twin command per Call-ID
(``Call-ID: <id>`` terminated by ESC, the framing SIPp's 3PCC uses), and that call goes
on (re-INVITE, BYE...). The twin connection stays open for the whole run: SIPp exits
when it closes.
"""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

from harness.base.wait import WaitTimeout, wait_until
from harness.instruments.sipp.process import SippError, SippProcess, free_port
from harness.instruments.sipp.results import short_id


class SippUAC(SippProcess):
    """The caller side: places ``calls`` calls to ``target`` then exits.

    ``target`` (``host:port``) goes in the Request-URI and To; ``outbound_proxy``
    (``host:port``, SIPp's ``-rsa``) is where every request is actually sent, e.g. the
    cluster's virtual IP, so a proxy routes the INVITE to the UAS named in the R-URI.
    With ``hold=True`` each call stops after its ACK until `release` names it.
    """

    role = "uac"

    def __init__(
        self,
        scenario: str | Path,
        target: str,
        local_ip: str,
        port: int | None = None,
        *,
        workdir: str | Path,
        calls: int = 1,
        rate: float = 10.0,
        rate_period_ms: int = 1000,
        max_concurrent: int | None = None,
        outbound_proxy: str | None = None,
        service: str = "service",
        hold: bool = False,
        twin_port: int | None = None,
        recv_timeout_ms: int | None = None,
        max_invite_retrans: int | None = None,
        max_non_invite_retrans: int | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(scenario, local_ip=local_ip, local_port=port, workdir=workdir,  # type: ignore[arg-type]
                         remote=target, hold=hold, **kwargs)
        self.target = target
        self.calls = calls
        self.rate = rate
        self.rate_period_ms = rate_period_ms
        self.max_concurrent = max_concurrent
        self.outbound_proxy = outbound_proxy
        self.service = service
        self.recv_timeout_ms = recv_timeout_ms
        self.max_invite_retrans = max_invite_retrans
        self.max_non_invite_retrans = max_non_invite_retrans
        #: TCP port of the 3PCC twin socket SIPp listens on when holding calls
        self.twin_port = twin_port if twin_port is not None else (
            self.local_port + 1 if self.command_prefix else free_port(local_ip, socket.SOCK_STREAM))
        #: Call-ID (SIPp's short id) -> when `release` sent its command
        self.released: dict[str, float] = {}
        self._twin: socket.socket | None = None
        self._twin_reader: threading.Thread | None = None

    def _role_args(self) -> list[str]:
        args = ["-m", str(self.calls), "-r", f"{self.rate:g}", "-rp", str(self.rate_period_ms),
                "-s", self.service]
        if self.max_concurrent is not None:
            args += ["-l", str(self.max_concurrent)]
        if self.outbound_proxy:
            args += ["-rsa", self.outbound_proxy]
        if self.recv_timeout_ms is not None:
            args += ["-recv_timeout", str(self.recv_timeout_ms)]
        if self.max_invite_retrans is not None:
            args += ["-max_invite_retrans", str(self.max_invite_retrans)]
        if self.max_non_invite_retrans is not None:
            args += ["-max_non_invite_retrans", str(self.max_non_invite_retrans)]
        if self.hold:
            args += ["-3pcc", f"{self.local_ip}:{self.twin_port}"]
        return args

    def _after_start(self, timeout: float) -> None:
        if not self.hold:
            return
        def connect() -> socket.socket | None:
            sock = self.socket_factory(socket.SOCK_STREAM)
            try:
                sock.settimeout(1.0)
                sock.connect((self.local_ip, self.twin_port))
            except OSError:
                sock.close()
                return None
            return sock

        # the twin socket is bound before the first statistics row; retry anyway
        try:
            self._twin = wait_until(connect, timeout=timeout, what="the 3PCC twin socket to accept",
                                    alive=lambda: None if self.running() else self._fail_twin())
        except (WaitTimeout, SippError) as err:
            self.halt()
            raise self._fail(f"3PCC twin socket {self.local_ip}:{self.twin_port} unreachable "
                             f"({str(err).splitlines()[0]})") from None
        # bounded: a release must not block forever on a SIPp that stopped reading
        self._twin.settimeout(10.0)
        self._twin_reader = threading.Thread(target=self._drain_twin, name=f"{self.name}-twin", daemon=True)
        self._twin_reader.start()

    def _fail_twin(self) -> None:
        raise SippError("SIPp exited")

    def _drain_twin(self) -> None:
        """Read (and drop) what SIPp writes back on the twin socket, so it never blocks."""
        sock = self._twin
        while sock is not None:
            try:
                if not sock.recv(65536):
                    return
            except TimeoutError:
                sock = self._twin
                continue
            except OSError:
                return

    def held(self) -> list[str]:
        """Short Call-IDs of calls that reached the hold point and were not released."""
        return [e.call_id for e in self.events("HELD") if e.call_id not in self.released]

    def wait_held(self, count: int | None = None, timeout: float = 30.0) -> list[str]:
        """Wait until ``count`` calls (default: all) wait at the hold point; their Call-IDs."""
        if not self.hold:
            raise SippError(f"{self.name}: not started with hold=True")
        want = self.calls if count is None else count
        return [e.call_id for e in self.wait_events("HELD", want, timeout)]

    def release(self, call_ids: Iterable[str] | None = None, *, rate: float | None = None,
                deadline: float | None = None,
                progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Let held calls go on (default: every call held now); returns the ids released.

        A twin command for a Call-ID SIPp does not know would start a failed call there,
        so only ids that logged HELD are sent. ``rate``: calls released per second, on a
        schedule (not a burst); ``deadline`` (time.monotonic()) stops releasing at that
        instant; ``progress(released, total)`` is called about once a second.
        """
        if self._twin is None:
            raise SippError(f"{self.name}: no 3PCC twin connection (hold=False or not started)")
        held = set(e.call_id for e in self.events("HELD"))
        ids = self.held() if call_ids is None else [short_id(c) for c in call_ids]
        unknown = [c for c in ids if c not in held]
        if unknown:
            raise SippError(f"{self.name}: not held: {unknown[:5]}")
        todo = [c for c in dict.fromkeys(ids) if c not in self.released]
        out: list[str] = []
        start = last_report = time.monotonic()
        for i, cid in enumerate(todo):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if rate is not None:
                due = start + i / rate
                if deadline is not None and due >= deadline:
                    break  # the next release would come after the deadline
                if due > now:
                    time.sleep(due - now)
            self.released[cid] = time.time()  # taken before sending: SIPp may act at once
            self._twin.sendall(f"Call-ID: {cid}\r\n\r\n\x1b".encode())
            out.append(cid)
            if progress is not None and time.monotonic() - last_report >= 1.0:
                last_report = time.monotonic()
                progress(len(out), len(todo))
        return out

    def _finish(self) -> None:
        super()._finish()
        if self.exit_code is not None and self._twin is not None:
            self._twin.close()
            self._twin = None
            if self._twin_reader is not None:
                self._twin_reader.join(2)
                self._twin_reader = None
