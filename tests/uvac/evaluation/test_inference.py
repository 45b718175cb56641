"""Clusterer: all windows of all clips in one pass, activity-weighted clip pi, a timeline."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from uvac.audio.datasets import DatasetItem
from uvac.audio.decoding import Audio, load_audio
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import FeatureExtractor, fit_norm_stats
from uvac.evaluation.inference import Clusterer, aggregate_windows
from uvac.models import CatUVAC
from uvac.training.artifact import TrainedModel, load_trained_model, save_trained_model
from uvac.training.config import TrainConfig
from uvac.training.pipeline import train_model

SAMPLE_RATE = 8000
FEATURES = FeatureConfig(
    sample_rate=SAMPLE_RATE, n_fft=256, win_length=256, hop_length=128, n_mels=16,
    window_seconds=0.5, window_hop_seconds=0.25,
)  # fmt: skip
SMALL = {"conv_channels": [4, 8, 8, 16], "gru_hidden": 16, "deconv_channels": [8, 8, 4]}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)


def tone(frequency: float, seconds: float, *, seed: int = 0) -> Audio:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    samples = 0.5 * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.standard_normal(t.size)
    return Audio.from_samples(samples.astype(np.float32), sample_rate=SAMPLE_RATE)


@pytest.fixture
def trained() -> TrainedModel:
    clips = [tone(f, 0.6, seed=i) for i, f in enumerate((300.0, 1000.0, 3000.0))]
    extractor = FeatureExtractor(FEATURES)
    stats = fit_norm_stats([extractor.log_mel(clip) for clip in clips], FEATURES)
    model = CatUVAC(n_clusters=3, n_features=16, **SMALL).eval()
    return TrainedModel(model=model, feature_config=FEATURES, norm_stats=stats)


def test_cluster_batch_runs_one_forward_pass_and_keeps_the_timeline(
    trained: TrainedModel,
) -> None:
    clusterer = Clusterer(trained)
    passes: list[int] = []
    trained.model.h_encoder.register_forward_hook(lambda _m, args, _o: passes.append(len(args[0])))
    clips = [tone(300.0, 0.2), tone(1000.0, 0.5), tone(3000.0, 1.3, seed=1)]
    results = clusterer.cluster_batch(clips)

    extractor = FeatureExtractor(FEATURES, trained.norm_stats)
    windows, slices = extractor.windows_batch(clips)
    assert passes == [len(windows)]  # every window of every clip in one pass
    with torch.inference_mode():
        expected = trained.model.cluster_probabilities(windows.features, windows.mask)
    assert len(results) == 3
    for clip, result, part in zip(clips, results, slices, strict=True):
        assert len(result.windows) == part.stop - part.start
        assert result.duration_s == pytest.approx(clip.duration_s)
        pooled = aggregate_windows(expected[part], windows.activity[part])
        assert result.probabilities == pytest.approx(pooled.tolist(), abs=1e-6)
        assert sum(result.probabilities) == pytest.approx(1.0, abs=1e-6)
        assert result.assignment == int(np.argmax(result.probabilities))
        assert result.confidence == pytest.approx(max(result.probabilities))
        for window, index in zip(result.windows, range(part.start, part.stop), strict=True):
            assert window.start_s == windows.starts_s[index]
            assert window.end_s == windows.ends_s[index]
            assert window.probabilities == pytest.approx(expected[index].tolist(), abs=1e-6)
            assert window.assignment == int(expected[index].argmax())
    assert len(results[2].windows) > 1  # the long clip is cut into several windows
    assert results[2].windows[0].start_s == 0.0
    assert results[2].windows[-1].end_s == pytest.approx(clips[2].duration_s, abs=0.02)


def test_empty_batch_returns_empty_list(trained: TrainedModel) -> None:
    assert Clusterer(trained).cluster_batch([]) == []


def test_aggregate_weights_windows_by_activity() -> None:
    probabilities = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    pooled = aggregate_windows(probabilities, torch.tensor([1.0, 0.25]))
    assert pooled.tolist() == pytest.approx([0.8, 0.2])
    silent = aggregate_windows(probabilities, torch.tensor([0.0, 0.0]))
    assert silent.tolist() == pytest.approx([0.5, 0.5])


def test_cluster_features_and_bf16_agree_with_fp32(trained: TrainedModel) -> None:
    x = torch.rand(6, 1, FEATURES.frames_per_window, 16)
    fp32 = Clusterer(trained).cluster_features(x)
    bf16 = Clusterer(trained, bf16_autocast=True).cluster_features(x)
    assert fp32.shape == bf16.shape == (6, 3)
    assert fp32.dtype == bf16.dtype == torch.float32
    assert torch.allclose(bf16.sum(dim=1), torch.ones(6), atol=1e-5)
    assert torch.allclose(fp32, bf16, atol=0.05)


def _write(path: Path, audio: Audio) -> Path:
    sf.write(path, audio.samples, SAMPLE_RATE)
    return path


def test_trained_saved_and_loaded_model_clusters_new_recordings(tmp_path: Path) -> None:
    """End to end: train (K-means, fast), save, load, cluster unseen clips by their tone."""
    frequencies = (300.0, 1000.0, 3000.0)
    items = [
        DatasetItem(
            path=_write(tmp_path / f"{int(f)}_{take}.wav", tone(f, 0.5, seed=take)),
            label=str(int(f)),
            relpath=f"{int(f)}_{take}.wav",
        )
        for f in frequencies
        for take in range(4)
    ]
    config = TrainConfig(model_type="kmeans", n_clusters=3, device="cpu")
    save_trained_model(tmp_path / "model", train_model(items, config=config,
                                                       feature_config=FEATURES))  # fmt: skip
    clusterer = Clusterer(load_trained_model(tmp_path / "model"))
    unseen = [tone(f, 0.5, seed=100 + i) for i, f in enumerate(frequencies * 2)]
    assignments = [r.assignment for r in clusterer.cluster_batch(unseen)]
    assert len(set(assignments[:3])) == 3  # three tones, three clusters
    assert assignments[:3] == assignments[3:]  # the same tone, the same cluster


def test_clusterer_takes_decoded_files_at_its_rate(trained: TrainedModel) -> None:
    clusterer = Clusterer(trained, device="cpu")
    assert clusterer.sample_rate == SAMPLE_RATE and clusterer.n_clusters == 3
    buffer = io.BytesIO()
    sf.write(buffer, tone(440.0, 0.4).samples, 16000, format="WAV")  # another rate on disk
    audio = load_audio(buffer.getvalue(), sample_rate=clusterer.sample_rate)
    (result,) = clusterer.cluster_batch([audio])
    assert result.duration_s == pytest.approx(0.2, abs=0.01)  # 3200 samples at 16 kHz


def _run_steps(clusterer: Clusterer, audio: Audio, windows_per_step: int) -> tuple[int, object]:
    steps = clusterer.cluster_in_steps(audio, windows_per_step=windows_per_step)
    count = 0
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return count, stop.value
        count += 1


@pytest.mark.parametrize("windows_per_step", [1, 3, 100])
def test_clustering_in_steps_equals_one_pass(trained: TrainedModel, windows_per_step: int) -> None:
    clusterer = Clusterer(trained)
    clip = tone(1000.0, 4.0, seed=2)
    (expected,) = clusterer.cluster_batch([clip])
    steps, result = _run_steps(clusterer, clip, windows_per_step)
    n_windows = len(expected.windows)
    assert steps == 1 + -(-n_windows // windows_per_step)  # features, then the windows
    assert result.assignment == expected.assignment
    np.testing.assert_allclose(result.probabilities, expected.probabilities, atol=1e-5)
    assert [w.start_s for w in result.windows] == [w.start_s for w in expected.windows]


def test_clustering_in_steps_detects_speech_as_one_pass_does(trained: TrainedModel) -> None:
    clusterer = Clusterer(trained)
    clusterer.speech_detector = _CountingDetector()  # type: ignore[assignment]
    clip = tone(1000.0, 4.0, seed=2)
    (expected,) = clusterer.cluster_batch([clip])
    _, result = _run_steps(clusterer, clip, 3)
    assert expected.speech == result.speech == 0.5
    assert [w.speech for w in result.windows] == [w.speech for w in expected.windows]
    assert {w.speech for w in result.windows} == {0.5}


def test_clustering_in_steps_with_an_encoder_embeds_a_few_windows_per_step() -> None:
    from app.default_model import BUNDLE_DIR

    clusterer = Clusterer(load_trained_model(BUNDLE_DIR))
    rate = clusterer.sample_rate
    t = np.arange(12 * rate) / rate
    clip = Audio.from_samples(
        (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sample_rate=rate
    )
    (expected,) = clusterer.cluster_batch([clip])
    steps, result = _run_steps(clusterer, clip, 2)
    assert steps == -(-len(expected.windows) // 2)
    np.testing.assert_allclose(result.probabilities, expected.probabilities, atol=1e-4)
    assert [w.end_s for w in result.windows] == [w.end_s for w in expected.windows]


class _CountingDetector:
    """Stands in for Silero VAD: every span half speech; counts the clips it hears."""

    def __init__(self) -> None:
        self.clips: list[float] = []

    def speech_shares(self, audio: Audio, spans: list[tuple[float, float]]) -> list[float]:
        self.clips.append(audio.duration_s)
        return [0.5] * len(spans)

    def speech_shares_many(
        self, clips: list[tuple[Audio, list[tuple[float, float]]]]
    ) -> list[list[float]]:
        return [self.speech_shares(audio, spans) for audio, spans in clips]


def test_clips_that_need_no_speech_skip_the_detector_and_keep_their_pi(
    trained: TrainedModel,
) -> None:
    clusterer = Clusterer(trained)
    detector = _CountingDetector()
    clusterer.speech_detector = detector  # type: ignore[assignment]
    clips = [tone(300.0, 0.6), tone(1000.0, 0.9, seed=1), tone(3000.0, 0.7, seed=2)]
    full = clusterer.cluster_batch(clips)
    assert len(detector.clips) == 3
    mixed = clusterer.cluster_batch(clips, speech=[False, True, False])
    assert detector.clips[3:] == [pytest.approx(0.9)]  # only the clip that asked for it
    for with_speech, answer, wanted in zip(full, mixed, [False, True, False], strict=True):
        np.testing.assert_allclose(answer.probabilities, with_speech.probabilities, atol=1e-6)
        np.testing.assert_allclose(
            [w.probabilities for w in answer.windows],
            [w.probabilities for w in with_speech.windows],
            atol=1e-6,
        )
        assert [w.level_dbfs for w in answer.windows] == [w.level_dbfs for w in with_speech.windows]
        expected = 0.5 if wanted else None
        assert answer.speech == expected
        assert {w.speech for w in answer.windows} == {expected}


def test_speech_flags_must_match_the_clips(trained: TrainedModel) -> None:
    with pytest.raises(ValueError, match="2 flags for 1 clips"):
        Clusterer(trained).cluster_batch([tone(300.0, 0.6)], speech=[True, False])


def test_clusters_without_novelty_keep_their_pi_and_score_nothing() -> None:
    from tests.app.novelty_models import model_with_novelty, tone_clip
    from uvac.audio import Audio, FeatureExtractor

    trained = model_with_novelty()
    clusterer = Clusterer(trained)
    extractor = FeatureExtractor(trained.feature_config, trained.norm_stats)
    audios = [Audio.from_samples(tone_clip(hz, 0), sample_rate=trained.feature_config.sample_rate)
              for hz in (300.0, 1500.0)]  # fmt: skip
    windows, slices = extractor.windows_batch(audios)
    durations = [audio.duration_s for audio in audios]

    scored = clusterer.cluster_windows(windows, slices, durations)
    plain = clusterer.cluster_windows(windows, slices, durations, novelty=False)

    for with_scores, without in zip(scored, plain, strict=True):
        assert with_scores.probabilities == without.probabilities
        assert all(window.novelty_score is not None for window in with_scores.windows)
        assert all(window.novelty_score is None and window.novelty is None
                   for window in without.windows)  # fmt: skip
