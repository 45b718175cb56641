"""What a training run keeps of each epoch: `EpochRecord`, collected in `TrainingHistory`.

`TrainingHistory` travels in checkpoints (`to_list`/`from_list`) and, digested by `summary`,
in a trained model's metadata. While a run goes on, progress callbacks receive a
`uvac.training.progress.Progress` built from the epoch's record (`Progress.training`), whether the
epoch is over or still running.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from uvac import metrics

__all__ = ["EpochRecord", "TrainingHistory", "label_metrics"]


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
    # Share of the training windows whose cluster differs from the one the start taught h;
    # None without a start (or after a resume from a checkpoint that predates the field).
    changed_since_start: float | None = None
    # Share of the training windows whose cluster differs from the one the previous epoch
    # ended with (the start's, for the first epoch); None without a previous partition.
    changed_since_previous: float | None = None
    # Accuracy and NMI of the held-out windows (never trained on); None without them.
    held_out_accuracy: float | None = None
    held_out_nmi: float | None = None


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


def label_metrics(
    assignments: Tensor, labels: Sequence[int] | None
) -> tuple[float | None, float | None, int | None]:
    """Accuracy, NMI and clusters used of ``assignments (N,)`` against ``labels``; all
    ``None`` without labels."""
    if labels is None:
        return None, None, None
    clusters = assignments.cpu().numpy()
    return (
        metrics.unsupervised_accuracy(list(labels), clusters),
        metrics.nmi(list(labels), clusters),
        metrics.clusters_used(clusters),
    )
