"""The memory of a distillation (`uvac.edge.distillation.distill`), known before any recording
is read, by the rule of training's estimate (`uvac.training.memory_estimate`).

The job holds every training recording decoded at the student's rate for all its epochs (a
crop may start at any sample of any recording), the teacher's pi for each of the teacher's
windows, and, while the targets are made, the teacher itself: its windows of the data set as
training would hold them when it reads embeddings, its weights, one batch through it, and the
reading of the longest recording at the teacher's rate (decoder and encoder). Then the student
trains: its weights, gradients and AdamW's two moments, and one step of a batch of crops
(counted on the meta device with the front-end's log-mels as input). The parts of the two
stages are added, which errs on the high side.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from uvac.audio import FeatureConfig
from uvac.edge.device_model import window_samples
from uvac.edge.distillation import STUDENT_FEATURES, DistillConfig
from uvac.models import CatUVACStudent
from uvac.tensor_bytes import TensorBytesCounter
from uvac.training import JobMemory, TrainConfig, estimate_training_memory

__all__ = ["distillation_memory"]

_FLOAT32 = 4
# Parameters, gradients and AdamW's first and second moments.
_COPIES_PER_PARAMETER = 4
# Per teacher window beside its pi: its start and end, as Python floats in lists.
_TARGET_TIMES_BYTES = 2 * 32
# A batch's crops are cut, gained, noised and mixed (float32 copies of the samples).
_CROP_COPIES = 4


def distillation_memory(
    config: DistillConfig,
    *,
    teacher: TrainConfig,
    teacher_features: FeatureConfig,
    teacher_windows: int,
    durations_s: list[float],
) -> JobMemory:
    """A distillation of ``config`` from a teacher of ``teacher`` / ``teacher_features`` on
    training recordings of ``durations_s`` seconds, which the teacher cuts into
    ``teacher_windows`` windows. Raises ``ValueError`` when the student cannot be built."""
    longest = max(durations_s, default=0.0)
    student_samples = sum(math.ceil(d * STUDENT_FEATURES.sample_rate) for d in durations_s)
    reading = estimate_training_memory(
        teacher, teacher_features, windows=teacher_windows, longest_s=longest
    )
    teacher_weights = (
        reading.model_bytes
        if teacher.model_type == "kmeans"
        else reading.model_bytes // _COPIES_PER_PARAMETER
    )
    targets = teacher_windows * (teacher.n_clusters * _FLOAT32 + _TARGET_TIMES_BYTES)
    crops = len(durations_s) * config.crops_per_clip * 2 * 8  # each crop's clip and start
    parameters, step = _student_sizes(config, n_clusters=teacher.n_clusters)
    step += _CROP_COPIES * config.batch_size * window_samples(STUDENT_FEATURES) * _FLOAT32
    return JobMemory(
        (
            ("the recordings decoded at the student's rate", student_samples * _FLOAT32),
            ("the teacher's windows of the data set", reading.dataset_bytes),
            ("the teacher and one batch through it", teacher_weights + reading.step_bytes),
            ("the teacher's targets and the crop plan", targets + crops),
            ("the student and its optimiser state", parameters * _FLOAT32 * _COPIES_PER_PARAMETER),
            ("one step of a batch of crops", step),
            ("reading the longest recording (decoder and encoder)", reading.recording_bytes),
        )
    )


def _student_sizes(config: DistillConfig, *, n_clusters: int) -> tuple[int, int]:
    """(parameters, one step's bytes at the config's batch size): the step is linear in the
    batch (the student's input length is fixed), so two small batches are counted once per
    student shape and the batch size applied to them."""
    shape = (tuple(config.conv_channels), config.gru_hidden, config.gru_layers, n_clusters)
    parameters, small = _counted_student(*shape, _PROBE_BATCHES[0])
    _, large = _counted_student(*shape, _PROBE_BATCHES[1])
    per_window = (large - small) / (_PROBE_BATCHES[1] - _PROBE_BATCHES[0])
    step = small + per_window * (config.batch_size - _PROBE_BATCHES[0])
    return parameters, max(large, math.ceil(step))


# Batches the student's step is counted at: with one window some tensors are broadcast.
_PROBE_BATCHES = (2, 4)


@lru_cache(maxsize=128)
def _counted_student(
    conv_channels: tuple[int, ...], gru_hidden: int, gru_layers: int, n_clusters: int, batch: int
) -> tuple[int, int]:
    """(parameters, one step's bytes) of the student of this shape, counted on the meta
    device: the front-end's log-mels through h, the KL to a target, and the backward pass."""
    channels, frames, bins = STUDENT_FEATURES.input_shape  # (1, T, M)
    with torch.device("meta"):
        student = CatUVACStudent(
            n_clusters=n_clusters,
            n_features=bins,
            conv_channels=conv_channels,
            gru_hidden=gru_hidden,
            gru_layers=gru_layers,
        )
        parameters = sum(parameter.numel() for parameter in student.parameters())
        counter = TensorBytesCounter()
        with counter:
            features = torch.zeros(batch, channels, frames, bins)
            wanted = torch.full((batch, n_clusters), 1.0 / n_clusters)
            log_student = torch.log_softmax(student.cluster_logits(features), dim=1)
            (wanted * -log_student).sum(dim=1).mean().backward()
    return parameters, counter.bytes
