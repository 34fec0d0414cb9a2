"""README promises that must stay true: its live-test example is a real test."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_readme_live_example_is_the_test_file_verbatim():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(import pytest\n\n@pytest\.mark\.live\n.*?)```", readme, re.S)
    assert block is not None, "README lost its live-test example"
    test_file = (ROOT / "harness/conformance/test_readme_example.py").read_text()

    def squeeze(text: str) -> str:  # PEP 8's two blank lines vs. one in prose
        return re.sub(r"\n{3,}", "\n\n", text)

    assert squeeze(block.group(1).strip()) in squeeze(test_file)


def test_readme_names_the_ci_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci/run").read_text()
    assert "pytest -n auto" in readme and "\npytest -n auto\n" in ci
    assert "pip install -e '.[test]'" in readme and "pip install --quiet -e '.[test]'" in ci
