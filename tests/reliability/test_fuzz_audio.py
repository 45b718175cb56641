"""A short fuzz run of the audio loader, in child processes with a memory cap and timeout.

The full run (10,000+ cases) is `python benchmarks/reliability.py --parts fuzz`.
"""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.reliability.fuzz_audio import _check_audio, run_fuzz
from benchmarks.reliability.fuzz_cases import MUTATORS, base_recordings, make_case
from uvac.audio.decoding import Audio


def test_500_generated_cases_decode_or_raise_audio_error() -> None:
    report = run_fuzz(cases=500, seed=7, batch_size=250, memory_mb=512, batch_timeout_s=180)
    summary = report.to_json()
    assert report.cases == 500
    assert report.crashes == [], summary["crash_details"]
    # Both sides are exercised: some inputs decode, many are refused with typed errors.
    assert report.outcomes["audio"] > 0
    assert report.outcomes["NotAudioError"] > 0
    # Bounded memory: the decoding itself adds little on top of the imports.
    assert report.child_peak_rss_mb - report.child_rss_after_import_mb < 400, summary


def test_cases_are_reproducible_from_seed_and_index() -> None:
    bases = base_recordings(3)
    first = make_case(41, seed=3, bases=bases)
    again = make_case(41, seed=3, bases=base_recordings(3))
    other = make_case(42, seed=3, bases=bases)
    assert first.data == again.data and first.description == again.description
    assert (other.kind, other.data) != (first.kind, first.data)


def test_every_mutator_is_drawn() -> None:
    bases = base_recordings(0)
    kinds = {make_case(index, seed=0, bases=bases).kind for index in range(400)}
    assert kinds == set(MUTATORS)


@pytest.mark.parametrize(
    ("samples", "problem"),
    [
        (np.array([0.1, np.nan], dtype=np.float32), "NaN"),
        (np.zeros((2, 2), dtype=np.float32), "shape"),
        (np.zeros(3, dtype=np.float64), "float32"),
    ],
)
def test_the_contract_check_catches_bad_audio(samples: np.ndarray, problem: str) -> None:
    # Bypass Audio.from_samples' own checks, as a buggy loader would.
    audio = Audio(
        samples=samples,
        sample_rate=8000,
        source_sample_rate=8000,
        source_channels=1,
        duration_s=1.0,
    )
    reason = _check_audio(audio, sample_rate=8000)
    assert reason is not None and problem in reason
    good = Audio.from_samples(np.zeros(4, dtype=np.float32), sample_rate=8000)
    assert _check_audio(good, sample_rate=8000) is None
    assert "requested" in (_check_audio(good, sample_rate=16000) or "")
