"""The report's figures that name clusters, as they are named when the report is read.

The worker drew them with the names of evaluation time; a name set since (in the cluster
browser, or by `PUT .../clusters/{k}`) would leave them stale. So `GET .../report/{figure}`
of one of `reports.NAMED_FIGURES` draws it again from the stored report with the names now
(`reports.named_figure`) and keeps the drawing while the names and the stored files stay the
same (a small LRU per process: a figure costs a few hundred milliseconds of CPU to draw).
A report this code cannot read is served as it was stored.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model_store import AnyModelStore, ModelVersion
from model_store.cluster_names import current_cluster_names

__all__ = ["MAX_CACHED_FIGURES", "current_figure"]

MAX_CACHED_FIGURES = 64
_REPORT_JSON = "report.json"
_MAP_JSON = "cluster_map.json"

_cache: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
_lock = threading.Lock()


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def _read(path: Path) -> dict[str, Any] | None:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def current_figure(
    store: AnyModelStore, version: ModelVersion, report_dir: Path, file_name: str
) -> bytes | None:
    """``file_name`` drawn with the clusters' names now; None for a figure that names no
    cluster, or when the report cannot be read (then the stored figure is served)."""
    # Imported here: `reports` brings matplotlib, which only report pages need.
    from reports import NAMED_FIGURES, REPORT_FORMAT, named_figure

    if file_name not in NAMED_FIGURES:
        return None
    report_path, map_path = report_dir / _REPORT_JSON, report_dir / _MAP_JSON
    report = _read(report_path)
    if report is None or report.get("format") != REPORT_FORMAT:
        return None
    rows = report.get("rows") or [{}]
    k = version.metadata.get("n_clusters") or (rows[0] or {}).get("n_clusters")
    if not isinstance(k, int):
        return None
    names: Mapping[str, str] = current_cluster_names(store, version, n_clusters=k)
    key = (
        version.ref,
        version.sha256,
        file_name,
        _stamp(report_path),
        _stamp(map_path),
        tuple(sorted(names.items())),
    )
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    try:
        figure = named_figure(file_name, report=report, cluster_map=_read(map_path), names=names)
    except (KeyError, TypeError, ValueError, IndexError):
        return None  # a report of another shape: served as stored
    if figure is None:
        return None
    with _lock:
        _cache[key] = figure
        while len(_cache) > MAX_CACHED_FIGURES:
            _cache.popitem(last=False)
    return figure
