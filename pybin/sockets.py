"""A node's listening sockets as OpenSIPS 1.x names them (``proto:host:port``).

Both backups' rules need them: a replicated dialog's or contact's socket must be one
the node listens on (``fetch_socket_info`` → ``grep_sock_info``), or the packet is
refused. `ListenSocket` parses a socket string the way ``parse_phostport`` does and
matches it the way ``grep_sock_info`` does, for the dialog replica and the registrar.
"""

from __future__ import annotations

import ipaddress
from typing import NamedTuple


class ListenSocket(NamedTuple):
    """A ``proto:host:port`` socket string, parsed like parse_phostport (port 0 = any)."""

    proto: str
    host: str
    port: int

    @classmethod
    def parse(cls, text: str | bytes) -> ListenSocket | None:
        """None where 1.10's parse_phostport would fail (fetch_socket_info → NULL)."""
        if isinstance(text, bytes):
            try:
                text = text.decode("ascii")
            except UnicodeDecodeError:
                return None
        if not text or text[0] == "\0":
            return None
        proto = "udp"
        head, sep, rest = text.partition(":")
        if sep and head.lower() in _PROTOS:
            proto, text = head.lower(), rest
        port = 0
        if text.startswith("["):
            host, bracket, tail = text[1:].partition("]")
            if not bracket:
                return None
            if tail:
                if not tail.startswith(":") or not tail[1:].isdigit():
                    return None
                port = int(tail[1:])
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
            if not port_text.isdigit():
                return None
            port = int(port_text)
        elif ":" in text:
            host = text  # a bare IPv6 address
        else:
            host = text
        if not host or port > 0xFFFF:
            return None
        return cls(proto, host, port)

    def serves(self, wanted: ListenSocket) -> bool:
        """grep_sock_info(): same proto, port 0 matches any, host by name or address."""
        if self.proto != wanted.proto:
            return False
        if wanted.port and wanted.port != self.port:
            return False
        if self.host.lower() == wanted.host.lower():
            return True
        try:
            return ipaddress.ip_address(self.host) == ipaddress.ip_address(wanted.host)
        except ValueError:
            return False


_PROTOS = frozenset({"udp", "tcp", "tls", "sctp", "ws", "wss", "bin", "hep"})
