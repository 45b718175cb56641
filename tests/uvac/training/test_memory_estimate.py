"""uvac.training.memory_estimate: windows counted as the features cut them, steps as the meta device
counts them, models refused as the trainer would refuse them."""

from __future__ import annotations

import pytest
import torch

from tests.audio_fixtures import noise
from uvac.audio.decoding import Audio
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import FeatureExtractor, NormStats
from uvac.tensor_bytes import TensorBytesCounter
from uvac.training.memory_estimate import (
    _model,
    estimate_training_memory,
    window_count,
)
from uvac.training.presets import build_configs

FEATURES = FeatureConfig(
    sample_rate=8000, n_fft=256, win_length=200, hop_length=80, n_mels=16,
    window_seconds=0.5, window_hop_seconds=0.25,
)  # fmt: skip


@pytest.mark.parametrize("seconds", [0.01, 0.3, 0.5, 0.74, 0.76, 1.0, 3.3])
def test_window_count_is_what_the_feature_extractor_cuts(seconds: float) -> None:
    stats = NormStats(
        mean=torch.zeros(FEATURES.n_mels),
        std=torch.ones(FEATURES.n_mels),
        minimum=-3.0,
        maximum=3.0,
    )
    audio = Audio.from_samples(noise(seconds, sample_rate=8000), sample_rate=8000)
    windows = FeatureExtractor(FEATURES, stats).windows(audio)
    assert window_count([seconds], FEATURES) == len(windows)


def _direct_step_bytes(preset: str, **overrides: object) -> tuple[int, int]:
    features, config = build_configs(preset, train_overrides=overrides)
    channels, frames, bins = features.input_shape
    estimate = estimate_training_memory(config, features, windows=10_000, longest_s=1.0)
    views = 1 + (config.consistency_weight > 0) + (config.self_label_weight > 0)
    with torch.device("meta"):
        model = _model(config, bins=bins, frames=frames)
        counting = TensorBytesCounter()
        with counting:
            parts = model.loss(
                torch.zeros(config.batch_size, channels, frames, bins),
                None,
                temperature=1.0,
                lambda_kl=config.lambda_kl,
                cluster_balance=config.cluster_balance,
            )
            parts.total.backward()
    return estimate.step_bytes // views, counting.bytes


@pytest.mark.parametrize(
    ("preset", "overrides"),
    [
        ("paper", {}),
        ("scenes-logmel", {"batch_size": 96}),
        ("paper", {"model_type": "uvac-gmm", "batch_size": 40}),
        ("words-logmel", {"batch_size": 200, "model_hyperparameters": {"gru_layers": 3}}),
    ],
)
def test_the_extrapolated_step_is_the_full_count(preset: str, overrides: dict) -> None:
    estimated, counted = _direct_step_bytes(preset, **overrides)
    assert estimated == pytest.approx(counted, rel=0.02)


def test_the_estimate_grows_with_the_batch_and_the_data() -> None:
    features, config = build_configs("scenes-logmel")
    _, bigger_batch = build_configs("scenes-logmel", train_overrides={"batch_size": 512})
    base = estimate_training_memory(config, features, windows=1000, longest_s=1.0)
    assert (
        estimate_training_memory(bigger_batch, features, windows=1000, longest_s=1.0).step_bytes
        > 4 * base.step_bytes
    )
    assert (
        estimate_training_memory(config, features, windows=10_000, longest_s=1.0).dataset_bytes
        == 10 * base.dataset_bytes
    )


def test_a_model_the_options_cannot_build_is_refused() -> None:
    features, config = build_configs(
        "scenes-logmel", train_overrides={"model_hyperparameters": {"conv_channels": [8, 16]}}
    )
    with pytest.raises(ValueError):
        estimate_training_memory(config, features, windows=10, longest_s=1.0)


def test_kmeans_needs_no_network() -> None:
    features, config = build_configs("paper", train_overrides={"model_type": "kmeans"})
    estimate = estimate_training_memory(config, features, windows=100, longest_s=1.0)
    assert estimate.step_bytes > estimate.dataset_bytes > 0


def _count_builds(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per model the estimate builds from now on."""
    from uvac.training import memory_estimate

    built: list[int] = []
    real_model = memory_estimate._model

    def counting_model(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        built.append(1)
        return real_model(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(memory_estimate, "_model", counting_model)
    return built


def test_a_shape_is_estimated_once(monkeypatch: pytest.MonkeyPatch) -> None:

    unique = {"model_hyperparameters": {"conv_channels": [4, 8, 12, 20]}}  # a shape of its own
    features, config = build_configs("scenes-logmel", train_overrides=unique)
    built = _count_builds(monkeypatch)
    first = estimate_training_memory(config, features, windows=50_000, longest_s=1.0)
    builds = len(built)
    assert builds >= 1
    # The same shape on another data set: the model and the step come from the cache.
    second = estimate_training_memory(config, features, windows=60_000, longest_s=1.0)
    assert len(built) == builds
    assert second.model_bytes == first.model_bytes
    assert second.step_bytes == first.step_bytes
    assert second.dataset_bytes > first.dataset_bytes


def test_what_changes_no_tensor_size_shares_the_count(monkeypatch: pytest.MonkeyPatch) -> None:

    hyperparameters = {"model_hyperparameters": {"conv_channels": [8, 8, 16, 24]}}
    features, config = build_configs("scenes-logmel", train_overrides=hyperparameters)
    first = estimate_training_memory(config, features, windows=10_000, longest_s=1.0)
    built = _count_builds(monkeypatch)
    varied = {**hyperparameters, "seed": 99, "learning_rate": 1e-3, "lambda_kl": 0.9}
    longer = {"window_seconds": features.window_seconds * 2}
    for overrides, feature_overrides in [({**varied, "batch_size": 7}, None), (varied, longer)]:
        other_features, other = build_configs(
            "scenes-logmel", train_overrides=overrides, feature_overrides=feature_overrides
        )
        estimate = estimate_training_memory(other, other_features, windows=10_000, longest_s=1.0)
        assert estimate.model_bytes == first.model_bytes
    assert built == []  # counted once, for the first request
    # The batch still sizes the step, through the fitted formula.
    smaller = build_configs("scenes-logmel", train_overrides={**varied, "batch_size": 7})
    small = estimate_training_memory(smaller[1], smaller[0], windows=10_000, longest_s=1.0)
    assert small.step_bytes < first.step_bytes
    other_width = build_configs(
        "scenes-logmel", train_overrides={"model_hyperparameters": {"conv_channels": [8] * 4}}
    )
    estimate_training_memory(other_width[1], other_width[0], windows=10_000, longest_s=1.0)
    assert built  # a model of another shape is counted


def test_an_encoder_front_end_counts_the_encoder_and_the_longest_recording() -> None:
    from uvac.audio import SoundEncoder

    log_mel_features, log_mel_config = build_configs("scenes-logmel")
    features, config = build_configs("scenes")  # the sound encoder's embeddings
    on_encoder = estimate_training_memory(config, features, windows=100, longest_s=60.0)
    weights = 4_000_000 * 4  # the encoder's 4.7 M parameters, at least
    encoder_alone = SoundEncoder.memory_bytes(window_seconds=features.window_seconds, windows=1)
    assert on_encoder.recording_bytes > encoder_alone > weights
    decoded = 60 * features.sample_rate * 4  # a minute of float32 samples at 44.1 kHz
    assert on_encoder.recording_bytes > encoder_alone + decoded
    assert on_encoder.total_bytes == sum(size for _, size in on_encoder.parts())
    on_log_mels = estimate_training_memory(
        log_mel_config, log_mel_features, windows=100, longest_s=60.0
    )
    assert 60 * log_mel_features.sample_rate * 4 <= on_log_mels.recording_bytes < encoder_alone
    longer = estimate_training_memory(config, features, windows=100, longest_s=600.0)
    assert longer.recording_bytes > on_encoder.recording_bytes
