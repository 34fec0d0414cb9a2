"""SIPp's files parsed into per-call results: messages, markers, errors, statistics.

Each SIPp run writes a message log (``-trace_msg``: every datagram sent and received,
retransmissions included, with a microsecond timestamp; SIPp runs with ``TZ=UTC``
because the stamps carry no zone), an event log (``-trace_logs``: ``<log>`` markers
such as ``END <call-id>``), an error log and its statistics CSV. Pure: these
functions read texts, so every rule is tested offline on real logs.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Iterable, NamedTuple

from harness.instruments.sip import SipMessage

_SEPARATOR = "-" * 47
_TIME_FMT = "%Y-%m-%d %H:%M:%S.%f"


class Response(NamedTuple):
    """A response received by this SIPp: to which request (CSeq), which code, when."""

    method: str
    code: int
    t: float
    cseq: int


class Request(NamedTuple):
    """A request this SIPp sent; ``retransmission`` when the same bytes went out before."""

    method: str
    cseq: int
    t: float
    retransmission: bool


@dataclass
class CallEvent:
    """A ``<log>`` marker written by a scenario: ``HELD``, ``RELEASED`` or ``END``."""

    t: float
    kind: str
    call_id: str  # SIPp's own call id: the part after '///' of a prefixed Call-ID


@dataclass
class CallResult:
    """Everything one SIPp side saw of one call."""

    call_id: str
    #: tag of the caller leg (From of the initial INVITE)
    from_tag: str | None
    #: tag of the callee leg (To of the responses to the initial INVITE)
    to_tag: str | None
    messages: list[SipMessage] = field(default_factory=list)
    #: event kind -> time (unix seconds) from the scenario's markers
    events: dict[str, float] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        """The scenario ran to its end for this call (its END marker was logged)."""
        return "END" in self.events

    @property
    def responses(self) -> list[Response]:
        """Responses received, in arrival order (retransmissions included)."""
        return [Response(m.method, m.code or 0, m.t, m.cseq[0])
                for m in self.messages if m.direction == "received" and m.is_response]

    @property
    def requests(self) -> list[Request]:
        """Requests sent, in order, each marked when it repeats an earlier datagram."""
        return self._requests("sent")

    @property
    def received_requests(self) -> list[Request]:
        """Requests received (a UAS's view), retransmissions marked."""
        return self._requests("received")

    def _requests(self, direction: str) -> list[Request]:
        seen: set[str] = set()
        out = []
        for m in self.messages:
            if m.direction == direction and not m.is_response:
                out.append(Request(m.method, m.cseq[0], m.t, m.text in seen))
                seen.add(m.text)
        return out

    def codes(self, method: str | None = None, cseq: int | None = None) -> list[int]:
        """Codes of the received responses, optionally for one method / CSeq number."""
        return [r.code for r in self.responses
                if (method is None or r.method == method) and (cseq is None or r.cseq == cseq)]

    def final_response(self, method: str, cseq: int | None = None) -> Response | None:
        """First final (>= 200) response received for a request, or None."""
        for r in self.responses:
            if r.method == method and r.code >= 200 and (cseq is None or r.cseq == cseq):
                return r
        return None

    def first_sent(self, method: str, cseq: int | None = None) -> float | None:
        """When a request first went out (its retransmissions are later)."""
        for r in self.requests:
            if r.method == method and (cseq is None or r.cseq == cseq):
                return r.t
        return None

    def retransmissions(self, method: str | None = None) -> int:
        """How many sent requests were retransmissions."""
        return sum(1 for r in self.requests if r.retransmission and (method is None or r.method == method))


@dataclass
class SippSummary:
    """One SIPp run, parsed: SIPp's own counters plus a `CallResult` per Call-ID."""

    role: str
    scenario: str
    exit_code: int | None
    #: SIPp's cumulative SuccessfulCall / FailedCall counters (statistics CSV)
    successful: int
    failed: int
    calls: list[CallResult]
    #: lines of SIPp's error log (unexpected messages, aborted calls, timeouts)
    errors: list[str] = field(default_factory=list)
    #: the last row of the statistics CSV, column -> value
    stats: dict[str, str] = field(default_factory=dict)

    def call(self, call_id: str) -> CallResult:
        """The call with this Call-ID (the full header value or SIPp's short id)."""
        for c in self.calls:
            if c.call_id == call_id or short_id(c.call_id) == call_id:
                return c
        raise KeyError(call_id)

    @property
    def completed(self) -> list[CallResult]:
        return [c for c in self.calls if c.completed]

    @property
    def incomplete(self) -> list[CallResult]:
        return [c for c in self.calls if not c.completed]


def short_id(call_id: str) -> str:
    """SIPp matches calls on the part after the first '///' of a Call-ID."""
    _, sep, rest = call_id.partition("///")
    return rest if sep else call_id


def _parse_time(stamp: str) -> float:
    return datetime.strptime(stamp, _TIME_FMT).replace(tzinfo=timezone.utc).timestamp()


_ENTRY_HEAD = re.compile(r"^(UDP|TCP|TLS|SCTP) (control )?message (sent|received)\b")


def parse_message_log(text: str) -> list[SipMessage]:
    """SIP messages of a ``-trace_msg`` log (SIPp run with TZ=UTC), in log order.

    Each entry is a 47-dash line with a timestamp, a line such as ``UDP message sent (N
    bytes):`` or ``UDP message received [N] bytes :``, a blank line and the message.
    Entries without a timestamp ("Unexpected ... message received", "Ignoring ...")
    repeat a message already logged and are skipped, as are 3PCC control messages.
    """
    out: list[SipMessage] = []
    text = text.replace("\r\n", "\n")
    chunks = re.split(rf"^{_SEPARATOR} ?(.*)\n", text, flags=re.M)
    # chunks: [before, stamp1, body1, stamp2, body2, ...]
    for i in range(1, len(chunks) - 1, 2):
        stamp, body = chunks[i].strip(), chunks[i + 1]
        if not stamp:
            continue
        head, _, msg = body.partition("\n\n")
        m = _ENTRY_HEAD.match(head)
        if not m or m.group(2):
            continue
        msg = msg.lstrip("\n")
        if not msg.strip():
            continue
        # keep the body to its Content-Length: SIPp may append notes after a message
        hdrs, sep, payload = msg.partition("\n\n")
        clen = re.search(r"^(?:Content-Length|l)\s*:\s*(\d+)", hdrs, flags=re.M | re.I)
        if clen and sep:
            payload = payload.replace("\n", "\r\n")[: int(clen.group(1))]
            wire = hdrs.replace("\n", "\r\n") + "\r\n\r\n" + payload
        else:
            wire = hdrs.rstrip("\n").replace("\n", "\r\n") + "\r\n\r\n"
        out.append(SipMessage(_parse_time(stamp), m.group(3), wire))
    return out


def parse_event_log(text: str) -> list[CallEvent]:
    """Markers of a ``-trace_logs`` log: ``<date> <time> <epoch> KIND <call-id>`` lines."""
    events = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 5:
            continue
        try:
            t = float(parts[2])
        except ValueError:
            continue
        events.append(CallEvent(t, parts[3], parts[4]))
    return events


_ERROR_STAMP = re.compile(r"\d{4}-\d\d-\d\d\t\d\d:\d\d:\d\d\.\d{6}\t\d+\.\d{6}: ")


def parse_error_log(text: str) -> list[str]:
    """Entries of a ``-trace_err`` log, one string each (``<epoch>: <what happened>``).

    SIPp writes entries without a newline between them, so they are split on the
    timestamp that starts each one; the zone-free date/time part is dropped.
    """
    starts = [m for m in _ERROR_STAMP.finditer(text)]
    out = []
    for i, m in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        epoch = m.group(0).split("\t")[2].rstrip(": ")
        out.append(f"{epoch}: {text[m.end():end].strip()}")
    return out


#: an entry about one call ("Automatic response mode for an unexpected ... for call: ID",
#: "Aborting call on unexpected message for Call-Id 'ID'"): SIPp is up and running calls
_CALL_ENTRY = re.compile(r"for call(?:-id)?\b", re.IGNORECASE)


def start_errors(entries: Iterable[str]) -> list[str]:
    """The entries of ``parse_error_log`` that mean SIPp could not start (cannot bind,
    bad scenario…), leaving out those about one call.

    Why: a node may send a call's first in-dialog request (a dialog-pinging OPTIONS, 44 ms
    after the INVITE on a 1.10.2 primary) before SIPp writes its first statistics row;
    SIPp answers it and logs an event, which is not a failure to start."""
    return [e for e in entries if not _CALL_ENTRY.search(e)]


def parse_stat_csv(text: str) -> dict[str, str]:
    """Last row of a ``-trace_stat`` CSV (';'-separated, header first) as a dict."""
    rows = [r for r in csv.reader(io.StringIO(text), delimiter=";") if r]
    if len(rows) < 2:
        return {}
    header, last = rows[0], rows[-1]
    return {k: v for k, v in zip(header, last) if k}


def build_calls(messages: Iterable[SipMessage], events: Iterable[CallEvent] = ()) -> list[CallResult]:
    """Group messages by Call-ID (first-seen order) and attach the markers."""
    calls: dict[str, CallResult] = {}
    for m in messages:
        cid = m.call_id
        if not cid:
            continue
        c = calls.get(cid)
        if c is None:
            c = calls[cid] = CallResult(cid, None, None)
        c.messages.append(m)
    for c in calls.values():
        invite = next((m for m in c.messages if not m.is_response and m.method == "INVITE"), None)
        if invite is not None:
            c.from_tag = invite.from_tag
            icseq = invite.cseq[0]
            tagged = [m for m in c.messages if m.is_response and m.cseq == (icseq, "INVITE") and m.to_tag]
            final = [m for m in tagged if (m.code or 0) >= 200]
            pick = final[0] if final else (tagged[0] if tagged else None)
            c.to_tag = pick.to_tag if pick else None
        elif c.messages:
            c.from_tag = c.messages[0].from_tag
            c.to_tag = c.messages[0].to_tag
    by_short = {short_id(cid): c for cid, c in calls.items()}
    for e in events:
        c = calls.get(e.call_id) or by_short.get(e.call_id)
        if c is None:  # a marker before any message (cannot happen with our scenarios)
            c = calls[e.call_id] = CallResult(e.call_id, None, None)
            by_short[e.call_id] = c
        c.events.setdefault(e.kind, e.t)
    return list(calls.values())


def summarize(role: str, scenario: str, exit_code: int | None, *, message_log: str, event_log: str,
              stat_csv: str, error_log: str = "") -> SippSummary:
    """Build a `SippSummary` from the texts of one run's files (used offline in tests)."""
    stats = parse_stat_csv(stat_csv)
    calls = build_calls(parse_message_log(message_log), parse_event_log(event_log))
    errors = parse_error_log(error_log)

    def num(key: str) -> int:
        try:
            return int(stats.get(key, "0") or 0)
        except ValueError:
            return 0

    return SippSummary(role, scenario, exit_code, num("SuccessfulCall(C)"), num("FailedCall(C)"),
                       calls, errors, stats)


# --------------------------------------------------------------------------- processes
