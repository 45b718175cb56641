"""The report's sweep figure and its sections on choosing K and on cluster identities."""

from __future__ import annotations

import json

from reports import build_report, sweep_chart
from tests.reports.test_evaluation_report import (
    PNG_MAGIC,
    evaluated_on,
    manifest,
    model_row,
    rows_for,
)

SELECTION = {
    "chosen_k": 3,
    "chosen": {"key": "k3"},
    "stable": True,
    "stability_threshold": 0.8,
    "subsample": 0.8,
    "rule": "largest K whose mean pairwise ARI across seeds is at least 0.8",
    "candidates": [
        {"key": f"k{k}", "n_clusters": k, "temperature_end": None, "lambda_kl": None,
         "stability": s, "silhouette": 0.2, "dbi": 1.0, "chi": 50.0, "clusters_used_min": k,
         "accuracy": a, "nmi": a}
        for k, s, a in ((2, 0.95, 0.6), (3, 0.9, 0.97), (4, 0.5, 0.8))
    ],
}  # fmt: skip
IDENTITY = {
    "previous": "tones:v1", "recordings": "training set", "n_recordings": 12, "agreement": 0.9,
    "order": [1, 0], "disappeared": [{"number": 2, "size": 3, "merged_into": 0, "share": 1.0}],
    "clusters": [{"number": 0, "previous": 0, "new": False, "agreement": 0.9, "size": 6},
                 {"number": 1, "previous": None, "new": True, "agreement": None, "size": 6}],
}  # fmt: skip


def test_a_swept_and_matched_version_gets_the_sweep_figure_and_both_sections() -> None:
    files = build_report(
        rows=rows_for(model_row(labelled=True)),
        model_ref="tones:v2",
        model_metadata={
            "selection": SELECTION,
            "cluster_identity": IDENTITY,
            "cluster_names": {"0": "<b>Rain</b> & $x$"},
        },
        model_info={},
        dataset=manifest(labelled=True),
        evaluated_on=evaluated_on(manifest(labelled=True), split="all", held_out=None),
    )
    assert files["sweep.png"].startswith(PNG_MAGIC)
    report = json.loads(files["report.json"])
    assert report["selection"]["chosen_k"] == 3 and report["cluster_identity"]["agreement"] == 0.9
    page = files["index.html"].decode()
    assert "Choosing K" in page and "k3 (chosen)" in page and 'src="sweep.png"' in page
    assert "Cluster identities" in page and "tones:v1" in page
    assert "&lt;b&gt;Rain&lt;/b&gt; &amp; $x$" in page and "<b>Rain</b>" not in page
    assert "2 (into 0, 1.000 of its clips)" in page


def test_no_sweep_no_figure() -> None:
    assert sweep_chart(None) is None and sweep_chart({"candidates": []}) is None
    several = {**SELECTION, "candidates": [
        {**c, "temperature_end": t} for c in SELECTION["candidates"] for t in (0.5, 0.3)
    ]}  # fmt: skip
    figure = sweep_chart(several)
    assert figure is not None and figure.startswith(PNG_MAGIC)
