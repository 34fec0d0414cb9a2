"""Errors that say whose fault it was.

`LocalProtocolError`: the caller asked for something the 1.10 wire cannot carry (a
packet over 65535 bytes, an integer out of range). `RemoteProtocolError`: the bytes
we were given are not a valid packet. Any other exception escaping a decoder is a bug.
"""

from __future__ import annotations


class PybinError(Exception):
    """Base of every error pybin raises on purpose."""


class LocalProtocolError(PybinError, ValueError):
    """The caller asked for something the protocol cannot express."""


class PacketTooLarge(LocalProtocolError):
    """A push would take the packet past BUF_SIZE (65535 bytes), as bin_push_* refuses."""


class RemoteProtocolError(PybinError, ValueError):
    """The peer's bytes are wrong; `offset` is where reading stopped, when known."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        super().__init__(message)
        self.offset = offset


class TruncatedPacket(RemoteProtocolError):
    """A field runs past the end of the datagram (bin_pop_* would fail)."""


class MalformedPacket(RemoteProtocolError):
    """The datagram is complete but its content breaks a rule (marker, checksum, …)."""
