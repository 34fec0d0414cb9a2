"""A page opened in headless Chromium, as a person's browser opens it, for the page tests.

Chromium is driven over the DevTools protocol (a websocket) by the small client below:
the standard library is enough, and playwright/pyppeteer are not available here. What a
test gets from a loaded page:

- everything the page reported as wrong: console errors and warnings, uncaught
  exceptions, log entries (failed loads, blocked content), failed requests;
- every URL it asked for (a self-contained page asks for its own file only);
- ``evaluate(js)``: values read from the rendered DOM (text as shown, sizes of SVGs).

The page is "loaded" when Chromium fires ``Page.loadEventFired``; one ``evaluate`` round
trip after it orders every event the load caused before the reply, so nothing is
waited for by time. Every wait has a deadline that is an error when it passes.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from harness.base.wait import wait_until

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed: the pages are checked as a browser shows "
                             "them (Debian: apt-get install chromium)")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--remote-debugging-port=0", "--remote-debugging-address=127.0.0.1")
DEADLINE_S = 90.0


class BrowserError(Exception):
    """Chromium did not start, answer or load the page in time."""


class WebSocket:
    """The client side of RFC 6455, as much as the DevTools protocol uses (text frames)."""

    def __init__(self, url: str, timeout: float) -> None:
        assert url.startswith("ws://"), url
        hostport, _, path = url[len("ws://"):].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise BrowserError("the DevTools websocket closed during the handshake")
            head += chunk
        status, _, self.buffer = head.partition(b"\r\n\r\n")
        if b" 101 " not in status.split(b"\r\n")[0]:
            raise BrowserError(f"websocket handshake refused: {status.splitlines()[0]!r}")

    def send(self, text: str) -> None:
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        head = struct.pack("!BB", 0x81, 0x80 | n) if n < 126 else (
            struct.pack("!BBH", 0x81, 0x80 | 126, n) if n < 65536 else struct.pack("!BBQ", 0x81, 0x80 | 127, n))
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BrowserError("the DevTools websocket closed")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def receive(self) -> str:
        message = b""
        while True:
            b0, b1 = self._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise BrowserError("the DevTools websocket was closed by Chromium")
            if opcode == 0x9:  # ping: answer, keep reading
                continue
            message += payload
            if b0 & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Page:
    """``with Page(path) as page:`` — ``path`` loaded in a fresh headless Chromium."""

    def __init__(self, path: Path, profile: Path, width: int = 1200, height: int = 1600) -> None:
        self.url = path.resolve().as_uri()
        self.profile, self.size = profile, (width, height)
        self.problems: list[str] = []
        self.requested: list[str] = []
        self._next = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._ws: WebSocket | None = None

    def __enter__(self) -> Page:
        assert CHROMIUM is not None
        self.profile.mkdir(parents=True, exist_ok=True)
        # its log goes to a file, not a pipe nobody reads while it runs (which could fill)
        with open(self.profile.parent / f"{self.profile.name}.log", "wb") as log:
            self._proc = subprocess.Popen(
                [CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                 f"--window-size={self.size[0]},{self.size[1]}", "about:blank"],
                stdout=subprocess.DEVNULL, stderr=log)
        try:
            self._open()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ws is not None:
            self._ws.close()
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()

    def _alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            log = (self.profile.parent / f"{self.profile.name}.log").read_text(errors="replace")
            raise BrowserError(f"chromium exited ({self._proc.returncode}): {log[-500:]}")

    def _port(self) -> int:
        """Chromium writes its DevTools port to the profile once it listens."""
        marker = self.profile / "DevToolsActivePort"

        def port() -> int | None:
            text = marker.read_text() if marker.exists() else ""
            return int(text.split("\n")[0]) if "\n" in text else None

        return wait_until(port, timeout=DEADLINE_S, interval=0.05, alive=self._alive,
                          what="chromium to listen for DevTools")

    def _open(self) -> None:
        port = self._port()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/json/new?about:blank", method="PUT")
        with urllib.request.urlopen(request, timeout=DEADLINE_S) as reply:
            target = json.load(reply)
        self._ws = WebSocket(target["webSocketDebuggerUrl"], timeout=DEADLINE_S)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        self.call("Page.navigate", url=self.url)
        self._until("Page.loadEventFired")
        self.evaluate("document.readyState")  # every event of the load arrives before this

    def _event(self, message: dict[str, Any]) -> None:
        method, params = message.get("method"), message.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "warning", "assert"):
            args = " ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", []))
            self.problems.append(f"console.{params['type']}: {args}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            self.problems.append(f"exception: {details.get('exception', {}).get('description') or details.get('text')}")
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") in ("error", "warning"):
            entry = params["entry"]
            self.problems.append(f"log {entry['level']}: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Network.requestWillBeSent":
            self.requested.append(params["request"]["url"])
        elif method == "Network.loadingFailed":
            self.problems.append(f"load failed: {params.get('errorText')}")

    def _receive(self) -> dict[str, Any]:
        assert self._ws is not None
        message = json.loads(self._ws.receive())
        if "method" in message:
            self._event(message)
        return message

    def _until(self, method: str) -> dict[str, Any]:
        while True:  # bounded: the socket's timeout is the deadline of each read
            message = self._receive()
            if message.get("method") == method:
                return message

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        assert self._ws is not None
        self._next += 1
        ident = self._next
        self._ws.send(json.dumps({"id": ident, "method": method, "params": params}))
        while True:
            message = self._receive()
            if message.get("id") == ident:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error']}")
                return message.get("result", {})

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able values)."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"evaluating {expression!r}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")
