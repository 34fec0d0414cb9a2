"""docs/DESIGN.md's layer drawing matches the import graph (offline).

Every harness module with code is drawn; each import goes down the drawing (to a lower
line, or to a later module of the same ``{…}`` group); pybin imports nothing from
harness. Imports under ``if TYPE_CHECKING:`` are types only and do not count.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DESIGN = ROOT / "docs" / "DESIGN.md"
CONFORMANCE = ROOT / "harness" / "conformance"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_module(name: str) -> bool:
    base = ROOT.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports(path: Path, prefix: str) -> set[str]:
    """The ``prefix`` modules ``path`` imports at run time (TYPE_CHECKING blocks excluded)."""
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == prefix:
            submodules = {f"{node.module}.{a.name}" for a in node.names}
            found |= {n for n in submodules if is_module(n)} or {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == prefix}
    return found - {module_name(path)}


def harness_modules() -> list[Path]:
    """harness/'s modules; the conformance checks shipped in it are tests, not layers."""
    return [p for p in (ROOT / "harness").rglob("*.py") if CONFORMANCE not in p.parents]


def has_code(path: Path) -> bool:
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)) for n in body)


def drawing() -> dict[str, tuple[int, int, int]]:
    """module -> (line, group, position in group) from the Layers block."""
    text = DESIGN.read_text()
    block = re.search(r"## Layers.*?```\n(.*?)```", text, re.S)
    assert block is not None, "DESIGN.md lost its Layers drawing"
    where: dict[str, tuple[int, int, int]] = {}
    for line_no, line in enumerate(block.group(1).splitlines()):
        drawn = line.split("←")[0]
        for group, token in enumerate(re.findall(r"harness/\S+", drawn)):
            if m := re.fullmatch(r"(.*)\{(.*)\}(.*)", token):
                paths = [f"{m[1]}{name}{m[3]}" for name in m[2].split(",")]
            else:
                paths = [token]
            for pos, p in enumerate(paths):
                where[module_name(ROOT / p)] = (line_no, group, pos)
    return where


def test_every_harness_module_is_drawn_and_nothing_else() -> None:
    drawn = drawing()
    modules = {module_name(p) for p in harness_modules() if has_code(p)}
    assert modules - drawn.keys() == set(), "modules missing from DESIGN.md"
    assert drawn.keys() - modules == set(), "DESIGN.md draws modules that do not exist"


def test_every_import_points_down() -> None:
    drawn = drawing()
    upward = []
    for path in sorted(harness_modules()):
        me = module_name(path)
        for dep in imports(path, "harness"):
            if dep not in drawn or me not in drawn:
                continue  # docstring-only packages
            (line, group, pos), (dline, dgroup, dpos) = drawn[me], drawn[dep]
            if not (dline > line or (dline == line and dgroup == group and dpos > pos)):
                upward.append(f"{me} -> {dep}")
    assert upward == []


#: harness's folders, top to bottom; each imports only folders below it
FOLDERS = ("top", "experiments", "live", "backends", "cluster", "instruments", "base")


def folder_of(module: str) -> str:
    part = module.split(".")[1]
    return "top" if part in ("cli", "plugin", "entry_points") else part


def test_every_module_is_in_a_folder_of_the_design() -> None:
    assert {folder_of(module_name(p)) for p in harness_modules() if has_code(p)} <= set(FOLDERS)


def test_each_folders_lines_are_together_in_the_folder_order() -> None:
    """With module lines pointing down, this makes every arrow between folders point down."""
    drawn = drawing()
    order = [folder_of(m) for m, _ in sorted(drawn.items(), key=lambda kv: kv[1])]
    runs = [f for i, f in enumerate(order) if i == 0 or f != order[i - 1]]
    assert runs == [f for f in FOLDERS if f in runs], runs


def test_pybin_imports_nothing_from_harness() -> None:
    assert {module_name(p): imports(p, "harness") for p in (ROOT / "pybin").rglob("*.py")
            if imports(p, "harness")} == {}


def test_test_modules_have_unique_basenames() -> None:
    """tests/ and harness/conformance/ have no __init__.py files, so two test modules with
    one basename stop a full run with "import file mismatch" — which a run of tests/unit
    alone never shows."""
    seen: dict[str, list[str]] = {}
    for path in [*(ROOT / "tests").rglob("test_*.py"), *CONFORMANCE.rglob("test_*.py")]:
        seen.setdefault(path.name, []).append(str(path.relative_to(ROOT)))
    assert {name: paths for name, paths in seen.items() if len(paths) > 1} == {}
