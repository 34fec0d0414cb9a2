"""The one parser of what an OpenSIPS node writes to its log.

Every 1.10.x, 1.11.x and 2.1.x release logs to stderr (``log_stderror=yes``) through
``dprint.h``'s ``MY_DPRINT``: ``DP_PREFIX`` ``"%s [%d] "`` (``dp_time()``, the pid),
then ``LEVEL:`` (``DP_ERR_TEXT`` …), then ``LOG_PREFIX`` ``MOD_NAME ":%s: "`` (the C
function), then the message. ``dp_time()`` is ``ctime_r()`` with the weekday and the
year cut off, so the stamp is ``Mmm DD HH:MM:SS`` in the C locale (OpenSIPS never calls
``setlocale``) and the day of the month is padded with a **space**, not a zero:
``Dec  1 23:11:14``. Splitting a line on single spaces is therefore wrong on the first
nine days of every month; this module reads the stamp as one token.

A record starts at its head, not at a newline: some messages (1.10's ``bin_pop_int``)
have no trailing newline, so several records can share a line. Text that is not a
record (the harness's own start banners, ``LM_GEN1`` memory dumps, a shell's noise)
is skipped.

The stamp carries no year and is the node's local time. The harness runs every node
with ``TZ=UTC`` (`NODE_TZ`), so a node's stamps mean the same on every host and both
backends; `LogRecord.when` resolves one against a reference time, choosing the year
that puts it nearest, so a run that crosses midnight or New Year's Eve still orders its
records. `stamp` writes a time the way a node does, for the harness's own lines.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo

#: the levels DP_*_TEXT names, most severe first
LEVELS = ("ALERT", "CRITICAL", "ERROR", "WARNING", "NOTICE", "INFO", "DBG")
#: the levels the harness reports as a node's errors
ERROR_LEVELS = frozenset({"ALERT", "CRITICAL", "ERROR"})
#: the time zone nodes run in (their environment's TZ), so their stamps are UTC
NODE_TZ = "UTC"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

_HEAD = re.compile(
    r"(?:(?P<month>" + "|".join(MONTHS) + r") (?P<day> [1-9]|[12]\d|3[01]) "
    r"(?P<clock>[0-2]\d:[0-5]\d:[0-6]\d) )?"
    r"\[(?P<pid>\d+)\] (?P<level>" + "|".join(LEVELS) + r"):")
#: the harness's own line between two starts of a node (backends' start banner): it ends
#: the record before it, and is no record itself
_BANNER = re.compile(r"^=== harness: [^\n]* ===$", re.M)
_ORIGIN = re.compile(r"(?P<module>[\w.-]+):(?P<function>\w*): ")


@dataclass(frozen=True)
class LogRecord:
    """One log record: ``Dec  1 23:11:14 [27221] ERROR:core:bin_receive_loop: recvfrom: …``.

    ``stamp`` is the date and time as written (None when a record came without one);
    ``module`` and ``function`` are empty for a message logged without ``LOG_PREFIX``.
    ``text`` is the message without its trailing newline.
    """

    stamp: str | None
    pid: int
    level: str
    module: str
    function: str
    text: str

    @property
    def message(self) -> str:
        """``ERROR:core:bin_receive_loop: recvfrom: …``: the record without date and pid."""
        origin = f"{self.module}:{self.function}: " if self.module else ""
        return f"{self.level}:{origin}{self.text}"

    @property
    def line(self) -> str:
        """``[pid] LEVEL:module:function: text``: stable across days, comparable in tests."""
        return f"[{self.pid}] {self.message}"

    @property
    def full(self) -> str:
        """The record as the node wrote it (date, pid, level, origin, text)."""
        return f"{self.stamp} {self.line}" if self.stamp else self.line

    @property
    def is_error(self) -> bool:
        return self.level in ERROR_LEVELS

    def when(self, reference: float, tz: tzinfo = timezone.utc) -> float | None:
        """The record's unix time, its stamp read in ``tz`` (the node's zone) in the year
        that puts it nearest to ``reference`` (unix seconds); None without a stamp."""
        if self.stamp is None:
            return None
        month, day, clock = self.stamp.split()
        hh, mm, ss = (int(x) for x in clock.split(":"))
        ref = datetime.fromtimestamp(reference, tz)
        best: datetime | None = None
        for year in (ref.year - 1, ref.year, ref.year + 1):
            try:
                at = datetime(year, MONTHS.index(month) + 1, int(day), hh, mm, min(ss, 59), tzinfo=tz)
            except ValueError:  # 29 February of a year without one
                continue
            if best is None or abs(at - ref) < abs(best - ref):
                best = at
        return None if best is None else (best + timedelta(seconds=ss - min(ss, 59))).timestamp()


def stamp(when: float) -> str:
    """``Dec  6 16:05:33``: ``when`` (unix seconds) as a node started by the harness
    writes it (UTC, space-padded day, C-locale month: no strftime, whose %b follows the
    locale)."""
    t = datetime.fromtimestamp(when, timezone.utc)
    return f"{MONTHS[t.month - 1]} {t.day:2d} {t:%H:%M:%S}"


def records(text: str) -> list[LogRecord]:
    """Every record of ``text`` (a node's log or part of one), in order."""
    return list(iter_records(text))


def iter_records(text: str) -> Iterator[LogRecord]:
    heads = list(_HEAD.finditer(text))
    banners = [b.start() for b in _BANNER.finditer(text)]
    for i, m in enumerate(heads):
        end = heads[i + 1].start() if i + 1 < len(heads) else len(text)
        end = min([b for b in banners if m.end() <= b < end] or [end])
        body = text[m.end():end]
        origin = _ORIGIN.match(body)
        module, function = (origin["module"], origin["function"]) if origin else ("", "")
        rest = body[origin.end():] if origin else body
        stamp = f"{m['month']} {m['day']} {m['clock']}" if m["month"] else None
        yield LogRecord(stamp, int(m["pid"]), m["level"], module, function, rest.rstrip("\r\n"))


def parse_line(line: str) -> LogRecord | None:
    """The record a single line starts with, or None when it starts with none."""
    m = _HEAD.match(line)
    if m is None:
        return None
    return next(iter_records(line[m.start():]))


def errors(text: str) -> list[LogRecord]:
    """The ALERT, CRITICAL and ERROR records of ``text``, in order."""
    return [r for r in iter_records(text) if r.is_error]


def messages(recs: Iterable[LogRecord]) -> list[str]:
    """Each record's `LogRecord.message` (no date, no pid), in order."""
    return [r.message for r in recs]
