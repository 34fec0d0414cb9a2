"""Every ``harness`` and ``pybin`` subcommand answers ``--help``.

The commands are found by walking the argparse parsers themselves, so a subcommand
added later is covered without touching this file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator

import pytest

from harness import cli as harness_cli
from pybin import cli as pybin_cli


def _command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Every chain of subcommand names, parents before children."""
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _command_paths(child, (*path, name))


def _cases() -> list[tuple[str, Callable[[list[str]], int], tuple[str, ...]]]:
    cases = []
    for prog, module in (("harness", harness_cli), ("pybin", pybin_cli)):
        for path in _command_paths(module.build_parser()):
            cases.append((prog, module.main, path))
    return cases


CASES = _cases()


def test_the_walk_finds_the_nested_image_commands():
    paths = {(prog, path) for prog, _, path in CASES}
    assert ("harness", ("image", "build")) in paths
    assert ("harness", ("image", "base")) in paths
    assert ("pybin", ("decode",)) in paths
    assert len([p for p in paths if p[0] == "pybin"]) == 7  # pybin itself + 6 commands


@pytest.mark.parametrize(("prog", "main", "path"), CASES,
                         ids=[" ".join((prog, *path)) for prog, _, path in CASES])
def test_help_exits_0_with_its_own_usage(prog, main, path, capsys):
    with pytest.raises(SystemExit) as info:
        main([*path, "--help"])
    out, err = capsys.readouterr()
    assert info.value.code == 0, err
    assert out.startswith("usage: " + " ".join((prog, *path)) + " "), out[:200]
    assert err == ""
