"""The configuration of a training run: `TrainConfig` and the schedules it decides.

`TrainConfig` holds everything that decides what a run computes (plus a few settings that do
not, `RESUME_NEUTRAL_FIELDS`); it checks its values when built and round-trips through JSON
(`to_dict`/`from_dict`), which is how checkpoints and a trained model's metadata carry it.
`learning_rate_at` and `temperature_at` give the per-epoch schedules the training loop
(`uvac.training.pipeline`) follows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from uvac.models import DATA_ARGUMENTS, MODEL_TYPES, model_options

__all__ = [
    "INIT_CLUSTERINGS",
    "RESUME_NEUTRAL_FIELDS",
    "TrainConfig",
    "learning_rate_at",
    "resume_relevant_fields",
    "temperature_at",
]

# The partitions the initialisation of h can be taught (TrainConfig.init_clustering).
INIT_CLUSTERINGS = ("kmeans", "spectral", "ward")

# TrainConfig fields that do not change the numbers a run computes: a checkpoint written under
# other values of these still resumes.
RESUME_NEUTRAL_FIELDS = frozenset({"device", "progress_every_steps", "checkpoint_every_epochs"})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; JSON round trip with `to_dict`/`from_dict`.

    ``cluster_balance`` (0 = the paper's recipe) weighs KL(batch-mean pi || uniform) in the
    loss, against clusters collapsing; see `uvac.models.base.LossParts`.
    ``consistency_weight`` (0 = the paper's recipe) adds the augmentation-consistency term of
    `uvac.training.consistency` (minus the mutual information between the clusters of a window and
    of an augmented view of it). With ``consistency_neighbours = k > 0`` the second view is an
    augmented copy of one of the window's k nearest training windows (in the flattened feature
    space) rather than of the window itself, as in SCAN (Van Gansbeke et al. 2020): windows
    that are close in the input space are pulled into the same cluster.
    ``init_epochs`` (0 = the paper's recipe: random initialisation) first trains h alone
    for that many epochs to predict a clustering of the training windows (cross-entropy),
    so that the ELBO starts from an informative pi instead of the flat one it collapses onto;
    see `uvac.training.cluster_start`. It runs at least
    `uvac.training.cluster_start.INIT_MIN_STEPS` batches, whatever the data set's size.
    ``init_clustering`` picks the partition that initialisation teaches h: ``"kmeans"`` (the
    default), ``"ward"``, Ward-linkage agglomerative clustering
    (`uvac.training.cluster_start.ward_pseudo_labels`), whose partition of the training windows beat
    K-means's on FSDD and ESC-10 (it falls back to K-means when one Ward cluster dominates,
    see `uvac.training.cluster_start.initial_pseudo_labels`), or ``"spectral"``, spectral
    clustering of the windows' k-nearest-neighbour graph
    (`uvac.training.cluster_start.spectral_pseudo_labels`; worse than K-means on FSDD's cepstra,
    whose graph falls apart into small components). ``self_label_weight`` (0 = off; the paper's
    recipe) adds SCAN's self-labelling stage (Van Gansbeke et al. 2020) to every step: windows
    whose pi on the clean view is above ``self_label_threshold`` become targets (their argmax,
    fixed) for h on an augmented view, with cross-entropy weighted by the inverse frequency of each
    target in the batch, so that large clusters do not swallow small ones. The ELBO terms stay in
    the loss. ``stop_after_stable_epochs = n > 0`` ends training once each of the last n epochs
    moved at most `uvac.training.trainer.STABLE_SHARE` of the training windows to another cluster
    (0, the default, trains every epoch); the learning-rate and temperature schedules still span
    ``epochs``, which becomes the most a run takes. ``model_hyperparameters`` go to the model's
    constructor on top of what the data decides (``n_clusters``, ``n_features`` and, for models
    tied to a window length, ``n_frames``), e.g. ``{"conv_channels": [8, 16, 16, 32]}`` for a
    small network.
    """

    model_type: str = "cat-uvac"
    n_clusters: int = 10
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 5e-4
    final_learning_rate: float = 5e-5
    temperature_start: float = 1.0
    temperature_end: float = 0.5
    lambda_kl: float = 0.5
    cluster_balance: float = 0.0
    consistency_weight: float = 0.0
    consistency_neighbours: int = 0
    init_epochs: int = 0
    init_clustering: str = "kmeans"
    self_label_weight: float = 0.0
    self_label_threshold: float = 0.95
    stop_after_stable_epochs: int = 0
    seed: int = 0
    bf16_autocast: bool = False
    device: str = "auto"
    model_hyperparameters: dict[str, Any] = field(default_factory=dict)
    progress_every_steps: int = 10
    checkpoint_every_epochs: int = 1

    def __post_init__(self) -> None:
        if self.model_type not in MODEL_TYPES:
            raise ValueError(
                f"unknown model_type {self.model_type!r}; known: {', '.join(sorted(MODEL_TYPES))}"
            )
        positive_ints = ("n_clusters", "batch_size", "progress_every_steps")
        for name in (*positive_ints, "checkpoint_every_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_clusters < 2:
            raise ValueError(f"n_clusters must be at least 2, got {self.n_clusters}")
        for name in ("epochs", "consistency_neighbours", "init_epochs", "stop_after_stable_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if self.epochs == 0 and (self.init_epochs == 0 or self.model_type == "kmeans"):
            raise ValueError(
                "epochs = 0 trains the clustering start alone, which needs init_epochs > 0 and "
                "a variational model"
            )
        for name in (
            "learning_rate",
            "final_learning_rate",
            "temperature_start",
            "temperature_end",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if self.init_clustering not in INIT_CLUSTERINGS:
            raise ValueError(
                f"init_clustering must be one of {', '.join(INIT_CLUSTERINGS)}, "
                f"got {self.init_clustering!r}"
            )
        threshold = self.self_label_threshold
        if not (isinstance(threshold, int | float) and 0 < threshold < 1):
            raise ValueError(f"self_label_threshold must be in (0, 1), got {threshold!r}")
        for name in ("lambda_kl", "cluster_balance", "consistency_weight", "self_label_weight"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")
        reserved = DATA_ARGUMENTS & set(self.model_hyperparameters)
        if reserved:
            raise ValueError(
                f"model_hyperparameters may not set {', '.join(sorted(reserved))}: "
                "they come from the config and the data"
            )
        # Checked here, before any recording is read, rather than when the model is built.
        # K-means takes no options: the presets' network options are ignored for it.
        if self.model_type != "kmeans":
            allowed = model_options(self.model_type)
            unknown = sorted(set(self.model_hyperparameters) - allowed)
            if unknown:
                raise ValueError(
                    f"unknown model_hyperparameters for {self.model_type}: "
                    f"{', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict` output (of this or an earlier version: renamed keys are read
        under their new names); unknown keys are an error, missing ones default."""
        current = with_current_names(data)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(current) - known)
        if unknown:
            raise ValueError(f"unknown training configuration keys: {', '.join(unknown)}")
        return cls(**current)


def learning_rate_at(config: TrainConfig, epoch_index: int) -> float:
    """Adam's learning rate in epoch ``epoch_index`` (from 0): exponential from
    ``learning_rate`` at the first epoch to ``final_learning_rate`` at the last."""
    return _exponential(config.learning_rate, config.final_learning_rate, epoch_index, config)


def temperature_at(config: TrainConfig, epoch_index: int) -> float:
    """Gumbel-Softmax temperature in epoch ``epoch_index``, annealed like the learning rate."""
    return _exponential(config.temperature_start, config.temperature_end, epoch_index, config)


def _exponential(start: float, end: float, epoch_index: int, config: TrainConfig) -> float:
    if config.epochs == 1:
        return start
    fraction = epoch_index / (config.epochs - 1)
    return start * (end / start) ** fraction


def resume_relevant_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a `TrainConfig.to_dict` that a checkpoint's configuration must match
    for the run to resume from it: all but `RESUME_NEUTRAL_FIELDS`, under current names."""
    current = with_current_names(config)
    return {name: value for name, value in current.items() if name not in RESUME_NEUTRAL_FIELDS}


# Keys that stored configurations (model.json, checkpoints) may hold under an earlier name.
_RENAMED_KEYS = {"kmeans_init_epochs": "init_epochs"}


def with_current_names(config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with every renamed key under its current name."""
    return {_RENAMED_KEYS.get(name, name): value for name, value in config.items()}
