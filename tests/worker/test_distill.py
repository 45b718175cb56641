"""The distillation job (worker/distill.py): a stored teacher in, a published student out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from dataset_store import DatasetStore
from model_store import ModelStore, ModelVersion, validate_name
from service_config import Settings
from tests.audio_fixtures import write_audio
from tests.uvac.edge_fixtures import class_clips
from uvac.audio.decoding import Audio, load_audio
from uvac.audio.feature_config import FeatureConfig
from uvac.audio.features import FeatureExtractor, fit_norm_stats
from uvac.edge.onnx_export import EXPORT_FILES
from uvac.evaluation.inference import Clusterer
from uvac.models import KMeansClusterer
from uvac.training.artifact import TrainedModel, load_trained_model, save_trained_model
from worker import queues
from worker.distill import EXPORT_FOLDER, run_distillation, student_name
from worker.job_support import InvalidJobParameters
from worker.progress import update_job_meta

TEACHER_FEATURES = FeatureConfig(
    sample_rate=16000, n_fft=512, win_length=400, hop_length=160, n_mels=16,
    window_seconds=0.5, window_hop_seconds=0.25,
)  # fmt: skip
FAST = {"epochs": 25, "batch_size": 16, "learning_rate": 0.01}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


@pytest.fixture
def recordings(tmp_path: Path) -> Path:
    clips, labels = class_clips(per_class=4)
    folder = tmp_path / "recordings"
    for index, (samples, label) in enumerate(zip(clips, labels, strict=True)):
        write_audio(folder / f"class{label}" / f"clip{index}.wav", samples)
    return folder


@pytest.fixture
def dataset_id(settings: Settings, recordings: Path) -> str:
    return DatasetStore(settings.datasets_path).register_folder(recordings).id


@pytest.fixture
def teacher(settings: Settings, recordings: Path) -> ModelVersion:
    """K-means with K=3 on log-mel windows of the recordings: a teacher fitted in a moment."""
    audios = [load_audio(path, sample_rate=16000) for path in sorted(recordings.rglob("*.wav"))]
    extractor = FeatureExtractor(TEACHER_FEATURES)
    stats = fit_norm_stats([extractor.log_mel(audio) for audio in audios], TEACHER_FEATURES)
    windows, _ = FeatureExtractor(TEACHER_FEATURES, stats).windows_batch(audios)
    model = KMeansClusterer(
        n_clusters=3, n_features=16, n_frames=TEACHER_FEATURES.frames_per_window
    )
    model.fit(windows.features, windows.mask, seed=0)
    trained = TrainedModel(model=model.eval(), feature_config=TEACHER_FEATURES, norm_stats=stats)
    store = ModelStore(settings.model_store_path)
    metadata = {"cluster_names": ["first", "second", "third"]}
    with store.publish("scenes", metadata=metadata) as staging:
        save_trained_model(staging, trained)
    return staging.version


def _assignments(trained: TrainedModel, recordings: Path) -> list[int]:
    paths = sorted(recordings.rglob("*.wav"))
    rate = trained.feature_config.sample_rate
    audios: list[Audio] = [load_audio(path, sample_rate=rate) for path in paths]
    return [result.assignment for result in Clusterer(trained).cluster_batch(audios)]


def test_the_job_publishes_a_student_that_reproduces_its_teacher(
    settings: Settings, dataset_id: str, teacher: ModelVersion, recordings: Path
) -> None:
    params = {"teacher_ref": teacher.ref, "dataset_id": dataset_id, "model_name": "edge", **FAST}
    result = run_distillation(params, job=None, settings=settings)

    store = ModelStore(settings.model_store_path)
    student_version = store.verify(result["model"])  # every file checksummed, export included
    assert student_version.ref == "edge:v1"
    assert result["teacher"] == {
        "ref": teacher.ref, "name": "scenes", "version": 1, "sha256": teacher.sha256,
    }  # fmt: skip
    assert student_version.metadata["teacher"] == result["teacher"]
    assert student_version.metadata["cluster_names"] == ["first", "second", "third"]
    for file_name in EXPORT_FILES:
        assert (student_version.path / EXPORT_FOLDER / file_name).is_file()

    student = load_trained_model(student_version.path)
    assert student.model_type == "cat-uvac-h"
    assert student.info["teacher"]["sha256"] == teacher.sha256
    teacher_model = load_trained_model(teacher.path)
    agree = [
        a == b
        for a, b in zip(
            _assignments(student, recordings), _assignments(teacher_model, recordings), strict=True
        )
    ]
    assert sum(agree) / len(agree) >= 0.9


def test_progress_and_cancellation_go_through_the_jobs_meta(
    redis_conn: Redis, settings: Settings, dataset_id: str, teacher: ModelVersion
) -> None:
    params = {"teacher_ref": teacher.ref, "dataset_id": dataset_id, **FAST}
    job_id = queues.enqueue_distillation(redis_conn, params, settings=settings)
    job = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    assert queues.job_info(job)["kind"] == "distill"
    update_job_meta(job, {"cancel_requested": True})

    assert run_distillation(params, job=job, settings=settings) == {"canceled": True}
    assert job.get_meta()["canceled"] is True
    assert ModelStore(settings.model_store_path).list_versions("scenes")[1] == 1  # the teacher
    assert not (settings.checkpoints_path / job.id).exists()


def test_a_finished_job_records_its_progress_and_what_it_published(
    redis_conn: Redis, settings: Settings, dataset_id: str, teacher: ModelVersion
) -> None:
    params = {"teacher_ref": teacher.ref, "dataset_id": dataset_id, **FAST, "epochs": 2}
    job_id = queues.enqueue_distillation(redis_conn, params, settings=settings)
    job = Job.fetch(job_id, connection=redis_conn, serializer=JSONSerializer)
    result = run_distillation(params, job=job, settings=settings)
    meta = job.get_meta()
    assert meta["published"] == result
    # A name of its own by default: the teacher's latest still points at the teacher.
    assert result["model"] == "scenes-edge:v1"
    store = ModelStore(settings.model_store_path)
    assert store.get("scenes@latest").ref == teacher.ref
    assert meta["progress"]["phase"] == "publishing"
    assert meta["phase"] == "done"
    # a re-run after publishing (a worker lost before RQ recorded success) publishes nothing
    assert run_distillation(params, job=job, settings=settings) == result
    assert store.list_versions("scenes-edge")[1] == 1


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"dataset_id": "ds_0123456789ab"}, "missing job parameters: teacher_ref"),
        ({"teacher_ref": "scenes", "dataset_id": "ds_0123456789ab", "epochs": 0}, "epochs"),
        ({"teacher_ref": "scenes", "dataset_id": "ds_0123456789ab", "lr": 1}, "lr"),
    ],
)
def test_bad_parameters_are_refused_before_any_work(
    settings: Settings, params: dict[str, object], message: str
) -> None:
    with pytest.raises(InvalidJobParameters, match=message):
        run_distillation(params, job=None, settings=settings)


def test_a_student_keeps_its_teachers_cluster_numbers(
    settings: Settings, dataset_id: str, teacher: ModelVersion, recordings: Path
) -> None:
    # A teacher renumbered to keep its clusters' meaning across versions: the student and its
    # device export answer in the same numbering, so each number keeps its program.
    from uvac.selection.cluster_identity import renumbered

    store = ModelStore(settings.model_store_path)
    order = [2, 0, 1]
    metadata = {
        "cluster_names": ["first", "second", "third"],
        "cluster_identity": {"previous": teacher.ref, "order": order},
    }
    with store.publish("scenes", metadata=metadata) as staging:
        for file in teacher.path.iterdir():
            if file.name not in ("metadata.json", "MANIFEST.json"):
                (staging / file.name).write_bytes(file.read_bytes())
    renumbered_teacher = staging.version

    params = {"teacher_ref": renumbered_teacher.ref, "dataset_id": dataset_id, **FAST}
    result = run_distillation(params, job=None, settings=settings)
    student_version = store.verify(result["model"])
    assert student_version.metadata["cluster_identity"]["order"] == order
    sidecar = json.loads((student_version.path / EXPORT_FOLDER / "model.json").read_text())
    assert sidecar["cluster_order"] == order

    served_student = renumbered(load_trained_model(student_version.path), student_version.metadata)
    served_teacher = renumbered(load_trained_model(teacher.path), renumbered_teacher.metadata)
    agree = [
        a == b
        for a, b in zip(
            _assignments(served_student, recordings),
            _assignments(served_teacher, recordings),
            strict=True,
        )
    ]
    assert sum(agree) / len(agree) >= 0.9


def _agreement_on(student: TrainedModel, teacher: TrainedModel, paths: list[Path]) -> float:
    def assign(trained: TrainedModel) -> list[int]:
        rate = trained.feature_config.sample_rate
        audios = [load_audio(path, sample_rate=rate) for path in paths]
        return [result.assignment for result in Clusterer(trained).cluster_batch(audios)]

    pairs = list(zip(assign(student), assign(teacher), strict=True))
    return sum(a == b for a, b in pairs) / len(pairs)


def test_the_students_agreement_is_reported_on_held_out_recordings(
    settings: Settings, dataset_id: str, teacher: ModelVersion, recordings: Path
) -> None:
    params = {"teacher_ref": teacher.ref, "dataset_id": dataset_id, "model_name": "edge", **FAST}
    result = run_distillation(params, job=None, settings=settings)

    version = ModelStore(settings.model_store_path).get(result["model"])
    held = version.metadata["held_out"]
    # Three classes of four recordings: one of each held out (20%, stratified by label).
    assert len(held["files"]) == 3
    assert {path.split("/")[0] for path in held["files"]} == {"class0", "class1", "class2"}
    assert held["source"] == "held out of this distillation"
    agreement = version.metadata["distillation"]["held_out"]
    assert agreement["recordings"] == 3
    expected = _agreement_on(
        load_trained_model(version.path),
        load_trained_model(teacher.path),
        [recordings / path for path in held["files"]],
    )
    assert agreement["agreement"] == pytest.approx(expected)
    assert result["metrics"]["held_out_agreement"] == agreement["agreement"]
    assert result["metrics"]["agreement_on"] == "training crops"
    assert result["held_out"] == agreement


def test_on_the_teachers_own_data_set_the_teachers_held_out_recordings_are_used(
    settings: Settings, dataset_id: str, teacher: ModelVersion
) -> None:
    store = ModelStore(settings.model_store_path)
    manifest = DatasetStore(settings.datasets_path).get(dataset_id)
    held = sorted(entry.path for entry in manifest.files)[:2]
    with store.publish("scenes", metadata={
        "dataset": {"id": dataset_id, "digest": manifest.digest},
        "held_out": {"share": 0.2, "files": held},
    }) as staging:  # fmt: skip
        save_trained_model(staging, load_trained_model(teacher.path))
    own_teacher = staging.version
    params = {"teacher_ref": own_teacher.ref, "dataset_id": dataset_id, **FAST, "epochs": 1}
    result = run_distillation(params, job=None, settings=settings)
    metadata = store.get(result["model"]).metadata
    assert metadata["held_out"]["files"] == held
    assert metadata["held_out"]["source"] == f"the recordings {own_teacher.ref}'s training held out"
    assert metadata["distillation"]["held_out"]["recordings"] == 2


def test_a_student_name_stays_a_valid_model_name() -> None:
    assert student_name("scenes") == "scenes-edge"
    long_name = "a" * 64
    assert len(student_name(long_name)) == 64 and student_name(long_name).endswith("-edge")
    validate_name(student_name(long_name))
