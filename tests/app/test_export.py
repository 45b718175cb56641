"""The device export routes and `POST /v1/distill`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
import torch
from fastapi.testclient import TestClient

from model_store import ModelStore, ModelVersion
from model_store.cluster_names import NAMES_FILE_NAME
from service_config import Settings
from tests.app.helpers import assert_problem, two_clip_dataset
from tests.audio_fixtures import tone, wav_bytes
from tests.uvac.edge_fixtures import EDGE_FEATURES, tiny_student
from uvac.audio.features import NormStats
from uvac.edge.distillation import calibration_windows
from uvac.edge.onnx_export import export_model
from uvac.models import CatUVAC, KMeansClusterer
from uvac.training.artifact import TrainedModel, save_trained_model

BASE = "/v1/models/{name}/versions/{version}/export"


def _publish(store: ModelStore, name: str, trained: TrainedModel) -> ModelVersion:
    with store.publish(name, metadata={"cluster_names": ["a", "b", "c"]}) as staging:
        save_trained_model(Path(staging), trained)
    return staging.version


def _log_mel_cat_uvac() -> TrainedModel:
    torch.manual_seed(0)
    model = CatUVAC(n_clusters=3, n_features=16, conv_channels=(2, 2, 4, 4), gru_hidden=4)
    stats = NormStats(
        mean=torch.full((16,), -8.0), std=torch.full((16,), 3.0), minimum=-3.0, maximum=3.0
    )
    return TrainedModel(model=model.eval(), feature_config=EDGE_FEATURES, norm_stats=stats)


@pytest.fixture
def student_version(store: ModelStore) -> ModelVersion:
    torch.set_num_threads(1)
    student, clips, _ = tiny_student()
    with store.publish("device", metadata={"teacher": {"ref": "scenes:v1"}}) as staging:
        save_trained_model(Path(staging), student)
        export_model(
            student,
            Path(staging) / "export",
            calibration_windows=calibration_windows(clips, student.feature_config),
            cluster_names=["low", "high", "noise"],
        )
    return staging.version


def test_a_stored_export_is_listed_and_served(client: TestClient, student_version) -> None:
    base = BASE.format(name="device", version=1)
    listing = client.get(base)
    assert listing.status_code == 200, listing.text
    body = listing.json()
    assert body["model"] == "device:v1" and body["sha256"] == student_version.sha256
    assert [f["name"] for f in body["files"]] == ["model.onnx", "model.int8.onnx", "model.json"]
    assert all(f["stored"] for f in body["files"])
    assert body["sidecar"]["cluster_names"] == ["low", "high", "noise"]
    assert body["sidecar"]["input"]["sample_rate"] == 16000

    for name in ("model.onnx", "model.int8.onnx"):
        response = client.get(f"{base}/{name}")
        assert response.status_code == 200
        assert response.content == (student_version.path / "export" / name).read_bytes()
        assert "attachment" in response.headers["content-disposition"]
    sidecar = client.get(f"{base}/model.json")
    assert sidecar.json() == body["sidecar"]
    assert sidecar.content == (student_version.path / "export" / "model.json").read_bytes()
    sizes = {f["name"]: f["bytes"] for f in body["files"]}
    assert sizes["model.json"] == len(sidecar.content)


def test_a_stored_sidecar_carries_the_names_set_after_publishing(
    client: TestClient, store: ModelStore, student_version
) -> None:
    base = BASE.format(name="device", version=1)
    renamed = client.put("/v1/models/device/versions/1/clusters/1", json={"name": "Tonal hum"})
    assert renamed.status_code == 200, renamed.text

    names = ["low", "Tonal hum", "noise"]
    assert client.get(base).json()["sidecar"]["cluster_names"] == names
    sidecar = client.get(f"{base}/model.json")
    assert sidecar.headers["content-type"].startswith("application/json")
    assert "attachment" in sidecar.headers["content-disposition"]
    assert sidecar.json()["cluster_names"] == names
    listed = {f["name"]: f["bytes"] for f in client.get(base).json()["files"]}
    assert listed["model.json"] == len(sidecar.content)
    stored = (student_version.path / "export" / "model.json").read_text(encoding="utf-8")
    assert '"Tonal hum"' not in stored  # the version itself stays as published

    (store.root / "device" / NAMES_FILE_NAME).write_text("{not json")  # a damaged names file
    assert client.get(f"{base}/model.json").json()["cluster_names"] == ["low", "high", "noise"]


def test_an_exportable_version_without_a_stored_export_is_exported_on_request(
    client: TestClient, store: ModelStore
) -> None:
    _publish(store, "logmel", _log_mel_cat_uvac())
    base = BASE.format(name="logmel", version=1)
    response = client.get(f"{base}/model.onnx")
    assert response.status_code == 200, response.text
    onnx.checker.check_model(onnx.load_from_string(response.content))
    session = ort.InferenceSession(response.content, providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].shape[1] == 3
    assert client.get(f"{base}/model.json").json()["cluster_names"] == ["a", "b", "c"]
    listing = client.get(base).json()
    assert [f["name"] for f in listing["files"]] == ["model.onnx", "model.json"]
    body = assert_problem(client.get(f"{base}/model.int8.onnx"), status=404, slug="model-not-found")
    assert "calibration" in body["detail"]


def test_an_unknown_version_is_a_404_problem(client: TestClient) -> None:
    for path in (BASE.format(name="scenes", version=9), BASE.format(name="nobody", version=1)):
        assert_problem(client.get(path), status=404, slug="model-not-found")
        assert_problem(client.get(f"{path}/model.onnx"), status=404, slug="model-not-found")


def test_an_unknown_export_file_is_a_404_problem(client: TestClient, student_version) -> None:
    path = BASE.format(name="device", version=1) + "/weights.safetensors"
    body = assert_problem(client.get(path), status=404, slug="model-not-found")
    assert "model.onnx" in body["detail"]


def test_models_the_export_cannot_express_are_422_problems(
    client: TestClient, store: ModelStore
) -> None:
    # The served tiny model: a conv-GRU Cat. UVAC, but on 8 kHz audio.
    body = assert_problem(
        client.get(BASE.format(name="scenes", version=1) + "/model.onnx"),
        status=422,
        slug="model-not-exportable",
    )
    assert "8000 Hz" in body["detail"]
    kmeans = KMeansClusterer(n_clusters=3, n_features=16, n_frames=EDGE_FEATURES.frames_per_window)
    _publish(store, "kmeans", TrainedModel(kmeans, EDGE_FEATURES, _log_mel_cat_uvac().norm_stats))
    body = assert_problem(
        client.get(BASE.format(name="kmeans", version=1)), status=422, slug="model-not-exportable"
    )
    assert "kmeans" in body["detail"]


def test_distill_answers_202_with_a_distill_job(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    dataset_id = two_clip_dataset(settings.datasets_path, tmp_path)
    response = client.post(
        "/v1/distill",
        json={"teacher_ref": "scenes@production", "dataset_id": dataset_id, "epochs": 3},
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert job["kind"] == "distill" and job["status"] == "queued"
    assert job["params"] == {
        "teacher_ref": "scenes@production",
        "dataset_id": dataset_id,
        "epochs": 3,
    }
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert client.get(f"/v1/jobs/{job['id']}").json()["kind"] == "distill"


def test_distill_checks_the_teacher_the_data_set_and_the_body(
    client: TestClient, settings: Settings, tmp_path: Path
) -> None:
    dataset_id = two_clip_dataset(settings.datasets_path, tmp_path)
    assert_problem(
        client.post("/v1/distill", json={"teacher_ref": "nobody", "dataset_id": dataset_id}),
        status=404,
        slug="model-not-found",
    )
    assert_problem(
        client.post("/v1/distill", json={"teacher_ref": "scenes", "dataset_id": "ds_000000000000"}),
        status=404,
        slug="dataset-not-found",
    )
    for bad in ({"epochs": 0}, {"crops_per_clip": 1000}, {"temperature": 2}):
        body = {"teacher_ref": "scenes", "dataset_id": dataset_id, **bad}
        assert_problem(client.post("/v1/distill", json=body), status=422, slug="validation-error")


def test_a_distilled_student_is_served_like_any_model(client: TestClient, student_version) -> None:
    wav = wav_bytes(tone(300.0, 3.0, sample_rate=16000), sample_rate=16000)
    response = client.post("/v1/cluster?model=device:v1", files={"file": ("low.wav", wav)})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model"]["ref"] == "device:v1"
    assert body["n_clusters"] == 3
    assert body["assignment"] == 0  # the student learnt the low tone as class 0
    assert len(body["windows"]) > 1


def test_concurrent_requests_for_an_export_built_on_request_all_succeed(
    client: TestClient, store: ModelStore
) -> None:
    _publish(store, "logmel", _log_mel_cat_uvac())
    _publish(store, "other", _log_mel_cat_uvac())
    paths = [
        f"{BASE.format(name=name, version=1)}/{file_name}"
        for name in ("logmel", "other")
        for file_name in ("model.onnx", "model.json", "model.onnx")
    ] * 2
    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        statuses = list(pool.map(lambda path: client.get(path).status_code, paths))
    assert statuses == [200] * len(paths)


def test_exports_at_once_in_one_process_all_succeed(tmp_path: Path) -> None:
    trained = _log_mel_cat_uvac()

    def export(folder: Path) -> int:
        exported = export_model(trained, folder, calibration_windows=None)
        return exported.files["model.onnx"].stat().st_size

    with ThreadPoolExecutor(max_workers=4) as pool:
        sizes = list(pool.map(export, [tmp_path / str(i) for i in range(4)]))
    assert all(size > 0 for size in sizes)
