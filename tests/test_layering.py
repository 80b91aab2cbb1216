"""The import graph: no cycles, and every package imports only from the layers it may stand on.

Every `import onnxforge...` and `from onnxforge... import ...` is read from the source (module
level and inside functions alike), so a lazy import cannot hide a dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "onnxforge"
FOUNDATION = {"__init__", "errors", "folder", "staging", "progress", "cache", "data"}
MAY_IMPORT = {  # a package not listed here may import the foundation only
    "runtime": set(),
    "models": set(),
    "passes": {"models"},
    "exporter": {"models", "passes", "runtime"},
    "serve": {"runtime"},
    "train": {"models", "exporter", "passes", "runtime"},
    "bundle": {"passes", "runtime"},
    "eval": {"models", "exporter", "passes", "runtime", "serve"},
    "cli": {"models", "exporter", "passes", "runtime", "serve", "train", "bundle", "eval"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """The onnxforge modules `path` imports (a `from package import module` counts as the module)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("onnxforge")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("onnxforge") and node.level == 0:
            names = {f"{node.module}.{alias.name}" for alias in node.names}
            submodules = names & set(modules)
            found |= submodules or {node.module}
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, modules) for name, path in modules.items()}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_module_imports_a_layer_it_may_not_stand_on() -> None:
    wrong = []
    for module, imported in _graph().items():
        layer = _layer(module)
        allowed = FOUNDATION | {layer} | MAY_IMPORT.get(layer, set())
        wrong += [f"{module} -> {target}" for target in sorted(imported) if _layer(target) not in allowed]
    assert wrong == []


@pytest.mark.parametrize("layer", ["runtime", "passes"])
def test_runtime_and_passes_never_import_eval_or_cli(layer: str) -> None:
    graph = _graph()
    reached = {target for module, imported in graph.items() if _layer(module) == layer for target in imported}
    assert not {_layer(target) for target in reached} & {"eval", "cli"}


def test_there_is_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(" -> ".join(path[path.index(target):] + [target]) if target in path else target)
            elif target not in state:
                visit(target, path + [target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_no_package_file_is_over_400_lines() -> None:
    long = {str(path.relative_to(PACKAGE)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


def test_the_folder_names_are_spelled_only_in_folder_py() -> None:
    spelled = [str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py") if path.name != "folder.py"
               and any(f'"{name}' in path.read_text(encoding="utf-8")
                       for name in ("past_key_values.", "present.", "onnxforge.architecture", "onnxforge.kv_cache"))]
    assert spelled == []
