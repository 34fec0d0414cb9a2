"""Which backend can run, and the one-line reason when one cannot (offline)."""

from __future__ import annotations

import shutil

import pytest

from harness.backends import choose_backend
from harness.backends.local import backend as local_backend


@pytest.mark.parametrize("missing, reason", [
    ({"sipp"}, "local backend runs sipp on the host: not on PATH (Debian: tcpdump, sip-tester)"),
    ({"tcpdump", "sipp"}, "local backend runs tcpdump and sipp on the host: not on PATH "
                          "(Debian: tcpdump, sip-tester)"),
])
def test_local_backend_needs_its_host_tools(monkeypatch: pytest.MonkeyPatch, missing: set[str],
                                            reason: str) -> None:
    """The local backend runs SIPp and tcpdump on the host, so it cannot run without
    them: `auto` skips with this reason and `--opensips-backend local` fails with it,
    instead of each live test skipping (or timing out) on its own."""
    real = shutil.which
    monkeypatch.setattr(local_backend.os, "geteuid", lambda: 0)
    monkeypatch.setattr(local_backend.shutil, "which",
                        lambda name, *a, **k: None if name in missing else real(name, *a, **k) or f"/bin/{name}")
    assert local_backend.local_backend_unavailable() == reason
    choice = choose_backend("local")
    assert (choice.name, choice.reason) == (None, f"no OpenSIPS to test against — local: {reason}")
