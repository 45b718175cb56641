"""Networks for embedding inputs: the ``"mlp"`` architecture of the variational models.

A pretrained encoder's front-end gives one standardised vector per window, shaped
``(B, 1, 1, D)`` like a one-frame spectrogram so that the rest of the engine (windows, masks,
batching) is the same for both kinds of input. Convolutions over time and frequency mean
nothing there; h, f and g become multi-layer perceptrons:

- h(x) -> K logits: ``D -> hidden_units... -> K``;
- f(x, y) -> (mu, log-variance) of z: ``D + K -> hidden_units... -> 2 d_z``;
- g(y, z) -> x_hat: ``d_z + K -> reversed(hidden_units)... -> D``.

Hidden layers are Linear, LayerNorm, GELU. LayerNorm rather than batch norm: the statistics
of a batch do not change a window's pi, so a window clusters the same alone as in a batch.

The likelihood is Gaussian with unit variance: the inputs are z-scores (per-dimension
standardisation on the training windows), unbounded and roughly Gaussian, where the
spectrogram networks' Bernoulli likelihood would need values in [0, 1]. The reconstruction
term is ``0.5 * sum_d (x_d - x_hat_d)^2`` per window (the negative log-likelihood up to a
constant), summed over the D values like the Bernoulli term is summed over a window's bins,
so lambda weighs the KL terms against it in the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = [
    "DEFAULT_HIDDEN_UNITS",
    "flatten_embeddings",
    "gaussian_reconstruction",
    "mlp",
    "mlp_of_pair",
]

DEFAULT_HIDDEN_UNITS = (512, 256)


def mlp(in_features: int, hidden_units: Sequence[int]) -> nn.Sequential:
    """Linear -> LayerNorm -> GELU for each hidden width; the output has ``hidden_units[-1]``."""
    layers: list[nn.Module] = []
    width = in_features
    for units in hidden_units:
        layers += [nn.Linear(width, units), nn.LayerNorm(units), nn.GELU()]
        width = units
    return nn.Sequential(*layers)


def mlp_of_pair(network: nn.Sequential, data: Tensor, learned: Tensor) -> Tensor:
    """``network(cat([data, learned], dim=1))`` for an `mlp` ``network``, with no gradient
    for ``data`` (the input windows ``(B, D)``) when it needs none.

    The gradient of the concatenation would multiply the first layer's whole weight, the
    widest product of f's backward pass, only to drop its ``D`` data columns. Here the layer
    sees the concatenation without a graph, and a second term, a product that is zero in
    value (``learned - learned.detach()``), carries ``learned``'s gradient through its own
    columns alone. The value and the weight's gradient are the concatenation's, bit for bit.
    """
    joint = torch.cat([data, learned], dim=1)  # (B, D + K)
    if data.requires_grad:
        return network(joint)
    first = network[0]
    assert isinstance(first, nn.Linear)
    width = data.shape[1]
    hidden = first(joint.detach()) + nn.functional.linear(
        learned - learned.detach(), first.weight[:, width:].detach()
    )  # (B, hidden)
    return network[1:](hidden)


def flatten_embeddings(x: Tensor) -> Tensor:
    """``(B, 1, 1, D)`` -> ``(B, D)``; any other shape is a ValueError."""
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != 1:
        raise ValueError(f"expected embeddings of shape (B, 1, 1, D), got {tuple(x.shape)}")
    return x[:, 0, 0, :]


def gaussian_reconstruction(x_hat: Tensor, x: Tensor) -> Tensor:
    """Unit-variance Gaussian negative log-likelihood, no constant: ``(B, D)`` -> ``(B,)``."""
    return 0.5 * (x_hat.float() - x.float()).square().sum(dim=1)
