"""The import rules of docs/architecture.md, read from the source: a change that breaks the
layering fails here rather than in review.

Two levels: the service packages (``app`` over ``worker`` over the stores, ``reports`` and
``uvac``), and inside ``uvac`` its subpackages, each importing only those below it and only
through their public names. Function-level and type-checking imports count like any other.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICE_PACKAGES = {
    "app",
    "worker",
    "model_store",
    "dataset_store",
    "service_config",
    "reports",
    "uvac",
    "object_storage",
}
# The engine's modules that belong to no subpackage: small leaves everything may use.
UVAC_LEAVES = {"errors", "hashing", "device", "metrics", "tensor_bytes"}
# Each subpackage of uvac -> the subpackages it may import (the leaves are always allowed).
UVAC_LAYERS: dict[str, set[str]] = {
    "audio": set(),
    "models": set(),
    "novelty": set(),
    "training": {"audio", "models", "novelty"},
    "evaluation": {"audio", "models", "novelty", "training"},
    "selection": {"audio", "models", "novelty", "training"},
    "edge": {"audio", "models", "novelty", "training", "evaluation"},
    "cli": {"audio", "models", "novelty", "training", "evaluation", "selection", "edge"},
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    relative = Path(*name.split("."))
    return (ROOT / relative.with_suffix(".py")).is_file() or (ROOT / relative).is_dir()


def _imports(path: Path) -> Iterator[str]:
    """The service modules one file imports: ``from a.b import c`` names ``a.b.c`` when that is
    a module of its own, else ``a.b``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                yield submodule if _is_module(submodule) else node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _service_files() -> Iterator[Path]:
    for package in sorted(SERVICE_PACKAGES):
        yield from sorted((ROOT / package).rglob("*.py"))


def import_graph() -> dict[str, set[str]]:
    """Every service module -> the service modules it imports."""
    graph: dict[str, set[str]] = {}
    for path in _service_files():
        imported = {name for name in _imports(path) if name.split(".")[0] in SERVICE_PACKAGES}
        graph[_module_name(path)] = imported - {_module_name(path)}
    return graph


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every module of the service packages that ``package`` imports -> the files importing it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in _imports(path):
            if name.split(".")[0] in SERVICE_PACKAGES:
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def packages_imported(package: str) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(package)} - {package}


def _uvac_part(module: str) -> str | None:
    """The subpackage (or leaf) of uvac a module belongs to; None outside uvac."""
    parts = module.split(".")
    if parts[0] != "uvac":
        return None
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("uvac", set()),
        ("service_config", {"object_storage"}),
        ("object_storage", set()),
        ("model_store", {"object_storage"}),
        ("dataset_store", {"uvac", "object_storage"}),
        ("reports", {"uvac", "dataset_store"}),
        (
            "worker",
            {"uvac", "reports", "model_store", "dataset_store", "service_config", "object_storage"},
        ),
        (
            "app",
            {
                "uvac",
                "reports",
                "model_store",
                "dataset_store",
                "service_config",
                "worker",
                "object_storage",
            },
        ),
    ],
)
def test_each_package_imports_only_the_layers_below_it(package: str, allowed: set[str]) -> None:
    assert packages_imported(package) <= allowed


def test_the_api_uses_only_the_enqueue_and_job_status_side_of_the_workers() -> None:
    from_worker = {name for name in imported_modules("app") if name.split(".")[0] == "worker"}
    # worker.server_paths: the one rule that blanks paths, in job errors and problem documents.
    allowed = {"worker", "worker.queues", "worker.errors", "worker.server_paths"}
    assert from_worker <= allowed, from_worker


def test_uvac_holds_only_subpackages_and_the_shared_leaves() -> None:
    loose = {path.stem for path in (ROOT / "uvac").glob("*.py")} - {"__init__"}
    assert loose == UVAC_LEAVES
    subpackages = {path.parent.name for path in (ROOT / "uvac").glob("*/__init__.py")}
    assert subpackages == set(UVAC_LAYERS)


def test_each_uvac_subpackage_imports_only_the_ones_below_it() -> None:
    wrong = []
    for module, imported in import_graph().items():
        own = _uvac_part(module)
        if own is None:
            continue
        allowed = UVAC_LEAVES | ({own} | UVAC_LAYERS[own] if own in UVAC_LAYERS else set())
        for name in imported:
            part = _uvac_part(name)
            if part is not None and part not in allowed:
                wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_code_outside_a_subpackage_uses_only_its_public_names() -> None:
    # `uvac.training.trainer` is private to `uvac.training`; others import `uvac.training`.
    wrong = []
    for module, imported in import_graph().items():
        own = _uvac_part(module)
        for name in imported:
            parts = name.split(".")
            if parts[0] != "uvac" or len(parts) < 3 or parts[1] == own:
                continue
            wrong.append(f"{module} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_nothing_imports_the_command_line() -> None:
    importers = {
        module
        for module, imported in import_graph().items()
        if _uvac_part(module) != "cli" and any(_uvac_part(name) == "cli" for name in imported)
    }
    assert not importers


def test_there_is_no_import_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for name in sorted(graph.get(module, ())):
            if state.get(name) == 1:
                return [*path[path.index(name) :], name]
            if name not in state and (cycle := visit(name)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            pytest.fail("import cycle: " + " -> ".join(cycle))
