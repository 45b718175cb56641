"""The optimiser of training's gradient loops (the start's and the ELBO's): Adam."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

__all__ = ["adam", "load_adam_state"]

# Devices where torch's Adam has a fused kernel.
FUSED_DEVICES = ("cpu", "cuda")


def adam(
    parameters: Iterable[torch.nn.Parameter], *, learning_rate: float, device: torch.device
) -> torch.optim.Adam:
    """Adam over ``parameters`` at ``learning_rate``, fused on `FUSED_DEVICES`.

    The fused kernel makes the update of the per-tensor loop (equal up to rounding) in one
    pass over each parameter, its gradient and its two moments, where the loop makes a pass
    per operation. On the perceptrons of an encoder preset that memory traffic costs more
    than the step's arithmetic, and it slows most on a host whose other processes share the
    memory bandwidth.
    """
    fused = True if device.type in FUSED_DEVICES else None
    return torch.optim.Adam(parameters, lr=learning_rate, fused=fused)


def load_adam_state(optimizer: torch.optim.Adam, state: Mapping[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, then each moment laid out in memory as its
    parameter is.

    A checkpoint stores contiguous tensors, and a channels-last convolution weight's moments
    must be channels-last again: the fused kernel walks a parameter and its moments as flat
    arrays side by side, so moments in another layout would be updated element against the
    wrong element.
    """
    optimizer.load_state_dict(dict(state))
    for parameter, values in optimizer.state.items():
        for name, value in values.items():
            if (
                isinstance(value, torch.Tensor)
                and value.shape == parameter.shape
                and value.stride() != parameter.stride()
            ):
                values[name] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)
