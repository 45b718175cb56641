"""What a training run reports: `TrainProgress` while it runs, `EpochRecord` per epoch.

`TrainingHistory` keeps every completed epoch's `EpochRecord`; it travels in checkpoints
(`to_list`/`from_list`) and, digested by `summary`, in a trained model's metadata. Progress
callbacks receive `TrainProgress`, built from an epoch's values by `TrainProgress.from_epoch`
whether the epoch is over or still running.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EpochRecord", "TrainProgress", "TrainingHistory"]


@dataclass(frozen=True)
class EpochRecord:
    """One epoch's mean loss parts, schedule values and label metrics.

    The history holds completed epochs. Mid-epoch progress is built from a record of the epoch
    so far: running means, and no label metrics (``None``) until the epoch ends.
    """

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

    @classmethod
    def from_epoch(
        cls,
        record: EpochRecord,
        *,
        epochs: int,
        step: int,
        steps_per_epoch: int,
        elapsed_s: float,
        eta_s: float | None,
        epoch_done: bool,
    ) -> TrainProgress:
        """The report after ``step`` batches of ``record``'s epoch: its loss means, schedule
        values and label metrics, with where the run stands (``elapsed_s`` since this run
        started, ``eta_s`` None while there is nothing yet to estimate from)."""
        return cls(
            epoch=record.epoch,
            epochs=epochs,
            step=step,
            steps_per_epoch=steps_per_epoch,
            loss=record.loss,
            reconstruction=record.reconstruction,
            kl_z=record.kl_z,
            kl_y=record.kl_y,
            balance=record.balance,
            temperature=record.temperature,
            learning_rate=record.learning_rate,
            accuracy=record.accuracy,
            nmi=record.nmi,
            elapsed_s=elapsed_s,
            eta_s=eta_s,
            epoch_done=epoch_done,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
