"""The distillation job: ``distill_job(params)`` trains a device student from a stored teacher
and publishes it, with its device export, as a new model version.

Parameters: ``{"teacher_ref", "dataset_id"}`` and optionally ``model_name`` (default:
`student_name` of the teacher's, ``scenes`` -> ``scenes-edge``, so the teacher's ``latest``
keeps following the teacher), ``epochs``, ``seed``, ``batch_size``, ``crops_per_clip``,
``learning_rate`` (`uvac.edge.distillation.DistillConfig`). Phases in
``job.meta["progress"]``: ``teacher`` (the teacher's pi for each recording, ``files_done`` of
``files``), then ``distilling`` (epochs, with the batch's KL to the teacher as ``loss`` and its
``agreement``), then ``publishing``.

Like training (`worker.jobs`): checkpoints in ``UVAC_CHECKPOINTS_DIR/<job id>`` (a re-run
resumes after the last completed epoch), a cancel request stops at the next batch and
publishes nothing, a worker shutdown hands the job back with its checkpoints, a re-run after
the publish step returns what was published.

The published version holds the student (``weights.safetensors``, ``model.json``) and its
export in ``export/`` (`uvac.edge.onnx_export.EXPORT_FILES`: fp32 and int8 ONNX, the sidecar),
calibrated on the training recordings; its metadata names the teacher (``ref``, ``name``,
``version``, ``sha256``) and copies the teacher's cluster names, whose clusters it reproduces.

Held-out recordings: on the teacher's own data set the student is not trained on the
recordings the teacher's training held out; on another data set a share of it is put aside
(``held_out_share``, the rule of `uvac.audio.held_out_split`). The student's agreement with its
teacher on those recordings (`uvac.edge.clip_agreement`) is what the job result
(``metrics.held_out_agreement``), the version's metadata (``distillation.held_out``, and
``held_out`` with the files, so an evaluation finds them) and its report give; the agreement
during training is on training crops only.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from rq import get_current_job
from rq.job import Job

from dataset_store import DatasetManifest
from model_store import AnyModelStore, ModelVersion
from service_config import Settings, get_settings
from uvac.errors import RunCancelled
from uvac.training import Progress
from worker.held_out import held_out_metrics, held_out_share
from worker.identity import assign_recordings
from worker.job_support import (
    InvalidJobParameters,
    check_keys,
    configure_torch,
    dataset_items,
    embedding_cache,
    failure_policy,
    job_reporter,
    record,
    settle_publication,
)
from worker.progress import ProgressReporter, stamped_progress, utc_now_iso
from worker.stores import checkpoint_folder, dataset_store, model_store

if TYPE_CHECKING:
    import numpy as np

    from uvac.audio import DatasetItem, EmbeddingCache
    from uvac.edge import TeacherWindows
    from uvac.training import TrainedModel

__all__ = ["EXPORT_FOLDER", "distill_job", "run_distillation"]

logger = logging.getLogger(__name__)

EXPORT_FOLDER = "export"
_CONFIG_KEYS = frozenset({"epochs", "seed", "batch_size", "crops_per_clip", "learning_rate"})
STUDENT_SUFFIX = "-edge"
# Model names are at most 64 characters (model_store.refs.NAME_PATTERN).
_MAX_NAME_LENGTH = 64


def student_name(teacher_name: str) -> str:
    """Where a teacher's students are published by default: a name of their own."""
    return teacher_name[: _MAX_NAME_LENGTH - len(STUDENT_SUFFIX)] + STUDENT_SUFFIX


_DISTILL_KEYS = _CONFIG_KEYS | {"teacher_ref", "dataset_id", "model_name", "held_out_share"}


def distill_job(params: dict[str, Any]) -> dict[str, Any]:
    """Distil and publish; ``{"model": "name:vN", "sha256", "teacher", "metrics"}``."""
    job = get_current_job()
    settings = get_settings()
    with failure_policy(job):
        configure_torch(settings, "network")
        return run_distillation(params, job=job, settings=settings)


class _Progress:
    """Writes the distillation's progress to the job's meta, at most every interval."""

    def __init__(self, reporter: ProgressReporter | None, interval_s: float) -> None:
        self.reporter = reporter
        self.interval_s = interval_s
        self._last: float | None = None

    def _due(self, final: bool) -> bool:
        now = time.monotonic()
        if not final and self._last is not None and now - self._last < self.interval_s:
            return False
        self._last = now
        return True

    def teacher(self, done: int, total: int) -> None:
        if self.reporter is None:
            return
        if self.reporter.should_stop():
            raise RunCancelled(f"stopped after the teacher's pass over {done} files")
        if self._due(done == total):
            self._write(Progress(phase="teacher", files_done=done, files=total))

    def __call__(self, progress: Progress) -> None:
        if self.reporter is None or not self._due(progress.epoch_done):
            return
        self._write(progress)

    def _write(self, progress: Progress) -> None:
        assert self.reporter is not None
        stamped = dataclasses.replace(progress, updated_at=utc_now_iso())
        self.reporter.write({"progress": stamped.to_document()})


def run_distillation(
    params: Mapping[str, Any], *, job: Job | None, settings: Settings
) -> dict[str, Any]:
    """The body of `distill_job` (callable without RQ: ``job=None``)."""
    from uvac.audio import load_audio
    from uvac.edge import STUDENT_FEATURES, DistillConfig, distill, teacher_targets
    from uvac.training import load_trained_model

    check_keys(params, _DISTILL_KEYS, {"teacher_ref", "dataset_id"})
    if job is not None and job.meta.get("published"):
        logger.info("job %s already published %s", job.id, job.meta["published"]["model"])
        return dict(job.meta["published"])
    try:
        config = DistillConfig.from_dict({k: params[k] for k in _CONFIG_KEYS if k in params})
    except (TypeError, ValueError) as error:
        raise InvalidJobParameters(str(error)) from error
    reporter = job_reporter(job, settings)
    progress = _Progress(reporter, settings.progress_interval_seconds)
    checkpoint_dir, mirror = (
        checkpoint_folder(settings, job.id) if job is not None else (None, nullcontext())
    )
    store = model_store(settings)

    def work() -> dict[str, Any]:
        teacher_version = store.verify(str(params["teacher_ref"]))
        teacher = load_trained_model(teacher_version.path)
        datasets = dataset_store(settings)
        manifest = datasets.get(str(params["dataset_id"]))
        items, held_out, held_out_source = _split(
            dataset_items(datasets, manifest), manifest, teacher_version, params
        )
        record(job, {"phase": "teacher"})
        teacher_rate, student_rate = (
            teacher.feature_config.sample_rate,
            STUDENT_FEATURES.sample_rate,
        )
        on_encoder = teacher.feature_config.uses_encoder
        targets = (
            _embedded_targets(teacher, items, embedding_cache(settings), progress.teacher)
            if on_encoder
            else []
        )
        clips = []
        for index, item in enumerate(items):
            if not on_encoder:
                audio = load_audio(item.path, sample_rate=teacher_rate)
                targets += teacher_targets(teacher, [audio])
            clips.append(load_audio(item.path, sample_rate=student_rate).samples)
            if not on_encoder:
                progress.teacher(index + 1, len(items))
        record(job, {"phase": "distilling", "started_training_at": utc_now_iso()})
        teacher_record = {
            "ref": teacher_version.ref,
            "name": teacher_version.name,
            "version": teacher_version.version,
            "sha256": teacher_version.sha256,
        }
        started = time.monotonic()
        student = distill(
            clips,
            targets,
            config=config,
            progress=progress,
            should_stop=reporter.should_stop if reporter is not None else None,
            checkpoint_dir=checkpoint_dir,
            info={"teacher": teacher_record, "dataset_digest": manifest.digest},
        )
        if reporter is not None and reporter.should_stop() and not reporter.interrupted:
            raise RunCancelled("cancelled after the last epoch, before publishing")
        record(job, {"phase": "held-out"})
        held = _held_out_agreement(
            teacher,
            student,
            held_out,
            source=held_out_source,
            should_stop=reporter.should_stop if reporter is not None else None,
        )
        publishing = stamped_progress(Progress(phase="publishing"))
        record(job, {"phase": "publishing", "progress": publishing})
        return _publish(
            student,
            clips=clips,
            params=params,
            teacher=teacher,
            teacher_version=teacher_version,
            teacher_record=teacher_record,
            store=store,
            job=job,
            manifest_info={"id": manifest.id, "digest": manifest.digest, "files": len(items)},
            train_seconds=time.monotonic() - started,
            held_out=held,
        )

    with mirror:
        return settle_publication(work, job=job, reporter=reporter, checkpoint_dir=checkpoint_dir)


def _embedded_targets(
    teacher: TrainedModel,
    items: Sequence[DatasetItem],
    cache: EmbeddingCache,
    progress: Callable[[int, int], None],
) -> list[TeacherWindows]:
    """The teacher's targets, its embeddings read through the cache; a recording that does
    not decode fails the job, as in the teacher's pass over decoded audio."""
    from uvac.audio import FeatureExtractor, embed_items
    from uvac.edge import embedded_teacher_targets

    embedder = FeatureExtractor(teacher.feature_config, teacher.norm_stats).embedder
    assert embedder is not None
    embedded = []
    for clip in embed_items(items, embedder=embedder, cache=cache, progress=progress):
        if clip.error is not None:
            raise clip.error
        embedded.append(clip)
    return embedded_teacher_targets(teacher, embedded)


def _publish(
    student: TrainedModel,
    *,
    clips: list[np.ndarray],
    params: Mapping[str, Any],
    teacher: TrainedModel,
    teacher_version: ModelVersion,
    teacher_record: dict[str, Any],
    store: AnyModelStore,
    job: Job | None,
    manifest_info: dict[str, Any],
    train_seconds: float,
    held_out: dict[str, Any],
) -> dict[str, Any]:
    from model_store.cluster_names import current_cluster_names
    from uvac.edge import calibration_windows, export_model
    from uvac.selection import cluster_order_from
    from uvac.training import code_version, save_trained_model

    names = current_cluster_names(
        store, teacher_version, n_clusters=teacher.n_clusters, model_info=teacher.info
    )
    # The student reproduces the teacher's outputs, so it takes the teacher's numbering (and
    # with it the names and the hearing-aid programs mapped to each number).
    order = cluster_order_from(teacher_version.metadata, n_clusters=teacher.n_clusters)
    agreement = {key: held_out[key] for key in ("recordings", "agreement", "source")}
    distillation = {**(student.info.get("distillation") or {}), "held_out": agreement}
    metadata: dict[str, Any] = {
        "model_type": student.model_type,
        "n_clusters": student.n_clusters,
        "hyperparameters": student.model.hyperparameters(),
        "feature_config": student.feature_config.to_dict(),
        "teacher": teacher_record,
        "distillation": distillation,
        "dataset": manifest_info,
        "held_out": {key: value for key, value in held_out.items() if key != "agreement"},
        "export": {"folder": EXPORT_FOLDER},
        "code_version": code_version(),
        "created_at": utc_now_iso(),
        "job_id": job.id if job is not None else None,
        "train_seconds_this_run": round(train_seconds, 3),
    }
    listed = [names.get(str(number)) for number in range(student.n_clusters)]
    if names:
        metadata["cluster_names"] = listed
    if order is not None:
        metadata["cluster_identity"] = {
            "previous": teacher_version.ref,
            "order": order,
            "source": "teacher",
        }
    name = str(params.get("model_name") or student_name(teacher_version.name))
    with store.publish(name, metadata=metadata) as staging:
        save_trained_model(staging, student)
        export_model(
            student,
            staging / EXPORT_FOLDER,
            calibration_windows=calibration_windows(clips, student.feature_config),
            cluster_names=listed,
            cluster_order=order,
            source={"model": name, "teacher": teacher_record},
        )
    version = staging.version
    final = distillation.get("final") or {}
    logger.info("job %s published %s (student of %s)", job and job.id, version.ref, teacher_record)
    return {
        "model": version.ref,
        "sha256": version.sha256,
        "teacher": teacher_record,
        "metrics": {
            "loss": final.get("loss"),
            "agreement": final.get("agreement"),
            "agreement_on": "training crops",
            "held_out_agreement": agreement["agreement"],
            "held_out_recordings": agreement["recordings"],
        },
        "held_out": agreement,
    }


def _split(
    items: list[DatasetItem],
    manifest: DatasetManifest,
    teacher_version: ModelVersion,
    params: Mapping[str, Any],
) -> tuple[list[DatasetItem], list[DatasetItem], str]:
    """(training items, held-out items, where the held-out part comes from)."""
    from uvac.edge import student_split

    split = student_split(
        items,
        teacher_metadata=teacher_version.metadata,
        teacher_ref=teacher_version.ref,
        dataset_id=manifest.id,
        dataset_digest=manifest.digest,
        share=held_out_share(params),
    )
    return split.training, split.held_out, split.source


def _held_out_agreement(
    teacher: TrainedModel,
    student: TrainedModel,
    held_out: list[DatasetItem],
    *,
    source: str,
    should_stop: Callable[[], bool] | None,
) -> dict[str, Any]:
    """The student's agreement with its teacher, and its own figures, on ``held_out``."""
    from uvac.edge import clip_agreement

    record: dict[str, Any] = {
        "files": sorted(item.relpath for item in held_out),
        "source": source,
        "recordings": 0,
        "agreement": None,
        "metrics": None,
    }
    if not held_out:
        return record
    # Both in the teacher's output order: the student learnt the teacher's raw outputs.
    teacher_ids, teacher_pi = assign_recordings(teacher, held_out, should_stop=should_stop)
    student_ids, student_pi = assign_recordings(student, held_out, should_stop=should_stop)
    teacher_rows = dict(zip(teacher_ids, teacher_pi.argmax(axis=1).tolist(), strict=True))
    student_rows = dict(zip(student_ids, student_pi.argmax(axis=1).tolist(), strict=True))
    common = sorted(set(teacher_rows) & set(student_rows))
    if common:
        record["recordings"] = len(common)
        record["agreement"] = clip_agreement(
            [teacher_rows[clip] for clip in common], [student_rows[clip] for clip in common]
        )
    record["metrics"] = held_out_metrics(student, held_out, should_stop=should_stop)
    record["description"] = (
        f"Figures on {len(held_out)} recordings ({source}), which the student never saw."
    )
    return record
