"""The evaluation report: ``report.json``, PNG figures and an ``index.html`` that shows them.

Input: the rows of `uvac.baselines.evaluate_with_baselines` (the model, K-means on the same
features, and labels-as-clusters when there are labels) plus the model's training history.
Output: ``{relative path: bytes}``, ready for `ModelStore.write_report`.

Figures (matplotlib's Agg canvas, drawn on `Figure` objects directly, so no pyplot state
and no display are involved). Labels, file names and method names are user text: they are
drawn with mathtext off (``text.parse_math``), so "$5 and $10" is a label, not an equation,
and HTML-escaped on the page.

- ``latent_map.png``: the clips' latent vectors projected to 2-D by PCA, coloured by cluster
  (and, beside it, by label when there are labels);
- ``cluster_sizes.png``: clips per cluster, the model beside K-means;
- ``confusion_matrix.png``: clusters x labels counts (labels only);
- ``training_curves.png``: loss parts and accuracy/NMI per epoch (when a history exists);
- ``sweep.png``, and the page's sections on choosing K and on cluster identities, for a
  version that was chosen by a sweep or matched to an earlier one (`worker.report_selection`).
"""

from __future__ import annotations

import html
import io
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from uvac import metrics
from worker.report_selection import report_sections, sweep_chart

if TYPE_CHECKING:
    from dataset_store import DatasetManifest
    from uvac.evaluation import EvaluationReport

__all__ = ["REPORT_FORMAT", "build_report", "report_summary"]

REPORT_FORMAT = "uvac-evaluation-report"
REPORT_JSON = "report.json"
INDEX_HTML = "index.html"
_DPI = 100
_COLOURS = "tab10"


def _png(figure: Figure) -> bytes:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight")
    return buffer.getvalue()


def project_2d(points: np.ndarray) -> tuple[np.ndarray, list[float]]:
    """PCA to 2-D (N, 2) and the explained variance ratios; pads with zeros when the data has
    fewer than two dimensions or samples."""
    points = np.asarray(points, dtype=np.float64)
    n_components = min(2, points.shape[0], points.shape[1])
    projected = np.zeros((points.shape[0], 2))
    ratios: list[float] = []
    if n_components >= 1 and points.shape[0] >= 2:
        pca = PCA(n_components=n_components, random_state=0)
        projected[:, :n_components] = pca.fit_transform(points)
        ratios = [float(r) for r in np.nan_to_num(pca.explained_variance_ratio_)]
    return projected, ratios


def _scatter(axes: Any, points: np.ndarray, groups: Sequence[Any], title: str) -> None:
    names = sorted({str(group) for group in groups}, key=_natural_key)
    colour_map = matplotlib.colormaps[_COLOURS]
    for index, name in enumerate(names):
        chosen = np.array([str(group) == name for group in groups])
        colour = colour_map(index % colour_map.N)
        axes.scatter(points[chosen, 0], points[chosen, 1], s=14, label=name, color=colour)
    axes.set_title(title)
    axes.set_xlabel("PC 1")
    axes.set_ylabel("PC 2")
    if len(names) <= 20:
        axes.legend(fontsize="small", markerscale=1.2, loc="best")


def _natural_key(text: str) -> tuple[int, Any]:
    return (0, int(text)) if text.lstrip("-").isdigit() else (1, text)


def latent_map(report: EvaluationReport) -> bytes:
    points, ratios = project_2d(report.representations["latent"])
    has_labels = any(label is not None for label in report.labels)
    figure = Figure(figsize=(11 if has_labels else 6, 5))
    panels = figure.subplots(1, 2 if has_labels else 1, squeeze=False)[0]
    explained = " + ".join(f"{ratio:.0%}" for ratio in ratios) or "n/a"
    _scatter(
        panels[0],
        points,
        [int(cluster) for cluster in report.assignments],
        f"latent by cluster (PCA, {explained} of variance)",
    )
    if has_labels:
        _scatter(
            panels[1],
            points,
            ["(none)" if label is None else label for label in report.labels],
            "latent by label",
        )
    figure.suptitle(f"{report.method}: {report.n_clips} clips, K = {report.n_clusters}")
    return _png(figure)


def cluster_sizes_chart(rows: Sequence[EvaluationReport]) -> bytes:
    compared = [row for row in rows if row.model_type is not None][:2]  # model, K-means
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    k = max(len(row.cluster_sizes) for row in compared)
    width = 0.8 / len(compared)
    for index, row in enumerate(compared):
        sizes = list(row.cluster_sizes) + [0] * (k - len(row.cluster_sizes))
        axes.bar(np.arange(k) + index * width, sizes, width=width, label=row.method)
    axes.set_xticks(np.arange(k) + width * (len(compared) - 1) / 2, [str(i) for i in range(k)])
    axes.set_xlabel("cluster")
    axes.set_ylabel("clips")
    axes.set_title("cluster sizes")
    axes.legend(fontsize="small")
    return _png(figure)


def confusion_matrix_chart(report: EvaluationReport) -> bytes | None:
    labelled = [i for i, label in enumerate(report.labels) if label is not None]
    if not labelled:
        return None
    counts, clusters, labels = metrics.contingency_matrix(
        [str(report.labels[i]) for i in labelled], report.assignments[labelled]
    )
    figure = Figure(figsize=(1.2 + 0.55 * len(labels) + 2, 1.2 + 0.45 * len(clusters) + 1))
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues", aspect="auto")
    figure.colorbar(image, ax=axes, label="clips")
    axes.set_xticks(range(len(labels)), [str(label) for label in labels], rotation=45, ha="right")
    axes.set_yticks(range(len(clusters)), [str(int(cluster)) for cluster in clusters])
    axes.set_xlabel("label")
    axes.set_ylabel("cluster")
    threshold = counts.max() / 2 if counts.size else 0
    for row in range(counts.shape[0]):
        for column in range(counts.shape[1]):
            value = int(counts[row, column])
            colour = "white" if value > threshold else "black"
            axes.text(column, row, str(value), ha="center", va="center", color=colour, fontsize=8)
    axes.set_title(f"clusters vs labels (accuracy {_percent(report.accuracy)})")
    return _png(figure)


def training_curves_chart(history: Sequence[Mapping[str, Any]]) -> bytes | None:
    if not history:
        return None
    epochs = [int(record["epoch"]) for record in history]
    has_scores = any(record.get("accuracy") is not None for record in history)
    figure = Figure(figsize=(11 if has_scores else 6, 4))
    panels = figure.subplots(1, 2 if has_scores else 1, squeeze=False)[0]
    for key in ("loss", "reconstruction", "kl_z", "kl_y"):
        values = [record.get(key) for record in history]
        if any(value is not None for value in values):
            panels[0].plot(epochs, [np.nan if v is None else v for v in values], label=key)
    panels[0].set_xlabel("epoch")
    panels[0].set_title("training loss (mean per epoch)")
    panels[0].legend(fontsize="small")
    if has_scores:
        for key in ("accuracy", "nmi"):
            values = [record.get(key) for record in history]
            panels[1].plot(epochs, [np.nan if v is None else v for v in values], label=key)
        panels[1].set_ylim(0, 1)
        panels[1].set_xlabel("epoch")
        panels[1].set_title("accuracy and NMI on the training clips")
        panels[1].legend(fontsize="small")
    return _png(figure)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


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
) -> dict[str, bytes]:
    """Every file of the report, keyed by its relative path."""
    model_row = rows[0]
    history = model_metadata.get("training_history") or model_info.get("history") or []
    # Every text drawn is literal: mathtext would read user text between dollar signs as TeX.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        figures: dict[str, bytes | None] = {
            "latent_map.png": latent_map(model_row),
            "cluster_sizes.png": cluster_sizes_chart(rows),
            "confusion_matrix.png": confusion_matrix_chart(model_row),
            "training_curves.png": training_curves_chart(history),
            "sweep.png": sweep_chart(model_metadata.get("selection")),
        }
    drawn = {name: data for name, data in figures.items() if data is not None}
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
        "figures": sorted(drawn),
    }
    files: dict[str, bytes] = dict(drawn)
    files[REPORT_JSON] = json.dumps(document, indent=2, default=_json_default).encode("utf-8")
    files[INDEX_HTML] = _html(document).encode("utf-8")
    return files


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
        "files": sorted(files),
    }


def _html(document: Mapping[str, Any]) -> str:
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
            _percent(row["accuracy"]),
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
<p>Data set <code>{escape(dataset["id"])}</code> ({dataset["files"]} files,
digest <code>{escape(dataset["digest"][:16])}</code>), {escape(document["created_at"])}.</p>
<table>
<thead><tr><th>Method</th><th>K</th><th>Acc</th><th>NMI</th>{header}</tr></thead>
<tbody>
{"".join(body)}
</tbody>
</table>
<p>Internal metrics: Silhouette (higher is better), Davies-Bouldin (lower is better),
Calinski-Harabasz (higher is better), in each named space; see report.json for what each
space is.</p>
{report_sections(document)}
{figures}
</body>
</html>
"""
