"""Shared fixtures: the real 1.10.5 capture that ships with the tests."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pybin.pcap import CapturedDatagram, read_datagrams

VECTORS = Path(__file__).parent / "corpus" / "vectors"

# The independent encoder lives with the live checks it serves (shipped in the wheel);
# the corpus tests import it too, also when no conformance module is collected.
_CONFORMANCE = str(Path(__file__).resolve().parent.parent / "harness" / "conformance")
if _CONFORMANCE not in sys.path:
    sys.path.append(_CONFORMANCE)
BASIC_CALLS = VECTORS / "opensips-1.10.5-basic-calls.pcap"


@pytest.fixture(scope="session")
def basic_calls() -> list[CapturedDatagram]:
    return list(read_datagrams(BASIC_CALLS))


@pytest.fixture(scope="session")
def basic_calls_path() -> Path:
    return BASIC_CALLS
