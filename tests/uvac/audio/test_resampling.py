"""uvac.audio.resampling: block-by-block resampling equals resampling the whole signal."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchaudio

from tests.audio_fixtures import chirp, noise
from uvac.audio.resampling import StreamingResampler, resample_signal, resampling_ratio


def whole_signal(samples: np.ndarray, orig_rate: int, new_rate: int) -> np.ndarray:
    orig_term, new_term = resampling_ratio(orig_rate, new_rate)
    resample = torchaudio.transforms.Resample(orig_term, new_term, dtype=torch.float32)
    return resample(torch.from_numpy(samples).unsqueeze(0)).squeeze(0).numpy()


@pytest.mark.parametrize(
    "orig_rate", [8_000, 22_050, 44_100, 48_000, 96_000, 192_000, 655_350, 16_000]
)
@pytest.mark.parametrize("block", [1, 997, 65_536])
def test_blocks_give_the_whole_signal_resampling(orig_rate: int, block: int) -> None:
    samples = np.random.default_rng(orig_rate).standard_normal(orig_rate // 4 + 13)
    samples = samples.astype(np.float32)
    if block == 1:
        samples = samples[:3_001]  # one sample at a time: keep the test short
    resampler = StreamingResampler(orig_rate=orig_rate, new_rate=16_000)
    for start in range(0, samples.size, block):
        resampler.push(samples[start : start + block])
    streamed = resampler.finish()
    expected = whole_signal(samples, orig_rate, 16_000)
    assert streamed.dtype == np.float32
    assert streamed.shape == expected.shape
    np.testing.assert_allclose(streamed, expected, atol=1e-5)


def test_nothing_pushed_gives_an_empty_signal() -> None:
    assert StreamingResampler(orig_rate=48_000, new_rate=16_000).finish().size == 0


def test_memory_held_between_blocks_does_not_grow_with_the_input() -> None:
    resampler = StreamingResampler(orig_rate=192_000, new_rate=16_000)
    block = np.zeros(100_000, dtype=np.float32)
    for _ in range(20):
        resampler.push(block)
        # Only the kernel's reach of input is kept back, never the pushed blocks.
        assert resampler._pending.size < 2 * resampler._kernel.shape[-1]


@pytest.mark.parametrize("expected_input", [None, 10, 48_000, 10**6])
def test_the_expected_length_is_a_hint_never_a_bound(expected_input: int | None) -> None:
    samples = np.random.default_rng(1).standard_normal(48_000).astype(np.float32)
    resampler = StreamingResampler(orig_rate=48_000, new_rate=16_000, expected_input=expected_input)
    for start in range(0, samples.size, 5_000):
        resampler.push(samples[start : start + 5_000])
    np.testing.assert_allclose(resampler.finish(), whole_signal(samples, 48_000, 16_000), atol=1e-5)


def test_at_the_same_rate_the_signal_comes_back_unchanged() -> None:
    samples = np.arange(10_000, dtype=np.float32)
    resampler = StreamingResampler(orig_rate=16_000, new_rate=16_000, expected_input=4_000)
    for start in range(0, samples.size, 3_000):
        resampler.push(samples[start : start + 3_000])
    np.testing.assert_array_equal(resampler.finish(), samples)


def test_rates_within_the_approximation_of_each_other_pass_through() -> None:
    # 7999:8000 approximates to 1:1, which torchaudio builds no kernel for.
    samples = np.linspace(-0.5, 0.5, 392, dtype=np.float32)
    resampler = StreamingResampler(orig_rate=7999, new_rate=8000)
    resampler.push(samples)
    np.testing.assert_array_equal(resampler.finish(), samples)


@pytest.mark.parametrize(("orig_rate", "new_rate"), [(44_100, 16_000), (8_000, 16_000)])
def test_a_whole_signal_resamples_as_torchaudio_does(orig_rate: int, new_rate: int) -> None:
    signal = chirp(100, 3000, 0.7, sample_rate=orig_rate)
    expected = torchaudio.functional.resample(torch.from_numpy(signal), orig_rate, new_rate)
    resampled = resample_signal(signal, orig_rate=orig_rate, new_rate=new_rate)
    assert np.array_equal(resampled, expected.numpy())


def test_a_whole_signal_at_its_own_rate_comes_back_as_it_is() -> None:
    signal = noise(0.1, sample_rate=16_000)
    assert resample_signal(signal, orig_rate=16_000, new_rate=16_000) is signal
