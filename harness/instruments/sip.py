"""One SIP message parser for the whole harness: SIPp's logs, captures, failover figures.

Why one: SIPp results, the capture ladder and the failover evidence each read
Call-ID, CSeq, tags and status codes; three parsers had drifted (different rules for
what counts as SIP). `SipMessage` reads headers (compact forms, folding, repeats) and
`sip_datagram` decides, by one start-line rule, whether a UDP payload is SIP.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: a SIP start line: a status line, or a request line (method, URI, version)
_START_LINE = re.compile(r"SIP/2\.0 \d{3}( |$)|[A-Za-z]+ \S+ SIP/2\.0$")


@dataclass(frozen=True)
class SipMessage:
    """One SIP message, with when and how it was seen."""

    #: unix seconds (SIPp's log stamp or the capture's)
    t: float
    #: "sent" | "received" (a SIPp side's view) or "wire" (a capture's)
    direction: str
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].rstrip("\r")

    @property
    def is_response(self) -> bool:
        return self.first_line.startswith("SIP/2.0 ")

    @property
    def code(self) -> int | None:
        if not self.is_response:
            return None
        parts = self.first_line.split(" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None

    @property
    def method(self) -> str:
        """The request's method; for a response, the method of its CSeq."""
        if self.is_response:
            return self.cseq[1]
        return self.first_line.split(" ", 1)[0]

    @property
    def cseq(self) -> tuple[int, str]:
        value = self.header("CSeq") or ""
        parts = value.split()
        if len(parts) != 2 or not parts[0].isdigit():
            return (-1, "")
        return (int(parts[0]), parts[1])

    @property
    def call_id(self) -> str:
        return self.header("Call-ID") or ""

    @property
    def from_tag(self) -> str | None:
        return _tag(self.header("From"))

    @property
    def to_tag(self) -> str | None:
        return _tag(self.header("To"))

    def header(self, name: str) -> str | None:
        """First value of a header (compact forms understood), without folding."""
        return _headers(self.text).get(_canonical(name), [None])[0]

    def headers(self, name: str) -> list[str]:
        """All values of a header, in order (one entry per header line)."""
        return list(_headers(self.text).get(_canonical(name), []))


_COMPACT = {"i": "call-id", "f": "from", "t": "to", "v": "via", "m": "contact", "l": "content-length",
            "c": "content-type", "k": "supported", "s": "subject", "e": "content-encoding"}


def _canonical(name: str) -> str:
    n = name.strip().lower()
    return _COMPACT.get(n, n)


_HEADER_CACHE: dict[str, dict[str, list[str]]] = {}


def _headers(text: str) -> dict[str, list[str]]:
    cached = _HEADER_CACHE.get(text)
    if cached is not None:
        return cached
    head = re.split(r"\r?\n\r?\n", text, maxsplit=1)[0]
    result: dict[str, list[str]] = {}
    last: str | None = None
    for line in head.splitlines()[1:]:
        if line[:1] in (" ", "\t") and last is not None:
            result[last][-1] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep:
            continue
        last = _canonical(name)
        result.setdefault(last, []).append(value.strip())
    if len(_HEADER_CACHE) > 100_000:
        _HEADER_CACHE.clear()
    _HEADER_CACHE[text] = result
    return result


def _tag(value: str | None) -> str | None:
    if not value:
        return None
    # the tag is a header parameter: after the closing '>' when the URI is bracketed
    params = value.rsplit(">", 1)[1] if ">" in value else value
    m = re.search(r";\s*tag=([^;\s,]+)", params)
    return m.group(1) if m else None


def is_start_line(line: str) -> bool:
    """True for a SIP status line or request line (the one rule for 'this is SIP')."""
    return _START_LINE.match(line.rstrip("\r")) is not None


def sip_datagram(data: bytes, t: float, direction: str = "wire") -> SipMessage | None:
    """A UDP payload as a SIP message, or None when it is not SIP (BIN, MI, SIPp keys)."""
    text = data.decode("utf-8", "replace")
    if not is_start_line(text.split("\n", 1)[0]):
        return None
    return SipMessage(t, direction, text)
