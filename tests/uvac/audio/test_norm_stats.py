"""uvac.audio.features: normalisation statistics (`fit_norm_stats`, `NormStats`) and their use."""

from __future__ import annotations

import math

import pytest
import safetensors.torch
import torch

from tests.audio_fixtures import chirp
from tests.uvac.feature_helpers import clip, fitted_extractor, training_clips
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import FeatureExtractor, NormStats, fit_norm_stats


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


# --- normalisation statistics -----------------------------------------------------------------


def test_norm_stats_match_a_direct_computation_and_map_training_frames_onto_0_1() -> None:
    config = FeatureConfig()
    raw = FeatureExtractor(config)
    log_mels = [raw.log_mel(audio) for audio in training_clips()]
    stats = fit_norm_stats(iter(log_mels), config)  # a one-pass iterator is enough

    frames = torch.cat(log_mels).double()  # (sum T, M)
    torch.testing.assert_close(stats.mean.double(), frames.mean(dim=0), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        stats.std.double(), frames.std(dim=0, unbiased=False), rtol=1e-4, atol=1e-5
    )
    standardised = (frames - frames.mean(dim=0)) / frames.std(dim=0, unbiased=False)
    assert stats.minimum == pytest.approx(standardised.min().item(), rel=1e-4)
    assert stats.maximum == pytest.approx(standardised.max().item(), rel=1e-4)

    extractor = FeatureExtractor(config, stats)
    normalised = torch.cat([extractor.normalised(audio)[0] for audio in training_clips()])
    assert normalised.min().item() == pytest.approx(0.0, abs=1e-5)
    assert normalised.max().item() == pytest.approx(1.0, abs=1e-5)


def test_norm_stats_tensor_round_trip_through_safetensors() -> None:
    stats = fitted_extractor().stats
    assert stats is not None
    tensors = stats.to_tensors()
    assert all(key.startswith("norm_stats.") for key in tensors)
    loaded = safetensors.torch.load(safetensors.torch.save(tensors | {"model.w": torch.ones(3)}))
    rebuilt = NormStats.from_tensors(loaded)  # other keys are ignored
    torch.testing.assert_close(rebuilt.mean, stats.mean)
    torch.testing.assert_close(rebuilt.std, stats.std)
    assert (rebuilt.minimum, rebuilt.maximum) == (stats.minimum, stats.maximum)
    audio = clip(chirp(300, 3000, 1.3))
    torch.testing.assert_close(
        FeatureExtractor(FeatureConfig(), rebuilt).windows(audio).features,
        FeatureExtractor(FeatureConfig(), stats).windows(audio).features,
    )


def test_norm_stats_from_incomplete_or_bad_tensors_is_refused() -> None:
    stats = fitted_extractor().stats
    assert stats is not None
    tensors = stats.to_tensors()
    with pytest.raises(ValueError, match=r"missing: norm_stats\.std"):
        NormStats.from_tensors({k: v for k, v in tensors.items() if k != "norm_stats.std"})
    with pytest.raises(ValueError, match="positive"):
        NormStats.from_tensors(tensors | {"norm_stats.std": torch.zeros(64)})
    with pytest.raises(ValueError, match="exceed"):
        NormStats.from_tensors(tensors | {"norm_stats.maximum": torch.tensor([-1e9])})
    with pytest.raises(ValueError, match="finite"):
        NormStats.from_tensors(tensors | {"norm_stats.mean": torch.full((64,), math.nan)})


def test_extractor_refuses_stats_of_another_mel_count() -> None:
    stats = fitted_extractor().stats
    with pytest.raises(ValueError, match="mel bins"):
        FeatureExtractor(FeatureConfig(n_mels=128), stats)


def test_fit_norm_stats_needs_frames_of_the_configured_shape() -> None:
    with pytest.raises(ValueError, match="no active frames"):
        fit_norm_stats([], FeatureConfig())
    with pytest.raises(ValueError, match=r"\(T, 64\)"):
        fit_norm_stats([torch.zeros(10, 32)], FeatureConfig())


def test_constant_training_data_still_gives_usable_stats() -> None:
    config = FeatureConfig()
    stats = fit_norm_stats([torch.zeros(5, 64)], config)
    assert torch.all(stats.std == 1.0) and stats.maximum > stats.minimum
