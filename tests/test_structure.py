"""The shape of the code: the rules the middle layer keeps (checked on the source tree, not by running it).

- no function in fusedet/ outside fusedet/cli/ takes more than 8 parameters (settings objects instead);
- rich is imported only by fusedet/cli/ (the library reports through fusedet.events);
- no import cycle between fusedet's modules, function-level imports included;
- one definition of device resolution (fusedet.devices.resolve_device);
- dmnet imports nothing of fusedet;
- ruff is clean on the whole tree (when ruff is installed).
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {"fusedet": ROOT / "fusedet", "fusedet.datasets": ROOT / "datasets", "fusedet.eval": ROOT / "eval", "dmnet": ROOT / "dmnet"}
MAX_PARAMETERS = 8


def _modules() -> dict[str, Path]:
    """Module name -> file for every module of the four packages."""
    out = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = path.relative_to(folder).with_suffix("").parts
            name = ".".join([package, *parts])
            out[name.removesuffix(".__init__")] = path
    return out


MODULES = _modules()


def _imports(module: str, path: Path) -> set[str]:
    """Modules of ours that `module` imports anywhere in its file (module level or inside functions);
    imports under ``if TYPE_CHECKING:`` are for type checkers only, never run, and are left out."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, `level - 1` packages up
                package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
                base = package[: len(package) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            names = [prefix] + [f"{prefix}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in MODULES:
                name = name.rpartition(".")[0]
            if name and name != module:
                found.add(name)
    return found


def test_no_function_outside_the_cli_takes_more_than_eight_parameters():
    offenders = []
    for name, path in MODULES.items():
        if not MODULES[name].is_relative_to(PACKAGES["fusedet"]) or name.startswith("fusedet.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                a = node.args
                count = len(a.posonlyargs) + len(a.args) + len(a.kwonlyargs) + bool(a.vararg) + bool(a.kwarg)
                if count > MAX_PARAMETERS:
                    offenders.append(f"{name}.{node.name} ({count})")
    assert offenders == []


def test_rich_is_imported_only_by_the_cli():
    offenders = []
    for name, path in MODULES.items():
        if name.startswith("fusedet.cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(m == "rich" or m.startswith("rich.") for m in mods):
                offenders.append(name)
    assert offenders == []


def test_no_import_cycles_between_modules():
    graph = {name: _imports(name, path) for name, path in MODULES.items()}
    # a package imports its own submodules to re-export them: that edge is not a cycle of logic
    for name in graph:
        graph[name] = {m for m in graph[name] if not (MODULES[name].name == "__init__.py" and m.startswith(name + "."))}
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []


def test_one_device_resolver_and_dmnet_stays_independent():
    definitions = [name for name, path in MODULES.items() if "def resolve_device(" in path.read_text()]
    assert definitions == ["fusedet.devices"]
    for name, path in MODULES.items():
        if name.startswith("dmnet"):
            assert not any(m.startswith("fusedet") for m in _imports(name, path)), name


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed (it is in the test extra)")
def test_ruff_is_clean():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--quiet", str(ROOT)], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:]
