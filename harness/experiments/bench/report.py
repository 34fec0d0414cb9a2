"""The bench's results: one `Config` per backend x bin_children x feed, a table and JSON.

Every figure carries the load average it was measured under, because the machine
is shared and the figures move with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from harness.experiments.bench.probe import Step


@dataclass
class Memory:
    dialogs: int
    used_before: int
    used_after: int
    free_after: int
    load: float

    @property
    def per_dialog(self) -> float:
        return (self.used_after - self.used_before) / self.dialogs if self.dialogs else 0.0

    def as_dict(self) -> dict[str, object]:
        return {"dialogs": self.dialogs, "used_before": self.used_before, "used_after": self.used_after,
                "free_after": self.free_after, "bytes_per_dialog": round(self.per_dialog), "load": self.load}


@dataclass
class Config:
    """One backend x bin_children x feed: its steps and what they say."""

    backend: str
    bin_children: int
    feed: str  # "pybin" or "sip"
    #: what the rates count: BIN packets/s (pybin feed) or SIP calls/s (sip feed, ~3 packets each)
    unit: str = "pkt/s"
    steps: list[Step] = field(default_factory=list)
    capacity: float | None = None
    first_loss: float | None = None
    memory: Memory | None = None
    rcvbuf: int | None = None
    error: str | None = None
    restarts: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"backend": self.backend, "bin_children": self.bin_children, "feed": self.feed, "unit": self.unit,
                "capacity": self.capacity, "first_loss": self.first_loss,
                "rcvbuf_bytes": self.rcvbuf, "warmup_restarts": self.restarts,
                "memory": self.memory.as_dict() if self.memory else None, "error": self.error,
                "steps": [s.as_dict() for s in self.steps]}


def rcvbuf_from_log(log: str) -> int | None:
    """The BIN socket's SO_RCVBUF as OpenSIPS logged it (``using rcv buffer of N kb``, the last one)."""
    sizes = [int(line.rsplit("of", 1)[1].split()[0]) for line in log.splitlines()
             if "using rcv buffer of" in line]
    return sizes[-1] * 1024 if sizes else None


@dataclass
class Report:
    configs: list[Config]
    load_start: float
    load_end: float
    #: pybin's own BinEndpoint figure, for comparison (None when not measured)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"load_start": self.load_start, "load_end": self.load_end,
                           "configs": [c.as_dict() for c in self.configs], "notes": self.notes})

    def table(self) -> str:
        head = (f"{'backend':<8} {'feed':<6} {'bin_ch':>6} {'zero-loss rate':>16} {'first loss':>11} {'unit':<7} "
                f"{'rcvbuf KB':>9} {'shm B/dlg':>9}  failure")
        lines = [head, "-" * len(head)]
        for c in self.configs:
            fail = c.error or next((f"{s.asked:,.0f}/s: {s.errors[0]}" for s in c.steps if s.errors), "")
            lines.append(
                f"{c.backend:<8} {c.feed:<6} {c.bin_children:>6} "
                f"{_n(c.capacity):>16} {_n(c.first_loss):>11} {c.unit:<7} "
                f"{_n(c.rcvbuf / 1024 if c.rcvbuf else None):>9} "
                f"{_n(c.memory.per_dialog if c.memory else None):>9}  {fail[:90]}")
        lines.append(f"load average {self.load_start} at start, {self.load_end} at end")
        lines += self.notes
        return "\n".join(lines)


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _n(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"
