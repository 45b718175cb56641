"""Categorical UVAC (Fiorio, Nikoloska, Aarts, arXiv 2504.07652): a VAE with a Gumbel-Softmax
categorical latent y (the cluster) and a continuous latent z.

Three networks, as the paper states them:

- h(x) -> K logits; pi = softmax(logits) = q(y | x) is what the service returns;
- f(x, y) -> (mu, log-variance) of q(z | x, y);
- g(y, z) -> x_hat, the reconstruction.

h and f: four Conv2d (16, 32, 64, 128 channels; kernel 8, stride 2, padding 3) each followed by
BatchNorm2d and ReLU, then a two-layer GRU of 128 units. g: four ConvTranspose2d (64, 32, 16, 1
channels, same kernel/stride/padding), ReLU after all but the last, sigmoid last.

Design choices where the paper is silent (documented in the model spec,
docs/model-spec.md, as one reading that makes the shapes close):

- The GRUs run over time with the frequency axis folded into the features: the conv stack
  turns ``(Tp, Mp)`` into ``(Tp/16, Mp/16)`` maps of 128 channels, so each GRU step sees
  ``128 * Mp/16`` values for 16 input frames.
- h pools its GRU outputs over time by a mean, weighted by each step's share of active (unpadded)
  frames when a mask is given, then a linear layer gives the K logits.
- f's linear layer maps every GRU step to ``d_z`` values, so z has shape ``(Tp/16, d_z)``; g sees
  it as a one-channel map ``(1, Tp/16, d_z)`` with y broadcast as K more channels, and its four
  transposed convolutions restore ``(Tp, 16 d_z)``. Hence ``d_z = Mp / 16`` (8 for 128 mel bins,
  4 for 64) is not a free hyperparameter.
- Inputs whose T or M is not a multiple of 16 are zero-padded (padding masked out of the loss)
  and the reconstruction is cropped back to ``(T, M)``.
- y and z are sampled only in training mode (Gumbel-Softmax, soft, and the reparameterisation);
  in eval mode the loss uses their means (y = pi, z = mu), so validation losses are deterministic.

Loss (negative ELBO) = reconstruction + lambda * (KL_z + KL_y), averaged over the batch:

- reconstruction: binary cross-entropy of the sigmoid output against the [0, 1] input, summed
  over mel bins and averaged over active frames, times T (`masked_reconstruction_bce`). Binary
  cross-entropy rather than MSE because the decoder ends in a sigmoid and the targets lie in
  [0, 1]: its gradient does not vanish when the sigmoid saturates, it is computed from logits
  (stable, and allowed under bf16 autocast), and it is the Bernoulli likelihood whose scale the
  ELBO's KL weight lambda refers to.
- KL_z = KL(q(z | x, y) || N(0, I)), analytic, summed over all latent steps and dimensions.
- KL_y = KL(q(y | x) || Uniform(K)) = log K - H(pi).

``architecture="mlp"`` builds h, f and g as perceptrons for embedding inputs ``(B, 1, 1, D)``
from a pretrained encoder, with a Gaussian likelihood and one z of ``latent_dim`` values per
window (`uvac.models.mlp`); the loss keeps the same three parts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from uvac.models.base import LossParts, VariationalClusterModel, check_features, kl_to_uniform
from uvac.models.layers import (
    BLOCK,
    ConvRecurrentEncoder,
    TransposedConvDecoder,
    block_activity,
    masked_reconstruction_bce,
    masked_time_mean,
    pad_to_blocks,
    padded_size,
)
from uvac.models.mlp import (
    DEFAULT_HIDDEN_UNITS,
    flatten_embeddings,
    gaussian_reconstruction,
    mlp,
    mlp_of_pair,
)

__all__ = ["CatUVAC", "CatUVACOutput"]

PAPER_CONV_CHANNELS = (16, 32, 64, 128)
PAPER_DECONV_CHANNELS = (64, 32, 16)
ARCHITECTURES = ("conv-gru", "mlp")


@dataclass(frozen=True)
class CatUVACOutput:
    """Everything the loss needs from one forward pass (S = Tp/16 latent steps)."""

    cluster_logits: Tensor  # (B, K)
    probabilities: Tensor  # (B, K), pi = q(y | x)
    y: Tensor  # (B, K), the Gumbel-Softmax sample (pi itself in eval mode)
    z_mean: Tensor  # (B, S, d_z)
    z_logvar: Tensor  # (B, S, d_z)
    z: Tensor  # (B, S, d_z)
    reconstruction_logits: Tensor  # (B, 1, T, M); x_hat = sigmoid of it
    mask: Tensor  # (B, T), 1 = real audio

    @property
    def reconstruction(self) -> Tensor:
        """x_hat in [0, 1], ``(B, 1, T, M)``."""
        return torch.sigmoid(self.reconstruction_logits)


class CatUVAC(VariationalClusterModel):
    """Categorical UVAC; see the module docstring for the architecture and the loss."""

    model_type = "cat-uvac"
    # The networks of either architecture (conv-GRU or perceptrons).
    h_encoder: nn.Module
    f_encoder: nn.Module
    g_decoder: nn.Module

    def __init__(
        self,
        *,
        n_clusters: int = 10,
        n_features: int = 64,
        conv_channels: Sequence[int] = PAPER_CONV_CHANNELS,
        gru_hidden: int = 128,
        gru_layers: int = 2,
        deconv_channels: Sequence[int] = PAPER_DECONV_CHANNELS,
        architecture: str = "conv-gru",
        hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS,
        latent_dim: int = 32,
    ) -> None:
        super().__init__(
            n_clusters=n_clusters,
            n_features=n_features,
            conv_channels=conv_channels,
            gru_hidden=gru_hidden,
            gru_layers=gru_layers,
            deconv_channels=deconv_channels,
        )
        if architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {', '.join(ARCHITECTURES)}, got {architecture!r}"
            )
        self.architecture = architecture
        self.hidden_units = tuple(int(units) for units in hidden_units)
        if architecture == "mlp":
            self._build_mlp(latent_dim)
            return
        features_padded = padded_size(n_features)
        # One latent value per 16 mel bins, so that g's four doublings restore Mp bins.
        self.latent_dim = features_padded // BLOCK
        encoder_args = dict(
            n_features_padded=features_padded,
            channels=self.conv_channels,
            gru_hidden=gru_hidden,
            gru_layers=gru_layers,
        )
        self.h_encoder = ConvRecurrentEncoder(in_channels=1, **encoder_args)  # type: ignore[arg-type]
        self.h_head = nn.Linear(gru_hidden, n_clusters)
        self.f_encoder = ConvRecurrentEncoder(
            in_channels=1,
            broadcast_channels=n_clusters,
            **encoder_args,  # type: ignore[arg-type]
        )
        self.f_head = nn.Linear(gru_hidden, 2 * self.latent_dim)
        self.g_decoder = TransposedConvDecoder(
            in_channels=1 + n_clusters, channels=self.deconv_channels
        )
        # Convolution weights in channels-last layout: oneDNN then runs the convolutions in
        # NHWC without re-laying the weights out on every call, which dominates for narrow
        # networks (benchmarks/README.md, "Channels-last"). Values are unchanged; the
        # artifact and checkpoint writers store contiguous copies, and loading copies into
        # this layout.
        self.to(memory_format=torch.channels_last)

    def _build_mlp(self, latent_dim: int) -> None:
        if not self.hidden_units:
            raise ValueError("hidden_units needs at least one layer")
        self.latent_dim = latent_dim
        width, k = self.hidden_units[-1], self._n_clusters
        self.h_encoder = mlp(self.n_features, self.hidden_units)
        self.h_head = nn.Linear(width, k)
        self.f_encoder = mlp(self.n_features + k, self.hidden_units)
        self.f_head = nn.Linear(width, 2 * latent_dim)
        self.g_decoder = nn.Sequential(
            mlp(latent_dim + k, self.hidden_units[::-1]),
            nn.Linear(self.hidden_units[0], self.n_features),
        )

    @property
    def windows_independent(self) -> bool:
        """The perceptrons normalise each window by itself (LayerNorm); the conv-GRU
        networks use batch norm."""
        return self.architecture == "mlp"

    def hyperparameters(self) -> dict[str, Any]:
        common = {"n_clusters": self._n_clusters, "n_features": self.n_features}
        if self.architecture == "mlp":
            return {
                **common,
                "architecture": "mlp",
                "hidden_units": list(self.hidden_units),
                "latent_dim": self.latent_dim,
            }
        return {
            **common,
            "conv_channels": list(self.conv_channels),
            "gru_hidden": self.gru_hidden,
            "gru_layers": self.gru_layers,
            "deconv_channels": list(self.deconv_channels),
        }

    # -- h: the inference fast path -------------------------------------------------------

    def _cluster_logits(self, x_padded: Tensor, mask_padded: Tensor) -> Tensor:
        sequence = self.h_encoder(x_padded)  # (B, S, hidden)
        pooled = masked_time_mean(sequence, block_activity(mask_padded))  # (B, hidden)
        return self.h_head(pooled)  # (B, K)

    def cluster_probabilities(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        check_features(x, mask, n_features=self.n_features)
        if self.architecture == "mlp":
            embeddings = flatten_embeddings(x)  # (B, D)
            return torch.softmax(self.h_head(self.h_encoder(embeddings)).float(), dim=1)
        x_padded, mask_padded = pad_to_blocks(x, mask)  # (B, 1, Tp, Mp), (B, Tp)
        return torch.softmax(self._cluster_logits(x_padded, mask_padded).float(), dim=1)

    def latent(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """pi itself: Cat. UVAC's cluster representation is q(y | x), ``(B, K)``."""
        return self.cluster_probabilities(x, mask)

    # -- the full model -------------------------------------------------------------------

    def forward(
        self, x: Tensor, mask: Tensor | None = None, temperature: float = 1.0
    ) -> CatUVACOutput:
        check_features(x, mask, n_features=self.n_features)
        if self.architecture == "mlp":
            return self._forward_mlp(x, mask, temperature)
        batch, _, n_frames, n_features = x.shape
        x_padded, mask_padded = pad_to_blocks(x, mask)  # (B, 1, Tp, Mp), (B, Tp)

        logits = self._cluster_logits(x_padded, mask_padded).float()  # (B, K)
        probabilities = torch.softmax(logits, dim=1)  # (B, K)
        if self.training:
            y = F.gumbel_softmax(logits, tau=temperature, hard=False)  # (B, K)
        else:
            y = probabilities
        y = y.to(x_padded.dtype)

        # f(x, y): y broadcast over time and frequency as K extra input channels (computed
        # without materialising them, see BroadcastConv2d).
        z_params = self.f_head(self.f_encoder(x_padded, y)).float()  # (B, S, 2 d_z)
        z_mean, z_logvar = z_params.chunk(2, dim=2)  # (B, S, d_z) each
        if self.training:
            z = z_mean + torch.exp(0.5 * z_logvar) * torch.randn_like(z_mean)
        else:
            z = z_mean

        # g(y, z): z as a one-channel map, y broadcast as K more channels.
        steps = z.shape[1]
        z_map = z[:, None, :, :].to(x_padded.dtype)  # (B, 1, S, d_z)
        y_small = y[:, :, None, None].expand(batch, self._n_clusters, steps, self.latent_dim)
        g_input = torch.cat([z_map, y_small], dim=1)  # (B, 1 + K, S, d_z)
        reconstruction_logits = self.g_decoder(g_input)  # (B, 1, Tp, Mp)
        reconstruction_logits = reconstruction_logits[:, :, :n_frames, :n_features]  # (B, 1, T, M)

        return CatUVACOutput(
            cluster_logits=logits,
            probabilities=probabilities,
            y=y,
            z_mean=z_mean,
            z_logvar=z_logvar,
            z=z,
            reconstruction_logits=reconstruction_logits,
            mask=mask_padded[:, :n_frames],
        )

    def _forward_mlp(self, x: Tensor, mask: Tensor | None, temperature: float) -> CatUVACOutput:
        embeddings = flatten_embeddings(x)  # (B, D)
        logits = self.h_head(self.h_encoder(embeddings)).float()  # (B, K)
        probabilities = torch.softmax(logits, dim=1)
        y = (
            F.gumbel_softmax(logits, tau=temperature, hard=False)
            if self.training
            else probabilities
        )
        y = y.to(embeddings.dtype)
        assert isinstance(self.f_encoder, nn.Sequential)  # the perceptron `_build_mlp` made
        z_params = self.f_head(mlp_of_pair(self.f_encoder, embeddings, y)).float()  # (B, 2 d_z)
        z_mean, z_logvar = z_params.chunk(2, dim=1)  # (B, d_z) each
        z = (
            z_mean + torch.exp(0.5 * z_logvar) * torch.randn_like(z_mean)
            if self.training
            else z_mean
        )
        x_hat = self.g_decoder(torch.cat([z.to(embeddings.dtype), y], dim=1))  # (B, D)
        return CatUVACOutput(
            cluster_logits=logits,
            probabilities=probabilities,
            y=y,
            z_mean=z_mean[:, None, :],  # (B, 1, d_z): one latent step
            z_logvar=z_logvar[:, None, :],
            z=z[:, None, :],
            reconstruction_logits=x_hat[:, None, None, :],  # (B, 1, 1, D): the Gaussian mean
            mask=mask if mask is not None else x.new_ones(x.shape[0], 1),
        )

    def loss(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        *,
        temperature: float,
        lambda_kl: float,
        cluster_balance: float = 0.0,
    ) -> LossParts:
        output = self(x, mask, temperature)
        if self.architecture == "mlp":
            reconstruction = gaussian_reconstruction(
                flatten_embeddings(output.reconstruction_logits), flatten_embeddings(x)
            ).mean()
        else:
            reconstruction = masked_reconstruction_bce(
                output.reconstruction_logits, x, output.mask
            ).mean()
        kl_z = gaussian_kl_to_standard_normal(output.z_mean, output.z_logvar).mean()
        kl_y = categorical_kl_to_uniform(output.cluster_logits).mean()
        balance = kl_to_uniform(output.probabilities.mean(dim=0))
        total = reconstruction + lambda_kl * (kl_z + kl_y) + cluster_balance * balance
        return LossParts(
            total=total,
            reconstruction=reconstruction,
            kl_z=kl_z,
            kl_y=kl_y,
            balance=balance,
            probabilities=output.probabilities,
        )


def gaussian_kl_to_standard_normal(mean: Tensor, logvar: Tensor) -> Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) per sample, summed over all but the batch axis."""
    per_value = 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar)
    return per_value.flatten(start_dim=1).sum(dim=1)  # (B,)


def categorical_kl_to_uniform(logits: Tensor) -> Tensor:
    """KL(softmax(logits) || Uniform(K)) = sum_k pi_k (log pi_k + log K), ``(B, K)`` -> ``(B,)``."""
    log_probabilities = torch.log_softmax(logits.float(), dim=1)  # (B, K)
    n_clusters = logits.shape[1]
    return (log_probabilities.exp() * (log_probabilities + math.log(n_clusters))).sum(dim=1)
