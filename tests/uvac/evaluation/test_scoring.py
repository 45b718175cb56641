"""Evaluation on tiny generated data sets: a transparent fake model, then a real untrained one."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import Tensor

from uvac.audio.datasets import DatasetItem
from uvac.audio.decoding import load_audio
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import FeatureExtractor, NormStats, fit_norm_stats
from uvac.errors import DatasetError
from uvac.evaluation.baselines import evaluate_with_baselines, kmeans_baseline, labels_as_clusters
from uvac.evaluation.inference import Clusterer
from uvac.evaluation.scoring import FEATURES_DESCRIPTION, evaluate_clusterer
from uvac.models import build_model
from uvac.models.base import ClusterModel
from uvac.training.artifact import TrainedModel

SAMPLE_RATE = 8000
FEATURE_CONFIG = FeatureConfig(
    sample_rate=SAMPLE_RATE, n_fft=256, win_length=256, hop_length=128, n_mels=16,
    window_seconds=0.5, window_hop_seconds=0.25,
)  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


class LowVersusHigh(ClusterModel):
    """A transparent clusterer: pi from the energy in the lower versus the upper mel bins; its
    latent is pi, as for Cat. UVAC."""

    model_type = "cat-uvac"

    def __init__(self) -> None:
        super().__init__()
        self.sharpness = torch.nn.Parameter(torch.tensor(20.0))

    @property
    def n_clusters(self) -> int:
        return 2

    def latent(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.cluster_probabilities(x, mask)

    def cluster_probabilities(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        assert not torch.is_grad_enabled()  # evaluation runs under inference_mode
        half = x.shape[3] // 2
        low = x[:, 0, :, :half].mean(dim=(1, 2))  # (B,)
        high = x[:, 0, :, half:].mean(dim=(1, 2))  # (B,)
        return torch.softmax(self.sharpness * torch.stack([low - high, high - low], 1), dim=1)

    def hyperparameters(self) -> dict[str, Any]:
        return {}


def item(path: Path, label: str | None) -> DatasetItem:
    return DatasetItem(path=path, label=label, relpath=path.name)


def _tone(path: Path, *, frequency: float, seconds: float, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    samples = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.standard_normal(t.size)
    sf.write(path, samples.astype(np.float32), SAMPLE_RATE)
    return path


@pytest.fixture
def tone_items(tmp_path: Path) -> list[DatasetItem]:
    items = []
    for i in range(4):  # lengths below, at and above one window (0.5 s)
        seconds = (0.3, 0.5, 0.9, 1.4)[i]
        items.append(item(_tone(tmp_path / f"low_{i}.wav", frequency=300 + 20 * i,
                                seconds=seconds, seed=i), "low"))  # fmt: skip
        items.append(item(_tone(tmp_path / f"high_{i}.wav", frequency=3000 + 50 * i,
                                seconds=seconds, seed=10 + i), "high"))  # fmt: skip
    return items


def _trained(model: ClusterModel, items: list[DatasetItem]) -> TrainedModel:
    extractor = FeatureExtractor(FEATURE_CONFIG)
    log_mels = [extractor.log_mel(load_audio(i.path, sample_rate=SAMPLE_RATE)) for i in items]
    stats = fit_norm_stats(log_mels, FEATURE_CONFIG)
    return TrainedModel(model=model, feature_config=FEATURE_CONFIG, norm_stats=stats)


def test_separable_tones_are_clustered_perfectly_and_report_is_json(
    tone_items: list[DatasetItem],
) -> None:
    model = LowVersusHigh()
    model.train()
    seen: list[tuple[int, int]] = []

    report = evaluate_clusterer(
        _trained(model, tone_items), tone_items, batch_size=3,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip

    assert model.training  # the caller's mode is restored
    assert seen[-1] == (8, 8) and len(seen) == 8
    assert report.accuracy == 1.0 and report.nmi == pytest.approx(1.0)
    assert report.n_clips == report.n_labelled == 8
    assert report.cluster_sizes == [4, 4] and report.clusters_used == 2
    assert set(report.cluster_to_label.values()) == {"low", "high"}  # type: ignore[union-attr]
    assert report.probabilities is not None and report.probabilities.shape == (8, 2)
    np.testing.assert_allclose(report.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert report.representations["latent"].shape == (8, 2)
    t, m = FEATURE_CONFIG.frames_per_window, FEATURE_CONFIG.n_mels
    assert report.representations["features"].shape == (8, t * m)
    assert report.scores["features"].description == FEATURES_DESCRIPTION
    assert report.scores["features"].silhouette is not None
    assert report.scores["latent"].silhouette is not None
    # both spaces separate the tones; the model's own 2-D latent flatters it (the padding of
    # short clips spreads them out in the features space)
    assert 0.0 < report.scores["features"].silhouette < report.scores["latent"].silhouette
    assert report.scores["latent"].silhouette > 0.5

    document = json.loads(json.dumps(report.to_dict()))
    assert document["accuracy"] == 1.0
    assert document["internal"]["latent"]["dimension"] == 2
    assert "representations" not in document and "probabilities" not in document


def test_clip_values_are_activity_weighted_means_of_window_values(
    tone_items: list[DatasetItem],
) -> None:
    trained = _trained(LowVersusHigh(), tone_items)
    long_item = tone_items[-1]  # 1.4 s: several windows, the last one overlapping

    report = evaluate_clusterer(trained, [long_item])

    windows = FeatureExtractor(FEATURE_CONFIG, trained.norm_stats).windows(
        load_audio(long_item.path, sample_rate=SAMPLE_RATE)
    )
    assert len(windows) > 1
    weights = windows.activity / windows.activity.sum()  # (W,)
    with torch.inference_mode():
        pi = trained.model.cluster_probabilities(windows.features, windows.mask)  # (W, 2)
    expected_pi = (pi * weights[:, None]).sum(dim=0)
    expected_features = (windows.features.flatten(1) * weights[:, None]).sum(dim=0)
    assert report.probabilities is not None
    np.testing.assert_allclose(report.probabilities[0], expected_pi.numpy(), rtol=1e-5)
    np.testing.assert_allclose(
        report.representations["features"][0], expected_features.numpy(), rtol=1e-5, atol=1e-6
    )
    # the clip's pi is exactly what the service returns for the clip
    served = Clusterer(trained).cluster_batch([load_audio(long_item.path, sample_rate=SAMPLE_RATE)])
    np.testing.assert_allclose(report.probabilities[0], served[0].probabilities, rtol=1e-6)
    # one clip is one cluster: internal metrics are undefined, and the report says so
    assert report.scores["features"].silhouette is None
    assert "1 cluster(s) used" in str(report.scores["features"].note)


def test_bad_files_are_skipped_and_listed(tone_items: list[DatasetItem], tmp_path: Path) -> None:
    bad = tmp_path / "broken.wav"
    bad.write_bytes(b"RIFF\x00\x00 definitely not audio")
    items = [*tone_items, item(bad, "low")]

    report = evaluate_clusterer(_trained(LowVersusHigh(), tone_items), items)

    assert report.n_clips == 8
    assert [entry["path"] for entry in report.skipped] == ["broken.wav"]
    assert report.skipped[0]["reason"]
    with pytest.raises(DatasetError):
        evaluate_clusterer(_trained(LowVersusHigh(), tone_items), [item(bad, None)])


def test_reference_rows_use_the_same_clips(tone_items: list[DatasetItem]) -> None:
    items = [*tone_items, item(tone_items[0].path, None)]  # one unlabelled clip
    report = evaluate_clusterer(_trained(LowVersusHigh(), tone_items), items)

    kmeans = kmeans_baseline(report, seed=0)
    reference = labels_as_clusters(report)

    assert report.n_labelled == 8 and report.n_clips == 9
    assert kmeans.n_clips == 9 and kmeans.n_clusters == 2
    assert kmeans.model_type == "kmeans"
    assert "fitted on these clips" in kmeans.to_dict()["description"]
    assert kmeans.paths == report.paths
    assert report.paths[0] == "low_0.wav"
    assert kmeans.accuracy is not None and 0.5 <= kmeans.accuracy <= 1.0
    assert kmeans.scores["latent"].silhouette == kmeans.scores["features"].silhouette
    assert kmeans_baseline(report, seed=0).assignments.tolist() == kmeans.assignments.tolist()

    assert reference is not None
    assert reference.n_clips == 8  # only labelled clips
    assert reference.accuracy == 1.0 and reference.nmi == pytest.approx(1.0)
    assert reference.cluster_to_label == {0: "high", 1: "low"}
    assert set(reference.scores) == {"latent", "features"}
    # the model matches the labels exactly, so both score the same in the features space
    labelled_only = evaluate_clusterer(_trained(LowVersusHigh(), tone_items), tone_items)
    assert reference.scores["features"].silhouette == pytest.approx(
        labelled_only.scores["features"].silhouette
    )


def test_labels_as_clusters_without_labels_is_none(tone_items: list[DatasetItem]) -> None:
    unlabelled = [item(tone.path, None) for tone in tone_items]

    rows = evaluate_with_baselines(_trained(LowVersusHigh(), tone_items), unlabelled)

    assert [row.method for row in rows] == ["cat-uvac", "K-means (same features)"]
    assert rows[0].accuracy is None and rows[0].nmi is None
    assert rows[0].cluster_to_label is None
    row = rows[1].table_row(dataset="tones", space="features")
    assert row.k == 2 and row.accuracy is None and row.silhouette is not None


def _real_model(model_type: str, items: list[DatasetItem], stats: NormStats) -> ClusterModel:
    tiny = {"conv_channels": [2, 2, 2, 4], "gru_hidden": 4, "gru_layers": 1}
    n_frames = FEATURE_CONFIG.frames_per_window
    if model_type == "cat-uvac":
        return build_model(
            model_type, n_clusters=3, n_features=16, deconv_channels=[2, 2, 2], **tiny
        )
    if model_type == "uvac-gmm":
        return build_model(
            model_type, n_clusters=3, n_features=16, n_frames=n_frames, latent_dim=5,
            deconv_channels=[2, 2, 2], **tiny,
        )  # fmt: skip
    model = build_model("kmeans", n_clusters=3, n_features=16, n_frames=n_frames)
    extractor = FeatureExtractor(FEATURE_CONFIG, stats)
    windows = [extractor.windows(load_audio(i.path, sample_rate=SAMPLE_RATE)) for i in items]
    features = torch.cat([w.features for w in windows])
    mask = torch.cat([w.mask for w in windows])
    model.fit(features, mask, seed=0)  # type: ignore[operator]
    return model


@pytest.mark.parametrize(("model_type", "latent_dim"), [
    ("cat-uvac", 3), ("uvac-gmm", 5), ("kmeans", FEATURE_CONFIG.frames_per_window * 16),
])  # fmt: skip
def test_real_model_types_report_their_own_latent(
    tone_items: list[DatasetItem], model_type: str, latent_dim: int
) -> None:
    torch.manual_seed(0)
    trained = _trained(LowVersusHigh(), tone_items)
    trained.model = _real_model(model_type, tone_items, trained.norm_stats)

    rows = evaluate_with_baselines(trained, tone_items, batch_size=5)

    report = rows[0]
    assert report.method == model_type and report.n_clusters == 3
    assert report.representations["latent"].shape == (8, latent_dim)
    assert report.probabilities is not None
    np.testing.assert_allclose(report.probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert sum(report.cluster_sizes) == 8
    assert report.accuracy is not None and 0.5 <= report.accuracy <= 1.0
    assert [row.method for row in rows[1:]] == ["K-means (same features)", "labels as clusters"]
    json.dumps([row.to_dict() for row in rows])
