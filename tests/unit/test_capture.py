"""Capture.start() against stand-in tcpdumps (no root, no network): a capture that
never starts must say so at once (issue 10, point 4), not surface later as a timeout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.instruments.capture import Capture, CaptureError


@dataclass(frozen=True)
class ScriptHost:
    """Runs ``script`` (sh) in place of tcpdump; the real command line is ignored."""

    script: str
    ifname: str = "nosuch0"

    def argv(self, command: list[str]) -> list[str]:
        return ["sh", "-c", self.script]


@dataclass(frozen=True)
class MissingHost:
    ifname: str = "eth0"

    def argv(self, command: list[str]) -> list[str]:
        return ["/nonexistent/bin/tcpdump", *command[1:]]


def test_tcpdump_that_exits_at_once_is_an_error(tmp_path: Path) -> None:
    """The fault: tcpdump on an interface that does not exist. Before, start() returned
    normally (the stderr reader's end also released the wait)."""
    host = ScriptHost("echo 'tcpdump: nosuch0: No such device exists' >&2; exit 1")
    capture = Capture(host, tmp_path / "c.pcap")
    with pytest.raises(CaptureError) as info:
        capture.start()
    assert str(info.value) == ("tcpdump exited (status 1) without listening: "
                               "tcpdump: nosuch0: No such device exists")


def test_helper_image_without_tcpdump_is_an_error(tmp_path: Path) -> None:
    """What `docker run IMAGE tcpdump` says when the image lacks tcpdump (exit 127)."""
    host = ScriptHost("echo 'exec: \"tcpdump\": executable file not found in $PATH' >&2; exit 127")
    with pytest.raises(CaptureError, match=r"^tcpdump exited \(status 127\) without listening: exec"):
        Capture(host, tmp_path / "c.pcap").start()


def test_tcpdump_missing_on_the_host_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="^cannot run /nonexistent/bin/tcpdump: install tcpdump$"):
        Capture(MissingHost(), tmp_path / "c.pcap").start()


def test_a_listening_tcpdump_starts_and_stops(tmp_path: Path) -> None:
    """The control: the same stand-in that does say "listening on" is a capture."""
    host = ScriptHost("echo 'listening on nosuch0, link-type EN10MB' >&2; exec sleep 60")
    capture = Capture(host, tmp_path / "c.pcap")
    capture.start()
    assert capture.stop() == tmp_path / "c.pcap"
    assert capture.output == "listening on nosuch0, link-type EN10MB"
