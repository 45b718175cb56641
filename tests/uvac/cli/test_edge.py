"""`uvac distill` and `uvac export` (uvac/cli_edge.py)."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest
import torch

from tests.audio_fixtures import write_audio
from tests.uvac.edge_fixtures import EDGE_FEATURES, class_clips, tiny_student
from uvac.audio.features import NormStats
from uvac.cli.commands import main
from uvac.edge.device_model import window_samples
from uvac.models import KMeansClusterer
from uvac.training.artifact import TrainedModel, save_trained_model


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    clips, labels = class_clips(per_class=2)
    for index, (samples, label) in enumerate(zip(clips, labels, strict=True)):
        write_audio(tmp_path / "recordings" / f"class{label}" / f"{index}.wav", samples)
    return tmp_path / "recordings"


def test_export_writes_the_three_files_with_calibration(tmp_path: Path, recordings: Path) -> None:
    student, _, _ = tiny_student()
    save_trained_model(tmp_path / "student", student)
    out = tmp_path / "export"
    code = main(
        ["export", str(tmp_path / "student"), "--out", str(out), "--calibration", str(recordings),
         "--split", "all", "--threads", "1"]
    )  # fmt: skip
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["model.int8.onnx", "model.json", "model.onnx"]
    sidecar = json.loads((out / "model.json").read_text())
    assert sidecar["input"]["window_samples"] == window_samples(student.feature_config)
    session = ort.InferenceSession(str(out / "model.int8.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_outputs()[0].name == "pi"


def test_export_without_calibration_writes_no_int8_file(tmp_path: Path, capsys) -> None:
    student, _, _ = tiny_student()
    save_trained_model(tmp_path / "student", student)
    assert main(["export", str(tmp_path / "student"), "--out", str(tmp_path / "out")]) == 0
    assert not (tmp_path / "out" / "model.int8.onnx").exists()
    assert json.loads((tmp_path / "out" / "model.json").read_text())["files"]["int8"] is None
    assert "--calibration" in capsys.readouterr().err


def test_export_of_a_model_it_cannot_express_fails_with_a_message(tmp_path: Path, capsys) -> None:
    model = KMeansClusterer(n_clusters=3, n_features=16, n_frames=EDGE_FEATURES.frames_per_window)
    stats = NormStats(mean=torch.zeros(16), std=torch.ones(16), minimum=-1.0, maximum=1.0)
    save_trained_model(tmp_path / "kmeans", TrainedModel(model, EDGE_FEATURES, stats))
    assert main(["export", str(tmp_path / "kmeans"), "--out", str(tmp_path / "out")]) == 1
    assert "cannot be exported" in capsys.readouterr().err


def test_distill_saves_a_student_of_the_teacher(tmp_path: Path, recordings: Path) -> None:
    teacher, _, _ = tiny_student()  # any trained model can teach, a student too
    save_trained_model(tmp_path / "teacher", teacher)
    code = main(
        ["distill", str(tmp_path / "teacher"), str(recordings), "--out", str(tmp_path / "student"),
         "--split", "all", "--epochs", "1", "--threads", "1"]
    )  # fmt: skip
    assert code == 0
    document = json.loads((tmp_path / "student" / "model.json").read_text())
    assert document["model_type"] == "cat-uvac-h"
    assert document["info"]["teacher"] == {"path": str(tmp_path / "teacher")}
