"""The evaluation report: ``report.json``, PNG figures and an ``index.html`` that shows them.

Input: the rows of `uvac.evaluation.baselines.evaluate_with_baselines` (the model, K-means on the
same features, and labels-as-clusters when there are labels) plus the model's training history.
Output: ``{relative path: bytes}``, ready for `ModelStore.write_report`.

Figures (matplotlib's Agg canvas, drawn on `Figure` objects directly, so no pyplot state
and no display are involved). The figures that name clusters are drawn with the names at
evaluation time here, and again by the API with the names when the report is read
(`reports.named_figures`). Labels, file names and method names are user text: they are
drawn with mathtext off (``text.parse_math``), so "$5 and $10" is a label, not an equation,
and HTML-escaped on the page.

- ``cluster_map.png``: the cluster browser's map of the windows (t-SNE), coloured by cluster
  (and by label when there are labels); ``latent_map.png`` (a PCA of the clips' latent
  vectors) only for a version without a map;
- ``cluster_sizes.png``: clips per cluster, the model beside K-means;
- ``confusion_matrix.png``: clusters x labels counts (labels only);
- ``training_curves.png``: loss parts and accuracy/NMI per epoch (when a history exists);
- ``sweep.png``, and the page's sections on choosing K and on cluster identities, for a
  version that was chosen by a sweep or matched to an earlier one (`reports.selection_sections`).

Every report says which recordings it was computed on (``evaluated_on``: the split, how many
recordings, how many of them trained the model, a sentence and a warning when any did), and
carries the version's held-out figures, a student's held-out agreement with its teacher and the
run's warnings; the page opens with them (`reports.provenance_section`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np

from reports.figures import latent_map, percent, training_curves_chart
from reports.named_figures import NAMED_FIGURES, named_figure, names_by_number
from reports.provenance_section import provenance_section
from reports.selection_sections import report_sections, sweep_chart

if TYPE_CHECKING:
    from dataset_store import DatasetManifest
    from uvac.evaluation import EvaluationReport

__all__ = [
    "CURRENT_NAMES_MARKER",
    "REPORT_FORMAT",
    "build_report",
    "current_names_section",
    "report_page",
    "report_summary",
]

REPORT_FORMAT = "uvac-evaluation-report"
REPORT_JSON = "report.json"
INDEX_HTML = "index.html"
# Where the API puts the clusters' names as they are when the page is read (names change
# after the report is drawn; the API draws the figures that name clusters again, too).
CURRENT_NAMES_MARKER = "<!-- uvac:current-cluster-names -->"


def current_names_section(names: Mapping[str, str], *, n_clusters: int) -> str:
    """The page's table of cluster numbers and their names now; every name escaped."""
    rows = "".join(
        f"<tr><td>{number}</td><td>{html.escape(names.get(str(number), ''))}</td></tr>"
        for number in range(n_clusters)
    )
    return (
        "<h2>Cluster names</h2><p>As named now; the figures and tables name them so too.</p>"
        f"<table><thead><tr><th>Cluster</th><th>Name</th></tr></thead><tbody>{rows}</tbody>"
        "</table>"
    )


def _number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def build_report(
    *,
    rows: Sequence[EvaluationReport],
    model_ref: str,
    model_metadata: Mapping[str, Any],
    model_info: Mapping[str, Any],
    dataset: DatasetManifest,
    evaluated_on: Mapping[str, Any],
    cluster_map: Mapping[str, Any] | None = None,
    novelty: Mapping[str, Any] | None = None,
) -> dict[str, bytes]:
    """Every file of the report, keyed by its relative path. ``evaluated_on``:
    `uvac.evaluation.EvaluationRecordings.describe` of the recordings ``rows`` were computed on.
    With the version's cluster map (`reports.cluster_map`) the map is drawn instead of the
    latent PCA. ``novelty`` is the novelty section (`uvac.evaluation.novelty_evaluation`),
    absent for a model without a score."""
    model_row = rows[0]
    history = model_metadata.get("training_history") or model_info.get("history") or []
    document = {
        "format": REPORT_FORMAT,
        "format_version": 1,
        "model": model_ref,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": {
            "id": dataset.id,
            "digest": dataset.digest,
            "files": len(dataset.files),
            "labels": list(dataset.labels),
        },
        "trained_on": model_metadata.get("dataset"),
        "evaluated_on": dict(evaluated_on),
        "held_out": _held_out_figures(model_metadata.get("held_out")),
        "distillation": _distillation_figures(model_metadata.get("distillation")),
        "warnings": list(model_metadata.get("warnings") or []),
        "rows": [row.to_dict() for row in rows],
        "clips": [
            {"path": path, "label": label, "cluster": int(cluster)}
            for path, label, cluster in zip(
                model_row.paths, model_row.labels, model_row.assignments, strict=True
            )
        ],
        "training_history": list(history),
        "selection": model_metadata.get("selection"),
        "cluster_identity": model_metadata.get("cluster_identity"),
        "cluster_names": model_metadata.get("cluster_names"),
        "novelty": dict(novelty) if novelty is not None else None,
    }
    names = names_by_number(model_metadata.get("cluster_names"))
    # Every text drawn is literal: mathtext would read user text between dollar signs as TeX.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        figures: dict[str, bytes | None] = {
            "latent_map.png": latent_map(model_row) if cluster_map is None else None,
            **{
                name: named_figure(name, report=document, cluster_map=cluster_map, names=names)
                for name in NAMED_FIGURES
            },
            "training_curves.png": training_curves_chart(history),
            "sweep.png": sweep_chart(model_metadata.get("selection")),
        }
    drawn = {name: data for name, data in figures.items() if data is not None}
    document["figures"] = sorted(drawn)
    files: dict[str, bytes] = dict(drawn)
    files[REPORT_JSON] = json.dumps(document, indent=2, default=_json_default).encode("utf-8")
    files[INDEX_HTML] = report_page(document).encode("utf-8")
    return files


def _held_out_figures(held_out: Any) -> dict[str, Any] | None:
    """The version's figures on its held-out recordings (not the list of files)."""
    if not isinstance(held_out, Mapping):
        return None
    return {key: held_out.get(key) for key in ("share", "stratified", "metrics", "description")}


def _distillation_figures(distillation: Any) -> dict[str, Any] | None:
    if not isinstance(distillation, Mapping):
        return None
    return {"final": distillation.get("final"), "held_out": distillation.get("held_out")}


def _novelty_summary(section: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The flagged shares and the separation, without the distribution."""
    if not section:
        return None
    keys = ("false_alarm_rate", "threshold", "known", "unknown", "separation")
    return {key: section[key] for key in keys if key in section}


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-able: {type(value).__name__}")


def report_summary(files: Mapping[str, bytes]) -> dict[str, Any]:
    """The small summary an evaluation job returns: the model row's numbers and the files."""
    document = json.loads(files[REPORT_JSON])
    model_row = document["rows"][0]
    baseline = document["rows"][1] if len(document["rows"]) > 1 else None
    return {
        "n_clips": model_row["n_clips"],
        "accuracy": model_row["accuracy"],
        "nmi": model_row["nmi"],
        "clusters_used": model_row["clusters_used"],
        "internal": {
            name: {key: scores[key] for key in ("silhouette", "dbi", "chi")}
            for name, scores in model_row["internal"].items()
        },
        "kmeans_accuracy": None if baseline is None else baseline["accuracy"],
        "kmeans_nmi": None if baseline is None else baseline["nmi"],
        "evaluated_on": document.get("evaluated_on"),
        "novelty": _novelty_summary(document.get("novelty")),
        "files": sorted(files),
    }


def report_page(
    document: Mapping[str, Any],
    *,
    current_names: Mapping[str, str] | None = None,
    n_clusters: int | None = None,
) -> str:
    """``index.html`` of a report document (``report.json``). With ``current_names`` (the
    API, when it serves the page) every table names clusters as they are named now;
    without, the page keeps a marker where the API puts them."""
    if current_names is None or n_clusters is None:
        return _html(document, CURRENT_NAMES_MARKER)
    named = {**document, "cluster_names": dict(current_names)}
    return _html(named, current_names_section(current_names, n_clusters=n_clusters))


def _html(document: Mapping[str, Any], names_section: str) -> str:
    escape = html.escape
    spaces = sorted({name for row in document["rows"] for name in row["internal"]})
    header = "".join(
        f"<th>{escape(space)} {metric}</th>"
        for space in spaces
        for metric in ("Sil.", "DBI", "CHI")
    )
    body = []
    for row in document["rows"]:
        cells = [
            escape(str(row["method"])),
            str(row["n_clusters"]),
            percent(row["accuracy"]),
            _number(row["nmi"]),
        ]
        for space in spaces:
            scores = row["internal"].get(space, {})
            cells += [_number(scores.get(key)) for key in ("silhouette", "dbi", "chi")]
        body.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    figures = "\n".join(
        f'<figure><img src="{escape(name)}" alt="{escape(name)}"><figcaption>{escape(name)}'
        "</figcaption></figure>"
        for name in document["figures"]
    )
    dataset = document["dataset"]
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Evaluation of {escape(document["model"])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; max-width: 72rem; }}
table {{ border-collapse: collapse; margin: 1rem 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
th:first-child, td:first-child {{ text-align: left; }}
img {{ max-width: 100%; }}
figure {{ margin: 1.5rem 0; }}
</style>
</head>
<body>
<h1>Evaluation of {escape(document["model"])}</h1>
<p><a href="../browser">Open the cluster browser</a>: the map, the recordings, the names.</p>
<p>Data set <code>{escape(dataset["id"])}</code> ({dataset["files"]} files,
digest <code>{escape(dataset["digest"][:16])}</code>), {escape(document["created_at"])}.</p>
{provenance_section(document)}
<table>
<thead><tr><th>Method</th><th>K</th><th>Acc</th><th>NMI</th>{header}</tr></thead>
<tbody>
{"".join(body)}
</tbody>
</table>
<p>Internal metrics: Silhouette (higher is better), Davies-Bouldin (lower is better),
Calinski-Harabasz (higher is better), in each named space; see report.json for what each
space is.</p>
{names_section}
{report_sections(document)}
{figures}
</body>
</html>
"""
