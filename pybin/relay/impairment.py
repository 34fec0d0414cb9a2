"""What a relay does to the datagrams it forwards: one frozen, validated value.

``Impairment`` is the whole description of a link's faults, and its text form
(``loss=0.02,reorder=0.01,reorder_by=3,delay=20±5,seed=7,only=created|deleted``) is
what ``harness ... --link`` and ``pybin relay``'s options write. ``describe()`` gives
the canonical text, and ``parse(describe())`` is the same value again, so a log that
records the text records everything needed to replay the run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from typing import Any
from urllib.parse import quote, unquote_to_bytes

from ..dialog import Command
from ..errors import PybinError

#: ``MS±JITTER``; ``+-`` and ``~`` are the same sign for keyboards without ``±``.
JITTER_SIGNS = ("±", "+-", "~")
#: RFC 3261's ``word`` characters other than ``%``: a Call-ID made of them is written
#: as it is; any other byte (``%`` included) as ``%XX``.
_CALL_ID_SAFE = "-.!*_+`'~()<>:\\\"/[]?{}@"
COMMAND_NAMES = {Command.CREATED: "created", Command.UPDATED: "updated", Command.DELETED: "deleted"}
_COMMANDS = {name: command for command, name in COMMAND_NAMES.items()}
PROBABILITIES = ("loss", "duplicate", "reorder", "corrupt", "truncate")


class ImpairmentError(PybinError, ValueError):
    """An impairment that cannot be: a probability outside [0, 1], unknown text, ..."""


def _number(value: str, key: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise ImpairmentError(f"{key}={value!r}: not a number") from None
    return number


def _integer(value: str, key: str) -> int:
    try:
        return int(value, 10)
    except ValueError:
        raise ImpairmentError(f"{key}={value!r}: not a whole number") from None


def _show(number: float) -> str:
    """The shortest text that reads back as the same float: ``20`` rather than ``20.0``."""
    text = repr(float(number))
    return text[:-2] if text.endswith(".0") else text


def parse_delay(text: str) -> tuple[float, float]:
    """``"20"``, ``"20±5"``, ``"20+-5"`` or ``"20~5"`` → (delay ms, jitter ms)."""
    for sign in JITTER_SIGNS:
        delay, found, jitter = text.partition(sign)
        if found:
            return _number(delay, "delay"), _number(jitter, "delay's jitter")
    return _number(text, "delay"), 0.0


def parse_commands(text: str | Iterable[Any]) -> frozenset[Command]:
    """``"created|deleted"`` (or names, numbers, Commands) → the set of dialog commands."""
    items: Iterable[Any] = text.split("|") if isinstance(text, str) else text
    found = set()
    for item in items:
        if isinstance(item, bool):
            raise ImpairmentError(f"only: {item!r} is not a dialog command")
        if isinstance(item, str):
            name = item.strip().lower()
            if name not in _COMMANDS:
                raise ImpairmentError(f"only: {item!r} is not a dialog command (created, updated, deleted)")
            found.add(_COMMANDS[name])
            continue
        try:
            found.add(Command(item))
        except ValueError:
            raise ImpairmentError(f"only: {item!r} is not a dialog command (1, 2 or 3)") from None
    return frozenset(found)


def parse_calls(text: str) -> frozenset[bytes]:
    """``"a@h|b@h"`` → Call-IDs; ``%XX`` stands for any byte (``%25`` for ``%``)."""
    return frozenset(unquote_to_bytes(item) for item in text.split("|"))


def _call_ids(values: Iterable[Any]) -> frozenset[bytes]:
    out = set()
    for value in values:
        if isinstance(value, str):
            value = value.encode("utf-8", "surrogateescape")
        if not isinstance(value, (bytes, bytearray)):
            raise ImpairmentError(f"calls: a Call-ID must be bytes or text, got {value!r}")
        out.add(bytes(value))
    return frozenset(out)


@dataclass(frozen=True)
class Impairment:
    """The faults of one link. Probabilities are per datagram; times in milliseconds.

    ``only`` / ``calls`` select the datagrams the faults may touch (None: every
    datagram); ``seed`` fixes every decision (see ``pybin.relay.faults``).
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    #: a reordered datagram leaves after this many later datagrams have arrived ...
    reorder_by: int = 3
    #: ... or after this many milliseconds, whichever comes first
    reorder_timeout: float = 1000.0
    delay: float = 0.0
    jitter: float = 0.0
    corrupt: float = 0.0
    truncate: float = 0.0
    seed: int = 0
    only: frozenset[Command] | None = None
    calls: frozenset[bytes] | None = None

    def __post_init__(self) -> None:
        for name in PROBABILITIES:
            value = self._real(name)
            if not 0.0 <= value <= 1.0:
                raise ImpairmentError(f"{name}={_show(value)}: a probability is between 0 and 1")
        for name in ("delay", "jitter", "reorder_timeout"):
            if self._real(name) < 0:
                raise ImpairmentError(f"{name}={_show(getattr(self, name))}: cannot be negative")
        if self.reorder_timeout == 0:
            raise ImpairmentError("reorder_timeout=0: a reordered datagram needs some time to be overtaken")
        if self.jitter > self.delay:
            raise ImpairmentError(
                f"delay={_show(self.delay)}±{_show(self.jitter)}: the jitter is larger than the delay "
                "(a datagram cannot leave before it arrived)"
            )
        for name in ("reorder_by", "seed"):
            value = getattr(self, name)
            if type(value) is not int:
                raise ImpairmentError(f"{name}={value!r}: not a whole number")
        if self.reorder_by < 1:
            raise ImpairmentError(f"reorder_by={self.reorder_by}: at least 1 later datagram must pass")
        if self.only is not None:
            only = parse_commands(self.only)
            if not only:
                raise ImpairmentError("only: name at least one of created, updated, deleted")
            object.__setattr__(self, "only", only)
        if self.calls is not None:
            if isinstance(self.calls, (str, bytes)):
                raise ImpairmentError("calls: a set of Call-IDs, not one string")
            calls = _call_ids(self.calls)
            if not calls:
                raise ImpairmentError("calls: name at least one Call-ID")
            if b"" in calls:
                raise ImpairmentError("calls: an empty Call-ID")
            object.__setattr__(self, "calls", calls)

    def _real(self, name: str) -> float:
        value = getattr(self, name)
        if type(value) is bool or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ImpairmentError(f"{name}={value!r}: not a finite number")
        object.__setattr__(self, name, float(value))
        return float(value)

    # -- text ----------------------------------------------------------------------------

    @classmethod
    def parse(cls, text: str) -> Impairment:
        """``"loss=0.02,delay=20±5,seed=7,only=created|deleted"`` → Impairment.

        Keys are the field names; ``delay`` takes ``MS[±JITTER]``; ``only`` and
        ``calls`` take ``|``-separated lists. An empty text is no impairment.
        """
        values: dict[str, Any] = {}
        for item in text.split(","):
            item = item.strip()
            if not item and not text.strip():
                continue
            key, sep, value = item.partition("=")
            key, value = key.strip(), value.strip()
            if not sep or not key:
                raise ImpairmentError(f"{item!r}: not KEY=VALUE (in {text!r})")
            if key not in _PARSERS:
                raise ImpairmentError(f"unknown key {key!r} (one of {', '.join(_PARSERS)})")
            if key in values:
                raise ImpairmentError(f"{key} given twice in {text!r}")
            if key == "delay":
                values["delay"], values["jitter"] = parse_delay(value)
            else:
                values[key] = _PARSERS[key](value, key)
        return cls(**values)

    def describe(self) -> str:
        """The canonical text: fields that differ from the default, in a fixed order,
        and always the seed. ``Impairment.parse(x.describe()) == x``."""
        parts = []
        for name in PROBABILITIES[:3]:
            if getattr(self, name):
                parts.append(f"{name}={_show(getattr(self, name))}")
        if self.reorder_by != DEFAULT.reorder_by:
            parts.append(f"reorder_by={self.reorder_by}")
        if self.reorder_timeout != DEFAULT.reorder_timeout:
            parts.append(f"reorder_timeout={_show(self.reorder_timeout)}")
        if self.delay:
            jitter = f"±{_show(self.jitter)}" if self.jitter else ""
            parts.append(f"delay={_show(self.delay)}{jitter}")
        for name in PROBABILITIES[3:]:
            if getattr(self, name):
                parts.append(f"{name}={_show(getattr(self, name))}")
        parts.append(f"seed={self.seed}")
        if self.only is not None:
            parts.append("only=" + "|".join(COMMAND_NAMES[c] for c in sorted(self.only)))
        if self.calls is not None:
            parts.append("calls=" + "|".join(quote(c, safe=_CALL_ID_SAFE) for c in sorted(self.calls)))
        return ",".join(parts)

    def __str__(self) -> str:
        return self.describe()

    # -- what the relay needs to know ----------------------------------------------------

    @property
    def faults(self) -> bool:
        """True when some datagram may be touched (a relay without faults only forwards)."""
        return any(getattr(self, name) for name in PROBABILITIES) or self.delay > 0

    @property
    def selective(self) -> bool:
        """True when the faults apply only to chosen dialog packets."""
        return self.only is not None or self.calls is not None

    def replace(self, **changes: Any) -> Impairment:
        return replace(self, **changes)


#: no fault at all: the relay only forwards
DEFAULT = Impairment()

#: text key → reader of its value; the jitter is written inside ``delay=MS±JITTER``.
_PARSERS: dict[str, Any] = {
    "loss": _number,
    "duplicate": _number,
    "reorder": _number,
    "reorder_by": _integer,
    "reorder_timeout": _number,
    "delay": parse_delay,
    "corrupt": _number,
    "truncate": _number,
    "seed": _integer,
    "only": lambda value, key: parse_commands(value),
    "calls": lambda value, key: parse_calls(value),
}
assert set(_PARSERS) | {"jitter"} == {f.name for f in fields(Impairment)}
