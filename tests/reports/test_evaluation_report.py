"""reports.evaluation_report: report.json, the PNG figures and the HTML page."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

from benchmarks.reliability.hostile_inputs import AWKWARD_TEXTS
from dataset_store import DatasetFile, DatasetManifest
from reports import build_report, project_2d, report_summary
from uvac.audio import DatasetItem
from uvac.evaluation import evaluation_recordings
from uvac.evaluation.baselines import kmeans_baseline, labels_as_clusters
from uvac.evaluation.scoring import EvaluationReport, RepresentationScores

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def scores(name: str, dimension: int) -> RepresentationScores:
    return RepresentationScores(
        name=name, description=f"{name} space", dimension=dimension,
        silhouette=0.5, dbi=0.8, chi=120.0, note=None,
    )  # fmt: skip


def model_row(*, labelled: bool) -> EvaluationReport:
    rng = np.random.default_rng(0)
    n = 12
    assignments = np.array([0] * 6 + [1] * 6)
    latent = rng.normal(size=(n, 3)) + assignments[:, None] * 4.0
    features = rng.normal(size=(n, 8)) + assignments[:, None] * 2.0
    labels: list[str | None] = [None] * n
    if labelled:
        labels = [*(["low"] * 5), *(["high"] * 7)]  # one "high" clip sits in cluster 0
    return EvaluationReport(
        method="cat-uvac",
        model_type="cat-uvac",
        n_clusters=2,
        n_clips=n,
        n_labelled=n if labelled else 0,
        accuracy=11 / 12 if labelled else None,
        nmi=0.7 if labelled else None,
        cluster_sizes=[6, 6],
        clusters_used=2,
        cluster_to_label={0: "low", 1: "high"} if labelled else None,
        scores={"latent": scores("latent", 3), "features": scores("features", 8)},
        paths=[f"clip{i}.wav" for i in range(n)],
        labels=labels,
        assignments=assignments,
        representations={"latent": latent, "features": features},
    )


def manifest(*, labelled: bool) -> DatasetManifest:
    return DatasetManifest(
        id="ds_0123456789ab",
        created_at="2025-01-01T00:00:00+00:00",
        files=[
            DatasetFile(path=f"clip{i}.wav", duration_s=0.5, label=None, sha256="0" * 64)
            for i in range(12)
        ],
        rejected=[],
        labels=["high", "low"] if labelled else [],
        digest="f" * 64,
    )


def evaluated_on(
    dataset: DatasetManifest,
    *,
    split: Literal["held-out", "all"] | None,
    held_out: list[str] | None,
) -> dict[str, object]:
    """What the evaluation job passes: the engine's description of the chosen recordings."""
    items = [DatasetItem(Path(f.path), f.label, f.path) for f in dataset.files]
    recordings = evaluation_recordings(
        items,
        split=split,
        dataset_id=dataset.id,
        own_dataset=True,
        held_out_paths=held_out,
    )
    return recordings.describe()


HELD_OUT = ["clip3.wav", "clip7.wav"]


HISTORY = [
    {"epoch": epoch, "loss": 10.0 / epoch, "reconstruction": 9.0 / epoch, "kl_z": 0.5,
     "kl_y": 0.4, "accuracy": 0.5 + 0.1 * epoch, "nmi": 0.1 * epoch}
    for epoch in range(1, 5)
]  # fmt: skip


def rows_for(row: EvaluationReport) -> list[EvaluationReport]:
    rows = [row, kmeans_baseline(row)]
    reference = labels_as_clusters(row)
    return rows if reference is None else [*rows, reference]


def test_a_labelled_report_has_every_figure_and_a_page_that_shows_them() -> None:
    row = model_row(labelled=True)
    files = build_report(
        rows=rows_for(row),
        model_ref="tones:v3",
        model_metadata={"training_history": HISTORY, "dataset": {"id": "ds_0123456789ab"}},
        model_info={},
        dataset=manifest(labelled=True),
        evaluated_on=evaluated_on(manifest(labelled=True), split=None, held_out=HELD_OUT),
    )

    figures = {"latent_map.png", "cluster_sizes.png", "confusion_matrix.png", "training_curves.png"}
    assert set(files) == figures | {"report.json", "index.html"}
    assert all(files[name].startswith(PNG_MAGIC) for name in figures)
    report = json.loads(files["report.json"])
    assert report["model"] == "tones:v3"
    assert report["figures"] == sorted(figures)
    assert [r["method"] for r in report["rows"]] == [
        "cat-uvac", "K-means (same features)", "labels as clusters",
    ]  # fmt: skip
    assert report["rows"][0]["accuracy"] == pytest.approx(11 / 12)
    assert report["clips"][5] == {"path": "clip5.wav", "label": "high", "cluster": 0}
    assert report["training_history"] == HISTORY
    page = files["index.html"].decode()
    assert all(f'src="{name}"' in page for name in figures)
    assert "tones:v3" in page and "91.7%" in page

    summary = report_summary(files)
    assert summary["accuracy"] == pytest.approx(11 / 12)
    assert summary["kmeans_accuracy"] is not None
    assert summary["internal"]["latent"] == {"silhouette": 0.5, "dbi": 0.8, "chi": 120.0}
    assert summary["files"] == sorted(files)


def test_without_labels_or_history_those_figures_are_left_out() -> None:
    files = build_report(
        rows=rows_for(model_row(labelled=False)),
        model_ref="tones:v1",
        model_metadata={},
        model_info={},
        dataset=manifest(labelled=False),
        evaluated_on=evaluated_on(manifest(labelled=False), split=None, held_out=HELD_OUT),
    )
    assert set(files) == {"latent_map.png", "cluster_sizes.png", "report.json", "index.html"}
    report = json.loads(files["report.json"])
    assert len(report["rows"]) == 2
    assert report_summary(files)["accuracy"] is None


@pytest.mark.parametrize("shape", [(1, 5), (5, 1), (6, 4)])
def test_projection_handles_degenerate_shapes(shape: tuple[int, int]) -> None:
    points, ratios = project_2d(np.arange(shape[0] * shape[1], dtype=float).reshape(shape))
    assert points.shape == (shape[0], 2)
    assert np.isfinite(points).all()
    assert len(ratios) <= 2


@pytest.mark.parametrize("text", AWKWARD_TEXTS)
def test_user_text_is_drawn_and_written_as_text(text: str) -> None:
    """Labels are user text: "$5 and $10" is not mathtext, "<script>" is not markup."""
    row = model_row(labelled=True)
    labels: list[str | None] = [*([text] * 5), *(["high"] * 7)]
    row = dataclasses.replace(row, labels=labels, cluster_to_label={0: text, 1: "high"})

    files = build_report(
        rows=rows_for(row),
        model_ref="tones:v3",
        model_metadata={"training_history": HISTORY},
        model_info={},
        dataset=dataclasses.replace(manifest(labelled=True), labels=sorted({text, "high"})),
        evaluated_on=evaluated_on(manifest(labelled=True), split=None, held_out=HELD_OUT),
    )

    assert files["confusion_matrix.png"].startswith(PNG_MAGIC)
    assert files["latent_map.png"].startswith(PNG_MAGIC)
    assert json.loads(files["report.json"])["clips"][0]["label"] == text
    page = files["index.html"].decode()
    assert "<script>" not in page


def _report(evaluated: dict[str, object], metadata: dict[str, object] | None = None) -> dict:
    files = build_report(
        rows=rows_for(model_row(labelled=True)),
        model_ref="tones:v3",
        model_metadata=metadata or {},
        model_info={},
        dataset=manifest(labelled=True),
        evaluated_on=evaluated,
    )
    return {"json": json.loads(files["report.json"]), "html": files["index.html"].decode()}


def test_a_report_on_held_out_recordings_says_so_without_a_warning() -> None:
    report = _report(evaluated_on(manifest(labelled=True), split=None, held_out=HELD_OUT))
    on = report["json"]["evaluated_on"]
    assert on["split"] == "held-out" and on["recordings"] == 2 and on["used_for_training"] == 0
    assert on["warning"] is None
    assert "the 2 held-out recordings" in on["description"]
    assert on["description"] in report["html"]
    assert 'class="warning"' not in report["html"]


def test_a_report_built_on_training_recordings_carries_the_warning() -> None:
    report = _report(evaluated_on(manifest(labelled=True), split="all", held_out=HELD_OUT))
    on = report["json"]["evaluated_on"]
    assert on["split"] == "all" and on["recordings"] == 12 and on["used_for_training"] == 10
    assert on["warning"].startswith("10 of these 12 recordings were used to train the model")
    assert 'class="warning" role="alert"' in report["html"]
    assert "10 of these 12 recordings were used to train the model" in report["html"]
    # A version that recorded no held-out part trained on every recording.
    old = _report(evaluated_on(manifest(labelled=True), split=None, held_out=None))
    assert old["json"]["evaluated_on"]["used_for_training"] == 12
    assert old["json"]["evaluated_on"]["warning"]


def test_the_run_warnings_and_held_out_figures_reach_the_page() -> None:
    metadata: dict[str, object] = {
        "warnings": [{"code": "small-data", "message": "4 training recordings for 2 clusters"}],
        "held_out": {"share": 0.2, "stratified": True, "files": HELD_OUT,
                     "metrics": {"recordings": 2, "accuracy": 0.5, "nmi": 0.25,
                                 "clusters_used": 2, "novelty_rate": 0.5},
                     "description": "Figures on the 2 held-out recordings."},
    }  # fmt: skip
    report = _report(evaluated_on(manifest(labelled=True), split=None, held_out=HELD_OUT), metadata)
    assert report["json"]["warnings"][0]["code"] == "small-data"
    assert report["json"]["held_out"]["metrics"]["nmi"] == 0.25
    assert "files" not in report["json"]["held_out"]
    assert "4 training recordings for 2 clusters" in report["html"]
    assert "2 clusters used on 2 recordings, novelty rate 0.5." in report["html"]
    assert "NMI 0.25" in report["html"]


def test_the_page_drawn_again_with_current_names_names_every_table_by_them() -> None:
    from reports import report_page

    identity = {
        "previous": "tones:v1",
        "agreement": 0.9,
        "clusters": [{"number": 0, "previous": 0, "new": False, "agreement": 0.9, "size": 3}],
    }
    files = build_report(
        rows=rows_for(model_row(labelled=True)),
        model_ref="tones:v2",
        model_metadata={"cluster_identity": identity, "cluster_names": {"0": "Old name"}},
        model_info={},
        dataset=manifest(labelled=True),
        evaluated_on=evaluated_on(manifest(labelled=True), split=None, held_out=HELD_OUT),
    )
    stored = files["index.html"].decode()
    assert "<td>Old name</td>" in stored and "<!-- uvac:current-cluster-names -->" in stored

    page = report_page(
        json.loads(files["report.json"]), current_names={"0": "Café <b>"}, n_clusters=3
    )
    assert "Old name" not in page and "uvac:current-cluster-names" not in page
    assert page.count("<td>Café &lt;b&gt;</td>") == 2  # the identity table and the names table


def _texts(artists: object) -> list[str]:
    return [text.get_text() for text in artists]  # type: ignore[attr-defined]


def test_the_figures_that_name_clusters_label_them_by_the_names_given() -> None:
    from reports.figures import cluster_map_figure, cluster_sizes_figure, confusion_matrix_figure
    from reports.named_figures import NAMED_FIGURES, named_figure

    files = build_report(
        rows=rows_for(model_row(labelled=True)),
        model_ref="tones:v2",
        model_metadata={"cluster_names": ["Quiet", None]},
        model_info={},
        dataset=manifest(labelled=True),
        evaluated_on=evaluated_on(manifest(labelled=True), split=None, held_out=HELD_OUT),
    )
    report = json.loads(files["report.json"])
    names = {"1": "Café <b> & $5"}
    sizes = cluster_sizes_figure(report["rows"], names)
    assert _texts(sizes.axes[0].get_xticklabels()) == ["0", "1 Café <b> & $5"]
    confusion = confusion_matrix_figure(report["clips"], accuracy=0.9, names=names)
    assert confusion is not None
    assert _texts(confusion.axes[0].get_yticklabels()) == ["0", "1 Café <b> & $5"]
    cluster_map = {
        "n_clusters": 2,
        "projection": {"method": "openTSNE"},
        "recordings": [{"path": "a.wav", "label": None}, {"path": "b.wav", "label": None}],
        "points": {
            "x": [0.0, 0.5, 1.0],
            "y": [0.0, 1.0, 0.5],
            "recording": [0, 0, 1],
            "cluster": [0, 1, 1],
            "unknown": [False, True, False],
        },
    }
    legend = cluster_map_figure(cluster_map, names).axes[0].get_legend()
    assert legend is not None
    assert _texts(legend.get_texts()) == ["foreign (1 windows)", "0", "1 Café <b> & $5"]
    # The report drew them with the names it was evaluated with.
    stored = cluster_sizes_figure(report["rows"], {"0": "Quiet"})
    assert _texts(stored.axes[0].get_xticklabels())[0] == "0 Quiet"
    assert files["cluster_sizes.png"] == named_figure(
        "cluster_sizes.png", report=report, cluster_map=None, names={"0": "Quiet"}
    )
    assert set(NAMED_FIGURES) & set(files) == {"cluster_sizes.png", "confusion_matrix.png"}
