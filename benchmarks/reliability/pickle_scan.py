"""Find code that could unpickle data from disk or Redis, by walking the syntax tree.

Flagged:
- importing ``pickle``, ``cPickle``, ``_pickle``, ``dill``, ``cloudpickle``, ``joblib``,
  ``shelve`` (or anything from them);
- ``torch.load(...)`` without ``weights_only=True``;
- ``numpy.load(...)`` / ``np.load(...)`` with ``allow_pickle`` set to anything but ``False``;
- ``pandas.read_pickle`` (any ``.read_pickle(...)``), ``.loads``/``.load`` on a pickle-ish name;
- in a module that imports ``rq``: an RQ queue, worker, registry or ``Job.fetch/fetch_many/
  create`` built without ``serializer=JSONSerializer`` (RQ's default serializer is pickle);
  forwarding another RQ object's ``.serializer`` is accepted, since that object is checked.

String matching would miss ``from pickle import loads as l`` and flag docstrings that say
"no pickle"; the AST sees neither mistake.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Finding", "scan_paths", "scan_source"]

_PICKLE_MODULES = frozenset(
    {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}
)
_RQ_CONSTRUCTORS = frozenset(
    {
        "Queue",
        "Worker",
        "SimpleWorker",
        "SpawnWorker",
        "StartedJobRegistry",
        "FailedJobRegistry",
        "FinishedJobRegistry",
        "DeferredJobRegistry",
        "ScheduledJobRegistry",
        "CanceledJobRegistry",
    }
)
_RQ_JOB_METHODS = frozenset({"fetch", "fetch_many", "create"})


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    for keyword in call.keywords:
        if keyword.arg == name:
            return keyword.value
    return None


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _json_serializer(node: ast.expr | None) -> bool:
    """``JSONSerializer`` itself, or the serializer of another RQ object forwarded
    (``self.serializer``, ``queue.serializer``): that object's own construction is checked."""
    if node is None:
        return False
    dotted = _dotted(node)
    return dotted.split(".")[-1] == "JSONSerializer" or dotted.endswith(".serializer")


def _imports_rq(tree: ast.Module) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "rq" for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "rq":
            return True
    return False


def _worker_subclasses(tree: ast.Module) -> set[str]:
    """Classes defined here that derive from an RQ worker (their calls need a serializer too)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and any(
            _dotted(base).split(".")[-1] in _RQ_CONSTRUCTORS for base in node.bases
        ):
            names.add(node.name)
    return names


def scan_source(
    source: str, *, path: str, extra_rq_classes: frozenset[str] = frozenset()
) -> list[Finding]:
    tree = ast.parse(source, filename=path)
    findings: list[Finding] = []

    def flag(node: ast.AST, what: str) -> None:
        findings.append(Finding(path, getattr(node, "lineno", 0), what))

    uses_rq = _imports_rq(tree)
    rq_classes = _RQ_CONSTRUCTORS | _worker_subclasses(tree) | extra_rq_classes
    # `from torch import load as torch_load` is the same call under another name.
    torch_load_names = {"torch.load"} | {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "torch"
        for alias in node.names
        if alias.name == "load"
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in _PICKLE_MODULES:
                    flag(node, f"import {alias.name}")
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").split(".")[0]
            if module in _PICKLE_MODULES:
                flag(node, f"from {node.module} import ...")
        elif isinstance(node, ast.Call):
            name = _dotted(node.func)
            last = name.split(".")[-1]
            is_torch_load = name in torch_load_names or name.endswith(".torch.load")
            if is_torch_load and not _is_constant(_keyword(node, "weights_only"), True):
                flag(node, "torch.load without weights_only=True")
            if name in ("np.load", "numpy.load"):
                allow = _keyword(node, "allow_pickle")
                if allow is not None and not _is_constant(allow, False):
                    flag(node, f"{name} with allow_pickle")
            if last == "read_pickle":
                flag(node, f"{name}(...)")
            if uses_rq:
                is_rq_object = last in rq_classes
                is_job_method = last in _RQ_JOB_METHODS and name.split(".")[-2:-1] == ["Job"]
                if is_rq_object or is_job_method:
                    serializer = _keyword(node, "serializer")
                    if not _json_serializer(serializer):
                        flag(
                            node,
                            f"{name}(...) without serializer=JSONSerializer (default: pickle)",
                        )
    return findings


def scan_paths(roots: list[Path], *, relative_to: Path) -> tuple[list[Finding], int]:
    """Scan every ``.py`` file under ``roots``; returns (findings, files scanned)."""
    files = sorted(path for root in roots for path in root.rglob("*.py"))
    findings: list[Finding] = []
    for path in files:
        relative = str(path.relative_to(relative_to))
        findings.extend(scan_source(path.read_text(encoding="utf-8"), path=relative))
    return findings, len(files)
