"""The distilled student: Cat. UVAC's h network alone, small enough for a hearing aid.

A device only ever asks "which cluster is this?", which is h's job; f and g exist to train h
by the ELBO, and a student is trained another way (to reproduce a teacher's pi, see
`uvac.edge.distillation`). So the student keeps h exactly as `uvac.models.cat_uvac.CatUVAC` builds
it for spectrograms (four Conv2d + BatchNorm2d + ReLU stages with kernel 8 and stride 2, a GRU
over time with frequency folded into its features, an activity-weighted mean over time, a
linear layer to K logits) with narrower widths, and drops f and g. It serves like any model
(`ClusterModel`), but it cannot be trained by `uvac.training.pipeline`: its model type is loadable
(`uvac.models.LOADABLE_MODEL_TYPES`) and not a training option.

Default widths (a budget of 100 k parameters and 20 M multiply-accumulates per second of
audio, front-end included, for 32 mel bins and 64-frame windows): convolutions 8, 16, 24, 24
channels and one GRU layer of 32 units. Kernel 8 makes the last
convolutions the bulk of them, so the widths stay flat there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from uvac.models.base import ClusterModel, check_features
from uvac.models.layers import (
    ConvRecurrentEncoder,
    block_activity,
    masked_time_mean,
    pad_to_blocks,
    padded_size,
)

__all__ = ["STUDENT_CONV_CHANNELS", "CatUVACStudent"]

STUDENT_CONV_CHANNELS = (8, 16, 24, 24)
STUDENT_GRU_HIDDEN = 32


class CatUVACStudent(ClusterModel):
    """h of a conv-GRU Cat. UVAC: ``(B, 1, T, M)`` log-mel windows -> pi ``(B, K)``."""

    model_type = "cat-uvac-h"

    def __init__(
        self,
        *,
        n_clusters: int = 10,
        n_features: int = 32,
        conv_channels: Sequence[int] = STUDENT_CONV_CHANNELS,
        gru_hidden: int = STUDENT_GRU_HIDDEN,
        gru_layers: int = 1,
    ) -> None:
        super().__init__()
        if n_clusters < 2:
            raise ValueError(f"n_clusters must be at least 2, got {n_clusters}")
        self._n_clusters = n_clusters
        self.n_features = n_features
        self.conv_channels = tuple(int(c) for c in conv_channels)
        self.gru_hidden = gru_hidden
        self.gru_layers = gru_layers
        self.h_encoder = ConvRecurrentEncoder(
            in_channels=1,
            n_features_padded=padded_size(n_features),
            channels=self.conv_channels,
            gru_hidden=gru_hidden,
            gru_layers=gru_layers,
        )
        self.h_head = nn.Linear(gru_hidden, n_clusters)

    @property
    def n_clusters(self) -> int:
        return self._n_clusters

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "n_clusters": self._n_clusters,
            "n_features": self.n_features,
            "conv_channels": list(self.conv_channels),
            "gru_hidden": self.gru_hidden,
            "gru_layers": self.gru_layers,
        }

    def cluster_logits(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """h's logits ``(B, K)``; training uses them for a numerically stable KL."""
        check_features(x, mask, n_features=self.n_features)
        x_padded, mask_padded = pad_to_blocks(x, mask)  # (B, 1, Tp, Mp), (B, Tp)
        sequence = self.h_encoder(x_padded)  # (B, S, hidden)
        pooled = masked_time_mean(sequence, block_activity(mask_padded))  # (B, hidden)
        return self.h_head(pooled).float()  # (B, K)

    def cluster_probabilities(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.cluster_logits(x, mask).softmax(dim=1)

    def latent(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """pi, as for Cat. UVAC: the student's cluster representation is q(y | x)."""
        return self.cluster_probabilities(x, mask)

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return self.cluster_probabilities(x, mask)
