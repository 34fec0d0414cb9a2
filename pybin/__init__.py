"""pybin: OpenSIPS 1.x's Binary Internal Interface (BIN) in Python.

The codec (``wire``, ``dialog``, ``usrloc``) does no I/O; ``endpoint`` puts it on asyncio.
``decode`` returns a dialog or a usrloc message by the packet's module name; ``make``
builds dialog messages (``pybin.usrloc.make`` builds usrloc ones).
"""

from .dialog import (
    Command,
    DialogCreated,
    DialogDeleted,
    DialogUpdated,
    DlgFlag,
    DlgState,
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
from .payloads import Message, decode
from .usrloc import (
    ContactDeleted,
    ContactInserted,
    ContactUpdated,
    RawInt,
    RecordDeleted,
    RecordInserted,
    UlCommand,
)
from .wire import BUF_SIZE, ByteOrder, DropReason, Packet, PacketBuilder, PacketReader, PacketRejected, parse_header

__version__ = "0.1.0"

__all__ = [
    "BUF_SIZE",
    "ByteOrder",
    "Command",
    "ContactDeleted",
    "ContactInserted",
    "ContactUpdated",
    "DialogCreated",
    "DialogDeleted",
    "DialogUpdated",
    "DlgFlag",
    "DlgState",
    "DropReason",
    "LocalProtocolError",
    "MalformedPacket",
    "Message",
    "Packet",
    "PacketBuilder",
    "PacketReader",
    "PacketRejected",
    "PacketTooLarge",
    "PybinError",
    "RawInt",
    "RecordDeleted",
    "RecordInserted",
    "RemoteProtocolError",
    "TruncatedPacket",
    "UlCommand",
    "decode",
    "decode_pairs",
    "encode_pairs",
    "make",
    "parse_header",
]
