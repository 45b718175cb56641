"""The training loop behind `uvac.training.pipeline`: one model fitted on windows already
normalised.

`fit(features, mask, ...)` trains ``config.model_type`` on feature windows ``(N, 1, T, M)``
(each window one example) and returns the bare model and its `TrainingHistory`: Adam with the
learning rate decayed exponentially per epoch, the Gumbel-Softmax temperature annealed the
same way; K-means fits in one "epoch". `Trainer` is its gradient loop for the variational
models; `Trainer.train_step` runs one optimisation step on a batch, which
`benchmarks/training_speed.py` times. Callers outside the engine train through
`uvac.training.pipeline` (`train_model`, `train_on_windows`), which wraps the result with its
feature configuration and statistics.

Reproducible: the seed fixes the initial weights (torch's global generator), the data order (a
dedicated generator) and the Gumbel and Gaussian noise (torch's global generator again). A
checkpoint after each epoch holds all of them (`uvac.training.checkpoint`), so a run resumed after
a kill continues from the next epoch and ends with the weights of an uninterrupted run.

Cancellation: ``should_stop()`` is asked before every batch; when it says True the run raises
`uvac.errors.RunCancelled`. The last completed epoch's checkpoint stays on disk, so a
cancelled run can also be resumed.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from uvac.device import resolve_device
from uvac.errors import DatasetError, RunCancelled
from uvac.hashing import arrays_sha256
from uvac.models import (
    ClusterModel,
    KMeansClusterer,
    LossParts,
    VariationalClusterModel,
    build_model,
)
from uvac.training.checkpoint import (
    TrainingCheckpoint,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from uvac.training.cluster_start import teach_initial_partition
from uvac.training.config import (
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
from uvac.training.data import HeldOutWindows
from uvac.training.history import EpochRecord, TrainingHistory, label_metrics
from uvac.training.kmeans_fit import fit_kmeans
from uvac.training.optimizer import adam, load_adam_state
from uvac.training.progress import Progress

__all__ = ["STABLE_SHARE", "ProgressCallback", "StopCheck", "Trainer", "fit"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress], None]
StopCheck = Callable[[], bool]

# An epoch that moves at most this share of the training windows to another cluster leaves
# the partition as it was (`TrainConfig.stop_after_stable_epochs`).
STABLE_SHARE = 0.005


def fit(
    features: Tensor,
    mask: Tensor,
    *,
    config: TrainConfig,
    labels: Sequence[int] | None = None,
    progress: ProgressCallback | None = None,
    should_stop: StopCheck | None = None,
    checkpoint_dir: Path | None = None,
    held_out: HeldOutWindows | None = None,
    groups: Tensor | None = None,
) -> tuple[ClusterModel, TrainingHistory]:
    """Train ``config.model_type`` on windows ``features (N, 1, T, M)`` with ``mask (N, T)``.

    ``labels`` (one int per window) only feed the accuracy/NMI in progress and history;
    ``held_out`` windows (never trained on) only feed the held-out accuracy/NMI. ``groups``
    ``(N,)`` says which recording each window was cut from: the consistency partners and the
    spectral start's graph neighbours are drawn from other recordings, so that overlapping
    windows of one recording, each other's nearest neighbours, do not teach the model to
    cluster recordings. With
    ``checkpoint_dir`` a checkpoint is written every ``checkpoint_every_epochs`` epochs and a
    compatible one found there is resumed (same config and the same data). Returns the model on
    the CPU in eval mode and the history.
    """
    _check_training_data(features, mask, labels, config)
    device = resolve_device(config.device)
    torch.manual_seed(config.seed)
    model = build_model(config.model_type, **_model_arguments(config, features))
    if isinstance(model, KMeansClusterer):
        history = fit_kmeans(model, features, mask, config, labels, progress, should_stop)
    else:
        assert isinstance(model, VariationalClusterModel)
        history = Trainer(
            model=model,
            features=features,
            mask=mask,
            config=config,
            labels=labels,
            device=device,
            progress=progress,
            should_stop=should_stop,
            checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None,
            held_out=held_out,
            groups=groups,
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
        "n_features": int(features.shape[3]),
    }
    # K-means has no network: a preset's network options (widths, GRU size) do not apply.
    if config.model_type != "kmeans":
        arguments.update(config.model_hyperparameters)
    if config.model_type != "cat-uvac":  # the others are built for one window length
        arguments["n_frames"] = int(features.shape[2])
    return arguments


def _data_fingerprint(features: Tensor, mask: Tensor) -> str:
    """SHA-256 of the training windows, so a checkpoint only resumes on the same data."""
    return arrays_sha256(
        tensor.detach().to(torch.float32).cpu().numpy() for tensor in (features, mask)
    )


class Trainer:
    """The gradient loop of the variational models; one instance per run.

    `run` trains for ``config.epochs`` epochs (resuming from ``checkpoint_dir`` when it holds
    a compatible checkpoint) and returns the history; `fit` is the usual way in.
    `train_step` runs a single optimisation step, for callers that time or drive the steps
    themselves. The model and the windows move to ``device`` when the trainer is built.
    """

    def __init__(
        self,
        *,
        model: VariationalClusterModel,
        features: Tensor,
        mask: Tensor,
        config: TrainConfig,
        device: torch.device,
        labels: Sequence[int] | None = None,
        progress: ProgressCallback | None = None,
        should_stop: StopCheck | None = None,
        checkpoint_dir: Path | None = None,
        held_out: HeldOutWindows | None = None,
        groups: Tensor | None = None,
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
        self.optimizer = adam(model.parameters(), learning_rate=config.learning_rate, device=device)
        self.shuffle = torch.Generator().manual_seed(config.seed)
        self.history = TrainingHistory()
        self.batches_per_epoch = len(self._batches(torch.arange(features.shape[0])))
        self.held_out = held_out
        self.start_assignments: Tensor | None = None  # (N,) the clusters the start taught
        self.previous_assignments: Tensor | None = None  # (N,) at the end of the last epoch
        self.groups = groups  # (N,) the recording of each window, or None
        self.neighbours: Tensor | None = None  # (N, k) training-window indices
        if config.consistency_weight > 0 and config.consistency_neighbours > 0:
            self.neighbours = nearest_neighbours(
                self.features, self.mask, k=config.consistency_neighbours, groups=groups
            )

    def run(self) -> TrainingHistory:
        first_epoch = self._resume()
        if first_epoch == 0 and self.config.init_epochs > 0:
            teach_initial_partition(
                self.model, self.features, self.mask, config=self.config,
                batches=self._batches, shuffle=self.shuffle, device=self.device,
                should_stop=self.should_stop, groups=self.groups, progress=self.progress,
            )  # fmt: skip
            self.start_assignments = self._assignments(self.features, self.mask)
        started = time.perf_counter()
        steps_at_start = first_epoch * self.batches_per_epoch
        for epoch_index in range(first_epoch, self.config.epochs):
            if self._partition_settled():
                logger.info(
                    "the partition has been stable for %d epochs: stopping after epoch %d of %d",
                    self.config.stop_after_stable_epochs, epoch_index, self.config.epochs,
                )  # fmt: skip
                break
            self._run_epoch(epoch_index, started=started, steps_at_start=steps_at_start)
            completed = epoch_index + 1
            if self.checkpoint_dir is not None and (
                completed % self.config.checkpoint_every_epochs == 0
                or completed == self.config.epochs
                or self._partition_settled()
            ):
                self._save_checkpoint(completed)
        return self.history

    def _partition_settled(self) -> bool:
        """True when each of the last ``config.stop_after_stable_epochs`` epochs moved at most
        `STABLE_SHARE` of the training windows to another cluster (never when that is 0)."""
        patience = self.config.stop_after_stable_epochs
        recent = self.history.epochs[-patience:] if patience else []
        return len(recent) == patience > 0 and all(
            record.changed_since_previous is not None
            and record.changed_since_previous <= STABLE_SHARE
            for record in recent
        )

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
                raise RunCancelled(
                    f"training cancelled in epoch {epoch_index + 1}, before batch {step}"
                )
            indices = indices.to(self.device)
            sums += self.train_step(indices, temperature)
            if self.progress is not None and step % config.progress_every_steps == 0:
                so_far = _epoch_record(
                    epoch_index, sums / step, temperature=temperature,
                    learning_rate=learning_rate, seconds=time.perf_counter() - epoch_started,
                )  # fmt: skip
                self._report(so_far, step, started=started, steps_at_start=steps_at_start)

        means = sums / len(batches)  # (5,)
        record = dataclasses.replace(
            _epoch_record(
                epoch_index, means, temperature=temperature, learning_rate=learning_rate,
                seconds=time.perf_counter() - epoch_started,
            ),
            **self._evaluate(),
        )  # fmt: skip
        self.history.epochs.append(record)
        logger.info(
            "epoch %d/%d: loss %.4g (rec %.4g, kl_z %.4g, kl_y %.4g), tau %.3g, lr %.3g, acc %s, "
            "moved %s",
            record.epoch, config.epochs, record.loss, record.reconstruction, record.kl_z,
            record.kl_y, temperature, learning_rate, record.accuracy, record.changed_since_previous,
        )  # fmt: skip
        self._report(
            record, len(batches), started=started, steps_at_start=steps_at_start, epoch_done=True
        )

    def train_step(self, window_indices: Tensor, temperature: float) -> Tensor:
        """One optimisation step on the windows at ``window_indices (B,)`` (indices into the
        trainer's windows, on its device) at Gumbel-Softmax ``temperature``.

        The step is the one `run` takes: the loss with the configured extra terms
        (consistency, self-labelling), under bf16 autocast when the config asks for it, then
        backward and one Adam step at the optimiser's current learning rate
        (``config.learning_rate`` until `run` sets an epoch's). The model's train/eval mode is
        left as it is, so call ``model.train()`` first. Returns the loss parts ``(5,)``
        (total, reconstruction, kl_z, kl_y, balance) as float64 on the device.
        """
        x, mask = self.features[window_indices], self.mask[window_indices]  # (B, 1, T, F), (B, T)
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
            for term in self._extra_terms(window_indices, x, mask, parts):
                total = total + term
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        # Kept on the device: reading them back every step would synchronise a GPU.
        return (
            torch.stack([parts.total, parts.reconstruction, parts.kl_z, parts.kl_y, parts.balance])
            .detach()
            .to(torch.float64)
        )

    def _extra_terms(
        self, window_indices: Tensor, x: Tensor, mask: Tensor, parts: LossParts
    ) -> list[Tensor]:
        """The weighted consistency and self-labelling terms (those configured) of the batch
        ``x (B, 1, T, F)``, the windows at ``window_indices``, whose ELBO is ``parts``."""
        config = self.config
        # The random draws come in this order whichever way pi is computed below.
        consistency_view = self_label_view = None
        if config.consistency_weight > 0:
            source, source_mask = x, mask
            if self.neighbours is not None:  # one random neighbour of each window
                choice = torch.randint(
                    self.neighbours.shape[1], (window_indices.shape[0],), device=self.device
                )
                partners = self.neighbours[window_indices, choice]  # (B,)
                source, source_mask = self.features[partners], self.mask[partners]
            consistency_view = augment_windows(source, source_mask)  # (B,1,T,F), (B,T)
        if config.self_label_weight > 0:
            self_label_view = augment_windows(x, mask)  # (B, 1, T, F), (B, T)
        if consistency_view is None and self_label_view is None:
            return []
        pi = self._extra_term_probabilities(x, mask, parts, consistency_view, self_label_view)
        terms = []
        if pi.batch is not None and pi.consistency_view is not None:
            consistency = mutual_information_loss(pi.batch, pi.consistency_view)
            terms.append(config.consistency_weight * consistency)
        if pi.clean is not None and pi.self_label_view is not None:
            self_label = self_label_loss(
                pi.clean, pi.self_label_view, threshold=config.self_label_threshold
            )
            terms.append(config.self_label_weight * self_label)
        return terms

    def _extra_term_probabilities(
        self,
        x: Tensor,
        mask: Tensor,
        parts: LossParts,
        consistency_view: tuple[Tensor, Tensor] | None,
        self_label_view: tuple[Tensor, Tensor] | None,
    ) -> _ExtraTermProbabilities:
        """pi of the batch and of its views for `_extra_terms`.

        When the model's windows are independent of their batch, the batch's pi is the one
        the loss computed and both views go through h in one pass; otherwise (batch norm)
        each goes through h on its own, the batch again for each term, so that every view
        is normalised with its own batch's statistics as the loss's batch is.
        """
        cluster_probabilities = self.model.cluster_probabilities
        views = [view for view in (consistency_view, self_label_view) if view is not None]
        if self.model.windows_independent and parts.probabilities is not None:
            stacked = cluster_probabilities(
                torch.cat([view[0] for view in views]), torch.cat([view[1] for view in views])
            )  # (V * B, K)
            view_pi = iter(stacked.split(x.shape[0]))
            return _ExtraTermProbabilities(
                batch=parts.probabilities,
                clean=parts.probabilities.detach(),
                consistency_view=next(view_pi) if consistency_view is not None else None,
                self_label_view=next(view_pi) if self_label_view is not None else None,
            )
        batch = clean = consistency_pi = self_label_pi = None
        if consistency_view is not None:
            batch = cluster_probabilities(x, mask)  # (B, K)
            consistency_pi = cluster_probabilities(*consistency_view)
        if self_label_view is not None:
            with torch.no_grad():
                clean = cluster_probabilities(x, mask)  # (B, K)
            self_label_pi = cluster_probabilities(*self_label_view)
        return _ExtraTermProbabilities(batch, clean, consistency_pi, self_label_pi)

    def _assignments(self, features: Tensor, mask: Tensor) -> Tensor:
        """The model's cluster ``(N,)`` of each window, on the CPU; leaves train mode on."""
        self.model.eval()
        assignments = []
        with torch.inference_mode():
            for start in range(0, features.shape[0], 256):
                chunk = features[start : start + 256].to(self.device, torch.float32)
                chunk_mask = mask[start : start + 256].to(self.device, torch.float32)
                assignments.append(self.model.assignments(chunk, chunk_mask).cpu())
        self.model.train()
        return torch.cat(assignments)

    def _evaluate(self) -> dict[str, Any]:
        """The end-of-epoch figures of `EpochRecord` that need the model's assignments."""
        figures: dict[str, Any] = {}
        assignments = self._assignments(self.features, self.mask)
        figures["accuracy"], figures["nmi"], figures["clusters_used"] = label_metrics(
            assignments, self.labels
        )
        if self.start_assignments is not None:
            changed = (assignments != self.start_assignments).float().mean()
            figures["changed_since_start"] = float(changed)
        previous = self.previous_assignments
        if previous is None:
            previous = self.start_assignments
        if previous is not None:
            figures["changed_since_previous"] = float((assignments != previous).float().mean())
        self.previous_assignments = assignments
        if self.held_out is not None and self.held_out.labels is not None:
            held_out = self._assignments(self.held_out.features, self.held_out.mask)
            accuracy, nmi_value, _ = label_metrics(held_out, self.held_out.labels)
            figures["held_out_accuracy"], figures["held_out_nmi"] = accuracy, nmi_value
        return figures

    def _report(
        self,
        record: EpochRecord,
        step: int,
        *,
        started: float,
        steps_at_start: int,
        epoch_done: bool = False,
    ) -> None:
        """Tell the progress callback where the run stands after ``step`` batches of
        ``record``'s epoch; ``steps_at_start`` (steps done before a resume) are left out of
        the rate the ETA extrapolates."""
        if self.progress is None:
            return
        elapsed = time.perf_counter() - started
        steps_done = (record.epoch - 1) * self.batches_per_epoch + step
        steps_this_run = steps_done - steps_at_start
        total_steps = self.config.epochs * self.batches_per_epoch
        eta = elapsed / steps_this_run * (total_steps - steps_done) if steps_this_run else None
        self.progress(
            Progress.training(
                record, epochs=self.config.epochs, step=step, steps=self.batches_per_epoch,
                elapsed_seconds=elapsed, eta_seconds=eta, epoch_done=epoch_done,
            )
        )  # fmt: skip

    # -- checkpoints ----------------------------------------------------------------------

    def _resume(self) -> int:
        """Load a compatible checkpoint if there is one; returns the first epoch to run."""
        if self.checkpoint_dir is None:
            return 0
        checkpoint = load_checkpoint(self.checkpoint_dir)
        if checkpoint is None:
            return 0
        if (
            resume_relevant_fields(checkpoint.config)
            != resume_relevant_fields(self.config.to_dict())
            or checkpoint.extra.get("data_fingerprint") != self.fingerprint
        ):
            logger.warning(
                "checkpoint in %s is for another configuration or data set; starting afresh",
                self.checkpoint_dir,
            )
            return 0
        self.model.load_state_dict(checkpoint.model_state)
        load_adam_state(self.optimizer, checkpoint.optimizer_state)
        restore_rng_state(checkpoint.rng, self.shuffle)
        self.history = TrainingHistory.from_list(checkpoint.history)
        start = checkpoint.extra.get("start_assignments")
        if start is not None and len(start) == self.features.shape[0]:
            self.start_assignments = torch.tensor(start, dtype=torch.int64)
        # The partition the last epoch ended with, as an uninterrupted run would hold it.
        self.previous_assignments = self._assignments(self.features, self.mask)
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
                extra={
                    "data_fingerprint": self.fingerprint,
                    "start_assignments": (
                        None if self.start_assignments is None else self.start_assignments.tolist()
                    ),
                },
            ),
        )


@dataclasses.dataclass(frozen=True)
class _ExtraTermProbabilities:
    """pi ``(B, K)`` that the consistency and self-labelling terms compare: the batch's (with
    its gradient, for consistency; None without that term), the batch's without gradient
    (the self-labelling targets) and each term's augmented view (None without the term)."""

    batch: Tensor | None
    clean: Tensor | None
    consistency_view: Tensor | None
    self_label_view: Tensor | None


def _epoch_record(
    epoch_index: int,
    loss_means: Tensor,
    *,
    temperature: float,
    learning_rate: float,
    seconds: float,
    accuracy: float | None = None,
    nmi: float | None = None,
    clusters_used: int | None = None,
) -> EpochRecord:
    """The record of epoch ``epoch_index`` (from 0) from the means of its loss parts so far,
    ``loss_means (5,)`` in the order `Trainer.train_step` returns them."""
    loss, reconstruction, kl_z, kl_y, balance = loss_means.tolist()
    return EpochRecord(
        epoch=epoch_index + 1,
        loss=loss,
        reconstruction=reconstruction,
        kl_z=kl_z,
        kl_y=kl_y,
        balance=balance,
        temperature=temperature,
        learning_rate=learning_rate,
        accuracy=accuracy,
        nmi=nmi,
        clusters_used=clusters_used,
        seconds=seconds,
    )
