"""Reports drawn for people: the evaluation report's JSON, figures and HTML page.

Shared by the workers (which build a report when a version is evaluated) and the API (which
serves it). Imports `uvac` and, for types only, `dataset_store`; never `worker` or `app`.

- `reports.evaluation_report`: ``report.json``, the PNG figures and ``index.html``;
- `reports.figures`: the matplotlib figures;
- `reports.named_figures`: the figures that name clusters, drawn from the stored report with
  the names given (the API draws them again with the names when the report is read);
- `reports.cluster_map`: the cluster browser's map of windows (t-SNE, neighbours);
- `reports.selection_sections`: the sweep figure and the sections on choosing K and on cluster
  identities.
"""

from __future__ import annotations

from reports.evaluation_report import (
    CURRENT_NAMES_MARKER,
    REPORT_FORMAT,
    build_report,
    current_names_section,
    report_page,
    report_summary,
)
from reports.figures import project_2d
from reports.named_figures import NAMED_FIGURES, named_figure, names_by_number
from reports.selection_sections import report_sections, sweep_chart

__all__ = [
    "CURRENT_NAMES_MARKER",
    "NAMED_FIGURES",
    "REPORT_FORMAT",
    "build_report",
    "current_names_section",
    "named_figure",
    "names_by_number",
    "project_2d",
    "report_page",
    "report_sections",
    "report_summary",
    "sweep_chart",
]
