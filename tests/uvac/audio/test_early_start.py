"""Starting a window's embedding on its first samples and finishing it once it is whole."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.audio_fixtures import noise
from uvac.audio import Audio, configure_encoder_precision, load_encoder
from uvac.audio.encoders import SoundEncoder, SpeechEncoder
from uvac.audio.encoders.early_start import ConvLayer, finish_rows, run_steps, start_rows

RATE = SoundEncoder.sample_rate


@pytest.fixture(autouse=True)
def _threads_and_precision() -> None:
    torch.set_num_threads(2)
    configure_encoder_precision("fp32")  # process-wide: an earlier API test may set bf16


def _random_stack(seed: int) -> list[ConvLayer]:
    """Four layers of the sound network's kind, with pooling after the second and fourth,
    random weights and batch-norm statistics."""
    generator = torch.Generator().manual_seed(seed)
    layers = []
    for in_channels, out_channels, pool in ((1, 4, 1), (4, 6, 2), (6, 6, 1), (6, 5, 2)):
        conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        norm = nn.BatchNorm2d(out_channels).eval()
        with torch.no_grad():
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=generator))
            norm.running_mean.copy_(torch.randn(out_channels, generator=generator))
            norm.running_var.copy_(torch.rand(out_channels, generator=generator) + 0.5)
            norm.weight.copy_(torch.randn(out_channels, generator=generator))
        layers.append(ConvLayer(conv, norm, pool))
    return layers


def _whole_pass(layers: list[ConvLayer], x: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = F.relu(layer.norm(layer.conv(x)))
        if layer.pool > 1:
            x = F.max_pool2d(x, layer.pool)
    return x.mean(dim=3).amax(dim=2)


@pytest.mark.parametrize("rows", [23, 24, 37])
def test_a_started_stack_finishes_as_the_whole_pass_at_every_cut(rows: int) -> None:
    layers = _random_stack(seed=rows)
    x = torch.randn(2, 1, rows, 8, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        whole = _whole_pass(layers, x)
        for cut in range(1, rows):
            started = run_steps(start_rows(layers, x[:, :, :cut]))
            finished = finish_rows(layers, started, x[:, :, cut:])
            torch.testing.assert_close(finished, whole, rtol=1e-5, atol=1e-5, msg=f"cut {cut}")


def _start(encoder: Any, heard: torch.Tensor) -> Any:
    """The encoder's early start on ``heard``, all its steps run."""
    return run_steps(encoder.start_window(heard))


def _window(seed: int, *, loud_at: float) -> torch.Tensor:
    """A 5 s window of noise whose loudest sample lies at ``loud_at`` of it."""
    samples = noise(5.0, sample_rate=RATE, seed=seed, amplitude=0.1)
    samples[int(loud_at * samples.shape[0])] = 0.9
    return torch.from_numpy(samples)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("heard_share", [0.005, 0.3, 0.9, 0.999])
def test_a_sound_window_started_early_embeds_as_the_whole_window(
    heard_share: float, precision: str
) -> None:
    """In bf16 too (the API's precision on CPUs with bf16 units): the spectrogram is made in
    float32 and only the network runs under autocast, in the start as in a whole pass."""
    configure_encoder_precision(precision)
    encoder = load_encoder(SoundEncoder.name)
    window = _window(3, loud_at=0.002)
    heard = int(heard_share * window.shape[0])
    start = _start(encoder, window[:heard])
    assert start is not None and start.heard_samples == heard
    finished = encoder.embed_started([window], [start])
    torch.testing.assert_close(finished, encoder.embed([window]), rtol=1e-5, atol=1e-5)


def test_a_rest_louder_than_the_heard_samples_is_embedded_whole() -> None:
    """The window's normalisation is not the one the start used: the start is set aside."""
    encoder = load_encoder(SoundEncoder.name)
    window = _window(4, loud_at=0.95)
    other = _window(5, loud_at=0.001)
    starts = [_start(encoder, window[:200_000]), _start(encoder, other[:200_000])]
    finished = encoder.embed_started([window, other], starts)
    assert torch.equal(finished[0], encoder.embed([window])[0])
    torch.testing.assert_close(finished[1], encoder.embed([other])[0], rtol=1e-5, atol=1e-5)


def test_too_little_heard_or_unusable_samples_start_nothing() -> None:
    encoder = load_encoder(SoundEncoder.name)
    assert _start(encoder, torch.zeros(1000)) is None  # no frame ends within them
    assert _start(encoder, torch.full((50_000,), float("nan"))) is None
    assert _start(encoder, torch.zeros(2, 50_000)) is None  # not mono
    with pytest.raises(ValueError, match="starts for"):
        encoder.embed_started([torch.zeros(RATE)], [])


def test_an_encoder_that_cannot_start_early_embeds_as_usual() -> None:
    encoder = load_encoder(SpeechEncoder.name)
    window = torch.from_numpy(noise(1.5, sample_rate=SpeechEncoder.sample_rate, seed=2))
    assert _start(encoder, window[:10_000]) is None
    assert torch.equal(encoder.embed_started([window], [None]), encoder.embed([window]))


def test_a_clip_s_first_window_started_early_is_the_windows_embedding() -> None:
    """Through the feature pipeline: a start applies to its clip's first window only."""
    from uvac.audio import EmbeddingWindower
    from uvac.training.presets import build_configs

    feature_config, _ = build_configs("scenes")
    windower = EmbeddingWindower(feature_config)
    window = _window(6, loud_at=0.01).numpy()
    longer = np.concatenate([window, window[: RATE * 3]])  # two windows
    audios = [
        Audio.from_samples(window, sample_rate=RATE),
        Audio.from_samples(longer, sample_rate=RATE),
    ]
    start = _start(windower.encoder, torch.from_numpy(window[:150_000]))
    plain, slices = windower.raw_windows_batch(audios)
    started, same_slices = windower.raw_windows_batch(audios, started=[start, start])
    assert slices == same_slices
    torch.testing.assert_close(started.features, plain.features, rtol=1e-5, atol=1e-5)


def test_a_finish_that_fails_leaves_its_window_to_a_whole_pass(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from uvac.audio.encoders import sound

    encoder = load_encoder(SoundEncoder.name)
    window = _window(7, loud_at=0.01)
    start = _start(encoder, window[:150_000])

    def broken(*args: object) -> None:
        raise RuntimeError("a bug in the finish")

    monkeypatch.setattr(sound, "finish_rows", broken)
    assert torch.equal(encoder.embed_started([window], [start]), encoder.embed([window]))
    assert "embedding it whole" in caplog.text


def test_a_start_from_another_precision_is_set_aside() -> None:
    """The precision switched between the start and the finish: the window goes whole."""
    encoder = load_encoder(SoundEncoder.name)
    window = _window(8, loud_at=0.01)
    start = _start(encoder, window[:150_000])
    configure_encoder_precision("bf16")
    assert torch.equal(encoder.embed_started([window], [start]), encoder.embed([window]))
