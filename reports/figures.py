"""The report's figures, drawn with matplotlib's Agg canvas on `Figure` objects directly (no
pyplot state, no display). User text (labels, file names, method names) is drawn with mathtext
off (``text.parse_math``), so "$5 and $10" is a label, not an equation.

- `latent_map`: the clips' latent vectors projected to 2-D by PCA (`project_2d`), coloured by
  cluster (and, beside it, by label when there are labels);
- `cluster_map_chart`: the cluster browser's 2-D map of windows (t-SNE), which replaces
  `latent_map` whenever a map exists (pi is near one-hot, so a PCA of it is about K dots),
  with the windows the novelty score found foreign in grey;
- `cluster_sizes_chart`: clips per cluster, the model beside K-means;
- `confusion_matrix_chart`: clusters x labels counts (labels only).

The three figures that name clusters take plain data (the report document's rows and clips,
the map document) and the names to label clusters by (`cluster_label`), so the API can draw
them again with the names as they are when the report is read (`reports.named_figures`).
- `training_curves_chart`: loss parts and accuracy/NMI per epoch (when a history exists).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from uvac import metrics

if TYPE_CHECKING:
    from uvac.evaluation import EvaluationReport

__all__ = [
    "cluster_label",
    "cluster_map_chart",
    "cluster_map_figure",
    "cluster_sizes_chart",
    "cluster_sizes_figure",
    "confusion_matrix_chart",
    "confusion_matrix_figure",
    "latent_map",
    "percent",
    "png",
    "project_2d",
    "training_curves_chart",
]

_DPI = 100
_COLOURS = "tab10"
_FOREIGN = "#c4c4c4"


def cluster_label(number: int, names: Mapping[str, str] | None) -> str:
    """How a figure labels cluster ``number``: its number, and its name when it has one."""
    name = (names or {}).get(str(number))
    return f"{number} {name}" if name else str(number)


def percent(value: float | None) -> str:
    """A fraction as a percentage with one decimal, or "n/a"."""
    return "n/a" if value is None else f"{100 * value:.1f}%"


def png(figure: Figure) -> bytes:
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


def _scatter(
    axes: Any,
    points: np.ndarray,
    groups: Sequence[Any],
    title: str,
    axis_names: tuple[str, str] = ("PC 1", "PC 2"),
    *,
    legend: Mapping[str, str] | None = None,
    foreign: np.ndarray | None = None,
) -> None:
    """Points coloured by group; ``legend`` relabels groups, ``foreign`` (a mask) greys."""
    names = sorted({str(group) for group in groups}, key=_natural_key)
    colour_map = matplotlib.colormaps[_COLOURS]
    known = np.ones(len(groups), dtype=bool) if foreign is None else ~foreign
    if foreign is not None and foreign.any():
        axes.scatter(points[foreign, 0], points[foreign, 1], s=14, color=_FOREIGN,
                     label=f"foreign ({int(foreign.sum())} windows)")  # fmt: skip
    for index, name in enumerate(names):
        chosen = np.array([str(group) == name for group in groups]) & known
        colour = colour_map(index % colour_map.N)
        label = (legend or {}).get(name, name)
        axes.scatter(points[chosen, 0], points[chosen, 1], s=14, label=label, color=colour)
    axes.set_title(title)
    axes.set_xlabel(axis_names[0])
    axes.set_ylabel(axis_names[1])
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
    return png(figure)


def cluster_map_chart(document: Mapping[str, Any], names: Mapping[str, str] | None = None) -> bytes:
    """The cluster browser's map (`reports.cluster_map`) as a figure: windows by cluster
    (labelled by ``names``), and beside it by label when there are labels; the windows the
    novelty score found foreign when the map was drawn in grey."""
    return png(cluster_map_figure(document, names))


def cluster_map_figure(document: Mapping[str, Any], names: Mapping[str, str] | None) -> Figure:
    points_doc = document["points"]
    points = (
        np.column_stack([points_doc["x"], points_doc["y"]])
        if points_doc["x"]
        else (np.zeros((0, 2)))
    )
    clusters = [int(cluster) for cluster in points_doc["cluster"]]
    labels = [document["recordings"][index]["label"] for index in points_doc["recording"]]
    foreign = (
        np.array([flag is True for flag in points_doc["unknown"]], dtype=bool)
        if points_doc.get("unknown") is not None
        else None
    )
    has_labels = any(label is not None for label in labels)
    figure = Figure(figsize=(11 if has_labels else 6, 5))
    panels = figure.subplots(1, 2 if has_labels else 1, squeeze=False)[0]
    method = str(document["projection"].get("method", ""))
    axis_names = (f"{method} 1", f"{method} 2")
    legend = {str(number): cluster_label(number, names) for number in set(clusters)}
    _scatter(panels[0], points, clusters, "windows by cluster", axis_names,
             legend=legend, foreign=foreign)  # fmt: skip
    if has_labels:
        _scatter(
            panels[1],
            points,
            ["(none)" if label is None else label for label in labels],
            "windows by label",
            axis_names,
        )
    figure.suptitle(f"{len(clusters)} windows, K = {document['n_clusters']}")
    return figure


def cluster_sizes_chart(
    rows: Sequence[Mapping[str, Any]], names: Mapping[str, str] | None = None
) -> bytes:
    """Clips per cluster of the report's rows (``report.json``'s), the model beside K-means;
    the model's clusters labelled by ``names``."""
    return png(cluster_sizes_figure(rows, names))


def cluster_sizes_figure(
    rows: Sequence[Mapping[str, Any]], names: Mapping[str, str] | None
) -> Figure:
    compared = [row for row in rows if row.get("model_type") is not None][:2]  # model, K-means
    figure = Figure(figsize=(7, 4))
    axes = figure.subplots()
    k = max(len(row["cluster_sizes"]) for row in compared)
    width = 0.8 / len(compared)
    for index, row in enumerate(compared):
        sizes = list(row["cluster_sizes"]) + [0] * (k - len(row["cluster_sizes"]))
        axes.bar(np.arange(k) + index * width, sizes, width=width, label=str(row["method"]))
    ticks = [cluster_label(i, names) for i in range(k)]
    axes.set_xticks(
        np.arange(k) + width * (len(compared) - 1) / 2,
        ticks,
        rotation=30 if any(" " in tick for tick in ticks) else 0,
        ha="right" if any(" " in tick for tick in ticks) else "center",
    )
    axes.set_xlabel("cluster (the model's; K-means numbers its own)")
    axes.set_ylabel("clips")
    axes.set_title("cluster sizes")
    axes.legend(fontsize="small")
    return figure


def confusion_matrix_chart(
    clips: Sequence[Mapping[str, Any]],
    *,
    accuracy: float | None,
    names: Mapping[str, str] | None = None,
) -> bytes | None:
    """Clusters x labels counts of the report's clips (``report.json``'s: label, cluster),
    the clusters labelled by ``names``; None without labels."""
    figure = confusion_matrix_figure(clips, accuracy=accuracy, names=names)
    return None if figure is None else png(figure)


def confusion_matrix_figure(
    clips: Sequence[Mapping[str, Any]],
    *,
    accuracy: float | None,
    names: Mapping[str, str] | None,
) -> Figure | None:
    labelled = [clip for clip in clips if clip.get("label") is not None]
    if not labelled:
        return None
    counts, clusters, labels = metrics.contingency_matrix(
        [str(clip["label"]) for clip in labelled],
        np.array([int(clip["cluster"]) for clip in labelled]),
    )
    figure = Figure(figsize=(1.2 + 0.55 * len(labels) + 2, 1.2 + 0.45 * len(clusters) + 1))
    axes = figure.subplots()
    image = axes.imshow(counts, cmap="Blues", aspect="auto")
    figure.colorbar(image, ax=axes, label="clips")
    axes.set_xticks(range(len(labels)), [str(label) for label in labels], rotation=45, ha="right")
    axes.set_yticks(range(len(clusters)), [cluster_label(int(c), names) for c in clusters])
    axes.set_xlabel("label")
    axes.set_ylabel("cluster")
    threshold = counts.max() / 2 if counts.size else 0
    for row in range(counts.shape[0]):
        for column in range(counts.shape[1]):
            value = int(counts[row, column])
            colour = "white" if value > threshold else "black"
            axes.text(column, row, str(value), ha="center", va="center", color=colour, fontsize=8)
    axes.set_title(f"clusters vs labels (accuracy {percent(accuracy)})")
    return figure


def _series(history: Sequence[Mapping[str, Any]], key: str) -> list[float] | None:
    """``key`` of every epoch record (NaN where missing), or None when no record has it."""
    values = [record.get(key) for record in history]
    if all(value is None for value in values):
        return None
    return [np.nan if value is None else float(value) for value in values]


def training_curves_chart(history: Sequence[Mapping[str, Any]]) -> bytes | None:
    """Loss parts per epoch; beside them, when recorded, accuracy and NMI on the training
    windows and on the held-out ones, and the share of training windows whose cluster
    changed since the clustering start (how far training moved off its start)."""
    if not history:
        return None
    epochs = [int(record["epoch"]) for record in history]
    scores = {
        "accuracy (training)": _series(history, "accuracy"),
        "NMI (training)": _series(history, "nmi"),
        "accuracy (held out)": _series(history, "held_out_accuracy"),
        "NMI (held out)": _series(history, "held_out_nmi"),
        "changed since the start": _series(history, "changed_since_start"),
    }
    scores = {name: values for name, values in scores.items() if values is not None}
    figure = Figure(figsize=(11 if scores else 6, 4))
    panels = figure.subplots(1, 2 if scores else 1, squeeze=False)[0]
    for key in ("loss", "reconstruction", "kl_z", "kl_y"):
        values = _series(history, key)
        if values is not None:
            panels[0].plot(epochs, values, label=key)
    panels[0].set_xlabel("epoch")
    panels[0].set_title("training loss (mean per epoch)")
    panels[0].legend(fontsize="small")
    if scores:
        for name, values in scores.items():
            style = ":" if name.startswith("changed") else "--" if "held out" in name else "-"
            panels[1].plot(epochs, values, style, label=name)
        panels[1].set_ylim(0, 1)
        panels[1].set_xlabel("epoch")
        panels[1].set_title("clustering per epoch")
        panels[1].legend(fontsize="small")
    return png(figure)
