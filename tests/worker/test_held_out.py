"""worker.held_out: the held-out figures a version records, its novelty rate among them (the
share of held-out recordings the model answers as unknown, the figure a promotion compares
on a data set without labels)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

from dataset_store import DatasetStore
from model_store import ModelStore
from service_config import Settings
from tests.worker.audio_samples import write_tone_folder, write_unlabelled_recordings
from tests.worker.test_worker_e2e import TINY_FEATURES
from uvac.audio import DatasetItem, load_audio
from uvac.evaluation import Clusterer, clip_verdict
from uvac.training import TrainedModel
from uvac.training.pipeline import train_model
from uvac.training.presets import build_configs
from worker.held_out import held_out_metrics
from worker.jobs import run_evaluation, run_training

# The log-mel spectrum as it is: the preset's per-clip normalised cepstra keep too little of
# what tells noise from a tone for this tiny recipe's novelty score (see test_evaluation_job).
RAW_LOG_MEL = {
    **TINY_FEATURES,
    "utterance_norm": False,
    "cepstral_coefficients": None,
    "time_fit": False,
}


def unlabelled_params(dataset_id: str, **extra: Any) -> dict[str, Any]:
    """A quick K-means job (its novelty score is fitted like any model's)."""
    return {
        "dataset_id": dataset_id,
        "model_type": "kmeans",
        "n_clusters": 2,
        "model_name": "hum",
        "seed": 0,
        "preset": "words-logmel",
        "features": RAW_LOG_MEL,
        **extra,
    }


def _items(folder: Path) -> list[DatasetItem]:
    return [
        DatasetItem(path=path, label=None, relpath=f"{folder.name}/{path.name}")
        for path in sorted(folder.rglob("*.wav"))
    ]


def _trained_on(items: list[DatasetItem]) -> TrainedModel:
    torch.set_num_threads(1)
    feature_config, config = build_configs(
        "words-logmel",
        feature_overrides=RAW_LOG_MEL,
        train_overrides={"model_type": "kmeans", "n_clusters": 2, "seed": 0},
    )
    return train_model(items, config=config, feature_config=feature_config)


def _answered_unknown(trained: TrainedModel, items: list[DatasetItem]) -> list[bool | None]:
    """What `/v1/cluster` answers as ``unknown`` for each recording (app.routes.cluster)."""
    clusterer = Clusterer(trained)
    clips = clusterer.cluster_batch(
        [load_audio(item.path, sample_rate=clusterer.sample_rate) for item in items]
    )
    return [
        clip_verdict(
            trained,
            raw=[window.novelty_score for window in clip.windows],
            activity=[window.activity for window in clip.windows],
            silence=[bool(window.silence) for window in clip.windows],
        ).unknown
        for clip in clips
    ]


def test_the_novelty_rate_is_the_share_of_held_out_recordings_answered_unknown(
    tmp_path: Path,
) -> None:
    noise = _items(write_unlabelled_recordings(tmp_path / "noise", count=16))
    tones = _items(write_tone_folder(tmp_path / "tones", per_class=3))
    trained = _trained_on(noise[:12])
    held_out = noise[12:] + tones  # four of the trained sound, six of another

    metrics = held_out_metrics(trained, held_out)

    answered = _answered_unknown(trained, held_out)
    assert None not in answered
    assert metrics["recordings"] == 10
    assert metrics["novelty_rate"] == pytest.approx(sum(map(bool, answered)) / 10, abs=1e-4)
    assert 0.0 < metrics["novelty_rate"] < 1.0
    # The tones, a sound training never had, are the unknown ones.
    assert all(answered[4:]) and not all(answered[:4])
    assert metrics["accuracy"] is None and metrics["nmi"] is None  # no labels

    without_score = held_out_metrics(dataclasses.replace(trained, novelty=None), held_out)
    assert without_score["novelty_rate"] is None  # nothing for a promotion to compare
    assert without_score["clusters_used"] == metrics["clusters_used"]


def test_a_job_records_the_held_out_novelty_rate_its_evaluation_reports(
    settings: Settings, tmp_path: Path
) -> None:
    folder = write_unlabelled_recordings(tmp_path / "hum", tones_held_out=True)
    dataset_id = DatasetStore(settings.datasets_path).register_folder(folder).id

    result = run_training(
        unlabelled_params(dataset_id), job=None, settings=settings, train_function=train_model
    )

    held_out = ModelStore(settings.model_store_path).get("hum:v1").metadata["held_out"]
    assert held_out["stratified"] is False and len(held_out["files"]) == 2
    metrics = held_out["metrics"]
    assert metrics["accuracy"] is None and metrics["novelty_rate"] == 1.0  # both are tones
    assert (
        "novelty_rate is the share of them /v1/cluster answers as unknown"
        in (held_out["description"])
    )
    assert result["held_out"]["metrics"] == metrics
    # An evaluation on the model's own data set runs on the same held-out recordings, and
    # flags the same share of them.
    evaluation = run_evaluation(
        {"model_ref": "hum:v1", "dataset_id": dataset_id}, job=None, settings=settings
    )
    assert evaluation["report"]["novelty"]["known"]["flagged"] == metrics["novelty_rate"]
