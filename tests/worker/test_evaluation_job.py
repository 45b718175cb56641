"""worker.jobs.run_evaluation in-process: the report names each cluster as it is named now."""

from __future__ import annotations

import json
from pathlib import Path

from dataset_store import DatasetStore
from model_store import ModelStore
from model_store.cluster_names import set_cluster_name
from service_config import Settings
from tests.worker.audio_samples import write_tone_folder
from tests.worker.test_worker_e2e import train_params
from uvac.training.pipeline import train_model
from worker.jobs import run_evaluation, run_training


def test_the_report_shows_names_set_after_publishing(settings: Settings, tmp_path: Path) -> None:
    tones = write_tone_folder(tmp_path / "tones", per_class=3)
    dataset_id = DatasetStore(settings.datasets_path).register_folder(tones).id
    run_training(
        train_params(dataset_id, epochs=1), job=None, settings=settings, train_function=train_model
    )
    store = ModelStore(settings.model_store_path)
    version = store.get("tones:v1")
    set_cluster_name(store.root, version, cluster=1, name="Café & bar", n_clusters=2)

    result = run_evaluation(
        {"model_ref": "tones:v1", "dataset_id": dataset_id}, job=None, settings=settings
    )

    assert result["model"] == "tones:v1"
    report_dir = store.report_path("tones:v1")
    assert report_dir is not None
    report = json.loads((report_dir / "report.json").read_text(encoding="utf-8"))
    assert report["cluster_names"] == {"1": "Café & bar"}


def test_publishing_maps_the_training_windows_and_evaluation_keeps_the_map(
    settings: Settings, tmp_path: Path
) -> None:
    tones = write_tone_folder(tmp_path / "tones", per_class=3)
    manifest = DatasetStore(settings.datasets_path).get(
        DatasetStore(settings.datasets_path).register_folder(tones).id
    )
    run_training(
        train_params(manifest.id, epochs=1), job=None, settings=settings, train_function=train_model
    )
    store = ModelStore(settings.model_store_path)
    report_dir = store.report_path("tones:v1")
    assert report_dir is not None
    published_map = (report_dir / "cluster_map.json").read_bytes()
    document = json.loads(published_map)
    assert document["dataset"]["id"] == manifest.id
    assert sorted(entry["path"] for entry in document["recordings"]) == sorted(
        entry.path for entry in manifest.files
    )
    # 0.5 s clips in 0.25 s windows every 0.25 s: two windows each.
    assert len(document["points"]["x"]) == 2 * len(manifest.files)
    assert len(document["points"]["pi"][0]) == 2

    run_evaluation(
        {"model_ref": "tones:v1", "dataset_id": manifest.id}, job=None, settings=settings
    )

    assert (report_dir / "cluster_map.json").read_bytes() == published_map  # drawn once
    assert (report_dir / "cluster_map.png").is_file()
    assert not (report_dir / "latent_map.png").exists()  # the map replaces the latent PCA
    page = (report_dir / "index.html").read_text(encoding="utf-8")
    assert 'href="../browser"' in page and "uvac:current-cluster-names" in page
