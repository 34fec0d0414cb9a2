"""pybin: OpenSIPS 1.10's Binary Internal Interface (BIN) in Python.

The codec (``wire``, ``dialog``) does no I/O; ``endpoint`` puts it on asyncio.
"""

from .dialog import (
    Command,
    DialogCreated,
    DialogDeleted,
    DialogUpdated,
    DlgFlag,
    DlgState,
    decode,
    decode_pairs,
    encode_pairs,
    make,
)
from .errors import (
    LocalProtocolError,
    MalformedPacket,
    PacketTooLarge,
    PybinError,
    RemoteProtocolError,
    TruncatedPacket,
)
from .wire import BUF_SIZE, ByteOrder, DropReason, Packet, PacketBuilder, PacketReader, PacketRejected, parse_header

__version__ = "0.1.0"

__all__ = [
    "BUF_SIZE",
    "ByteOrder",
    "Command",
    "DialogCreated",
    "DialogDeleted",
    "DialogUpdated",
    "DlgFlag",
    "DlgState",
    "DropReason",
    "LocalProtocolError",
    "MalformedPacket",
    "Packet",
    "PacketBuilder",
    "PacketReader",
    "PacketRejected",
    "PacketTooLarge",
    "PybinError",
    "RemoteProtocolError",
    "TruncatedPacket",
    "decode",
    "decode_pairs",
    "encode_pairs",
    "make",
    "parse_header",
]
