"""The pretrained encoders: loaded from their installed packages, documented shapes, determinism,
and models trained on their embeddings that round-trip and refuse another encoder."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.audio_fixtures import chirp, noise, tone, write_audio
from uvac.audio.datasets import AudioFolder
from uvac.audio.decoding import Audio, load_audio
from uvac.audio.encoders import (
    ENCODERS,
    SoundEncoder,
    SpeechEncoder,
    configure_encoder_precision,
    load_encoder,
)
from uvac.audio.encoders.base import package_file
from uvac.audio.features import FeatureExtractor
from uvac.errors import EncoderMismatchError, EncoderUnavailableError
from uvac.evaluation.inference import Clusterer
from uvac.training.artifact import MODEL_JSON, load_trained_model, save_trained_model
from uvac.training.pipeline import train_model
from uvac.training.presets import build_configs


@pytest.fixture(autouse=True)
def _threads_and_precision() -> None:
    torch.set_num_threads(2)
    # Process-wide (an API started by an earlier test may have switched bf16 on).
    configure_encoder_precision("fp32")


@pytest.mark.parametrize("name", sorted(ENCODERS))
def test_encoders_load_from_their_packages_with_an_identity(name: str) -> None:
    encoder = load_encoder(name)
    identity = encoder.identity
    assert identity.name == name
    assert identity.package in {"aisfx", "efficientword-net"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", identity.version)
    assert re.fullmatch(r"[0-9a-f]{64}", identity.sha256)
    assert load_encoder(name) is encoder  # one instance per process


def test_a_missing_package_is_a_clear_unavailable_error() -> None:
    with pytest.raises(EncoderUnavailableError, match=r"not installed.*requirements-encoders"):
        package_file("no-such-encoder-package", "no_such_module", "weights.bin")


@pytest.mark.parametrize("seconds", [0.05, 1.0, 2.5, 5.0])
def test_sound_embeddings_have_512_values_for_any_length(seconds: float) -> None:
    encoder = load_encoder(SoundEncoder.name)
    window = torch.from_numpy(chirp(200, 8000, seconds, sample_rate=44100))
    first = encoder.embed([window])
    assert first.shape == (1, 512)
    assert first.dtype == torch.float32
    assert bool(torch.isfinite(first).all())
    assert torch.equal(first, encoder.embed([window]))  # deterministic


def test_sound_embeddings_batched_equal_one_by_one_and_follow_the_sound() -> None:
    encoder = load_encoder(SoundEncoder.name)
    windows = [
        torch.from_numpy(tone(440, 1.0, sample_rate=44100)),
        torch.from_numpy(noise(1.0, sample_rate=44100)),
        torch.from_numpy(tone(440, 3.0, sample_rate=44100)),
    ]
    batched = encoder.embed(windows)
    one_by_one = torch.cat([encoder.embed([window]) for window in windows])
    torch.testing.assert_close(batched, one_by_one, rtol=1e-4, atol=1e-5)
    # A tone is closer to a longer tone than to noise.
    tone_to_tone = torch.dist(batched[0], batched[2])
    tone_to_noise = torch.dist(batched[0], batched[1])
    assert tone_to_tone < tone_to_noise


def test_sound_embeddings_ignore_the_recording_level() -> None:
    encoder = load_encoder(SoundEncoder.name)
    quiet = torch.from_numpy(chirp(300, 3000, 1.0, sample_rate=44100, amplitude=0.01))
    loud = quiet * 50
    torch.testing.assert_close(encoder.embed([quiet]), encoder.embed([loud]), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("seconds", [0.3, 1.0, 1.5])
def test_speech_embeddings_have_2048_unit_norm_values(seconds: float) -> None:
    encoder = load_encoder(SpeechEncoder.name)
    window = torch.from_numpy(chirp(300, 3000, seconds, sample_rate=16000))
    assert encoder.features(window).shape == (149, 64)
    embedding = encoder.embed([window])
    assert embedding.shape == (1, 2048)
    assert float(embedding.norm()) == pytest.approx(1.0, abs=1e-3)
    assert torch.equal(embedding, encoder.embed([window]))


def test_speech_windows_longer_than_the_network_input_are_refused() -> None:
    encoder = load_encoder(SpeechEncoder.name)
    with pytest.raises(ValueError, match="at most 24000 samples"):
        encoder.embed([torch.zeros(24001)])


def test_non_finite_windows_are_refused() -> None:
    encoder = load_encoder(SoundEncoder.name)
    window = torch.zeros(44100)
    window[10] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        encoder.embed([window])


@pytest.mark.parametrize("source_rate", [8000, 16000, 22050, 48000])
def test_windows_of_embeddings_at_any_source_rate(tmp_path: Path, source_rate: int) -> None:
    feature_config, _ = build_configs("scenes")
    path = write_audio(tmp_path / "clip.wav", tone(500, 12.0, sample_rate=source_rate),
                       sample_rate=source_rate)  # fmt: skip
    audio = load_audio(path, sample_rate=feature_config.sample_rate)
    raw, slices = FeatureExtractor(feature_config).embedder.raw_windows_batch([audio])  # type: ignore[union-attr]
    # 12 s in 5 s windows every 2.5 s: starts 0, 2.5, 5 and 7 (the last aligned to the end)
    assert raw.features.shape == (4, 1, 1, 512)
    assert raw.mask.shape == (4, 1)
    assert raw.starts_s == pytest.approx([0.0, 2.5, 5.0, 7.0], abs=1e-3)
    assert raw.ends_s[-1] == pytest.approx(12.0, abs=1e-3)
    assert slices == [slice(0, 4)]


@pytest.mark.parametrize(("seconds", "starts"), [(5.0, [0.0]), (5.05, [0.0]), (5.5, [0.0, 0.5])])
def test_a_short_tail_past_a_window_gets_no_window_of_its_own(
    seconds: float, starts: list[float]
) -> None:
    feature_config, _ = build_configs("scenes")  # 5 s windows every 2.5 s
    audio = Audio.from_samples(tone(500, seconds, sample_rate=44100), sample_rate=44100)
    raw, _ = FeatureExtractor(feature_config).embedder.raw_windows_batch([audio])  # type: ignore[union-attr]
    assert raw.starts_s == pytest.approx(starts, abs=1e-3)


def test_a_clip_shorter_than_a_window_is_one_window_weighted_by_its_audio() -> None:
    feature_config, _ = build_configs("speech")
    audio = Audio.from_samples(tone(300, 0.6), sample_rate=16000)
    raw, _ = FeatureExtractor(feature_config).embedder.raw_windows_batch([audio])  # type: ignore[union-attr]
    assert raw.features.shape == (1, 1, 1, 2048)
    assert float(raw.activity[0]) == pytest.approx(0.6 / 1.5, abs=1e-3)
    assert raw.ends_s == pytest.approx([0.6], abs=1e-3)


@pytest.fixture(scope="module")
def sound_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    """A Cat. UVAC trained for two epochs on the sound encoder's embeddings of 12 clips."""
    root = tmp_path_factory.mktemp("scenes")
    clips: list[Path] = []
    for index in range(4):
        clips.append(write_audio(root / "tone" / f"t{index}.wav", tone(300 + 40 * index, 2.0)))
        clips.append(write_audio(root / "noise" / f"n{index}.wav", noise(2.0, seed=index)))
        clips.append(write_audio(root / "sweep" / f"s{index}.wav", chirp(200, 4000 + index, 2.0)))
    feature_config, train_config = build_configs(
        "scenes", train_overrides={"n_clusters": 3, "epochs": 2, "device": "cpu"}
    )
    seen: list[tuple[int, int]] = []
    trained = train_model(
        AudioFolder.scan(root).items,
        config=train_config,
        feature_config=feature_config,
        encoding_progress=lambda done, total: seen.append((done, total)),
    )
    assert seen[-1] == (12, 12)
    directory = root / "model"
    save_trained_model(directory, trained)
    return directory, clips


def test_a_model_on_embeddings_round_trips_with_identical_pi(
    sound_model: tuple[Path, list[Path]],
) -> None:
    directory, clips = sound_model
    document = json.loads((directory / MODEL_JSON).read_text())
    assert document["feature_config"]["frontend"] == "sound-encoder"
    assert document["encoder"]["sha256"] == load_encoder("sound-encoder").identity.sha256
    assert document["hyperparameters"]["architecture"] == "mlp"
    first = load_trained_model(directory)
    second = load_trained_model(directory)
    audios = [load_audio(path, sample_rate=44100) for path in clips[:3]]
    results_first = Clusterer(first).cluster_batch(audios)
    results_second = Clusterer(second).cluster_batch(audios)
    for a, b in zip(results_first, results_second, strict=True):
        assert a.probabilities == b.probabilities
        assert len(a.probabilities) == 3
        assert sum(a.probabilities) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("field", ["sha256", "version"])
def test_a_model_refuses_an_encoder_that_differs(
    sound_model: tuple[Path, list[Path]], tmp_path: Path, field: str
) -> None:
    directory, _ = sound_model
    copy = tmp_path / "model"
    copy.mkdir()
    for path in directory.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    document = json.loads((copy / MODEL_JSON).read_text())
    document["encoder"][field] = "0" * 64 if field == "sha256" else "9.9.9"
    (copy / MODEL_JSON).write_text(json.dumps(document))
    with pytest.raises(EncoderMismatchError, match=field):
        load_trained_model(copy)


def test_silence_embeds_without_error_and_stays_finite() -> None:
    encoder = load_encoder(SoundEncoder.name)
    embedding = encoder.embed([torch.zeros(44100)])
    assert bool(torch.isfinite(embedding).all())
    assert np.isfinite(encoder.embed([torch.zeros(100)]).numpy()).all()


def test_bf16_precision_applies_to_the_loaded_encoder_and_stays_close_to_fp32() -> None:
    encoder = load_encoder(SoundEncoder.name)
    window = torch.from_numpy(chirp(200, 6000, 1.0, sample_rate=44100))
    try:
        assert configure_encoder_precision("fp32") is False
        reference = encoder.embed([window])
        assert configure_encoder_precision("bf16") is True
        assert encoder.bf16_autocast is True  # type: ignore[attr-defined]
        low = encoder.embed([window])
    finally:
        configure_encoder_precision("fp32")
    assert not torch.equal(low, reference)
    similarity = torch.nn.functional.cosine_similarity(low, reference).item()
    assert similarity > 0.99
    with pytest.raises(ValueError, match="auto, fp32, bf16"):
        configure_encoder_precision("int4")


def test_bf16_weights_kept_in_bf16_answer_what_autocast_of_the_float32_network_does() -> None:
    encoder = load_encoder(SoundEncoder.name)
    windows = [
        torch.from_numpy(chirp(200, 6000, seconds, sample_rate=44100)) for seconds in (1, 1, 2)
    ]
    spectrograms = torch.stack([encoder.spectrogram(window) for window in windows[:2]])  # type: ignore[attr-defined]
    try:
        configure_encoder_precision("bf16")
        embedded = encoder.embed(windows)
        with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16):
            autocast = encoder.network(spectrograms).float()  # type: ignore[attr-defined]
    finally:
        configure_encoder_precision("fp32")
    assert torch.equal(embedded[:2], autocast)
    assert encoder.bf16_autocast is False  # type: ignore[attr-defined]


def test_the_encoding_pass_reports_every_file_and_skips_undecodable_ones(tmp_path: Path) -> None:
    from uvac.training.data import windows_for_training

    write_audio(tmp_path / "a" / "tone.wav", tone(400, 1.0))
    write_audio(tmp_path / "b" / "noise.wav", noise(1.0))
    # sorted last, so that its progress call is the final one
    (tmp_path / "b" / "zbroken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot audio")
    feature_config, _ = build_configs("scenes")
    seen: list[tuple[int, int]] = []
    items = AudioFolder.scan(tmp_path).items
    data = windows_for_training(
        items, feature_config=feature_config, progress=lambda d, t: seen.append((d, t))
    )
    assert seen[-1] == (len(items), len(items)) == (3, 3)
    assert data.n_clips == 2
    assert [Path(entry["path"]).name for entry in data.skipped] == ["zbroken.wav"]
    assert data.features.shape == (2, 1, 1, 512)
    # standardised with the statistics of these very windows
    torch.testing.assert_close(data.features.mean(dim=0), torch.zeros(1, 1, 512), atol=1e-4, rtol=0)
