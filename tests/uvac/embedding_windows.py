"""Shared by training tests on embeddings: windows around three well separated centres."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from uvac.audio.datasets import DatasetItem
from uvac.training.data import TrainingWindows, training_windows_from_embeddings

DIM = 16


def three_classes(per_class: int = 30, seed: int = 0) -> TrainingWindows:
    """Embedding-like windows (one per clip) around three well separated centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, DIM)) * 4.0
    items, embeddings = [], []
    for label in range(3):
        for take in range(per_class):
            vector = centres[label] + rng.normal(size=DIM)
            embeddings.append(torch.tensor(vector, dtype=torch.float32).view(1, 1, 1, DIM))
            name = f"{label}_{take}.wav"
            items.append(DatasetItem(path=Path(name), label=str(label), relpath=name))
    return training_windows_from_embeddings(items, embeddings)
