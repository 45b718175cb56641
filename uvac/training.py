"""Training: one entry point for every model type, seeded, cancellable and resumable.

Two layers:

- `train_on_features(features, mask, ...)`: the loop itself, on feature windows
  ``(N, 1, T, M)`` that are already normalised. Each window is one training example. Adam with
  the learning rate decayed exponentially per epoch (5e-4 -> 5e-5 by the last epoch), the
  Gumbel-Softmax temperature annealed the same way (1.0 -> 0.5). K-means fits in one "epoch".
- `train_model(items, ...)`: loads the recordings, fits the normalisation statistics on these
  training clips only, cuts every clip into windows, trains, and returns a `TrainedModel` that
  carries the feature configuration and statistics it was trained with.

Reproducible: the seed fixes the initial weights (torch's global generator), the data order (a
dedicated generator) and the Gumbel and Gaussian noise (torch's global generator again). A
checkpoint after each epoch holds all of them (`uvac.checkpoint`), so a run resumed after a kill
continues from the next epoch and ends with the weights of an uninterrupted run.

Cancellation: ``should_stop()`` is asked before every batch (and before every file while
loading); when it says True the run raises `uvac.errors.TrainingCancelled`. The last completed
epoch's checkpoint stays on disk, so a cancelled run can also be resumed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from uvac import metrics
from uvac.artifact import TrainedModel, training_info
from uvac.checkpoint import (
    TrainingCheckpoint,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from uvac.consistency import (
    augment_windows,
    initial_pseudo_labels,
    mutual_information_loss,
    nearest_neighbours,
    self_label_loss,
)
from uvac.device import resolve_device
from uvac.errors import DatasetError, TrainingCancelled
from uvac.models import MODEL_TYPES, ClusterModel, build_model
from uvac.models.base import VariationalClusterModel
from uvac.models.kmeans import KMeansClusterer
from uvac.training_data import windows_for_training

if TYPE_CHECKING:
    from uvac.datasets import DatasetItem
    from uvac.features import FeatureConfig

__all__ = [
    "EpochRecord",
    "TrainConfig",
    "TrainProgress",
    "TrainingHistory",
    "learning_rate_at",
    "temperature_at",
    "train_model",
    "train_on_features",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[["TrainProgress"], None]
StopCheck = Callable[[], bool]

# TrainConfig fields that do not change the numbers a run computes: a checkpoint written under
# other values of these still resumes.
# The K-means initialisation runs at least this many batches (more epochs on small data sets).
KMEANS_INIT_MIN_STEPS = 300

# The partitions the initialisation of h can be taught (TrainConfig.init_clustering).
INIT_CLUSTERINGS = ("kmeans", "spectral", "ward")

_RESUME_NEUTRAL_FIELDS = frozenset({"device", "progress_every_steps", "checkpoint_every_epochs"})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run; JSON round trip with `to_dict`/`from_dict`.

    ``cluster_balance`` (0 = the paper's recipe) weighs KL(batch-mean pi || uniform) in the
    loss, against clusters collapsing; see `uvac.models.base.LossParts`.
    ``consistency_weight`` (0 = the paper's recipe) adds the augmentation-consistency term of
    `uvac.consistency` (minus the mutual information between the clusters of a window and of
    an augmented view of it). With ``consistency_neighbours = k > 0`` the second view is an
    augmented copy of one of the window's k nearest training windows (in the flattened feature
    space) rather than of the window itself, as in SCAN (Van Gansbeke et al. 2020): windows
    that are close in the input space are pulled into the same cluster.
    ``kmeans_init_epochs`` (0 = the paper's recipe: random initialisation) first trains h alone
    for that many epochs to predict K-means clusters of the training windows (cross-entropy),
    so that the ELBO starts from an informative pi instead of the flat one it collapses onto;
    see `uvac.consistency.kmeans_pseudo_labels`. It runs at least ``KMEANS_INIT_MIN_STEPS``
    batches, whatever the data set's size.
    ``init_clustering`` picks the partition that initialisation teaches h: ``"kmeans"`` (the
    default), ``"ward"``, Ward-linkage agglomerative clustering
    (`uvac.consistency.ward_pseudo_labels`), whose partition of the training windows beat
    K-means's on FSDD and ESC-10 (it falls back to K-means when one Ward cluster dominates,
    see `uvac.consistency.initial_pseudo_labels`), or ``"spectral"``, spectral clustering of
    the windows' k-nearest-neighbour graph (`uvac.consistency.spectral_pseudo_labels`; worse
    than K-means on FSDD's cepstra, whose graph falls apart into small components).
    ``self_label_weight`` (0 = off; the paper's recipe) adds SCAN's self-labelling stage (Van
    Gansbeke et al. 2020) to every step: windows whose pi on the clean view is above
    ``self_label_threshold`` become targets (their argmax, fixed) for h on an augmented view,
    with cross-entropy weighted by the inverse frequency of each target in the batch, so that
    large clusters do not swallow small ones. The ELBO terms stay in the loss.
    ``model_hyperparameters`` go to the model's constructor on top of what the data decides
    (``n_clusters``, ``n_mels`` and, for models tied to a window length, ``n_frames``), e.g.
    ``{"conv_channels": [8, 16, 16, 32]}`` for a small network.
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
    kmeans_init_epochs: int = 0
    init_clustering: str = "kmeans"
    self_label_weight: float = 0.0
    self_label_threshold: float = 0.95
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
        positive_ints = ("n_clusters", "epochs", "batch_size", "progress_every_steps")
        for name in (*positive_ints, "checkpoint_every_epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_clusters < 2:
            raise ValueError(f"n_clusters must be at least 2, got {self.n_clusters}")
        if (
            isinstance(self.consistency_neighbours, bool)
            or not isinstance(self.consistency_neighbours, int)
            or self.consistency_neighbours < 0
        ):
            raise ValueError(
                "consistency_neighbours must be a non-negative integer, "
                f"got {self.consistency_neighbours!r}"
            )
        if (
            isinstance(self.kmeans_init_epochs, bool)
            or not isinstance(self.kmeans_init_epochs, int)
            or self.kmeans_init_epochs < 0
        ):
            raise ValueError(
                "kmeans_init_epochs must be a non-negative integer, "
                f"got {self.kmeans_init_epochs!r}"
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
        reserved = {"n_clusters", "n_mels", "n_frames"} & set(self.model_hyperparameters)
        if reserved:
            raise ValueError(
                f"model_hyperparameters may not set {', '.join(sorted(reserved))}: "
                "they come from the config and the data"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Rebuild from `to_dict` output; unknown keys are an error, missing ones default."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training configuration keys: {', '.join(unknown)}")
        return cls(**dict(data))


@dataclass(frozen=True)
class TrainProgress:
    """What the progress callback receives: every ``progress_every_steps`` batches and at the
    end of every epoch (``epoch_done`` True, with accuracy/NMI when labels were given).

    ``epoch`` and ``step`` count from 1; loss values are running means over the epoch so far.
    """

    epoch: int
    epochs: int
    step: int
    steps_per_epoch: int
    loss: float
    reconstruction: float
    kl_z: float
    kl_y: float
    balance: float
    temperature: float
    learning_rate: float
    accuracy: float | None
    nmi: float | None
    elapsed_s: float
    eta_s: float | None
    epoch_done: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EpochRecord:
    """One completed epoch: mean loss parts, schedule values and label metrics."""

    epoch: int  # from 1
    loss: float
    reconstruction: float
    kl_z: float
    kl_y: float
    balance: float  # KL(batch-mean pi || uniform): near log K when the clusters collapse
    temperature: float
    learning_rate: float
    accuracy: float | None
    nmi: float | None
    clusters_used: int | None
    seconds: float


@dataclass
class TrainingHistory:
    """Every completed epoch of a run (including those before a resume)."""

    epochs: list[EpochRecord] = field(default_factory=list)

    def to_list(self) -> list[dict[str, Any]]:
        return [dataclasses.asdict(record) for record in self.epochs]

    @classmethod
    def from_list(cls, records: Sequence[Mapping[str, Any]]) -> TrainingHistory:
        return cls([EpochRecord(**dict(record)) for record in records])

    def summary(self) -> dict[str, Any]:
        """A small JSON-able digest for a model's metadata: the last epoch and the total time."""
        if not self.epochs:
            return {"epochs_completed": 0}
        last = self.epochs[-1]
        return {
            "epochs_completed": len(self.epochs),
            "final": dataclasses.asdict(last),
            "train_seconds": sum(record.seconds for record in self.epochs),
        }


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


# --------------------------------------------------------------------------- the loop


def train_on_features(
    features: Tensor,
    mask: Tensor,
    *,
    config: TrainConfig,
    labels: Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    checkpoint_dir: Path | None = None,
) -> tuple[ClusterModel, TrainingHistory]:
    """Train ``config.model_type`` on windows ``features (N, 1, T, M)`` with ``mask (N, T)``.

    ``labels`` (one int per window) only feed the accuracy/NMI in progress and history. With
    ``checkpoint_dir`` a checkpoint is written every ``checkpoint_every_epochs`` epochs and a
    compatible one found there is resumed (same config and the same data). Returns the model on
    the CPU in eval mode and the history.
    """
    _check_training_data(features, mask, labels, config)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config.model_type, **_model_arguments(config, features))
    if isinstance(model, KMeansClusterer):
        history = _fit_kmeans(model, features, mask, config, labels, progress, should_stop)
    else:
        assert isinstance(model, VariationalClusterModel)
        history = _Trainer(
            model=model,
            features=features,
            mask=mask,
            config=config,
            labels=labels,
            device=device,
            progress=progress,
            should_stop=should_stop,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
        ).run()
    return model.cpu().eval(), history


def _check_training_data(
    features: Tensor, mask: Tensor, labels: Sequence[int] | None, config: TrainConfig
) -> None:
    if features.dim() != 4 or features.shape[1] != 1:
        raise ValueError(f"features must be (N, 1, T, M), got {tuple(features.shape)}")
    n_windows = features.shape[0]
    if tuple(mask.shape) != (n_windows, features.shape[2]):
        raise ValueError(f"mask must be (N, T), got {tuple(mask.shape)}")
    if labels is not None and len(labels) != n_windows:
        raise ValueError(f"{len(labels)} labels for {n_windows} windows")
    if n_windows < config.n_clusters:
        raise DatasetError(
            f"the data set gives {n_windows} training windows, fewer than the "
            f"{config.n_clusters} clusters asked for"
        )


def _model_arguments(config: TrainConfig, features: Tensor) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "n_clusters": config.n_clusters,
        "n_mels": int(features.shape[3]),
    }
    # K-means has no network: a preset's network options (widths, GRU size) do not apply.
    if config.model_type != "kmeans":
        arguments.update(config.model_hyperparameters)
    if config.model_type != "cat-uvac":  # the others are built for one window length
        arguments["n_frames"] = int(features.shape[2])
    return arguments


def _fit_kmeans(
    model: KMeansClusterer,
    features: Tensor,
    mask: Tensor,
    config: TrainConfig,
    labels: Sequence[int] | None,
    progress: ProgressCallback | None,
    should_stop: StopCheck | None,
) -> TrainingHistory:
    if should_stop is not None and should_stop():
        raise TrainingCancelled("training cancelled before K-means started")
    started = time.perf_counter()
    model.fit(features, mask, seed=config.seed)
    with torch.inference_mode():
        distances = model.squared_distances(features, mask)  # (N, K)
        nearest = distances.min(dim=1)
        inertia = float(nearest.values.mean())
    accuracy, nmi_value, used = _label_metrics(nearest.indices, labels)
    seconds = time.perf_counter() - started
    record = EpochRecord(
        epoch=1,
        loss=inertia,  # mean squared distance to the nearest centroid
        reconstruction=inertia,
        kl_z=0.0,
        kl_y=0.0,
        balance=0.0,
        temperature=0.0,
        learning_rate=0.0,
        accuracy=accuracy,
        nmi=nmi_value,
        clusters_used=used,
        seconds=seconds,
    )
    if progress is not None:
        progress(_progress_from_record(record, epochs=1, steps=1, elapsed=seconds, eta=0.0))
    return TrainingHistory([record])


def _label_metrics(
    assignments: Tensor, labels: Sequence[int] | None
) -> tuple[float | None, float | None, int | None]:
    if labels is None:
        return None, None, None
    clusters = assignments.cpu().numpy()
    return (
        metrics.unsupervised_accuracy(list(labels), clusters),
        metrics.nmi(list(labels), clusters),
        metrics.clusters_used(clusters),
    )


def _progress_from_record(
    record: EpochRecord, *, epochs: int, steps: int, elapsed: float, eta: float | None
) -> TrainProgress:
    return TrainProgress(
        epoch=record.epoch,
        epochs=epochs,
        step=steps,
        steps_per_epoch=steps,
        loss=record.loss,
        reconstruction=record.reconstruction,
        kl_z=record.kl_z,
        kl_y=record.kl_y,
        balance=record.balance,
        temperature=record.temperature,
        learning_rate=record.learning_rate,
        accuracy=record.accuracy,
        nmi=record.nmi,
        elapsed_s=elapsed,
        eta_s=eta,
        epoch_done=True,
    )


def _data_fingerprint(features: Tensor, mask: Tensor) -> str:
    """SHA-256 of the training windows, so a checkpoint only resumes on the same data."""
    digest = hashlib.sha256()
    for tensor in (features, mask):
        array = tensor.detach().to(torch.float32).contiguous().cpu().numpy()
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


class _Trainer:
    """The gradient loop of the variational models; one instance per run."""

    def __init__(
        self,
        *,
        model: VariationalClusterModel,
        features: Tensor,
        mask: Tensor,
        config: TrainConfig,
        labels: Sequence[int] | None,
        device: torch.device,
        progress: ProgressCallback | None,
        should_stop: StopCheck | None,
        checkpoint_dir: Path | None,
    ) -> None:
        self.model = model.to(device)
        self.device = device
        self.config = config
        self.labels = labels
        self.progress = progress
        self.should_stop = should_stop
        self.checkpoint_dir = checkpoint_dir
        # Small data sets live on the device once, rather than being copied per batch.
        self.features = features.to(device, torch.float32)  # (N, 1, T, M)
        self.mask = mask.to(device, torch.float32)  # (N, T)
        self.fingerprint = _data_fingerprint(features, mask)
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.history = TrainingHistory()
        self.batches_per_epoch = len(self._batches(torch.arange(features.shape[0])))
        self.neighbours: Tensor | None = None  # (N, k) training-window indices
        if config.consistency_weight > 0 and config.consistency_neighbours > 0:
            self.neighbours = nearest_neighbours(
                self.features, self.mask, k=config.consistency_neighbours
            )

    def run(self) -> TrainingHistory:
        first_epoch = self._resume()
        if first_epoch == 0 and self.config.kmeans_init_epochs > 0:
            self._kmeans_init()
        started = time.perf_counter()
        steps_at_start = first_epoch * self.batches_per_epoch
        for epoch_index in range(first_epoch, self.config.epochs):
            self._run_epoch(epoch_index, started=started, steps_at_start=steps_at_start)
            completed = epoch_index + 1
            if self.checkpoint_dir is not None and (
                completed % self.config.checkpoint_every_epochs == 0
                or completed == self.config.epochs
            ):
                self._save_checkpoint(completed)
        return self.history

    def _kmeans_init(self) -> None:
        """Train h alone to predict K-means (or spectral) clusters of the windows."""
        config = self.config
        targets = initial_pseudo_labels(
            self.features,
            self.mask,
            method=config.init_clustering,
            n_clusters=config.n_clusters,
            seed=config.seed,
        ).to(self.device)  # (N,)
        optimizer = torch.optim.Adam(self.model.parameters(), lr=config.learning_rate)
        self.model.train()
        # A small data set has few batches per epoch: give h enough steps to learn the targets.
        epochs = max(
            config.kmeans_init_epochs, math.ceil(KMEANS_INIT_MIN_STEPS / self.batches_per_epoch)
        )
        for epoch_index in range(epochs):
            order = torch.randperm(self.features.shape[0], generator=self.shuffle)
            for indices in self._batches(order):
                if self.should_stop is not None and self.should_stop():
                    raise TrainingCancelled("training cancelled during the K-means initialisation")
                indices = indices.to(self.device)
                probabilities = self.model.cluster_probabilities(
                    self.features[indices], self.mask[indices]
                )  # (B, K)
                loss = torch.nn.functional.nll_loss(
                    probabilities.clamp_min(1e-8).log(), targets[indices]
                )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            logger.info(
                "K-means initialisation epoch %d/%d: cross-entropy %.3f",
                epoch_index + 1, epochs, float(loss.detach()),
            )  # fmt: skip

    # -- one epoch ------------------------------------------------------------------------

    def _batches(self, order: Tensor) -> list[Tensor]:
        batches = list(order.split(self.config.batch_size))
        # A trailing batch of one window would make batch norm's statistics degenerate.
        if len(batches) > 1 and batches[-1].numel() == 1:
            batches.pop()
        return batches

    def _run_epoch(self, epoch_index: int, *, started: float, steps_at_start: int) -> None:
        config = self.config
        learning_rate = learning_rate_at(config, epoch_index)
        temperature = temperature_at(config, epoch_index)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate
        epoch_started = time.perf_counter()
        order = torch.randperm(self.features.shape[0], generator=self.shuffle)
        batches = self._batches(order)
        sums = torch.zeros(5, dtype=torch.float64, device=self.device)  # loss parts, summed
        self.model.train()
        for step, indices in enumerate(batches, start=1):
            if self.should_stop is not None and self.should_stop():
                raise TrainingCancelled(
                    f"training cancelled in epoch {epoch_index + 1}, before batch {step}"
                )
            indices = indices.to(self.device)
            sums += self._train_step(indices, temperature)
            if self.progress is not None and step % config.progress_every_steps == 0:
                means = (sums / step).tolist()
                done = epoch_index * self.batches_per_epoch + step
                self.progress(
                    self._progress(
                        epoch_index, step, means, temperature, learning_rate,
                        started=started, steps_done=done, steps_at_start=steps_at_start,
                    )
                )  # fmt: skip

        means = (sums / len(batches)).tolist()
        accuracy, nmi_value, used = self._evaluate()
        record = EpochRecord(
            epoch=epoch_index + 1,
            loss=means[0],
            reconstruction=means[1],
            kl_z=means[2],
            kl_y=means[3],
            balance=means[4],
            temperature=temperature,
            learning_rate=learning_rate,
            accuracy=accuracy,
            nmi=nmi_value,
            clusters_used=used,
            seconds=time.perf_counter() - epoch_started,
        )
        self.history.epochs.append(record)
        logger.info(
            "epoch %d/%d: loss %.4g (rec %.4g, kl_z %.4g, kl_y %.4g), tau %.3g, lr %.3g, acc %s",
            record.epoch, config.epochs, record.loss, record.reconstruction, record.kl_z,
            record.kl_y, temperature, learning_rate, accuracy,
        )  # fmt: skip
        if self.progress is not None:
            done = (epoch_index + 1) * self.batches_per_epoch
            self.progress(
                self._progress(
                    epoch_index, len(batches), means, temperature, learning_rate,
                    started=started, steps_done=done, steps_at_start=steps_at_start,
                    accuracy=accuracy, nmi_value=nmi_value, epoch_done=True,
                )
            )  # fmt: skip

    def _train_step(self, indices: Tensor, temperature: float) -> Tensor:
        x, mask = self.features[indices], self.mask[indices]  # (B, 1, T, F), (B, T)
        with torch.autocast(
            device_type=self.device.type,
            dtype=torch.bfloat16,
            enabled=self.config.bf16_autocast,
        ):
            parts = self.model.loss(
                x,
                mask,
                temperature=temperature,
                lambda_kl=self.config.lambda_kl,
                cluster_balance=self.config.cluster_balance,
            )
            total = parts.total
            if self.config.consistency_weight > 0:
                source, source_mask = x, mask
                if self.neighbours is not None:  # one random neighbour of each window
                    choice = torch.randint(
                        self.neighbours.shape[1], (indices.shape[0],), device=self.device
                    )
                    partners = self.neighbours[indices, choice]  # (B,)
                    source, source_mask = self.features[partners], self.mask[partners]
                view, view_mask = augment_windows(source, source_mask)  # (B,1,T,F), (B,T)
                consistency = mutual_information_loss(
                    self.model.cluster_probabilities(x, mask),
                    self.model.cluster_probabilities(view, view_mask),
                )
                total = total + self.config.consistency_weight * consistency
            if self.config.self_label_weight > 0:
                with torch.no_grad():
                    clean = self.model.cluster_probabilities(x, mask)  # (B, K)
                view, view_mask = augment_windows(x, mask)  # (B, 1, T, F), (B, T)
                self_label = self_label_loss(
                    clean,
                    self.model.cluster_probabilities(view, view_mask),
                    threshold=self.config.self_label_threshold,
                )
                total = total + self.config.self_label_weight * self_label
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        # Kept on the device: reading them back every step would synchronise a GPU.
        return (
            torch.stack([parts.total, parts.reconstruction, parts.kl_z, parts.kl_y, parts.balance])
            .detach()
            .to(torch.float64)
        )

    def _evaluate(self) -> tuple[float | None, float | None, int | None]:
        if self.labels is None:
            return None, None, None
        self.model.eval()
        assignments = []
        with torch.inference_mode():
            for start in range(0, self.features.shape[0], 256):
                x = self.features[start : start + 256]
                mask = self.mask[start : start + 256]
                assignments.append(self.model.assignments(x, mask).cpu())
        self.model.train()
        return _label_metrics(torch.cat(assignments), self.labels)

    def _progress(
        self,
        epoch_index: int,
        step: int,
        means: list[float],
        temperature: float,
        learning_rate: float,
        *,
        started: float,
        steps_done: int,
        steps_at_start: int,
        accuracy: float | None = None,
        nmi_value: float | None = None,
        epoch_done: bool = False,
    ) -> TrainProgress:
        elapsed = time.perf_counter() - started
        steps_this_run = steps_done - steps_at_start
        total_steps = self.config.epochs * self.batches_per_epoch
        eta = elapsed / steps_this_run * (total_steps - steps_done) if steps_this_run else None
        return TrainProgress(
            epoch=epoch_index + 1,
            epochs=self.config.epochs,
            step=step,
            steps_per_epoch=self.batches_per_epoch,
            loss=means[0],
            reconstruction=means[1],
            kl_z=means[2],
            kl_y=means[3],
            balance=means[4],
            temperature=temperature,
            learning_rate=learning_rate,
            accuracy=accuracy,
            nmi=nmi_value,
            elapsed_s=elapsed,
            eta_s=eta,
            epoch_done=epoch_done,
        )

    # -- checkpoints ----------------------------------------------------------------------

    def _comparable_config(self, config: Mapping[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in config.items() if k not in _RESUME_NEUTRAL_FIELDS}

    def _resume(self) -> int:
        """Load a compatible checkpoint if there is one; returns the first epoch to run."""
        if self.checkpoint_dir is None:
            return 0
        checkpoint = load_checkpoint(self.checkpoint_dir)
        if checkpoint is None:
            return 0
        if (
            self._comparable_config(checkpoint.config)
            != self._comparable_config(self.config.to_dict())
            or checkpoint.extra.get("data_fingerprint") != self.fingerprint
        ):
            logger.warning(
                "checkpoint in %s is for another configuration or data set; starting afresh",
                self.checkpoint_dir,
            )
            return 0
        self.model.load_state_dict(checkpoint.model_state)
        self.optimizer.load_state_dict(checkpoint.optimizer_state)
        restore_rng_state(checkpoint.rng, self.shuffle)
        self.history = TrainingHistory.from_list(checkpoint.history)
        logger.info("resuming from the checkpoint after epoch %d", checkpoint.epoch)
        return checkpoint.epoch

    def _save_checkpoint(self, completed_epochs: int) -> None:
        assert self.checkpoint_dir is not None
        save_checkpoint(
            self.checkpoint_dir,
            TrainingCheckpoint(
                epoch=completed_epochs,
                model_state=self.model.state_dict(),
                optimizer_state=self.optimizer.state_dict(),
                rng=capture_rng_state(self.shuffle),
                config=self.config.to_dict(),
                history=self.history.to_list(),
                extra={"data_fingerprint": self.fingerprint},
            ),
        )


# --------------------------------------------------------------------- from recordings


def train_model(
    items: Sequence[DatasetItem],
    *,
    config: TrainConfig,
    feature_config: FeatureConfig,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    checkpoint_dir: Path | None = None,
    dataset_digest: str | None = None,
) -> TrainedModel:
    """Train on recordings: features, normalisation fitted on these clips, windows, model.

    Files that fail to decode are skipped with a warning (and counted in the model's info);
    `uvac.errors.DatasetError` if none is usable. Labels (when every item has one) feed the
    accuracy/NMI in progress; each clip's windows carry its label.
    """
    data = windows_for_training(items, feature_config=feature_config, should_stop=should_stop)
    model, history = train_on_features(
        data.features,
        data.mask,
        config=config,
        labels=data.labels,
        progress=progress,
        should_stop=should_stop,
        checkpoint_dir=checkpoint_dir,
    )
    info = training_info(
        model=model,
        config=config,
        history=history,
        dataset_digest=dataset_digest,
        data_summary=data.summary(),
    )
    return TrainedModel(
        model=model, feature_config=feature_config, norm_stats=data.norm_stats, info=info
    )
