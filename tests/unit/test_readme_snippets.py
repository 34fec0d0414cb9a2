"""The library examples in README.md run and print what a backup would do."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_endpoint_and_replica_example_runs():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(import asyncio\n.*?)```", readme, re.S)
    assert block is not None
    out = subprocess.run([sys.executable, "-c", block.group(1)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("Applied(command=<Command.CREATED: 1>, key=DialogKey(call_id=b'abc'")
    assert out.stdout.rstrip().endswith(" 1")


def test_readme_registrar_example_runs():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(from pybin import usrloc\n.*?)```", readme, re.S)
    assert block is not None, "README lost its registrar example"
    out = subprocess.run([sys.executable, "-c", block.group(1)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("Applied(command=<UlCommand.RECORD_INSERT: 1>, key=RecordKey(domain=b'location'")
    assert [line.count("CONTACT_INSERTED") for line in lines[1:3]] == [1, 1]
    assert lines[-1] == "2 0"
