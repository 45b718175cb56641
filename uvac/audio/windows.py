"""The records every front-end produces: normalisation statistics and time-context windows.

Both the log-mel pipeline (`uvac.audio.features`) and the encoder pipeline
(`uvac.audio.embedding_windows`) build on these two records, so they live below both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = ["NormStats", "Windows", "concatenate_windows"]


@dataclass(frozen=True)
class NormStats:
    """Training-set normalisation: per-mel mean and std, then the global min and max of the
    standardised values, so that ``((x - mean) / std - minimum) / (maximum - minimum)`` maps the
    training frames onto [0, 1]. Inference uses exactly these numbers and clamps to [0, 1]."""

    mean: torch.Tensor  # (F,) float32, F = FeatureConfig.feature_bins
    std: torch.Tensor  # (F,) float32, > 0
    minimum: float
    maximum: float

    TENSOR_KEYS = ("norm_stats.mean", "norm_stats.std", "norm_stats.minimum", "norm_stats.maximum")

    def __post_init__(self) -> None:
        if self.mean.ndim != 1 or self.mean.shape != self.std.shape:
            raise ValueError(
                f"mean and std must be 1-D of equal length, got {tuple(self.mean.shape)} and "
                f"{tuple(self.std.shape)}"
            )
        if not (torch.isfinite(self.mean).all() and torch.isfinite(self.std).all()):
            raise ValueError("normalisation mean and std must be finite")
        if not bool((self.std > 0).all()):
            raise ValueError("normalisation std must be positive")
        if not (math.isfinite(self.minimum) and math.isfinite(self.maximum)):
            raise ValueError("normalisation minimum and maximum must be finite")
        if not self.maximum > self.minimum:
            raise ValueError(
                f"normalisation maximum ({self.maximum}) must exceed minimum ({self.minimum})"
            )

    @property
    def feature_bins(self) -> int:
        return int(self.mean.shape[0])

    def to_tensors(self) -> dict[str, torch.Tensor]:
        """Tensors for a safetensors file, under keys prefixed ``norm_stats.``."""
        mean_key, std_key, minimum_key, maximum_key = self.TENSOR_KEYS
        return {
            mean_key: self.mean.detach().to(torch.float32).contiguous(),
            std_key: self.std.detach().to(torch.float32).contiguous(),
            minimum_key: torch.tensor([self.minimum], dtype=torch.float64),
            maximum_key: torch.tensor([self.maximum], dtype=torch.float64),
        }

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor]) -> NormStats:
        """Rebuild from ``to_tensors()`` output; other keys (model weights) are ignored."""
        missing = [key for key in cls.TENSOR_KEYS if key not in tensors]
        if missing:
            raise ValueError(f"normalisation statistics missing: {', '.join(missing)}")
        mean_key, std_key, minimum_key, maximum_key = cls.TENSOR_KEYS
        for key in (minimum_key, maximum_key):
            if tensors[key].numel() != 1:
                raise ValueError(
                    f"{key} must hold one value, got shape {tuple(tensors[key].shape)}"
                )
        return cls(
            mean=tensors[mean_key].detach().to(torch.float32).clone(),
            std=tensors[std_key].detach().to(torch.float32).clone(),
            minimum=float(tensors[minimum_key].item()),
            maximum=float(tensors[maximum_key].item()),
        )


@dataclass(frozen=True)
class Windows:
    """Time-context windows of one or more clips, ready for a network."""

    features: torch.Tensor  # (W, 1, T, M) float32 in [0, 1]; padding is 0
    mask: torch.Tensor  # (W, T) float32: 1 = real active audio, 0 = padding or inactive
    starts_s: list[float]  # W window starts in the clip, seconds
    ends_s: list[float]  # W window ends in the clip, seconds
    activity: torch.Tensor  # (W,) float32: active frames / window_frames, in [0, 1]

    def __len__(self) -> int:
        return int(self.features.shape[0])


def concatenate_windows(parts: Sequence[Windows]) -> tuple[Windows, list[slice]]:
    """Several clips' windows as one `Windows`, and each clip's slice of it."""
    if not parts:
        raise ValueError("need the windows of at least one clip")
    slices: list[slice] = []
    offset = 0
    for part in parts:
        slices.append(slice(offset, offset + len(part)))
        offset += len(part)
    if len(parts) == 1:
        return parts[0], slices
    windows = Windows(
        features=torch.cat([part.features for part in parts]),
        mask=torch.cat([part.mask for part in parts]),
        starts_s=[start for part in parts for start in part.starts_s],
        ends_s=[end for part in parts for end in part.ends_s],
        activity=torch.cat([part.activity for part in parts]),
    )
    return windows, slices
