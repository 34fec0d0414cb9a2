"""Both backends satisfy the harness's interfaces, member by member (offline).

`harness.cluster.interfaces.Node`, `Backend` and `ClientHost` are what every caller relies on; a
backend that lacks a member, or takes it with other parameters, would make a caller
inspect the concrete class again. Checked on the classes, so no engine, root or
binary is needed.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

import pytest

from harness.backends.local.backend import LocalBackend, LocalClientHost
from harness.backends.local.node import LocalNode
from harness.cluster.interfaces import Backend, ClientHost, Node

docker = pytest.importorskip("docker")
from harness.backends.docker.backend import DockerBackend, DockerClientHost  # noqa: E402
from harness.backends.docker.host_tools import HostCapture  # noqa: E402
from harness.backends.docker.node import DockerNode  # noqa: E402


def members(protocol: type) -> Iterator[tuple[str, object]]:
    """(name, declared member) of a Protocol: its methods, properties and attributes."""
    for name, value in vars(protocol).items():
        if not name.startswith("_"):
            yield name, value
    for name in getattr(protocol, "__annotations__", {}):
        yield name, None


def mismatches(cls: type, protocol: type) -> list[str]:
    problems = []
    fields = getattr(cls, "__dataclass_fields__", {})
    for name, declared in members(protocol):
        if declared is None:  # a data attribute: a class attribute, dataclass field or set in __init__
            if hasattr(cls, name) or name in fields:
                continue
            init = inspect.getsource(cls.__init__) if "__init__" in vars(cls) else ""
            if f"self.{name} =" not in init:
                problems.append(f"{cls.__name__} has no attribute {name}")
            continue
        got = inspect.getattr_static(cls, name, None)
        if got is None:
            problems.append(f"{cls.__name__} lacks {name}")
        elif isinstance(declared, property):
            if not isinstance(got, property) and name not in fields and not isinstance(got, str):
                problems.append(f"{cls.__name__}.{name} is not a property or value")
        elif callable(declared):
            want = list(inspect.signature(declared).parameters.values())
            have = inspect.signature(got).parameters
            for p in want:
                if p.name not in have:
                    problems.append(f"{cls.__name__}.{name} has no parameter {p.name!r}")
                elif p.default is not inspect.Parameter.empty and have[p.name].default is inspect.Parameter.empty:
                    problems.append(f"{cls.__name__}.{name}: {p.name!r} must be optional")
            extra = [n for n, p in have.items() if n not in {w.name for w in want}
                     and p.default is inspect.Parameter.empty]
            if extra:
                problems.append(f"{cls.__name__}.{name} requires extra parameters {extra}")
    return problems


@pytest.mark.parametrize("cls, protocol", [
    (DockerNode, Node), (LocalNode, Node),
    (DockerBackend, Backend), (LocalBackend, Backend),
    (DockerClientHost, ClientHost), (LocalClientHost, ClientHost), (HostCapture, ClientHost),
], ids=lambda v: v.__name__)
def test_backend_classes_satisfy_the_interfaces(cls: type, protocol: type) -> None:
    assert mismatches(cls, protocol) == []


def test_the_checker_catches_a_missing_or_different_member() -> None:
    class Half:
        name = "x"

        def start(self, fast: bool) -> None: ...

    problems = mismatches(Half, Node)
    assert "Half.start requires extra parameters ['fast']" in problems
    assert "Half lacks mi" in problems and "Half lacks check_alive" in problems
