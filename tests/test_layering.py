"""The import rules of docs/architecture.md, read from the source: a change that breaks the
layering fails here rather than in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVICE_PACKAGES = {"app", "worker", "model_store", "dataset_store", "service_config", "uvac"}


def imported_modules(package: str) -> dict[str, set[str]]:
    """Every module of the service packages that ``package`` imports -> the files importing it
    (function-level imports included)."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split(".")[0] in SERVICE_PACKAGES:
                    found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def packages_imported(package: str) -> set[str]:
    return {name.split(".")[0] for name in imported_modules(package)} - {package}


@pytest.mark.parametrize(
    ("package", "allowed"),
    [
        ("uvac", set()),
        ("service_config", set()),
        ("model_store", set()),
        ("dataset_store", {"uvac"}),
        ("worker", {"uvac", "model_store", "dataset_store", "service_config"}),
        ("app", {"uvac", "model_store", "dataset_store", "service_config", "worker"}),
    ],
)
def test_each_package_imports_only_the_layers_below_it(package: str, allowed: set[str]) -> None:
    assert packages_imported(package) <= allowed


def test_the_api_uses_only_the_enqueue_and_job_status_side_of_the_workers() -> None:
    from_worker = {name for name in imported_modules("app") if name.split(".")[0] == "worker"}
    assert from_worker <= {"worker", "worker.queues", "worker.errors"}, from_worker
