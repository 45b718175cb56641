"""The report's figures that name clusters, drawn from what the report stores, with the names
given.

The worker draws them when it evaluates a version, with the names the clusters have then.
Names change afterwards (the fitting backend names clusters in the browser), so the API draws
them again with the names as they are when the report is read (`app.report_figures`).
Everything they need is stored beside the report: ``report.json``'s rows and clips, and
``cluster_map.json``. (``latent_map.png``, drawn only for a version without a map, needs the
clips' latent vectors, which are not stored: it keeps the names it was drawn with.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import matplotlib

from reports.figures import cluster_map_chart, cluster_sizes_chart, confusion_matrix_chart

__all__ = ["NAMED_FIGURES", "named_figure", "names_by_number"]

NAMED_FIGURES = ("cluster_map.png", "cluster_sizes.png", "confusion_matrix.png")


def names_by_number(value: Any) -> dict[str, str]:
    """Cluster names as ``{"0": "Rain"}`` from a list or a mapping (unnamed ones left out)."""
    if isinstance(value, list | tuple):
        return {str(number): str(name) for number, name in enumerate(value) if name}
    if isinstance(value, Mapping):
        return {str(number): str(name) for number, name in value.items() if name}
    return {}


def named_figure(
    file_name: str,
    *,
    report: Mapping[str, Any],
    cluster_map: Mapping[str, Any] | None,
    names: Mapping[str, str],
) -> bytes | None:
    """The PNG of one of `NAMED_FIGURES` (None when the report has nothing to draw it from:
    no map, or no labels for the confusion matrix)."""
    # Every text drawn is literal: mathtext would read user text between dollar signs as TeX.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        if file_name == "cluster_map.png":
            return None if cluster_map is None else cluster_map_chart(cluster_map, names)
        if file_name == "cluster_sizes.png":
            return cluster_sizes_chart(report["rows"], names)
        if file_name == "confusion_matrix.png":
            accuracy = report["rows"][0].get("accuracy")
            return confusion_matrix_chart(report["clips"], accuracy=accuracy, names=names)
    raise ValueError(f"{file_name!r} is not a figure that names clusters")
