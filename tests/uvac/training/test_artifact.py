"""Saved models: weights.safetensors + model.json, rebuilt from the files alone, validated."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import NormStats
from uvac.errors import ArtifactError
from uvac.models import CatUVAC, GmmUVAC, KMeansClusterer
from uvac.models.base import ClusterModel
from uvac.novelty import fit_novelty, window_vectors
from uvac.training.artifact import (
    MODEL_JSON,
    NOVELTY_JSON,
    NOVELTY_WEIGHTS,
    WEIGHTS_FILE,
    TrainedModel,
    load_trained_model,
    save_trained_model,
)

SMALL = {"conv_channels": [4, 8, 8, 16], "gru_hidden": 16, "deconv_channels": [8, 8, 4]}
FEATURES = FeatureConfig(
    sample_rate=8000, n_fft=256, win_length=256, hop_length=128, n_mels=16,
    window_seconds=0.5, window_hop_seconds=0.25,
)  # fmt: skip
FRAMES = FEATURES.frames_per_window


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def _stats() -> NormStats:
    return NormStats(mean=torch.randn(16), std=torch.rand(16) + 0.5, minimum=-3.0, maximum=4.0)


def _model(model_type: str) -> ClusterModel:
    if model_type == "cat-uvac":
        model: ClusterModel = CatUVAC(n_clusters=3, n_features=16, **SMALL)
    elif model_type == "uvac-gmm":
        model = GmmUVAC(n_clusters=3, n_features=16, n_frames=FRAMES, **SMALL)
    else:
        model = KMeansClusterer(n_clusters=3, n_features=16, n_frames=FRAMES)
        model.fit(torch.rand(12, 1, FRAMES, 16), seed=0)
    # Move batch-norm running statistics away from their initial values, then freeze.
    model.train()
    with torch.no_grad():
        for _ in range(2):
            if not isinstance(model, KMeansClusterer):
                model.loss(torch.rand(4, 1, FRAMES, 16), temperature=1.0, lambda_kl=1.0)
    return model.eval()


def _trained(model_type: str) -> TrainedModel:
    return TrainedModel(
        model=_model(model_type),
        feature_config=FEATURES,
        norm_stats=_stats(),
        info={"dataset_digest": "abc", "training": {"epochs_completed": 3}},
    )


@pytest.mark.parametrize("model_type", ["cat-uvac", "uvac-gmm", "kmeans"])
def test_round_trip_gives_identical_probabilities(tmp_path: Path, model_type: str) -> None:
    original = _trained(model_type)
    save_trained_model(tmp_path, original)
    assert sorted(p.name for p in tmp_path.iterdir()) == [MODEL_JSON, WEIGHTS_FILE]

    loaded = load_trained_model(tmp_path)
    assert type(loaded.model) is type(original.model)
    assert not loaded.model.training
    assert loaded.model.hyperparameters() == original.model.hyperparameters()
    assert loaded.feature_config == FEATURES
    assert torch.equal(loaded.norm_stats.mean, original.norm_stats.mean)
    assert loaded.norm_stats.maximum == original.norm_stats.maximum
    assert loaded.info == original.info
    x = torch.rand(5, 1, FRAMES, 16)
    mask = torch.ones(5, FRAMES)
    mask[0, 10:] = 0
    with torch.inference_mode():
        expected = original.model.cluster_probabilities(x, mask)
        actual = loaded.model.cluster_probabilities(x, mask)
    assert torch.equal(expected, actual)


def test_model_json_describes_the_model(tmp_path: Path) -> None:
    save_trained_model(tmp_path, _trained("cat-uvac"))
    document = json.loads((tmp_path / MODEL_JSON).read_text())
    assert document["format"] == "uvac-model" and document["format_version"] == 1
    assert document["model_type"] == "cat-uvac" and document["n_clusters"] == 3
    assert document["hyperparameters"]["conv_channels"] == [4, 8, 8, 16]
    assert FeatureConfig.from_dict(document["feature_config"]) == FEATURES


def _edit_json(directory: Path, **changes: object) -> None:
    path = directory / MODEL_JSON
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / MODEL_JSON).unlink(), "model.json is missing"),
        (lambda d: (d / WEIGHTS_FILE).unlink(), "weights.safetensors is missing"),
        (lambda d: (d / MODEL_JSON).write_text("{oops"), "not readable JSON"),
        (lambda d: (d / MODEL_JSON).write_text("[]"), "JSON object"),
        (lambda d: (d / WEIGHTS_FILE).write_bytes(b"garbage"), "not a readable safetensors"),
        (lambda d: _edit_json(d, format="other"), "format"),
        (lambda d: _edit_json(d, format_version=99), "format_version"),
        (lambda d: _edit_json(d, model_type="transformer"), "unknown model_type"),
        (lambda d: _edit_json(d, hyperparameters="big"), "'hyperparameters'"),
        (lambda d: _edit_json(d, n_clusters=4), "n_clusters 4 disagrees"),
        (lambda d: _edit_json(d, feature_config={"n_mels": 7}), "invalid feature_config"),
    ],
)
def test_unusable_files_raise_artifact_error(tmp_path: Path, damage, message: str) -> None:
    save_trained_model(tmp_path, _trained("cat-uvac"))
    damage(tmp_path)
    with pytest.raises(ArtifactError, match=message):
        load_trained_model(tmp_path)


def test_weights_that_do_not_fit_the_hyperparameters(tmp_path: Path) -> None:
    save_trained_model(tmp_path, _trained("cat-uvac"))
    document = json.loads((tmp_path / MODEL_JSON).read_text())
    document["hyperparameters"]["n_clusters"] = 4
    document["n_clusters"] = 4
    (tmp_path / MODEL_JSON).write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="does not fit"):
        load_trained_model(tmp_path)


def test_model_and_feature_config_must_agree(tmp_path: Path) -> None:
    save_trained_model(tmp_path, _trained("kmeans"))
    longer = FEATURES.to_dict() | {"window_seconds": 1.0}
    _edit_json(tmp_path, feature_config=longer)
    with pytest.raises(ArtifactError, match="-frame windows"):
        load_trained_model(tmp_path)


def test_unknown_hyperparameters_are_rejected(tmp_path: Path) -> None:
    save_trained_model(tmp_path, _trained("cat-uvac"))
    document = json.loads((tmp_path / MODEL_JSON).read_text())
    document["hyperparameters"]["colour"] = "blue"
    (tmp_path / MODEL_JSON).write_text(json.dumps(document))
    with pytest.raises(ArtifactError, match="invalid hyperparameters"):
        load_trained_model(tmp_path)


def test_a_model_saved_with_the_earlier_argument_name_loads(tmp_path: Path) -> None:
    # Models written before n_features was named so hold "n_mels" in their hyperparameters.
    trained = _trained("cat-uvac")
    save_trained_model(tmp_path, trained)
    document = json.loads((tmp_path / "model.json").read_text(encoding="utf-8"))
    hyperparameters = document["hyperparameters"]
    hyperparameters["n_mels"] = hyperparameters.pop("n_features")
    (tmp_path / "model.json").write_text(json.dumps(document), encoding="utf-8")
    loaded = load_trained_model(tmp_path)
    assert loaded.model.n_features == trained.model.n_features


def _with_novelty(trained: TrainedModel) -> TrainedModel:
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(40, 1, FRAMES, 16, generator=generator)
    vectors = window_vectors(features, torch.ones(40, FRAMES))
    novelty = fit_novelty(vectors, torch.arange(40) // 2, n_clusters=3, false_alarm_rate=0.1)
    return dataclasses.replace(trained, novelty=novelty)


def test_the_novelty_score_and_threshold_round_trip(tmp_path: Path) -> None:
    original = _with_novelty(_trained("cat-uvac"))
    save_trained_model(tmp_path, original)
    assert {NOVELTY_JSON, NOVELTY_WEIGHTS} <= {p.name for p in tmp_path.iterdir()}
    loaded = load_trained_model(tmp_path)
    assert original.novelty is not None and loaded.novelty is not None
    assert loaded.novelty.calibration.false_alarm_rate == 0.1
    assert loaded.novelty.calibration.threshold() == original.novelty.calibration.threshold()
    query = window_vectors(torch.rand(6, 1, FRAMES, 16), None)
    assert torch.equal(loaded.novelty.score.scores(query), original.novelty.score.scores(query))
    document = json.loads((tmp_path / NOVELTY_JSON).read_text())
    assert document["calibration"]["threshold"] == pytest.approx(
        original.novelty.calibration.threshold()
    )


def test_a_model_saved_without_a_novelty_score_loads_without_one(tmp_path: Path) -> None:
    save_trained_model(tmp_path, _trained("kmeans"))
    assert load_trained_model(tmp_path).novelty is None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / NOVELTY_JSON).unlink(), "novelty.json is missing"),
        (lambda d: (d / NOVELTY_WEIGHTS).unlink(), "novelty.safetensors is missing"),
        (lambda d: (d / NOVELTY_JSON).write_text("{}"), "not a 'uvac-novelty'"),
        (lambda d: (d / NOVELTY_WEIGHTS).write_bytes(b"x"), "not a readable safetensors"),
    ],
)
def test_a_damaged_novelty_score_is_an_artifact_error(tmp_path: Path, damage, message) -> None:
    save_trained_model(tmp_path, _with_novelty(_trained("cat-uvac")))
    damage(tmp_path)
    with pytest.raises(ArtifactError, match=message):
        load_trained_model(tmp_path)
