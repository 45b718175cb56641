"""Three synthetic sound classes and tiny students for the distillation and export tests.

Class 0 is a low tone, class 1 a high tone, class 2 white noise, each clip 1.5 s at 16 kHz
with its own level and phase. The student's features are `EDGE_FEATURES`: 20 ms frames and
0.64 s windows, so that a test trains in seconds on one thread.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from uvac.edge.distillation import STUDENT_FEATURES, DistillConfig, TeacherWindows, distill
from uvac.training.artifact import TrainedModel

__all__ = [
    "EDGE_FEATURES",
    "TINY_DISTILL",
    "class_clips",
    "one_hot_targets",
    "tiny_student",
]

# The student's front-end, with fewer bins and shorter windows: seconds of training.
EDGE_FEATURES = dataclasses.replace(
    STUDENT_FEATURES, n_mels=16, window_seconds=0.64, window_hop_seconds=0.32
)
TINY_DISTILL = DistillConfig(
    epochs=6,
    batch_size=16,
    learning_rate=1e-2,
    crops_per_clip=4,
    conv_channels=(4, 4, 8, 8),
    gru_hidden=8,
)


def class_clips(
    per_class: int = 4, *, seconds: float = 1.5, seed: int = 0
) -> tuple[list[np.ndarray], list[int]]:
    """``per_class`` clips of each of the three classes, float32 at 16 kHz, and their labels."""
    rng = np.random.default_rng(seed)
    rate = 16000
    time = np.arange(round(seconds * rate)) / rate
    clips, labels = [], []
    for label in range(3):
        for _ in range(per_class):
            level = rng.uniform(0.1, 0.5)
            if label == 2:
                samples = rng.standard_normal(len(time)) * level / 3
            else:
                hz = (300.0, 2500.0)[label] * rng.uniform(0.95, 1.05)
                samples = level * np.sin(2 * np.pi * hz * time + rng.uniform(0, 2 * np.pi))
            clips.append(samples.astype(np.float32))
            labels.append(label)
    return clips, labels


def one_hot_targets(labels: list[int], clips: list[np.ndarray]) -> list[TeacherWindows]:
    """A teacher that is sure of each clip's class: pi 0.9 / 0.05 / 0.05 over the whole clip."""
    targets = []
    for label, samples in zip(labels, clips, strict=True):
        pi = torch.full((1, 3), 0.05)
        pi[0, label] = 0.9
        targets.append(
            TeacherWindows(starts_s=[0.0], ends_s=[len(samples) / 16000], probabilities=pi)
        )
    return targets


def tiny_student(seed: int = 0) -> tuple[TrainedModel, list[np.ndarray], list[int]]:
    """A student distilled from `one_hot_targets` on `class_clips` (a few seconds of CPU)."""
    torch.manual_seed(seed)
    clips, labels = class_clips(seed=seed)
    student = distill(
        clips,
        one_hot_targets(labels, clips),
        config=TINY_DISTILL,
        feature_config=EDGE_FEATURES,
    )
    return student, clips, labels
