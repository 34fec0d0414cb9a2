"""harness.backends.clean offline: the machine-wide sweep lock."""

from __future__ import annotations

import subprocess
import sys

from harness.backends import clean


def test_run_start_sweeps_skip_while_another_process_sweeps(tmp_path, monkeypatch) -> None:
    """The sweep lock: re-entrant here, and another process's run-start sweep skips."""
    monkeypatch.setattr(clean, "SWEEP_LOCK", tmp_path / "sweep.lock")
    probe = ("import sys; from pathlib import Path; from harness.backends import clean; "
             f"clean.SWEEP_LOCK = Path({str(tmp_path / 'sweep.lock')!r})\n"
             "with clean.sweep_lock(wait=False) as got: print(got)")
    with clean.sweep_lock() as outer:
        with clean.sweep_lock(wait=False) as inner:  # same thread: re-entrant
            assert (outer, inner) == (True, True)
        held = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert (held.stdout.strip(), free.stdout.strip()) == ("False", "True"), (held.stderr, free.stderr)
