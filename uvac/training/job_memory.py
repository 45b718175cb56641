"""The memory of each job kind besides training, by training's rule
(`uvac.training.memory_estimate`): what the job holds at once, the reading of its longest
recording (decoder and encoder) included. A job is refused when it is submitted if this is
more than a worker has; distillation's estimate, which needs the student, is
`uvac.edge.distillation_memory`.

- evaluation: the evaluated windows, the K-means baselines fitted on them, the model's
  weights, one batch through the model (counted with its backward pass: on the high side),
  and the longest recording;
- preparation (embedding a data set into the cache): the longest recording alone, since each
  recording's embeddings are written before the next is read.
"""

from __future__ import annotations

from dataclasses import dataclass

from uvac.audio import FeatureConfig
from uvac.training.config import TrainConfig
from uvac.training.memory_estimate import (
    _COPIES_PER_PARAMETER,
    _KMEANS_COPIES,
    estimate_training_memory,
    recording_bytes,
)

__all__ = ["JobMemory", "evaluation_memory", "preparation_memory"]


@dataclass(frozen=True)
class JobMemory:
    """Bytes of each part of a job, as (what, bytes), for a refusal to name."""

    named_parts: tuple[tuple[str, int], ...]

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.named_parts)

    def parts(self) -> tuple[tuple[str, int], ...]:
        return self.named_parts


def evaluation_memory(
    config: TrainConfig, features: FeatureConfig, *, windows: int, longest_s: float
) -> JobMemory:
    """An evaluation of a model of ``config`` (its batch size the evaluation's) on ``windows``
    windows, the longest recording lasting ``longest_s`` seconds."""
    training = estimate_training_memory(config, features, windows=windows, longest_s=longest_s)
    weights = (
        training.model_bytes
        if config.model_type == "kmeans"  # its "model" is the centres alone
        else training.model_bytes // _COPIES_PER_PARAMETER
    )
    return JobMemory(
        (
            ("the evaluated windows", training.dataset_bytes),
            ("the K-means baselines on them", _KMEANS_COPIES * training.dataset_bytes),
            ("the model", weights),
            ("one batch through the model", training.step_bytes),
            ("reading the longest recording (decoder and encoder)", training.recording_bytes),
        )
    )


def preparation_memory(features: FeatureConfig, *, longest_s: float) -> JobMemory:
    """Embedding a data set whose longest recording lasts ``longest_s`` seconds."""
    reading = recording_bytes(features, longest_s=longest_s)
    return JobMemory((("reading the longest recording (decoder and encoder)", reading),))
