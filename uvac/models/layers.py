"""Building blocks shared by the two variational models: the paper's conv-recurrent encoder,
its transposed-convolution decoder, and the masking helpers around them.

Every (transposed) convolution has kernel 8, stride 2, padding 3, so each halves (or doubles)
both time and frequency exactly when the size is even. Four of them divide by 16, so inputs are
zero-padded to multiples of 16 on both axes (`pad_to_blocks`) and outputs cropped back; the
padded frames carry mask 0 and never enter a loss.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = [
    "BLOCK",
    "ConvRecurrentEncoder",
    "TransposedConvDecoder",
    "block_activity",
    "masked_reconstruction_bce",
    "masked_time_mean",
    "pad_to_blocks",
    "padded_size",
]

# Four stride-2 stages: one step of the encoder's sequence covers 16 frames (and 16 mel bins).
BLOCK = 16
KERNEL, STRIDE, PADDING = 8, 2, 3


def padded_size(n: int) -> int:
    """The smallest multiple of 16 that holds ``n``."""
    return -(-n // BLOCK) * BLOCK


def pad_to_blocks(x: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Zero-pad ``x (B, 1, T, M)`` to ``(B, 1, Tp, Mp)`` with Tp, Mp multiples of 16.

    Returns the padded features and a padded mask ``(B, Tp)`` (all ones over the original
    frames when ``mask`` is None, zeros over the added ones).
    """
    batch, _, n_frames, n_features = x.shape
    pad_t = padded_size(n_frames) - n_frames
    pad_m = padded_size(n_features) - n_features
    if mask is None:
        mask = x.new_ones(batch, n_frames)  # (B, T)
    mask = mask.to(x.dtype)
    if pad_t or pad_m:
        x = F.pad(x, (0, pad_m, 0, pad_t))  # (B, 1, Tp, Mp)
        mask = F.pad(mask, (0, pad_t))  # (B, Tp)
    return x, mask


def block_activity(mask: Tensor) -> Tensor:
    """Share of active frames in each 16-frame block: ``(B, Tp)`` -> ``(B, Tp / 16)``."""
    batch, n_frames = mask.shape
    return mask.reshape(batch, n_frames // BLOCK, BLOCK).mean(dim=2)


def masked_time_mean(sequence: Tensor, weights: Tensor | None) -> Tensor:
    """Weighted mean over time: ``(B, S, C)`` with weights ``(B, S)`` -> ``(B, C)``.

    A row whose weights are all zero (a window of pure padding) falls back to the plain mean,
    so the result is always defined.
    """
    if weights is None:
        return sequence.mean(dim=1)
    weights = weights.to(sequence.dtype)
    total = weights.sum(dim=1, keepdim=True)  # (B, 1)
    weights = torch.where(total > 0, weights, torch.ones_like(weights))
    weights = weights / weights.sum(dim=1, keepdim=True)  # (B, S), rows sum to 1
    return torch.einsum("bsc,bs->bc", sequence, weights)


def masked_reconstruction_bce(logits: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Bernoulli reconstruction error of each window over its active frames, ``(B,)``.

    ``logits`` and ``target`` are ``(B, 1, T, M)``, ``mask`` is ``(B, T)``. The error is summed
    over mel bins, averaged over active frames, then multiplied by T: for an unpadded window this
    is exactly the negative log-likelihood of the whole window (the ELBO's term, on the scale the
    paper's lambda refers to), and a zero-padded window is scored on its real frames only, at the
    same scale, as the successor paper's activity mask prescribes.
    """
    n_frames = target.shape[2]
    per_bin = F.binary_cross_entropy_with_logits(
        logits.float(), target.float(), reduction="none"
    )  # (B, 1, T, M)
    per_frame = per_bin.sum(dim=3).squeeze(1)  # (B, T)
    mask = mask.to(per_frame.dtype)
    active = mask.sum(dim=1).clamp_min(1.0)  # (B,)
    return (per_frame * mask).sum(dim=1) / active * n_frames  # (B,)


class BroadcastConv2d(nn.Module):
    """The paper's first convolution over ``cat([x, v broadcast to every pixel], channels)``,
    computed without building the broadcast maps.

    A vector ``v (B, K)`` broadcast over a ``(Tp, Mp)`` grid contributes
    ``sum_k v_k * conv(ones, W_k)`` to the output, where ``conv(ones, W_k)`` (one map per k and
    output channel, zero padding included) does not depend on the batch. So the layer convolves
    only the ``C_in`` real channels and adds an einsum, exactly equal to the concatenated
    convolution but without its K extra input channels: for f with K = 10 that removed about a
    fifth of a training step's time. The weight has the concatenated layer's shape
    ``(C_out, C_in + K, 8, 8)``.
    """

    def __init__(self, in_channels: int, broadcast_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.broadcast_channels = broadcast_channels
        self.weight = nn.Parameter(
            nn.Conv2d(in_channels + broadcast_channels, out_channels, KERNEL, bias=False).weight
        )  # (C_out, C_in + K, 8, 8), initialised like the concatenated Conv2d

    def forward(self, x: Tensor, vector: Tensor | None = None) -> Tensor:
        weight = self.weight
        x_weight = weight[:, : self.in_channels]  # (C_out, C_in, 8, 8)
        out = F.conv2d(x, x_weight, stride=STRIDE, padding=PADDING)  # (B, C_out, Tp/2, Mp/2)
        if self.broadcast_channels == 0:
            return out
        if vector is None or vector.shape[1] != self.broadcast_channels:
            raise ValueError(f"expected a (B, {self.broadcast_channels}) vector to broadcast")
        out_channels = weight.shape[0]
        k = self.broadcast_channels
        per_k = weight[:, self.in_channels :].transpose(0, 1)  # (K, C_out, 8, 8)
        per_k = per_k.reshape(k * out_channels, 1, KERNEL, KERNEL)
        ones = x.new_ones(1, 1, x.shape[2], x.shape[3])  # (1, 1, Tp, Mp)
        response = F.conv2d(ones, per_k, stride=STRIDE, padding=PADDING)  # (1, K C_out, ., .)
        response = response.reshape(k, out_channels, out.shape[2], out.shape[3])
        return out + torch.einsum("bk,kchw->bchw", vector.to(response.dtype), response)


def _conv_stage(in_channels: int, out_channels: int) -> nn.Sequential:
    # No conv bias: the batch norm right after it has its own shift.
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, KERNEL, STRIDE, PADDING, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ConvRecurrentEncoder(nn.Module):
    """Four conv stages (each Conv2d + BatchNorm2d + ReLU), then a GRU over time.

    ``(B, C_in, Tp, Mp)`` (plus, with ``broadcast_channels`` K > 0, a vector ``(B, K)`` that
    the first convolution sees as K constant channels) -> ``(B, Tp / 16, hidden)``: frequency is
    folded into the GRU's features (``channels[-1] * Mp / 16`` per step).
    """

    def __init__(
        self,
        *,
        in_channels: int,
        broadcast_channels: int = 0,
        n_features_padded: int,
        channels: Sequence[int],
        gru_hidden: int,
        gru_layers: int,
    ) -> None:
        super().__init__()
        if len(channels) != 4:
            raise ValueError(f"the encoder has four conv stages, got channels={channels}")
        if n_features_padded % BLOCK:
            raise ValueError(f"n_features_padded must be a multiple of {BLOCK}")
        self.first_conv = BroadcastConv2d(in_channels, broadcast_channels, channels[0])
        self.first_activation = nn.Sequential(nn.BatchNorm2d(channels[0]), nn.ReLU(inplace=True))
        self.convs = nn.Sequential(
            *(_conv_stage(previous, width) for previous, width in itertools.pairwise(channels))
        )
        self.gru = nn.GRU(
            input_size=channels[-1] * (n_features_padded // BLOCK),
            hidden_size=gru_hidden,
            num_layers=gru_layers,
            batch_first=True,
        )

    def forward(self, x: Tensor, vector: Tensor | None = None) -> Tensor:
        maps = self.first_activation(self.first_conv(x, vector))  # (B, C0, Tp/2, Mp/2)
        maps = self.convs(maps)  # (B, C, S, Mb) with S = Tp/16, Mb = Mp/16
        batch, channels, steps, mel_blocks = maps.shape
        sequence = maps.permute(0, 2, 1, 3).reshape(batch, steps, channels * mel_blocks)
        outputs, _ = self.gru(sequence)  # (B, S, hidden)
        return outputs


class TransposedConvDecoder(nn.Module):
    """Four ConvTranspose2d stages, ReLU after all but the last: ``(B, C_in, S, Mb)`` ->
    logits ``(B, 1, 16 S, 16 Mb)``.

    It returns logits; the sigmoid of the paper's last layer is applied by the caller (or folded
    into the binary cross-entropy, which is more accurate and safe under autocast).
    """

    def __init__(self, *, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        if len(channels) != 3:
            raise ValueError(
                f"the decoder has three hidden transposed-conv stages, got channels={channels}"
            )
        layers: list[nn.Module] = []
        previous = in_channels
        for width in channels:
            layers += [
                nn.ConvTranspose2d(previous, width, KERNEL, STRIDE, PADDING),
                nn.ReLU(inplace=True),
            ]
            previous = width
        layers.append(nn.ConvTranspose2d(previous, 1, KERNEL, STRIDE, PADDING))
        self.layers = nn.Sequential(*layers)

    def forward(self, maps: Tensor) -> Tensor:
        return self.layers(maps)  # (B, 1, 16 S, 16 Mb)
