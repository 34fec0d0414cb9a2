"""The prober: OPTIONS to the VIP every few milliseconds, so the capture shows the takeover."""

from __future__ import annotations

import socket
import threading
import time

Addr = tuple[str, int]


class Prober:
    """Sends ``OPTIONS`` with ``Max-Forwards: 0`` to the VIP every ``interval`` seconds.

    Whoever holds the VIP answers 483 statelessly (the config's maxfwd check comes
    first), so the capture shows the primary's last and the backup's first answer
    within one interval of the real takeover. Answers are drained and counted only.
    """

    def __init__(self, sock: socket.socket, target: Addr, interval: float = 0.005) -> None:
        self.sock = sock
        self.target = target
        self.interval = interval
        self.sent = 0
        self.answers = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="failover-prober", daemon=True)

    def _message(self, n: int) -> bytes:
        ip, port = self.sock.getsockname()[:2]
        vip, vport = self.target
        return (f"OPTIONS sip:probe@{vip}:{vport} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK-failover-probe-{n}\r\n"
                f"Max-Forwards: 0\r\n"
                f"From: <sip:probe@{ip}:{port}>;tag=failover-probe\r\n"
                f"To: <sip:probe@{vip}:{vport}>\r\n"
                f"Call-ID: failover-probe@{ip}\r\n"
                f"CSeq: {n} OPTIONS\r\n"
                f"Content-Length: 0\r\n\r\n").encode()

    def start(self) -> Prober:
        self.sock.setblocking(False)
        self._thread.start()
        return self

    def _run(self) -> None:
        n = 0
        next_at = time.monotonic()
        while not self._stop.is_set():
            n += 1
            try:
                self.sock.sendto(self._message(n), self.target)
                self.sent += 1
            except OSError:
                pass  # e.g. no neighbour entry while the VIP moves: the next probe retries
            next_at += self.interval
            while True:
                try:
                    self.sock.recv(4096)
                    self.answers += 1
                except (BlockingIOError, OSError):
                    break
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
