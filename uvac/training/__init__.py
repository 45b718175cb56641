"""Fitting a model: from windows of a data set to a saved, self-describing artifact.

The training configuration and its presets (`config`, `presets`), the data windows
(`data`), the loop (`trainer`) with its clustering start (`cluster_start`), consistency
losses (`consistency`), optimiser (`optimizer`), K-means fit (`kmeans_fit`), checkpoints,
history and progress, the memory estimate a job is sized by (`memory_estimate`), the whole
pipeline (`pipeline`) and the artifact format every later layer loads (`artifact`).

Imports `uvac.audio`, `uvac.models` and the shared leaves.
"""

from __future__ import annotations

from uvac.training.artifact import (
    MODEL_JSON,
    NOVELTY_JSON,
    NOVELTY_WEIGHTS,
    WEIGHTS_FILE,
    TrainedModel,
    code_version,
    load_novelty,
    load_trained_model,
    save_trained_model,
    training_info,
)
from uvac.training.checkpoint import (
    CHECKPOINT_JSON,
    RngState,
    TrainingCheckpoint,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from uvac.training.cluster_start import (
    INIT_MIN_STEPS,
    initial_pseudo_labels,
    kmeans_pseudo_labels,
    spectral_pseudo_labels,
    teach_initial_partition,
    ward_pseudo_labels,
)
from uvac.training.config import (
    INIT_CLUSTERINGS,
    RESUME_NEUTRAL_FIELDS,
    TrainConfig,
    learning_rate_at,
    resume_relevant_fields,
    temperature_at,
)
from uvac.training.consistency import (
    augment_windows,
    mutual_information_loss,
    nearest_neighbours,
    self_label_loss,
)
from uvac.training.data import (
    TrainingWindows,
    training_windows_from_embeddings,
    windows_for_training,
)
from uvac.training.history import EpochRecord, TrainingHistory, label_metrics
from uvac.training.job_memory import JobMemory, evaluation_memory, preparation_memory
from uvac.training.kmeans_fit import fit_kmeans
from uvac.training.memory_estimate import (
    PROBE_FRAMES,
    TrainingMemory,
    estimate_training_memory,
    recording_bytes,
    window_count,
)
from uvac.training.pipeline import (
    phase_threads,
    train_model,
    train_on_windows,
    training_workload,
)
from uvac.training.presets import DEFAULT_PRESET, PRESETS, Preset, build_configs
from uvac.training.progress import Phase, Progress
from uvac.training.trainer import ProgressCallback, StopCheck, Trainer, fit

__all__ = [
    "CHECKPOINT_JSON",
    "DEFAULT_PRESET",
    "INIT_CLUSTERINGS",
    "INIT_MIN_STEPS",
    "MODEL_JSON",
    "NOVELTY_JSON",
    "NOVELTY_WEIGHTS",
    "PRESETS",
    "PROBE_FRAMES",
    "RESUME_NEUTRAL_FIELDS",
    "WEIGHTS_FILE",
    "EpochRecord",
    "JobMemory",
    "Phase",
    "Preset",
    "Progress",
    "ProgressCallback",
    "RngState",
    "StopCheck",
    "TrainConfig",
    "TrainedModel",
    "Trainer",
    "TrainingCheckpoint",
    "TrainingHistory",
    "TrainingMemory",
    "TrainingWindows",
    "augment_windows",
    "build_configs",
    "capture_rng_state",
    "code_version",
    "estimate_training_memory",
    "evaluation_memory",
    "fit",
    "fit_kmeans",
    "initial_pseudo_labels",
    "kmeans_pseudo_labels",
    "label_metrics",
    "learning_rate_at",
    "load_checkpoint",
    "load_novelty",
    "load_trained_model",
    "mutual_information_loss",
    "nearest_neighbours",
    "phase_threads",
    "preparation_memory",
    "recording_bytes",
    "restore_rng_state",
    "resume_relevant_fields",
    "save_checkpoint",
    "save_trained_model",
    "self_label_loss",
    "spectral_pseudo_labels",
    "teach_initial_partition",
    "temperature_at",
    "train_model",
    "train_on_windows",
    "training_info",
    "training_windows_from_embeddings",
    "training_workload",
    "ward_pseudo_labels",
    "window_count",
    "windows_for_training",
]
