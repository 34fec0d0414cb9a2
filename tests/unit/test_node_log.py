"""harness.instruments.node_log: one parser for OpenSIPS log records, on one- and two-digit days."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from harness.instruments import node_log
from harness.instruments.node_log import LogRecord, parse_line, records

# dp_time(): ctime_r() minus weekday and year, so day 1 is " 1" (space-padded)
DEC_1 = "Dec  1 23:11:14 [27221] ERROR:core:bin_receive_loop: recvfrom: [22] Invalid argument\n"
DEC_11 = "Dec 11 23:11:14 [27221] ERROR:core:bin_receive_loop: recvfrom: [22] Invalid argument\n"


@pytest.mark.parametrize("line", [DEC_1, DEC_11])
def test_a_record_is_read_the_same_on_one_and_two_digit_days(line: str) -> None:
    rec = parse_line(line)
    assert rec is not None
    assert (rec.pid, rec.level, rec.module, rec.function) == (27221, "ERROR", "core", "bin_receive_loop")
    assert rec.text == "recvfrom: [22] Invalid argument"
    assert rec.message == "ERROR:core:bin_receive_loop: recvfrom: [22] Invalid argument"
    assert rec.line == "[27221] ERROR:core:bin_receive_loop: recvfrom: [22] Invalid argument"
    assert rec.full == line.rstrip("\n")
    assert rec.stamp == line[:15]


def test_every_level_and_the_module_and_function_of_each_release_format() -> None:
    # 1.10.x, 1.11.x and 2.1.x share DP_PREFIX "%s [%d] " + LEVEL: + MOD_NAME ":%s: "
    text = ("Jan  2 03:04:05 [1] ALERT:core:a: x\n"
            "Jan  2 03:04:05 [2] CRITICAL:core:yyerror: parse error in config file /c, line 3\n"
            "Jan  2 03:04:05 [3] WARNING:dialog:b: y\n"
            "Jan  2 03:04:05 [4] NOTICE:core:main: version: opensips 2.1.5 (x86_64/linux)\n"
            "Jan  2 03:04:05 [5] INFO:usrloc:ul_init: z\n"
            "Jan  2 03:04:05 [6] DBG:proto_udp:udp_read_req: w\n")
    recs = records(text)
    assert [r.level for r in recs] == ["ALERT", "CRITICAL", "WARNING", "NOTICE", "INFO", "DBG"]
    assert [r.module for r in recs] == ["core", "core", "dialog", "core", "usrloc", "proto_udp"]
    assert [r.is_error for r in recs] == [True, True, False, False, False, False]
    assert [r.pid for r in node_log.errors(text)] == [1, 2]


def test_records_sharing_a_line_and_text_that_is_no_record() -> None:
    # 1.10's bin_pop_int logs without a newline; the harness writes its own banners
    text = ("=== harness: start #1 of backup at Dec  6 16:05:33 ===\n"
            "Dec  6 16:05:34 [9] ERROR:core:bin_pop_int: Receive binary packet buffer overflow"
            "Dec  6 16:05:34 [9] ERROR:dialog:receive_binary_packet: Failed to process a binary packet!\n"
            "Memory status (pkg):\n"
            "Dec  6 16:05:35 [9] INFO:core:x: an ERROR: inside a message is text\n")
    recs = records(text)
    assert [r.message for r in recs] == [
        "ERROR:core:bin_pop_int: Receive binary packet buffer overflow",
        "ERROR:dialog:receive_binary_packet: Failed to process a binary packet!\nMemory status (pkg):",
        "INFO:core:x: an ERROR: inside a message is text"]
    assert parse_line("Memory status (pkg):") is None
    assert parse_line("  Dec  6 16:05:34 [9] ERROR:core:x: y") is None


def test_a_record_without_date_or_origin() -> None:
    (rec,) = records("[2] ERROR:dialog:dlg_replicated_create: no shm\n")
    assert rec.stamp is None and rec.when(0) is None and rec.full == rec.line
    (bare,) = records("Dec  6 16:05:34 [3] INFO:some text without an origin\n")
    assert (bare.module, bare.function, bare.text) == ("", "", "some text without an origin")
    assert bare.message == "INFO:some text without an origin"


def test_impossible_dates_are_not_records() -> None:
    assert parse_line("Dec 32 16:05:34 [3] INFO:core:x: y") is None
    assert parse_line("Dez  6 16:05:34 [3] INFO:core:x: y") is None
    assert parse_line("Dec 06 16:05:34 [3] INFO:core:x: y") is None  # ctime never zero-pads
    # a bad date is not a record head: the rest reads as a record without one
    (rec,) = records("Dec 32 16:05:34 [3] INFO:core:x: y")
    assert rec.stamp is None and rec.text == "y"


@pytest.mark.parametrize("reference, stamp, expected", [
    # the same day
    (datetime(2026, 12, 1, 23, 12, tzinfo=timezone.utc), "Dec  1 23:11:14", datetime(2026, 12, 1, 23, 11, 14)),
    # a run that crosses midnight into the 2nd of the month
    (datetime(2026, 12, 2, 0, 0, 5, tzinfo=timezone.utc), "Dec  1 23:59:59", datetime(2026, 12, 1, 23, 59, 59)),
    # ... and New Year's Eve: the record is last year's
    (datetime(2027, 1, 1, 0, 0, 5, tzinfo=timezone.utc), "Dec 31 23:59:58", datetime(2026, 12, 31, 23, 59, 58)),
    # a reference read just before midnight, a record written just after
    (datetime(2026, 12, 31, 23, 59, 59, tzinfo=timezone.utc), "Jan  1 00:00:01", datetime(2027, 1, 1, 0, 0, 1)),
    # 29 February exists only in the leap year
    (datetime(2028, 3, 1, tzinfo=timezone.utc), "Feb 29 12:00:00", datetime(2028, 2, 29, 12)),
])
def test_when_picks_the_year_nearest_the_reference(reference: datetime, stamp: str, expected: datetime) -> None:
    rec = LogRecord(stamp, 1, "INFO", "core", "f", "t")
    assert rec.when(reference.timestamp()) == expected.replace(tzinfo=timezone.utc).timestamp()


def test_when_reads_the_stamp_in_the_node_zone() -> None:
    east = timezone(timedelta(hours=2))
    rec = LogRecord("Dec  1 01:00:00", 1, "INFO", "core", "f", "t")
    ref = datetime(2026, 12, 1, tzinfo=timezone.utc).timestamp()
    assert rec.when(ref, east) == datetime(2026, 11, 30, 23, 0, tzinfo=timezone.utc).timestamp()


# -- recorded logs of real nodes ------------------------------------------------------------
# tests/unit/data/node_logs/<release>-<role>.log: what real 1.10.5 and 1.11.11 nodes wrote
# (harness banners included) through a warm-up and two calls, recorded on 6 December, a
# one-digit day. Rewritten to the 16th they must read the same: the other kind of day.

LOGS = sorted((Path(__file__).parent / "data" / "node_logs").glob("*.log"))


def _as_day(text: str, day: int) -> str:
    return re.sub(r"\b(Dec) ( \d|\d\d) (\d\d:\d\d:\d\d)", lambda m: f"{m[1]} {day:2d} {m[3]}", text)


@pytest.mark.parametrize("path", LOGS, ids=[p.stem for p in LOGS])
def test_a_recorded_log_reads_the_same_on_a_two_digit_day(path: Path) -> None:
    text = path.read_text()
    one, two = records(text), records(_as_day(text, 16))
    assert len(one) >= 15 and all(r.stamp and r.stamp.startswith("Dec  6 ") for r in one)
    assert [(r.pid, r.message) for r in one] == [(r.pid, r.message) for r in two]
    assert all(r.stamp and r.stamp.startswith("Dec 16 ") for r in two)
    # every line that starts like a record is one record; nothing else is
    heads = [ln for ln in text.splitlines() if re.match(r"\w{3} [ \d]\d \d\d:\d\d:\d\d \[\d+\] ", ln)]
    assert len(heads) == len(one)
    release = path.stem.split("-")[0]
    notice = [r for r in one if r.level == "NOTICE" and r.function == "main" and "version:" in r.text]
    assert notice and f"opensips {release}-notls" in notice[0].text


def test_the_recorded_1_10_5_death_is_found_by_level_not_by_splitting() -> None:
    (primary,) = [p for p in LOGS if p.name == "1.10.5-primary.log"]
    errs = node_log.errors(_as_day(primary.read_text(), 1))
    assert [r.message for r in errs] == ["ERROR:core:bin_receive_loop: recvfrom: [22] Invalid argument"]
    assert errs[0].stamp.startswith("Dec  1 ")
