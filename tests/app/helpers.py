"""Small helpers shared by the API tests: audio files and problem-body checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np

from app.problems import PROBLEM_MEDIA_TYPE, PROBLEM_TYPE_BASE
from dataset_store import DatasetStore
from tests.app.conftest import SAMPLE_RATE
from tests.audio_fixtures import noise, tone, wav_bytes

# Plausible values for path parameters, so a route is reached rather than 404ed.
PATH_VALUES = {
    "name": "scenes",
    "version": "1",
    "alias": "production",
    "dataset_id": "ds_0123456789ab",
    "job_id": "0123456789abcdef",
    "file_name": "report.json",
    "cluster": "0",
    "recording": "0",
}


def tone_wav(seconds: float = 1.0, *, sample_rate: int = SAMPLE_RATE, hz: float = 440.0) -> bytes:
    return wav_bytes(tone(hz, seconds, sample_rate=sample_rate), sample_rate=sample_rate)


def noise_wav(seconds: float = 1.0, *, sample_rate: int = SAMPLE_RATE, seed: int = 0) -> bytes:
    return wav_bytes(noise(seconds, sample_rate=sample_rate, seed=seed), sample_rate=sample_rate)


def nan_wav(seconds: float = 0.5, *, sample_rate: int = SAMPLE_RATE) -> bytes:
    samples = tone(440.0, seconds, sample_rate=sample_rate)
    samples[len(samples) // 2] = np.nan
    return wav_bytes(samples, sample_rate=sample_rate, subtype="FLOAT")


def assert_problem(
    response: httpx.Response, *, status: int, slug: str, path: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem of this status and type; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), response.headers
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEM_TYPE_BASE + slug, body
    assert body["status"] == status
    assert isinstance(body["title"], str) and body["title"]
    assert isinstance(body["detail"], str) and body["detail"]
    assert body["request_id"] == response.headers["x-request-id"]
    if path is not None:
        assert body["instance"] == path
    return body


def train_body(dataset_id: str, **overrides: Any) -> dict[str, Any]:
    """A ``POST /v1/train`` body: a 4-cluster Cat. UVAC on ``dataset_id``, with ``overrides``."""
    body: dict[str, Any] = {"dataset_id": dataset_id, "model_type": "cat-uvac", "n_clusters": 4}
    body.update(overrides)
    return body


# Two clips this long cut into more windows than any K the API tests queue (5 s windows every
# 2.5 s: 15 windows each).
LONG_CLIP_SECONDS = 40.0


def two_clip_dataset(datasets_root: Path, scratch: Path, *, seconds: float = 0.5) -> str:
    """A registered data set of two labelled clips (a tone, noise) of ``seconds``; its id.

    Half a second is one window of any preset; a request for K clusters needs at least K
    windows (a 422 at submission otherwise), so tests that queue larger K ask for
    `LONG_CLIP_SECONDS`."""
    source = scratch / "recordings"
    for label in ("tone", "noise"):
        (source / label).mkdir(parents=True)
    (source / "tone" / "a.wav").write_bytes(tone_wav(seconds))
    (source / "noise" / "b.wav").write_bytes(noise_wav(seconds))
    return DatasetStore(datasets_root).register_folder(source).id
