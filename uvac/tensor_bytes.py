"""Counting the bytes of the tensors a computation makes, without making them.

Run a model under `TensorBytesCounter` on PyTorch's meta device (which computes shapes and
allocates nothing) and ``counter.bytes`` is what every operation returned, as if all were
alive at once: an upper bound of the computation's memory, found in milliseconds. Where
nothing is kept for a backward pass (inference), few tensors are alive at once and
``counter.largest``, the largest single tensor, bounds the peak better. The training
estimate (`uvac.training.memory_estimate`) and the encoders' own sizes
(`uvac.audio.encoders.Encoder.memory_bytes`) both count this way.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["TensorBytesCounter"]


class TensorBytesCounter(TorchDispatchMode):
    """Adds up the bytes of every tensor an operation returns."""

    def __init__(self) -> None:
        super().__init__()
        self.bytes = 0
        self.largest = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for leaf in tree_leaves(out):
            if isinstance(leaf, torch.Tensor):
                size = leaf.numel() * leaf.element_size()
                self.bytes += size
                self.largest = max(self.largest, size)
        return out
