"""What every clustering model offers: the `ClusterModel` interface.

Three model types implement it (`uvac.models.build_model` builds them by name):

- ``"cat-uvac"``: the categorical UVAC of the paper (`uvac.models.cat_uvac.CatUVAC`);
- ``"uvac-gmm"``: UVAC with a Gaussian-mixture prior (`uvac.models.gmm_uvac.GmmUVAC`);
- ``"kmeans"``: K-means on the normalised input features (`uvac.models.kmeans.KMeansClusterer`).

All take features shaped ``(B, 1, T, M)`` in [0, 1] (B windows, T frames, M mel bins) and an
optional sound-activity mask ``(B, T)`` (1 = real audio, 0 = padding). Every model is an
`nn.Module` whose whole state lives in its ``state_dict`` (tensors only), so that it saves to
safetensors and rebuilds from ``hyperparameters()`` plus those tensors.

The two variational models also implement `VariationalClusterModel.loss`; the training loop
knows nothing else about them. K-means fits in closed form (`KMeansClusterer.fit`).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

__all__ = ["ClusterModel", "LossParts", "VariationalClusterModel"]


@dataclass(frozen=True)
class LossParts:
    """The negative ELBO of a batch and its parts, each a scalar averaged over the batch.

    ``total = reconstruction + lambda_kl * (kl_z + kl_y) + cluster_balance * balance``.

    ``balance`` is KL(mean over the batch of q(y | x) || Uniform(K)), computed always (near
    log K it says the clusters have collapsed into one) and added to the loss only with a
    positive ``cluster_balance`` (an option beyond the paper, off by default). Why it helps:
    the paper's per-sample KL_y averages to KL(q(y) || U) + I(x; y), so it penalises the
    information y carries about x as much as an uneven use of the clusters; the balance term
    weighs the second alone.

    ``probabilities`` is pi of the batch ``(B, K)`` as the loss computed it, in its graph,
    when the model's pi is what `ClusterModel.cluster_probabilities` gives in train mode
    (None otherwise): the trainer's extra terms then reuse it instead of running h again.
    """

    total: Tensor
    reconstruction: Tensor
    kl_z: Tensor
    kl_y: Tensor
    balance: Tensor
    probabilities: Tensor | None = None


class ClusterModel(nn.Module, abc.ABC):
    """A model that maps feature windows to cluster probabilities pi."""

    model_type: ClassVar[str]

    @property
    @abc.abstractmethod
    def n_clusters(self) -> int:
        """K, the number of clusters."""

    @abc.abstractmethod
    def cluster_probabilities(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """pi for each window: ``(B, 1, T, M)`` (and mask ``(B, T)``) -> ``(B, K)``, rows sum to 1.

        The inference fast path: callers run it in eval mode under `torch.inference_mode()`.
        """

    @abc.abstractmethod
    def latent(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The model's own representation of each window, ``(B, D)``, for internal metrics."""

    @abc.abstractmethod
    def hyperparameters(self) -> dict[str, Any]:
        """JSON-able constructor arguments: ``type(self)(**hyperparameters())`` rebuilds it."""

    def assignments(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """Sharp cluster of each window, ``(B,)`` int64: argmax of pi."""
        return self.cluster_probabilities(x, mask).argmax(dim=1)


class VariationalClusterModel(ClusterModel):
    """A cluster model trained by gradient descent on a negative ELBO.

    Both variational models are built from the same convolutional-recurrent encoder and
    transposed-convolution decoder blocks; this constructor checks and keeps the settings
    they share, so that each model's own constructor only builds its networks.
    """

    def __init__(
        self,
        *,
        n_clusters: int,
        n_features: int,
        conv_channels: Sequence[int],
        gru_hidden: int,
        gru_layers: int,
        deconv_channels: Sequence[int],
    ) -> None:
        super().__init__()
        if n_clusters < 2:
            raise ValueError(f"n_clusters must be at least 2, got {n_clusters}")
        self._n_clusters = n_clusters
        self.n_features = n_features
        self.conv_channels = tuple(int(c) for c in conv_channels)
        self.gru_hidden = gru_hidden
        self.gru_layers = gru_layers
        self.deconv_channels = tuple(int(c) for c in deconv_channels)

    @property
    def n_clusters(self) -> int:
        return self._n_clusters

    @property
    def windows_independent(self) -> bool:
        """True when a window's outputs in train mode depend on that window alone and a
        forward pass changes no state: no batch norm, whose statistics mix the windows of a
        batch and whose running statistics count every pass. The trainer may then run h once
        on several batches stacked, and reuse pi from the loss's own pass."""
        return False

    @abc.abstractmethod
    def loss(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        *,
        temperature: float,
        lambda_kl: float,
        cluster_balance: float = 0.0,
    ) -> LossParts:
        """Negative ELBO of a batch ``(B, 1, T, M)``; ``temperature`` is the Gumbel-Softmax tau
        (models without a categorical sample ignore it); see `LossParts` for the balance."""


def check_features(x: Tensor, mask: Tensor | None, *, n_features: int) -> None:
    """Raise ValueError unless ``x`` is ``(B, 1, T, n_features)`` and ``mask`` is ``(B, T)``."""
    if x.dim() != 4 or x.shape[1] != 1 or x.shape[3] != n_features:
        raise ValueError(
            f"expected features of shape (B, 1, T, {n_features}), got {tuple(x.shape)}"
        )
    if mask is not None and tuple(mask.shape) != (x.shape[0], x.shape[2]):
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match features (B, T) = "
            f"{(x.shape[0], x.shape[2])}"
        )


def apply_mask(x: Tensor, mask: Tensor | None) -> Tensor:
    """Zero the padded frames: ``(B, 1, T, M)`` times mask ``(B, T)``."""
    if mask is None:
        return x
    return x * mask[:, None, :, None].to(x.dtype)  # (B, 1, T, M)


def kl_to_uniform(probabilities: Tensor) -> Tensor:
    """KL(p || Uniform(K)) = sum_k p_k (log p_k + log K) of one distribution ``(K,)``, a scalar."""
    p = probabilities.float()
    n_clusters = p.shape[0]
    return (p * (p.clamp_min(1e-12).log() + math.log(n_clusters))).sum()


def one_hot_probabilities(indices: Tensor, n_clusters: int, *, dtype: torch.dtype) -> Tensor:
    """``(B,)`` cluster ids -> ``(B, K)`` one-hot rows."""
    return nn.functional.one_hot(indices, n_clusters).to(dtype)
