"""The offline example runs and says what it claims (examples/pybin_library.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pybin_library_example_replicates_one_dialog() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "pybin_library.py")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        "received DialogCreated call_id=example-1 state=3 vars=[('acct', 'a|b')]",
        "replica: created=True; active_dialogs=1",
    ]
