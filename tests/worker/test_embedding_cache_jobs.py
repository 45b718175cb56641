"""Jobs on an encoder read embeddings through the cache beside the data sets: a second
training job (another seed, then matching its clusters to the first version), an evaluation
and a sweep on a data set already embedded make no encoder call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from torch import Tensor

from dataset_store import DatasetStore
from model_store import ModelStore
from service_config import Settings
from tests.worker.audio_samples import write_tone_folder
from uvac.audio import configure_encoder_precision, load_encoder
from uvac.training import train_model
from worker.jobs import run_evaluation, run_training
from worker.prepare import run_preparation


def scenes_params(dataset_id: str, *, seed: int, **extra: Any) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id,
        "model_type": "cat-uvac",
        "n_clusters": 2,
        "model_name": "scenes",
        "epochs": 1,
        "batch_size": 4,
        "seed": seed,
        "preset": "scenes",  # the sound encoder's embeddings
        **extra,
    }


@pytest.fixture
def encoder_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per call of the sound encoder, with the number of windows it embedded."""
    configure_encoder_precision("fp32")
    torch.set_num_threads(1)  # small networks on a shared test host
    encoder = load_encoder("sound-encoder")
    original = encoder.embed
    calls: list[int] = []

    def embed(windows: Sequence[Tensor]) -> Tensor:
        calls.append(len(windows))
        return original(windows)

    monkeypatch.setattr(encoder, "embed", embed)
    return calls


def cache_entries(root: Path) -> dict[str, int]:
    """The cache's entries by kind: recordings' embeddings and the map's projections."""
    kinds = {"embeddings": 0, "projections": 0}
    for path in root.glob("*/*.safetensors"):
        with safe_open(str(path), framework="pt") as entry:
            names = set(entry.keys())
        kinds["embeddings" if "features" in names else "projections"] += 1
    return kinds


def test_a_second_job_on_an_embedded_data_set_makes_no_encoder_call(
    settings: Settings, tmp_path: Path, encoder_calls: list[int]
) -> None:
    tones = write_tone_folder(tmp_path / "tones", per_class=3)
    datasets = DatasetStore(settings.datasets_path)
    dataset_id = datasets.register_folder(tones).id

    first = run_training(
        scenes_params(dataset_id, seed=0), job=None, settings=settings, train_function=train_model
    )
    assert first["model"] == "scenes:v1"
    assert encoder_calls  # the first job embedded the recordings
    # Every recording, held-out ones included (training scores them each epoch), and the
    # map's projection of the training windows.
    assert cache_entries(datasets.embeddings_path) == {"embeddings": 6, "projections": 1}

    encoder_calls.clear()
    second = run_training(
        scenes_params(dataset_id, seed=1), job=None, settings=settings, train_function=train_model
    )
    evaluation = run_evaluation(
        {"model_ref": second["model"], "dataset_id": dataset_id}, job=None, settings=settings
    )
    sweep = run_training(
        scenes_params(dataset_id, seed=2, n_clusters={"min": 2, "max": 3}, sweep={"seeds": [0, 1]}),
        job=None,
        settings=settings,
        train_function=train_model,
    )

    assert encoder_calls == []
    # Another seed and the sweep's model placed the same training windows: no new projection.
    assert cache_entries(datasets.embeddings_path) == {"embeddings": 6, "projections": 1}
    assert second["model"] == "scenes:v2"
    # v2 was matched to v1 on the training set: both models' embeddings came from the cache.
    identity = ModelStore(settings.model_store_path).get("scenes:v2").metadata["cluster_identity"]
    assert identity["previous"] == "scenes:v1"
    held_out = ModelStore(settings.model_store_path).get("scenes:v2").metadata["held_out"]
    assert identity["n_recordings"] == 6 - len(held_out["files"])
    # The held-out novelty rate (which recordings the model answers as unknown) read them too.
    assert held_out["metrics"]["novelty_rate"] is not None
    assert evaluation["report"]
    assert sweep["model"] == "scenes:v3"


def test_a_prepared_data_set_trains_without_an_encoder_call(
    settings: Settings, tmp_path: Path, encoder_calls: list[int]
) -> None:
    tones = write_tone_folder(tmp_path / "tones", per_class=2)
    (tones / "broken.wav").write_bytes(b"RIFF not a wave file")
    datasets = DatasetStore(settings.datasets_path)
    dataset_id = datasets.register_folder(tones).id  # the broken file is rejected here

    prepared = run_preparation(
        {"dataset_id": dataset_id, "preset": "scenes"}, job=None, settings=settings
    )
    assert prepared == {
        "dataset_id": dataset_id,
        "frontend": "sound-encoder",
        "recordings": 4,
        "embedded": 4,
        "skipped": 0,
    }
    assert encoder_calls

    encoder_calls.clear()
    trained = run_training(
        scenes_params(dataset_id, seed=0), job=None, settings=settings, train_function=train_model
    )
    assert trained["model"] == "scenes:v1"
    assert encoder_calls == []


def test_a_log_mel_recipe_has_nothing_to_prepare(settings: Settings, tmp_path: Path) -> None:
    tones = write_tone_folder(tmp_path / "tones", per_class=1)
    dataset_id = DatasetStore(settings.datasets_path).register_folder(tones).id
    prepared = run_preparation(
        {"dataset_id": dataset_id, "preset": "words-logmel"}, job=None, settings=settings
    )
    assert prepared["embedded"] == 0 and prepared["frontend"] == "log-mel"
    assert not DatasetStore(settings.datasets_path).embeddings_path.exists()
