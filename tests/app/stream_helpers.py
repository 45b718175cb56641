"""Helpers for the live-stream tests: a model whose windows differ, audio cut into random
frames, reading a stream's messages up to its close, and a metric's value."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from model_store import ModelStore, ModelVersion
from tests.app.conftest import SAMPLE_RATE, TINY_FEATURES, tiny_trained_model
from tests.audio_fixtures import chirp, noise, tone
from uvac.audio import Audio, FeatureExtractor
from uvac.models import KMeansClusterer
from uvac.training.artifact import TrainedModel, save_trained_model


def varied_audio(seconds: float, *, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Tones, noise and chirps of random lengths one after the other: windows that differ."""
    rng = np.random.default_rng(seed)
    pieces: list[np.ndarray] = []
    total = round(seconds * sample_rate)
    while sum(piece.shape[0] for piece in pieces) < total:
        length = float(rng.uniform(0.3, 1.2))
        kind = int(rng.integers(3))
        if kind == 0:
            pieces.append(tone(float(rng.uniform(150, 2500)), length, sample_rate=sample_rate))
        elif kind == 1:
            level = float(rng.uniform(0.05, 0.5))
            pieces.append(
                level * noise(length, sample_rate=sample_rate, seed=int(rng.integers(99)))
            )
        else:
            low, high = sorted(rng.uniform(100, 3500, size=2))
            pieces.append(chirp(float(low), float(high), length, sample_rate=sample_rate))
    return np.concatenate(pieces)[:total].astype(np.float32)


def kmeans_trained_model(*, seed: int = 0) -> TrainedModel:
    """K-means on the tiny log-mel windows, fitted on varied audio, so that the windows of a
    recording land in different clusters (an untrained network gives every window one pi)."""
    base = tiny_trained_model()
    model = KMeansClusterer(
        n_clusters=3, n_features=TINY_FEATURES.n_mels, n_frames=TINY_FEATURES.frames_per_window
    )
    extractor = FeatureExtractor(TINY_FEATURES, base.norm_stats)
    calibration = Audio.from_samples(varied_audio(8.0, seed=100 + seed), sample_rate=SAMPLE_RATE)
    windows = extractor.windows(calibration)
    torch.manual_seed(seed)
    model.fit(windows.features, windows.mask, seed=seed)
    return TrainedModel(
        model=model.eval(), feature_config=TINY_FEATURES, norm_stats=base.norm_stats, info={}
    )


def publish_kmeans_model(
    store: ModelStore, *, seed: int = 0, alias: str = "production"
) -> ModelVersion:
    with store.publish("scenes", metadata={"seed": seed}) as staging:
        save_trained_model(Path(staging), kmeans_trained_model(seed=seed))
    store.promote(staging.version.ref, alias)
    return staging.version


def random_frames(payload: bytes, *, seed: int, max_bytes: int = 4000) -> Iterator[bytes]:
    """``payload`` cut at random places (a sample may be split between two frames)."""
    rng = np.random.default_rng(seed)
    position = 0
    while position < len(payload):
        size = int(rng.integers(1, max_bytes))
        yield payload[position : position + size]
        position += size


def pcm_bytes(samples: np.ndarray, encoding: str) -> bytes:
    if encoding == "pcm_s16le":
        return np.round(samples * 32767).astype("<i2").tobytes()
    return samples.astype("<f4").tobytes()


def as_s16(samples: np.ndarray) -> np.ndarray:
    """What a 16-bit PCM file of ``samples`` decodes to."""
    return (np.round(samples * 32767).astype(np.int16).astype(np.float32)) / 32768.0


def read_to_close(websocket: Any) -> tuple[list[dict[str, Any]], int]:
    """Every text message of a Starlette test WebSocket until the server closes; the code."""
    messages: list[dict[str, Any]] = []
    while True:
        message = websocket.receive()
        if message["type"] == "websocket.close":
            return messages, int(message["code"])
        messages.append(json.loads(message["text"]))


def wait_until(condition: Callable[[], bool], *, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def metric_sample(text: str, sample: str) -> float | None:
    """The value of ``sample`` (a metric's name with its labels, as exposed, e.g.
    ``uvac_stream_early_starts_total{outcome="used"}``) in Prometheus text; None if absent."""
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == sample:
            return float(value)
    return None
