"""``pybin relay``: a UDP relay that forwards BIN datagrams with seeded, logged faults.

Put it between a primary and its backup (1.x backups accept a packet from any sender
whose checksum is right) and the replication link loses, reorders, duplicates, delays,
corrupts or cuts packets, deterministically for a seed, with a log from which exactly
what reached the backup can be rebuilt.

- ``impairment`` — ``Impairment``, the faults as one frozen value, and its text form.
- ``faults`` — the decisions (the determinism rule) and the held queue; no I/O.
- ``log`` — the JSON-lines log: ``read_relay_log``, ``delivered``.
- ``forwarder`` — ``Relay``, the asyncio layer.
- ``replay`` — what a backup behind the relay holds: the log replayed into a ``Replica``.
"""

from .faults import Arrival, Impairer, PacketInfo, RelayCounters, draws, inspect
from .forwarder import Relay, RelayError
from .impairment import DEFAULT, Impairment, ImpairmentError
from .log import RelayLog, RelayLogError, RelayRecord, Sent, delivered, read_relay_log
from .replay import PacketFate, Replay, carries, replay

__all__ = [
    "Arrival",
    "DEFAULT",
    "Impairer",
    "Impairment",
    "ImpairmentError",
    "PacketFate",
    "PacketInfo",
    "Relay",
    "RelayCounters",
    "RelayError",
    "RelayLog",
    "RelayLogError",
    "RelayRecord",
    "Replay",
    "Sent",
    "carries",
    "delivered",
    "draws",
    "inspect",
    "read_relay_log",
    "replay",
]
