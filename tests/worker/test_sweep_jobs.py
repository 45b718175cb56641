"""Sweep jobs and cluster identities at publishing (in-process, no Redis job)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from dataset_store import DatasetStore
from model_store import ModelStore
from model_store.cluster_names import set_cluster_name
from service_config import Settings
from tests.worker.audio_samples import write_tone_folder
from uvac.selection.sweep_spec import InvalidSweep, parse_sweep
from worker.job_support import InvalidJobParameters
from worker.jobs import run_training

TINY_FEATURES = {"n_mels": 16, "n_fft": 256, "win_length": 256, "hop_length": 128,
                 "window_seconds": 0.25, "window_hop_seconds": 0.25}  # fmt: skip
TINY_MODEL = {"conv_channels": [4, 8, 8, 16], "gru_hidden": 16, "gru_layers": 1,
              "deconv_channels": [8, 8, 4]}  # fmt: skip


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def dataset_id(settings: Settings, tmp_path: Path) -> str:
    tones = write_tone_folder(tmp_path / "tones", per_class=4)
    return DatasetStore(settings.datasets_path).register_folder(tones).id


def params(dataset_id: str, **overrides: Any) -> dict[str, Any]:
    return {
        "dataset_id": dataset_id, "n_clusters": 2, "model_name": "tones", "epochs": 8,
        "batch_size": 8, "seed": 0, "preset": "scenes-logmel", "features": TINY_FEATURES,
        "model_hyperparameters": TINY_MODEL, **overrides,
    }  # fmt: skip


def test_a_range_runs_a_sweep_and_publishes_the_chosen_k(
    settings: Settings, dataset_id: str
) -> None:
    from uvac.training.pipeline import train_model

    sweep = {"n_clusters": {"min": 2, "max": 3}, "sweep": {"seeds": [0, 1]}}
    result = run_training(params(dataset_id, **sweep), job=None, settings=settings,
                          train_function=train_model)  # fmt: skip
    version = ModelStore(settings.model_store_path).get(result["model"])
    selection = version.metadata["selection"]
    assert [c["n_clusters"] for c in selection["candidates"]] == [2, 3]
    assert version.metadata["n_clusters"] == selection["chosen_k"]
    assert {"stability", "silhouette", "accuracy", "nmi"} <= set(selection["candidates"][0])
    sizes = [c["size"] for c in version.metadata["clusters"]]
    # Cluster sizes count the training recordings: 20% of the 8 (stratified) are held out.
    held_out = version.metadata["held_out"]
    assert len(held_out["files"]) == 2 and held_out["training_files"] == 6
    assert sum(sizes) == 6 and len(sizes) == selection["chosen_k"]


def test_names_carry_over_to_the_next_version(settings: Settings, dataset_id: str) -> None:
    from uvac.training.pipeline import train_model

    first = run_training(params(dataset_id), job=None, settings=settings,
                         train_function=train_model)  # fmt: skip
    store = ModelStore(settings.model_store_path)
    v1 = store.get(first["model"])
    assert "cluster_identity" not in v1.metadata
    low = next(c for c in v1.metadata["clusters"] if any("low" in p for p in c["typical_clips"]))
    high = 1 - low["number"]
    set_cluster_name(store.root, v1, cluster=low["number"], name="Low hum", n_clusters=2)
    set_cluster_name(store.root, v1, cluster=high, name="Whistle", n_clusters=2)

    # Another seed: the clusters keep their meaning, so they keep their numbers and names.
    second = run_training(params(dataset_id, seed=5), job=None, settings=settings,
                          train_function=train_model)  # fmt: skip
    v2 = store.get(second["model"])
    identity = v2.metadata["cluster_identity"]
    assert identity["previous"] == "tones:v1" and identity["agreement"] == 1.0
    assert identity["disappeared"] == []
    assert v2.metadata["cluster_names"] == {str(low["number"]): "Low hum", str(high): "Whistle"}
    v2_low = next(c for c in v2.metadata["clusters"] if c["number"] == low["number"])
    assert all("low" in path for path in v2_low["typical_clips"])


def test_an_unreadable_earlier_version_does_not_stop_publishing(
    settings: Settings, dataset_id: str
) -> None:
    from uvac.training.pipeline import train_model

    first = run_training(params(dataset_id), job=None, settings=settings,
                         train_function=train_model)  # fmt: skip
    store = ModelStore(settings.model_store_path)
    weights = store.get(first["model"]).path / "weights.safetensors"
    weights.chmod(0o644)
    weights.write_bytes(b"not the weights any more")
    second = run_training(params(dataset_id), job=None, settings=settings,
                          train_function=train_model)  # fmt: skip
    identity = store.get(second["model"]).metadata["cluster_identity"]
    assert identity["previous"] == "tones:v1" and "does not match" in identity["error"]


@pytest.mark.parametrize(
    ("n_clusters", "sweep", "message"),
    [
        ({"min": 5, "max": 3}, None, "reversed"),
        ({"min": 1, "max": 3}, None, "start at 2"),
        ({"min": 2, "max": 40}, None, "at most 24"),
        ({"min": 2}, None, "min"),
        ({"min": 2, "max": 3}, {"seeds": [0]}, "2 to 10"),
        ({"min": 2, "max": 3}, {"colour": 1}, "unknown sweep options"),
    ],
)
def test_bad_sweeps_are_refused(n_clusters: Any, sweep: Any, message: str) -> None:
    body: dict[str, Any] = {"n_clusters": n_clusters}
    if sweep is not None:
        body["sweep"] = sweep
    with pytest.raises(InvalidSweep, match=message):
        parse_sweep(body, max_candidates=24)


def test_sweep_options_need_a_range(settings: Settings, dataset_id: str) -> None:
    with pytest.raises(InvalidJobParameters, match=r"n_clusters as"):
        run_training(params(dataset_id, sweep={"seeds": [0, 1]}), job=None, settings=settings,
                     train_function=lambda *a, **k: None)  # fmt: skip
