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


def _section(text: str, heading: str) -> list[str]:
    """The table under ``heading`` (its lines starting with ``|``)."""
    after = text.split(heading, 1)[1]
    lines = after.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def test_readme_quotes_the_committed_matrix():
    """README's matrix table is the committed run's by-release table, word for word, and
    its counts are the run's: a new run without a README update fails here."""
    import json

    readme = (ROOT / "README.md").read_text()
    matrix_md = (ROOT / "docs" / "matrix" / "matrix.md").read_text()
    table = _section(matrix_md, "## By release")
    assert len(table) > 2 and "\n".join(table) in readme
    for run in sorted((ROOT / "docs" / "matrix").glob("**/matrix.json")):
        # the committed run and the runs beside it (docker/): each one's counts
        summary = json.loads(run.read_text())["summary"]
        counts = (f"{summary['cells']} cells: {summary['same']} same, {summary['explained']} explained, "
                  f"{summary['unexplained']} unexplained, {summary['unstable']} unstable, "
                  f"{summary['error']} error, {summary['not run']} not run")
        assert counts in readme, run.relative_to(ROOT)
