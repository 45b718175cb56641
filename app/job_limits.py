"""What evaluation, distillation and preparation jobs may ask of a worker, checked when they
are submitted, by the rule training's requests follow (`app.training_limits`): what the job
would hold at once, the decoder and the encoder included, against
`Settings.max_training_memory_bytes` (a worker's memory, whatever the job kind), and the
settings the engine would refuse. Refusals are 422 validation problems naming the parts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from app.schemas.distill import DistillRequest
from app.schemas.prepare import PrepareRequest
from app.training_limits import check_fits, manifest_items, refusal
from dataset_store import DatasetManifest
from model_store import ModelVersion
from uvac.audio import DEFAULT_HELD_OUT_SHARE, FeatureConfig
from uvac.edge import DistillConfig, distillation_memory, student_split
from uvac.models import DATA_ARGUMENTS
from uvac.training import (
    TrainConfig,
    build_configs,
    evaluation_memory,
    preparation_memory,
    window_count,
)

__all__ = [
    "check_distillation_fits",
    "check_evaluation_fits",
    "check_preparation_fits",
]

# What the evaluation job runs its batches at (worker.jobs.run_evaluation's default).
_EVALUATION_BATCH = 64


def _model_configs(
    version: ModelVersion, *, batch_size: int
) -> tuple[FeatureConfig, TrainConfig] | None:
    """The stored model's features and shape, as a training configuration of its batches;
    None when its metadata does not describe them (a version published by hand rather than by
    a job: the worker reads the model's own files, and such a job is not sized)."""
    metadata = version.metadata
    try:
        hyperparameters = {
            key: value
            for key, value in dict(metadata.get("hyperparameters") or {}).items()
            if key not in DATA_ARGUMENTS
        }
        features = FeatureConfig.from_dict(metadata["feature_config"])
        config = TrainConfig(
            model_type=str(metadata["model_type"]),
            n_clusters=int(metadata["n_clusters"]),
            batch_size=batch_size,
            model_hyperparameters=hyperparameters,
        )
    except (KeyError, TypeError, ValueError):
        return None
    return features, config


def _durations(manifest: DatasetManifest, paths: Collection[str]) -> list[float]:
    return [entry.duration_s for entry in manifest.files if entry.path in paths]


def check_evaluation_fits(
    version: ModelVersion, manifest: DatasetManifest, paths: Collection[str], *, max_bytes: int
) -> None:
    """422 when evaluating ``version`` on the recordings ``paths`` of ``manifest`` would need
    more than ``max_bytes``, or when they have fewer windows than the model has clusters."""
    described = _model_configs(version, batch_size=_EVALUATION_BATCH)
    if described is None:
        return
    features, config = described
    durations = _durations(manifest, set(paths))
    windows = window_count(durations, features)
    if windows < config.n_clusters:  # the K-means baselines need a window per cluster
        raise refusal(
            ("dataset_id",),
            f"{version.ref} has {config.n_clusters} clusters, and its evaluation compares "
            f"them with K-means of as many clusters on the evaluated windows; the "
            f"{len(durations)} recordings evaluated (of data set {manifest.id}) cut into "
            f"{windows}. Evaluate on more recordings (split all, or another data set).",
            "too_few_windows",
        )
    memory = evaluation_memory(
        config, features, windows=windows, longest_s=max(durations, default=0.0)
    )
    check_fits(
        memory, what="This evaluation", max_bytes=max_bytes, lower="evaluate fewer or "
        "shorter recordings (split held-out, or a smaller data set)",
        kind="evaluation_too_large",
    )  # fmt: skip


def check_preparation_fits(
    body: PrepareRequest, manifest: DatasetManifest, *, max_bytes: int
) -> None:
    """422 when embedding the data set's longest recording would need more than ``max_bytes``."""
    features, _ = build_configs(
        str(body.preset), feature_overrides=body.features.overrides() if body.features else None
    )
    memory = preparation_memory(
        features, longest_s=max((entry.duration_s for entry in manifest.files), default=0.0)
    )
    check_fits(
        memory, what="Embedding this data set", max_bytes=max_bytes,
        lower="features (window_seconds), or cut the longest recordings",
        kind="preparation_too_large",
    )  # fmt: skip


def distill_config(body: DistillRequest) -> DistillConfig:
    """The distillation the worker will run; 422 for settings it would refuse."""
    settings: Mapping[str, Any] = body.model_dump(
        exclude_none=True, include={"epochs", "seed", "batch_size", "crops_per_clip",
                                    "learning_rate"},
    )  # fmt: skip
    try:
        return DistillConfig.from_dict(settings)
    except (TypeError, ValueError) as error:
        raise refusal((), f"The distillation cannot run with these settings: {error}",
                      "distillation_invalid") from error  # fmt: skip


def check_distillation_fits(
    body: DistillRequest, teacher: ModelVersion, manifest: DatasetManifest, *, max_bytes: int
) -> None:
    """422 when distilling ``teacher`` on ``manifest`` would need more than ``max_bytes``, or
    when the worker would refuse the settings."""
    config = distill_config(body)
    described = _model_configs(teacher, batch_size=_EVALUATION_BATCH)
    if described is None:
        return
    features, teacher_config = described
    split = student_split(
        manifest_items(manifest),
        teacher_metadata=teacher.metadata,
        teacher_ref=teacher.ref,
        dataset_id=manifest.id,
        dataset_digest=manifest.digest,
        share=DEFAULT_HELD_OUT_SHARE,  # a distillation request does not set it
    )
    durations = _durations(manifest, {item.relpath for item in split.training})
    memory = distillation_memory(
        config,
        teacher=teacher_config,
        teacher_features=features,
        teacher_windows=window_count(durations, features),
        durations_s=durations,
    )
    check_fits(
        memory, what="This distillation", max_bytes=max_bytes,
        lower="distil on a smaller data set, or lower batch_size",
        kind="distillation_too_large",
    )  # fmt: skip
