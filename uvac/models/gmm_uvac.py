"""UVAC with a Gaussian-mixture prior (arXiv 2503.18579): the paper's second baseline.

The same conv-recurrent encoder and transposed-conv decoder as `CatUVAC`, but one latent vector
z per window (d_z = 10 by default, as in the UVAC paper) with a learnable mixture prior
p(z) = sum_c p(c) N(z; mu_c, diag(var_c)). Clusters are the mixture responsibilities
p(c | z), evaluated at the posterior mean for inference.

Design choices where the papers are silent:

- The encoder's GRU outputs are averaged over time (weighted by each step's share of active
  frames, like h in Cat. UVAC) before a linear layer gives (mu, log-variance) of q(z | x).
- The decoder maps z through a linear layer (and ReLU) to a ``(128, Tp/16, Mp/16)`` map, then
  the four transposed convolutions restore ``(Tp, Mp)``. That linear layer fixes the window
  length, so the model is built for ``n_frames`` frames; inference (encoder only) accepts any T.
- Loss: VaDE's closed form with q(c | x) := p(c | z) at the sampled z:
  reconstruction + lambda * (KL_z + KL_y), where
  KL_z = E_{q(c|x)} KL(q(z | x) || N(mu_c, var_c)) (analytic) and
  KL_y = KL(q(c | x) || p(c)). The parts have the same meaning as Cat. UVAC's, so one training
  loop reports both.
- The prior's means start as a standard-normal draw (seeded by the training run), its variances
  at 1 and its weights uniform; no auto-encoder pre-training.

``architecture="mlp"``: the encoder and decoder are perceptrons for embedding inputs
``(B, 1, 1, D)`` with a Gaussian likelihood, as in Cat. UVAC (`uvac.models.mlp`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

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
from uvac.models.mlp import DEFAULT_HIDDEN_UNITS, flatten_embeddings, gaussian_reconstruction, mlp

__all__ = ["GmmUVAC"]

LOG_2PI = math.log(2.0 * math.pi)


class GmmUVAC(VariationalClusterModel):
    """UVAC with a learnable Gaussian-mixture prior; see the module docstring."""

    model_type = "uvac-gmm"
    encoder: nn.Module  # of either architecture (conv-GRU or perceptron)
    decoder: nn.Module

    def __init__(
        self,
        *,
        n_clusters: int = 10,
        n_features: int = 64,
        n_frames: int,
        latent_dim: int = 10,
        conv_channels: Sequence[int] = (16, 32, 64, 128),
        gru_hidden: int = 128,
        gru_layers: int = 2,
        deconv_channels: Sequence[int] = (64, 32, 16),
        architecture: str = "conv-gru",
        hidden_units: Sequence[int] = DEFAULT_HIDDEN_UNITS,
    ) -> None:
        super().__init__(
            n_clusters=n_clusters,
            n_features=n_features,
            conv_channels=conv_channels,
            gru_hidden=gru_hidden,
            gru_layers=gru_layers,
            deconv_channels=deconv_channels,
        )
        self.n_frames = n_frames
        self.latent_dim = latent_dim
        if architecture not in ("conv-gru", "mlp"):
            raise ValueError(f"architecture must be conv-gru or mlp, got {architecture!r}")
        self.architecture = architecture
        self.hidden_units = tuple(int(units) for units in hidden_units)
        if architecture == "mlp":
            if not self.hidden_units:
                raise ValueError("hidden_units needs at least one layer")
            self.encoder = mlp(n_features, self.hidden_units)
            self.encoder_head = nn.Linear(self.hidden_units[-1], 2 * latent_dim)
            self.decoder = nn.Sequential(
                mlp(latent_dim, self.hidden_units[::-1]),
                nn.Linear(self.hidden_units[0], n_features),
            )
            self._init_prior()
            return
        features_padded = padded_size(n_features)
        self._map_shape = (
            self.conv_channels[-1],
            padded_size(n_frames) // BLOCK,
            features_padded // BLOCK,
        )  # (C, S, Mb): the decoder's first map

        self.encoder = ConvRecurrentEncoder(
            in_channels=1,
            n_features_padded=features_padded,
            channels=self.conv_channels,
            gru_hidden=gru_hidden,
            gru_layers=gru_layers,
        )
        self.encoder_head = nn.Linear(gru_hidden, 2 * latent_dim)
        self.decoder_input = nn.Sequential(
            nn.Linear(latent_dim, math.prod(self._map_shape)), nn.ReLU(inplace=True)
        )
        self.decoder = TransposedConvDecoder(
            in_channels=self.conv_channels[-1], channels=self.deconv_channels
        )
        self._init_prior()

    def _init_prior(self) -> None:
        # After the networks, so that a seed gives the same initial networks as before.
        self.prior_means = nn.Parameter(torch.randn(self._n_clusters, self.latent_dim))  # (K, d_z)
        self.prior_logvars = nn.Parameter(
            torch.zeros(self._n_clusters, self.latent_dim)
        )  # (K, d_z)
        self.prior_logits = nn.Parameter(torch.zeros(self._n_clusters))  # (K,)

    def hyperparameters(self) -> dict[str, Any]:
        if self.architecture == "mlp":
            return {
                "n_clusters": self._n_clusters,
                "n_features": self.n_features,
                "n_frames": self.n_frames,
                "latent_dim": self.latent_dim,
                "architecture": "mlp",
                "hidden_units": list(self.hidden_units),
            }
        return {
            "n_clusters": self._n_clusters,
            "n_features": self.n_features,
            "n_frames": self.n_frames,
            "latent_dim": self.latent_dim,
            "conv_channels": list(self.conv_channels),
            "gru_hidden": self.gru_hidden,
            "gru_layers": self.gru_layers,
            "deconv_channels": list(self.deconv_channels),
        }

    def encode(self, x: Tensor, mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """q(z | x): ``(B, 1, T, M)`` -> mean and log-variance, ``(B, d_z)`` each."""
        check_features(x, mask, n_features=self.n_features)
        if self.architecture == "mlp":
            z_params = self.encoder_head(self.encoder(flatten_embeddings(x))).float()
            z_mean, z_logvar = z_params.chunk(2, dim=1)
            return z_mean, z_logvar  # (B, d_z) each
        x_padded, mask_padded = pad_to_blocks(x, mask)  # (B, 1, Tp, Mp), (B, Tp)
        sequence = self.encoder(x_padded)  # (B, S, hidden)
        pooled = masked_time_mean(sequence, block_activity(mask_padded))  # (B, hidden)
        z_mean, z_logvar = self.encoder_head(pooled).float().chunk(2, dim=1)
        return z_mean, z_logvar  # (B, d_z) each

    def decode(self, z: Tensor, *, n_frames: int) -> Tensor:
        """g(z): ``(B, d_z)`` -> reconstruction logits ``(B, 1, n_frames, M)`` (the Gaussian
        mean ``(B, 1, 1, D)`` for the mlp architecture)."""
        if self.architecture == "mlp":
            return self.decoder(z)[:, None, None, :]
        maps = self.decoder_input(z).reshape(z.shape[0], *self._map_shape)  # (B, C, S, Mb)
        logits = self.decoder(maps)  # (B, 1, Tp, Mp)
        return logits[:, :, :n_frames, : self.n_features]

    def component_log_likelihoods(self, z: Tensor) -> Tensor:
        """log p(c) + log N(z; mu_c, var_c) for each component: ``(B, d_z)`` -> ``(B, K)``."""
        z = z.float()[:, None, :]  # (B, 1, d_z)
        variances = self.prior_logvars.exp()  # (K, d_z)
        log_normal = -0.5 * (
            LOG_2PI + self.prior_logvars + (z - self.prior_means).square() / variances
        ).sum(dim=2)  # (B, K)
        return torch.log_softmax(self.prior_logits, dim=0) + log_normal

    def responsibilities(self, z: Tensor) -> Tensor:
        """p(c | z), ``(B, d_z)`` -> ``(B, K)``."""
        return torch.softmax(self.component_log_likelihoods(z), dim=1)

    def cluster_probabilities(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        z_mean, _ = self.encode(x, mask)
        return self.responsibilities(z_mean)  # (B, K)

    def latent(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        """The posterior means, ``(B, d_z)``."""
        return self.encode(x, mask)[0]

    def loss(
        self,
        x: Tensor,
        mask: Tensor | None = None,
        *,
        temperature: float,
        lambda_kl: float,
        cluster_balance: float = 0.0,
    ) -> LossParts:
        """VaDE's negative ELBO; ``temperature`` is unused (no categorical sample here)."""
        n_frames = x.shape[2]
        if padded_size(n_frames) != padded_size(self.n_frames):
            raise ValueError(
                f"this model was built for {self.n_frames}-frame windows, got {n_frames}"
            )
        z_mean, z_logvar = self.encode(x, mask)  # (B, d_z) each
        if self.training:
            z = z_mean + torch.exp(0.5 * z_logvar) * torch.randn_like(z_mean)
        else:
            z = z_mean
        reconstruction_logits = self.decode(z.to(x.dtype), n_frames=n_frames)  # (B, 1, T, M)
        if self.architecture == "mlp":
            reconstruction = gaussian_reconstruction(
                flatten_embeddings(reconstruction_logits), flatten_embeddings(x)
            ).mean()
        else:
            full_mask = mask if mask is not None else x.new_ones(x.shape[0], n_frames)
            reconstruction = masked_reconstruction_bce(reconstruction_logits, x, full_mask).mean()

        log_joint = self.component_log_likelihoods(z)  # (B, K)
        gamma = torch.softmax(log_joint, dim=1)  # (B, K), q(c | x) := p(c | z)
        log_gamma = torch.log_softmax(log_joint, dim=1)
        # E_{q(c|x)} KL(N(z_mean, z_var) || N(mu_c, var_c)), per sample.
        prior_logvars = self.prior_logvars[None]  # (1, K, d_z)
        kl_per_component = 0.5 * (
            prior_logvars
            + (z_logvar[:, None, :] - prior_logvars).exp()
            + (z_mean[:, None, :] - self.prior_means[None]).square() / prior_logvars.exp()
            - 1.0
            - z_logvar[:, None, :]
        ).sum(dim=2)  # (B, K)
        kl_z = (gamma * kl_per_component).sum(dim=1).mean()
        log_prior = torch.log_softmax(self.prior_logits, dim=0)  # (K,)
        kl_y = (gamma * (log_gamma - log_prior)).sum(dim=1).mean()
        balance = kl_to_uniform(gamma.mean(dim=0))
        total = reconstruction + lambda_kl * (kl_z + kl_y) + cluster_balance * balance
        return LossParts(
            total=total, reconstruction=reconstruction, kl_z=kl_z, kl_y=kl_y, balance=balance
        )
