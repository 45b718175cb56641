"""Augmentation consistency: an option beyond the paper that makes h cluster what is invariant.

The paper's ELBO gives h a weak reason to be informative: when pi is flat, the decoder learns to
ignore y and KL_y rewards the flat pi (posterior collapse onto one or a few clusters, or onto
the speaker rather than the word). This option adds a second view of every training window,
lightly augmented (`augment_windows`: a small random time stretch and shift, additive noise),
and maximises the mutual information between the cluster of a window and the cluster of its
augmented view (`mutual_information_loss`, the IIC objective of Ji, Henriques and Vedaldi 2019):

    loss += consistency_weight * -I(y; y'),  I(y; y') = sum_ij P_ij log(P_ij / (P_i P_j)),
    P = symmetrised mean over the batch of pi(x) pi(x')^T  (K, K).

I(y; y') is high only when every window is assigned confidently (low H(y | y')), consistently
under the augmentation, and the clusters are used evenly (high H(y)): it fights collapse and
flat pi at once. ``consistency_weight = 0`` (the paper's recipe) turns it off.

With ``consistency_neighbours = k`` the second view is an augmented copy of one of the window's
k nearest training windows (`nearest_neighbours`), as in SCAN (Van Gansbeke et al. 2020).

`self_label_loss` is SCAN's self-labelling stage (``TrainConfig.self_label_weight``). The other
remedy for the flat start, teaching h an initial partition, is `uvac.training.cluster_start`.
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor
from torch.nn import functional as F

__all__ = [
    "augment_windows",
    "mutual_information_loss",
    "nearest_neighbours",
    "self_label_loss",
]

logger = logging.getLogger(__name__)

# Augmentation strengths: light, so that the view is the same word or the same sound.
TIME_STRETCH = 0.15  # time axis scaled by a factor in [1 - s, 1 + s]
TIME_SHIFT = 0.10  # and shifted by up to this share of the window
NOISE_STD = 0.03  # additive Gaussian noise on the [0, 1] features
EMBEDDING_NOISE_STD = 0.3  # noise on standardised embeddings, in standard deviations
EMBEDDING_DROPOUT = 0.1  # share of an embedding's values zeroed (set to the training mean)

_EPS = 1e-8


def augment_windows(x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """A random view of windows ``x (B, 1, T, F)`` in [0, 1] with masks ``(B, T)``.

    Each window gets its own time stretch and shift (linear resampling of the time axis,
    edges repeated) and Gaussian noise; the mask is warped with it. Uses torch's global
    generator, which the training run seeds.

    One-frame windows are embeddings of a pretrained encoder (`uvac.audio.embedding_windows`): no
    time axis to warp and no [0, 1] range. Their view is the z-scores with Gaussian noise and
    a random tenth of the values set to 0 (the training mean); the mask is unchanged.
    """
    batch, _, n_frames, n_bins = x.shape
    if n_frames == 1:
        keep = (torch.rand_like(x, dtype=torch.float32) >= EMBEDDING_DROPOUT).to(x.dtype)
        noise = EMBEDDING_NOISE_STD * torch.randn_like(x)
        return (x + noise) * keep, mask
    stretch = 1.0 + (torch.rand(batch, 1, 1, device=x.device) * 2 - 1) * TIME_STRETCH  # (B,1,1)
    shift = (torch.rand(batch, 1, 1, device=x.device) * 2 - 1) * (2 * TIME_SHIFT)  # (B, 1, 1)
    time = torch.linspace(-1, 1, n_frames, device=x.device).view(1, n_frames, 1)  # (1, T, 1)
    bins = torch.linspace(-1, 1, n_bins, device=x.device).view(1, 1, n_bins)  # (1, 1, F)
    source_time = (time * stretch + shift).expand(batch, n_frames, n_bins)  # (B, T, F)
    grid = torch.stack([bins.expand(batch, n_frames, n_bins), source_time], dim=3)  # (B,T,F,2)
    warped = F.grid_sample(
        x.float(), grid, mode="bilinear", padding_mode="border", align_corners=True
    )  # (B, 1, T, F)
    warped = (warped + NOISE_STD * torch.randn_like(warped)).clamp_(0.0, 1.0)
    mask_grid = grid[:, :, :1, :]  # (B, T, 1, 2): the mask has one "bin"
    warped_mask = F.grid_sample(
        mask.float()[:, None, :, None], mask_grid, mode="nearest", padding_mode="border",
        align_corners=True,
    )[:, 0, :, 0]  # fmt: skip  # (B, T)
    return warped.to(x.dtype), warped_mask.to(mask.dtype)


def mutual_information_loss(p: Tensor, p_view: Tensor) -> Tensor:
    """-I(y; y') of two batches of cluster probabilities ``(B, K)``, a scalar (IIC)."""
    joint = p.float().T @ p_view.float() / p.shape[0]  # (K, K)
    joint = ((joint + joint.T) / 2).clamp_min(_EPS)
    marginal_row = joint.sum(dim=1, keepdim=True)  # (K, 1)
    marginal_col = joint.sum(dim=0, keepdim=True)  # (1, K)
    return -(joint * (joint.log() - marginal_row.log() - marginal_col.log())).sum()


def self_label_loss(p_clean: Tensor, p_view: Tensor, *, threshold: float) -> Tensor:
    """SCAN's self-labelling loss, a scalar: cross-entropy of the augmented views' cluster
    probabilities ``p_view (B, K)`` against the argmax of the clean views' ``p_clean (B, K)``
    (no gradient through it), on the windows whose clean max pi exceeds ``threshold`` only,
    each weighted by the inverse frequency of its target among them. Zero when none is."""
    confidence, targets = p_clean.detach().float().max(dim=1)  # (B,), (B,)
    confident = confidence > threshold  # (B,)
    if not bool(confident.any()):
        return p_view.sum() * 0.0  # keeps the graph (and the device) of a real loss
    targets = targets[confident]  # (C,)
    counts = torch.bincount(targets, minlength=p_view.shape[1]).float()  # (K,)
    weights = 1.0 / counts.clamp_min(1.0)  # (K,): unused targets get no weight anyway
    log_p = p_view[confident].float().clamp_min(_EPS).log()  # (C, K)
    return F.nll_loss(log_p, targets, weight=weights)


def nearest_neighbours(
    x: Tensor, mask: Tensor, *, k: int, groups: Tensor | None = None, chunk: int = 1024
) -> Tensor:
    """The ``k`` nearest other windows of each window ``(N, 1, T, F)``, ``(N, k)`` int64, by
    Euclidean distance between the flattened masked windows (computed in chunks of rows).

    With ``groups (N,)`` (the recording each window was cut from), a window's neighbours come
    from other recordings whenever at least ``k`` windows lie outside its own.
    """
    vectors = (x * mask[:, None, :, None]).flatten(start_dim=1).float()  # (N, T*F)
    k = min(k, vectors.shape[0] - 1)
    if groups is not None:
        groups = groups.to(x.device)
        group_sizes = torch.bincount(groups)
    rows = []
    for start in range(0, vectors.shape[0], chunk):
        distances = torch.cdist(vectors[start : start + chunk], vectors)  # (C, N)
        own = torch.arange(start, start + distances.shape[0], device=x.device)
        distances[torch.arange(distances.shape[0], device=x.device), own] = float("inf")
        if groups is not None:
            row_groups = groups[start : start + distances.shape[0]]  # (C,)
            same = row_groups[:, None] == groups[None, :]  # (C, N)
            enough_outside = (vectors.shape[0] - group_sizes[row_groups]) >= k  # (C,)
            distances[same & enough_outside[:, None]] = float("inf")
        rows.append(distances.topk(k, dim=1, largest=False).indices)
    return torch.cat(rows)
